"""Forward models, noise models and the named tasks."""

from dmap.operators.base import Composed, LinearOperator, Operator, SVDOperator, cgls, conjugate_gradients
from dmap.operators.blur import Blur
from dmap.operators.cs import CompressedSensing
from dmap.operators.function import FunctionOperator, NonlinearFunctionOperator, check_adjoint
from dmap.operators.inpaint import Inpaint
from dmap.operators.matrix import Matrix
from dmap.operators.noise import GaussianNoise, Noise, PoissonGaussianNoise, PoissonNoise
from dmap.operators.phase import PhaseRetrieval
from dmap.operators.resample import BicubicDown, Downsample, Grey
from dmap.operators.tasks import DEFAULT_SIGMA_Y, TASKS, Task, TaskSpec, make_task, register_task

__all__ = [
    "Operator",
    "LinearOperator",
    "SVDOperator",
    "Blur",
    "CompressedSensing",
    "Inpaint",
    "Matrix",
    "PhaseRetrieval",
    "Downsample",
    "BicubicDown",
    "Grey",
    "FunctionOperator",
    "NonlinearFunctionOperator",
    "Composed",
    "cgls",
    "conjugate_gradients",
    "check_adjoint",
    "Noise",
    "GaussianNoise",
    "PoissonNoise",
    "PoissonGaussianNoise",
    "Task",
    "TaskSpec",
    "TASKS",
    "DEFAULT_SIGMA_Y",
    "make_task",
    "register_task",
]
