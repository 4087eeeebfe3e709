"""dmap: imaging inverse problems with diffusion priors (DPS, DSG, DMAP).

The stable API::

    prior = dmap.load_prior("gmm-mnist")
    task = dmap.make_task("sr4", prior.shape, sigma_y=0.05, generator=g)
    y = task.simulate(x, generator=g)
    x0 = dmap.solve("dmap", prior, task, y, generator=g)
"""

from dmap.operators import TASKS, make_task
from dmap.priors import PRIORS, load_prior
from dmap.solvers import METHODS, solve

__version__ = "0.1.0"
__all__ = ["load_prior", "make_task", "solve", "PRIORS", "TASKS", "METHODS", "__version__"]
