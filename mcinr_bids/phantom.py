"""A synthetic two-contrast head phantom with known isotropic ground truth (pure numpy/scipy).

Both contrasts share one anatomy (folded grey/white matter boundary, ventricles, a lesion) with
different intensities per tissue, like a T1w and a FLAIR of one subject.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

# tissue: background, white matter, grey matter, cerebrospinal fluid, lesion
T1_INTENSITIES = np.array([0.0, 1000.0, 650.0, 250.0, 500.0])
FLAIR_INTENSITIES = np.array([0.0, 450.0, 700.0, 80.0, 1100.0])


def phantom_labels(shape=(64, 64, 48), seed: int = 0) -> np.ndarray:
    """Tissue labels (0-4) of shape ``shape`` on a 1 mm grid."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"))
    radius = np.sqrt(np.sum((grid / np.array([0.85, 0.9, 0.85])[:, None, None, None]) ** 2,
                            axis=0))
    brain = radius < 1.0
    folding = ndimage.gaussian_filter(rng.standard_normal(shape), sigma=2.5)
    folding = folding / folding.std()
    labels = np.zeros(shape, dtype=np.int16)
    labels[brain] = 1
    cortex = brain & ((radius > 0.72) | (folding > 0.6))
    labels[cortex] = 2
    ventricles = (((grid[0] - 0.18) / 0.12) ** 2 + (grid[1] / 0.35) ** 2
                  + (grid[2] / 0.25) ** 2 < 1) | (((grid[0] + 0.18) / 0.12) ** 2
                                                   + (grid[1] / 0.35) ** 2
                                                   + (grid[2] / 0.25) ** 2 < 1)
    labels[ventricles & brain] = 3
    lesion = ((grid[0] - 0.4) ** 2 + (grid[1] + 0.3) ** 2 + (grid[2] - 0.2) ** 2) < 0.12**2
    labels[lesion & brain] = 4
    return labels


def make_phantom(shape=(64, 64, 48), seed: int = 0, smoothing: float = 0.6):
    """Return ``(t1, flair, mask, affine)``: float32 volumes in arbitrary scanner-like units,
    the brain mask and a 1 mm RAS affine centred on the volume."""
    labels = phantom_labels(shape, seed)
    mask = labels > 0
    volumes = []
    for intensities in (T1_INTENSITIES, FLAIR_INTENSITIES):
        image = ndimage.gaussian_filter(intensities[labels].astype(np.float64), smoothing)
        volumes.append(np.where(mask, image, 0.0).astype(np.float32))
    affine = np.eye(4)
    affine[:3, 3] = -(np.asarray(shape) - 1) / 2.0
    return volumes[0], volumes[1], mask, affine
