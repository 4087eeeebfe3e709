"""Forward models and the named tasks."""

from dmap.operators.base import LinearOperator, Operator, SVDOperator
from dmap.operators.blur import Blur
from dmap.operators.cs import CompressedSensing
from dmap.operators.inpaint import Inpaint
from dmap.operators.phase import PhaseRetrieval
from dmap.operators.resample import Downsample
from dmap.operators.tasks import DEFAULT_SIGMA_Y, TASKS, Task, make_task

__all__ = [
    "Operator",
    "LinearOperator",
    "SVDOperator",
    "Blur",
    "CompressedSensing",
    "Inpaint",
    "PhaseRetrieval",
    "Downsample",
    "Task",
    "TASKS",
    "DEFAULT_SIGMA_Y",
    "make_task",
]
