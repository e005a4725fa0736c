"""A synthetic two-contrast head phantom with known isotropic ground truth (pure numpy/scipy).

Both contrasts share one anatomy (folded grey/white matter boundary, ventricles, a lesion) with
different intensities per tissue, like a T1w and a FLAIR of one subject.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mcinr_bids.core.geometry import rigid_matrix  # noqa: F401 - the phantom's poses; tests import it here

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


def template_head(resolution: float = 2.0, skull: bool = False, seed: int = 0):
    """A T1w-like and a FLAIR-like head built from the MNI152 template that nilearn ships.

    Returns ``(t1, flair, brain_mask, affine)`` on an isotropic grid of ``resolution`` mm in the
    template's space (MNI152NLin2009aSym).  Grey/white/CSF come from the template's tissue maps;
    FLAIR darkens CSF and white matter.  ``skull`` adds a bright scalp and a dark skull shell
    with background noise, as in a raw (not skull-stripped) acquisition.
    """
    from nilearn.datasets import (
        load_mni152_gm_template,
        load_mni152_template,
        load_mni152_wm_template,
    )

    t1_image = load_mni152_template(resolution=1)
    t1 = np.asanyarray(t1_image.dataobj, dtype=np.float64)
    grey = np.asanyarray(load_mni152_gm_template(resolution=1).dataobj, dtype=np.float64)
    white = np.asanyarray(load_mni152_wm_template(resolution=1).dataobj, dtype=np.float64)
    affine = t1_image.affine.copy()
    zoom = 1.0 / resolution
    if resolution != 1.0:
        t1, grey, white = (ndimage.zoom(a, zoom, order=1) for a in (t1, grey, white))
        affine[:3, :3] *= resolution
    t1 = t1 / max(t1.max(), 1e-6)
    grey, white = grey / max(grey.max(), 1e-6), white / max(white.max(), 1e-6)
    brain = ndimage.binary_fill_holes(t1 > 0.2)
    csf = np.clip(brain - grey - white, 0.0, 1.0)
    t1_head = 1000.0 * t1
    flair_head = 700.0 * grey + 420.0 * white + 90.0 * csf
    flair_head = np.where(brain, ndimage.gaussian_filter(flair_head, 0.5), 0.0)
    if skull:
        rng = np.random.default_rng(seed)
        distance = ndimage.distance_transform_edt(~brain) * resolution
        skull_shell = (distance > 2.0) & (distance <= 6.0)
        scalp = (distance > 6.0) & (distance <= 10.0)
        for image, scalp_value, skull_value in ((t1_head, 900.0, 60.0),
                                                 (flair_head, 500.0, 40.0)):
            image[skull_shell] = skull_value
            image[scalp] = scalp_value
            image += np.abs(rng.normal(0.0, 15.0, image.shape))
    return (t1_head.astype(np.float32), flair_head.astype(np.float32), brain,
            affine)


def write_bids_phantom(root, subjects=(("01", None, False), ("02", "01", True)),
                       resolution: float = 2.0, factor: int = 3, motion_degrees: float = 4.0,
                       seed: int = 0) -> dict:
    """Write a small BIDS dataset of thick-slice T1w (axial) and FLAIR (sagittal) images.

    ``subjects`` holds ``(label, session or None, with_skull)``.  The FLAIR of every subject
    is rotated by ``motion_degrees`` and shifted (the subject moved between the two scans); all
    images of the second and later subjects are also rotated a little against the template.
    ``factor=1`` writes isotropic images (``motion_degrees=0``: co-registered ones).
    Returns ``{(subject, session): {"T1w": path, "FLAIR": path}}``; the isotropic ground truth
    is :func:`template_head` with the same arguments.
    """
    import json
    import os

    import nibabel as nib

    from mcinr_bids.core.geometry import voxel_axis
    from mcinr_bids.quality.simulation import thick_slices

    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "dataset_description.json"), "w") as handle:
        json.dump({"Name": "mcinr-bids synthetic phantom", "BIDSVersion": "1.10.0",
                   "DatasetType": "raw", "License": "CC0", "Authors": ["mcinr-bids"]},
                  handle, indent=2)
    with open(os.path.join(root, "README"), "w") as handle:
        handle.write("Synthetic thick-slice T1w and FLAIR images made by mcinr-bids from the "
                     "MNI152 template.\n")
    rows = ["participant_id"]
    written = {}
    for index, (subject, session, skull) in enumerate(subjects):
        t1, flair, _, affine = template_head(resolution, skull=skull, seed=seed + index)
        centre = affine[:3, :3] @ ((np.asarray(t1.shape) - 1) / 2) + affine[:3, 3]
        head_pose = rigid_matrix((2.0 * index, -1.5 * index, 3.0 * index),
                                 (3.0 * index, -2.0 * index, 1.0 * index), centre)
        flair_motion = rigid_matrix((motion_degrees, 0.0, -motion_degrees / 2),
                                    (2.0, -3.0, 1.5) if motion_degrees else (0.0, 0.0, 0.0),
                                    centre)
        folder = os.path.join(root, f"sub-{subject}", *([f"ses-{session}"] if session else []),
                              "anat")
        os.makedirs(folder, exist_ok=True)
        prefix = f"sub-{subject}" + (f"_ses-{session}" if session else "")
        paths = {}
        for suffix, data, letter, motion in (("T1w", t1, "S", np.eye(4)),
                                              ("FLAIR", flair, "R", flair_motion)):
            if factor > 1:
                low, low_affine = thick_slices(data, affine, voxel_axis(affine, letter), factor)
            else:  # isotropic, for the evaluation mode
                low, low_affine = data, affine
            image = nib.Nifti1Image(low.astype(np.float32), head_pose @ motion @ low_affine)
            image.set_qform(image.affine, 1)
            image.set_sform(image.affine, 1)
            image.header.set_xyzt_units("mm", "sec")
            path = os.path.join(folder, f"{prefix}_{suffix}.nii.gz")
            image.to_filename(path)
            with open(path.replace(".nii.gz", ".json"), "w") as handle:
                json.dump({"MagneticFieldStrength": 3, "MRAcquisitionType": "2D",
                           "SliceThickness": resolution * factor}, handle)
            paths[suffix] = path
        written[(subject, session)] = paths
        rows.append(f"sub-{subject}")
    with open(os.path.join(root, "participants.tsv"), "w") as handle:
        handle.write("\n".join(rows) + "\n")
    return written
