"""The science core: encodings, models, world-coordinate data, fitting and prediction.

Pure torch + numpy (+ nibabel/scipy for images); never imports nipype, pybids or niworkflows.
"""

from .data import InputError, Volume, load_mask, load_volume
from .fit import FittedINR, fit_inr, select_device
from .predict import (
    isotropic_grid,
    load_checkpoint,
    predict_on_grid,
    reference_grid,
    save_checkpoint,
    save_nifti,
    union_grid,
)

__all__ = [
    "FittedINR",
    "InputError",
    "Volume",
    "fit_inr",
    "isotropic_grid",
    "load_checkpoint",
    "load_mask",
    "load_volume",
    "predict_on_grid",
    "reference_grid",
    "save_checkpoint",
    "save_nifti",
    "select_device",
    "union_grid",
]
