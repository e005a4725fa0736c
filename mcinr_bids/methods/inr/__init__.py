"""The default method: a subject-specific implicit neural representation (McGinnis, Shit et al.,
MICCAI 2023) fitted to all of a subject's images at once, and its post-processing.

- engine: :mod:`.settings` (torch-free), :mod:`.encodings`, :mod:`.model`, :mod:`.alignment`,
  :mod:`.slab` (the slice-profile forward model of the fit), :mod:`.stopping`, :mod:`.resume`,
  :mod:`.fit` (:func:`fit_inr`), :mod:`.predict` (grids, checkpoints);
- post-processing: :mod:`.postprocessing` (the output chain used everywhere,
  :func:`~.postprocessing.inr_output`), :mod:`.consistency` (back-projection onto the acquired
  data), :mod:`.through_plane_network` (a small 2D CNN across the thick slices),
  :mod:`.softening` (of the acquired slices' grid pattern).

torch + numpy; never imports nipype, pybids or niworkflows.  The names below load lazily, so
that importing a torch-free part (``settings``) does not load torch.
"""

from importlib import import_module

_HOMES = {
    "FittedINR": "mcinr_bids.methods.inr.fit", "fit_inr": "mcinr_bids.methods.inr.fit",
    "load_checkpoint": "mcinr_bids.methods.inr.predict",
    "predict_on_grid": "mcinr_bids.methods.inr.predict",
    "reference_grid": "mcinr_bids.methods.inr.predict",
    "save_checkpoint": "mcinr_bids.methods.inr.predict",
    "union_grid": "mcinr_bids.methods.inr.predict",
    "INRSettings": "mcinr_bids.methods.inr.settings", "PRESETS": "mcinr_bids.methods.inr.settings",
    "settings_for_preset": "mcinr_bids.methods.inr.settings",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
