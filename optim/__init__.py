"""Optimizers of the spectra toolkit, each a `torch.optim.Optimizer`, and a registry.

    >>> import optim
    >>> opt = optim.create("calr", model.parameters(), lr=1e-2)            # doctest: +SKIP
    >>> bundle = optim.create_bundle("calr-cosine", model.parameters(),
    ...                              total_steps=1000, total_epochs=10)    # doctest: +SKIP

Modules: `optim.calr` (CALR), `optim.dcao` (DCAO) and `optim.dcao_controller`, `optim.smaran` (SMARAN), `optim.lpsgd` (LPSGD, LPSGDM,
PNormScheduler), `optim.lion` (Lion), `optim.registry` (names -> optimizers),
`optim.schedules` (lr schedules by name: LRSchedule),
`optim.testfunctions` (Rosenbrock, Himmelblau, Beale, saddle, and a runner).
"""

from .calr import CALR
from .dcao import DCAO
from .dcao_controller import DCAOController, Multipliers
from .lion import Lion
from .lpsgd import LPSGD, LPSGDM, PNormScheduler
from .registry import (
    OptimizerBundle,
    OptimizerInfo,
    Schedule,
    available,
    create,
    create_bundle,
    register,
)
from .schedules import SCHEDULES, LRSchedule, ScheduleError
from .smaran import SMARAN

__all__ = [
    "CALR",
    "DCAO",
    "LPSGD",
    "LPSGDM",
    "SCHEDULES",
    "SMARAN",
    "DCAOController",
    "LRSchedule",
    "Lion",
    "Multipliers",
    "OptimizerBundle",
    "OptimizerInfo",
    "PNormScheduler",
    "Schedule",
    "ScheduleError",
    "available",
    "create",
    "create_bundle",
    "register",
]
