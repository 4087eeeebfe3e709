"""Progress bars on stderr (shown on a terminal, silent when redirected)."""

from __future__ import annotations

import sys


def progress_bar(total: int, desc: str, unit: str = "step", show: bool = True):
    """A tqdm bar of ``total`` ``unit``s; ``show=False`` hides it."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, leave=False, disable=None if show else True, file=sys.stderr)
