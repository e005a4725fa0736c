"""The slices of an acquisition: the slice thickness (a BIDS sidecar's ``SliceThickness``), its
fraction of the slice spacing, the slice profile that follows from them, and the slice-profile
factors of the INR's slab model.

The slice profile is a fact of the acquisition, never a method setting: ``box`` (each voxel the
mean of the anatomy across its slice: thick 2D slices, and every image whose sidecar gives no
thinner ``SliceThickness``) or ``point`` (each voxel a sample at its centre: slices at most half
as thick as they are apart, such as the paper's decimation, one 1 mm slice kept in four).  Every
method's forward model and the INR's recipe read it from here.

Pure numpy (no torch): the forward models of the INR fit (:mod:`.slab`), of JTV and of the
consistency step all take the slab from here.
"""

from __future__ import annotations

import json
import os

import numpy as np

from mcinr_bids.core.geometry import FWHM_TO_SIGMA, has_thick_slices, thick_axis, voxel_sizes
from mcinr_bids.core.images import load_volume
from mcinr_bids.core.volumes import InputError, Volume

#: how one acquired voxel samples the anatomy: ``box`` (uniform across the slice thickness,
#: thick 2D slices), ``point`` (its centre: decimated, point-sampled data)
SLICE_PROFILES = ("box", "point")
#: the thickest slice profile accepted, in slice spacings (overlapping slices reach ~2)
MAX_SLAB_FRACTION = 3.0
#: slices at most this fraction of their spacing thick are point samples (the gaps between
#: them at least as wide as the slices)
POINT_SAMPLE_FRACTION = 0.5


def load_acquisition(path: str) -> Volume:
    """:func:`~.data.load_volume` with the slice thickness of the image's BIDS sidecar (the same
    name with ``.json``), checked (:func:`check_slice_thickness`)."""
    volume = load_volume(path)
    volume.slice_thickness_mm = read_slice_thickness(path)
    check_slice_thickness(volume)
    return volume


def thickness_fraction(affine: np.ndarray, thickness_mm: float | None) -> float:
    """The slice thickness over the slice spacing along the thick axis of an image with voxel
    -> world ``affine`` (4, 4): 1 for contiguous slices (``thickness_mm`` None or 0) and every
    image without thick slices, < 1 with gaps between slices."""
    if not thickness_mm or not has_thick_slices(affine):
        return 1.0
    return float(thickness_mm) / float(voxel_sizes(affine)[thick_axis(affine)])


def profile_of(affine: np.ndarray, thickness_mm: float | None) -> str:
    """The slice profile (:data:`SLICE_PROFILES`) of an image with voxel -> world ``affine``
    whose slices are ``thickness_mm`` thick (None: contiguous): ``point`` when they are at most
    :data:`POINT_SAMPLE_FRACTION` of their spacing, ``box`` otherwise."""
    return ("point" if thickness_fraction(affine, thickness_mm) <= POINT_SAMPLE_FRACTION
            else "box")


def slab_fraction(volume: Volume) -> float:
    """:func:`thickness_fraction` of ``volume``."""
    return thickness_fraction(volume.affine, volume.slice_thickness_mm)


def slice_profile(volume: Volume) -> str:
    """:func:`profile_of` of ``volume``."""
    return profile_of(volume.affine, volume.slice_thickness_mm)


def acquisitions_of(affines: list[np.ndarray], thicknesses: list[float | None]
                    ) -> tuple[bool, str]:
    """What the recipe reads of a subject's images (voxel -> world ``affines``, slice
    ``thicknesses`` in mm, None: contiguous): whether any has thick slices, and their slice
    profile (``point`` when every image with thick slices is point-sampled, else ``box``)."""
    thick = [has_thick_slices(affine) for affine in affines]
    profiles = [profile_of(a, t) for a, t, is_thick in zip(affines, thicknesses, thick)
                if is_thick]
    return any(thick), "point" if profiles and set(profiles) == {"point"} else "box"


def acquisitions(volumes: list[Volume]) -> tuple[bool, str]:
    """:func:`acquisitions_of` of ``volumes``."""
    return acquisitions_of([v.affine for v in volumes], [v.slice_thickness_mm for v in volumes])


def check_slice_thickness(volume: Volume) -> None:
    """InputError naming the image when its slice thickness cannot describe its slices."""
    thickness = volume.slice_thickness_mm
    if thickness is None:
        return
    if not np.isfinite(thickness):
        raise InputError(f"{volume.path or volume.name}: its SliceThickness is not a number of "
                         "millimetres; fix it in the image's JSON sidecar or remove it.")
    if thickness <= 0 or slab_fraction(volume) > MAX_SLAB_FRACTION:
        spacing = float(volume.voxel_sizes[thick_axis(volume.affine)])
        raise InputError(
            f"{volume.path or volume.name}: a slice thickness of {thickness} mm does not fit "
            f"slices {spacing:.3g} mm apart (it must be > 0 and at most {MAX_SLAB_FRACTION:g}x "
            "the spacing); fix SliceThickness in the image's JSON sidecar or remove it.")


def read_slice_thickness(path: str) -> float | None:
    """``SliceThickness`` (mm) from the BIDS sidecar beside a NIfTI file (the same name with
    ``.json``), or None when there is none; InputError naming the sidecar when it is unreadable."""
    stem = path[:-7] if path.endswith(".nii.gz") else os.path.splitext(path)[0]
    sidecar = stem + ".json"
    if not os.path.isfile(sidecar):
        return None
    try:
        with open(sidecar) as handle:
            value = json.load(handle).get("SliceThickness")
        return None if value is None else float(value)
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise InputError(f"{sidecar}: not a readable JSON sidecar with a numeric "
                         f"SliceThickness ({error}); fix or remove it.") from error


def slice_profile_factors(volumes, transforms, normaliser, profile: str = "gaussian"
                          ) -> np.ndarray:
    """Per image, a 3x3 matrix L with offsets = z @ L.T drawing points from its slice profile,
    in normalised coordinates; shape (N, 3, 3).  ``gaussian`` (z ~ N(0, I)): FWHM one voxel
    along every voxel axis (slice thickness along the thick axis, pixel size in plane);
    ``box`` (z ~ U(-1/2, 1/2)^3): uniform across the slice thickness (:func:`slab_fraction` of
    the spacing), nothing in plane; zero
    for an image without thick slices (:func:`has_thick_slices`: a 3D acquisition's voxels are
    points, and the fit evaluates them once rather than K times)."""
    factors = []
    for volume, transform in zip(volumes, transforms):
        if profile == "box":
            slab = (np.arange(3) == thick_axis(volume.affine)) & has_thick_slices(volume.affine)
            linear = volume.affine[:3, :3] * slab * slab_fraction(volume)
        else:
            linear = volume.affine[:3, :3] * FWHM_TO_SIGMA
        if transform is not None:
            linear = np.asarray(transform)[:3, :3] @ linear
        factors.append(np.diag(2.0 / normaliser.extent_mm) @ linear)
    return np.stack(factors).astype(np.float32)
