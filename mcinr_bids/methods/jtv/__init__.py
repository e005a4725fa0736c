"""Joint total variation (JTV) multi-contrast super-resolution, the classical anchor (UniRes,
Brudfors et al.): :mod:`.settings` (the ``[jtv]`` table, torch-free) and :mod:`.solver`
(:func:`~.solver.reconstruct_jtv`).  The names below load lazily, so that the settings load
without the solver."""

from importlib import import_module

_HOMES = {"JTVSettings": "settings", "reconstruct_jtv": "solver", "noise_sigma": "solver",
          "joint_total_variation": "solver", "data_box": "solver"}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
