"""The science core: settings, encodings, models, world-coordinate data, fitting, prediction.

Pure torch + numpy (+ nibabel/scipy for images); never imports nipype, pybids or niworkflows.
The names below load lazily, so that importing a torch-free part (``inr.settings``,
``inr.data``) does not load torch.
"""

from importlib import import_module

_HOMES = {
    "InputError": "data", "Volume": "data", "load_mask": "images", "load_volume": "images",
    "FittedINR": "fit", "fit_inr": "fit", "select_device": "device",
    "load_checkpoint": "predict", "predict_on_grid": "predict", "reference_grid": "predict",
    "save_checkpoint": "predict", "union_grid": "predict",
    "INRSettings": "settings", "PRESETS": "settings", "settings_for_preset": "settings",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
