"""dmap: imaging inverse problems with diffusion priors (DPS, DSG, DMAP, CSE).

The stable API::

    prior = dmap.load_prior("mnist")
    task = dmap.make_task("sr4", prior.image_shape, sigma_y=0.05, generator=g)
    y = task.simulate(x, generator=g)
    x0 = dmap.solve("dmap", prior, task, y, generator=g)
"""

from dmap.analysis.fidelity import posterior_summary
from dmap.api import run_method, solve
from dmap.operators import TASKS, make_task
from dmap.presets import load_presets, resolve_options
from dmap.priors.denoiser import from_denoiser
from dmap.solvers import METHODS

__version__ = "0.7.0"
_CATALOGUE = ("load_prior", "PRIORS", "DEFAULT_PRIOR")


def __getattr__(name: str):
    """The catalogue's names (:mod:`dmap.catalogue`), imported on first use: importing the
    algorithms (``import dmap.solvers``) loads no shipped asset and registers nothing."""
    if name in _CATALOGUE:
        from dmap import catalogue

        return getattr(catalogue, name)
    raise AttributeError(f"module 'dmap' has no attribute {name!r}")


__all__ = [
    "load_prior",
    "from_denoiser",
    "posterior_summary",
    "make_task",
    "solve",
    "run_method",
    "resolve_options",
    "load_presets",
    "PRIORS",
    "DEFAULT_PRIOR",
    "TASKS",
    "METHODS",
    "__version__",
]
