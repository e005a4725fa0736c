"""Shared fixtures: small synthetic phantoms written as NIfTI files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from mcinr_bids.core import geometry
from mcinr_bids.core.volumes import Volume
from mcinr_bids.quality import simulation
from mcinr_bids.quality.phantom import make_phantom


@pytest.fixture(scope="session")
def phantom():
    """Isotropic ground truth: (t1, flair, mask, affine) of shape (48, 48, 40)."""
    return make_phantom(shape=(48, 48, 40), seed=1)


@pytest.fixture(scope="session")
def low_resolution(phantom):
    """T1 decimated x4 along S (axial), FLAIR x4 along R (sagittal): [(data, affine), ...]."""
    t1, flair, _, affine = phantom
    return [simulation.decimate(t1, affine, geometry.voxel_axis(affine, "S")),
            simulation.decimate(flair, affine, geometry.voxel_axis(affine, "R"))]


@pytest.fixture
def decimated(low_resolution) -> list[Volume]:
    """The decimated phantom images (t1, flair) as acquisitions: thin (1 mm) slices 4 mm apart,
    so their slice profile is ``point`` (mcinr_bids.core.slices)."""
    return [Volume(np.asarray(d, dtype=np.float32), a, n, slice_thickness_mm=1.0)
            for (d, a), n in zip(low_resolution, ("t1", "flair"))]


def write_nifti(path, data, affine):
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return str(path)


@pytest.fixture
def low_resolution_files(tmp_path, low_resolution):
    names = ["sub-01_T1w.nii.gz", "sub-01_FLAIR.nii.gz"]
    return [write_nifti(tmp_path / n, d, a) for n, (d, a) in zip(names, low_resolution)]
