"""The paper's diagnostics of DPS as measurements (docs/findings.md)."""

from dmap.analysis.diversity import diversity
from dmap.analysis.scores import (
    dps_score,
    exact_posterior_xt,
    mean_test,
    score_error,
    unconditional_score,
)

__all__ = ["dps_score", "exact_posterior_xt", "mean_test", "score_error", "unconditional_score", "diversity"]
