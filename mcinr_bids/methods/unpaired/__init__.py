"""Seed 003 (Li et al., "Unpaired MRI Super Resolution with Contrastive Learning", 2023): a
cohort-trained, single-contrast super-resolution network learnt from unpaired LR and HR images,
applied per image.  torch + numpy only, like :mod:`mcinr_bids.methods.inr`.

- :mod:`.settings`: :class:`UnpairedSettings` (torch-free).
- :mod:`.data`: the LR and HR domains as 2D planes of the cohort's images; the acquisition
  model along the thick direction (degrade / upsample).
- :mod:`.model`: encoder, residual decoder, discriminators, the losses (InfoNCE, LSGAN).
- :mod:`.train`: :func:`train_unpaired` (resumable), :func:`save_unpaired`,
  :func:`load_unpaired`.
- :mod:`.apply`: :func:`superresolve_volume` (one image on its own grid, refined along its
  thick axis) and :func:`unpaired_on_grid` (into an output space).
"""

from mcinr_bids.methods.unpaired.settings import UnpairedSettings

__all__ = ["UnpairedSettings"]
