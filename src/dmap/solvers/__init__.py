"""Solvers: one algorithm per file, each registering itself with its options class.

Importing this package registers every method in :data:`METHODS`; presets and the
one entry point ``dmap.solve`` live in :mod:`dmap.presets` and :mod:`dmap.api`.
"""

# isort: skip_file
# (the import order below is the registration order, the order `dmap list` shows)
from dmap.solvers.base import METHODS, Method, Options, ReverseOptions, get_method, register
from dmap.solvers.common import DivergenceError, NonFiniteError, SolveError, project_to_sphere
from dmap.solvers.dps import DPSOptions, solve_dps
from dmap.solvers.dsg import DSGOptions, solve_dsg
from dmap.solvers.dmap import DMAPOptions, solve_dmap
from dmap.solvers.cse import CSEOptions, DMAPCSEOptions, DPSCSEOptions, solve_cse
from dmap.solvers.ddrm import DDRMOptions, solve_ddrm
from dmap.solvers.diffpir import DiffPIROptions, solve_diffpir
from dmap.solvers.pigdm import PiGDMOptions, solve_pigdm
from dmap.solvers.daps import DAPSOptions, solve_daps
from dmap.solvers.reddiff import REDDiffOptions, solve_reddiff
from dmap.solvers.tds import TDSOptions, solve_tds
from dmap.solvers.mcgdiff import MCGdiffOptions, solve_mcgdiff

__all__ = [
    "METHODS",
    "Method",
    "Options",
    "ReverseOptions",
    "DPSOptions",
    "DSGOptions",
    "DMAPOptions",
    "CSEOptions",
    "DPSCSEOptions",
    "DMAPCSEOptions",
    "DiffPIROptions",
    "DDRMOptions",
    "PiGDMOptions",
    "DAPSOptions",
    "REDDiffOptions",
    "TDSOptions",
    "MCGdiffOptions",
    "solve_ddrm",
    "solve_diffpir",
    "DivergenceError",
    "NonFiniteError",
    "SolveError",
    "get_method",
    "project_to_sphere",
    "register",
    "solve_cse",
    "solve_dmap",
    "solve_dps",
    "solve_dsg",
    "solve_pigdm",
    "solve_daps",
    "solve_reddiff",
    "solve_tds",
    "solve_mcgdiff",
]
