"""Reading input images and masks: each NIfTI file read to its last byte and checked (a
usable position in the scanner, 3D, finite, not constant), or one :class:`InputError` naming
the file and the fix.  Pure numpy/nibabel."""

from __future__ import annotations

import errno
import gzip
import os
import zlib

import nibabel as nib
import numpy as np

from mcinr_bids.core.volumes import InputError, Volume


def image_name(path: str) -> str:
    """File name without ``.nii``/``.nii.gz``."""
    base = os.path.basename(path)
    for suffix in (".nii.gz", ".nii"):
        if base.endswith(suffix):
            return base[: -len(suffix)]
    return base


def validate_array(data: np.ndarray, source: str) -> np.ndarray:
    """Check that ``data`` is a finite, non-constant 3D image; return it as float32.

    A 4D image with a single volume is accepted and squeezed.
    """
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise InputError(
            f"{source}: expected a 3D image, got {data.ndim}D with shape {data.shape}. "
            "Give one 3D volume per contrast (split 4D series with e.g. fslsplit)."
        )
    if min(data.shape) < 2:
        raise InputError(
            f"{source}: shape {data.shape} has an axis with fewer than 2 voxels; a single slice "
            "cannot be super-resolved. Give a 3D stack of slices."
        )
    if np.issubdtype(data.dtype, np.floating) and np.isfinite(data).all():
        too_large = np.abs(data) > np.finfo(np.float32).max
        if too_large.any():
            raise InputError(
                f"{source}: {int(too_large.sum())} voxels hold values beyond what 32-bit floats "
                f"can hold (largest {float(np.abs(data).max()):.3g}); rescale the image.")
    data = np.asarray(data, dtype=np.float32)
    if not np.isfinite(data).all():
        count = int((~np.isfinite(data)).sum())
        raise InputError(
            f"{source}: {count} voxels are NaN or infinite. Replace them (e.g. with 0) "
            "before fitting."
        )
    if not np.any(data):
        raise InputError(f"{source}: the image is all zeros. Check that the right file was given.")
    if float(data.max()) == float(data.min()):
        raise InputError(f"{source}: the image is constant ({float(data.max())}); nothing to fit.")
    return data


def unreadable_reason(path: str, error: OSError) -> str:
    """Why ``path`` could not be opened, as one message naming it and the fix."""
    if os.path.islink(path):
        try:
            os.stat(path)
        except OSError as link_error:
            if link_error.errno == errno.ELOOP:
                return (f"{path}: a symbolic link that cannot be followed (a loop of links); "
                        "give the real file.")
            return (f"{path}: a broken symbolic link (it points to {os.readlink(path)}, which "
                    "does not exist); give the real file.")
    if isinstance(error, FileNotFoundError):
        return f"{path}: no such file."
    return f"{path}: cannot be read ({error.strerror}); check the file and its permissions."


#: voxels larger than this (mm) along any axis are no anatomical MRI: a header error
MAX_VOXEL_SIZE_MM = 20.0


def load_volume(path: str) -> Volume:
    """Load a NIfTI file as a validated :class:`Volume`: readable to its last byte, with a
    usable position in the scanner (:func:`check_header`), finite and not constant."""
    try:
        image = nib.load(path)
    except OSError as error:
        raise InputError(unreadable_reason(path, error)) from error
    except Exception as error:  # nibabel raises several types for unreadable files
        raise InputError(f"{path}: not a readable NIfTI image ({error}).") from error
    check_header(image, path)
    try:  # the data are read here, completely: a damaged file stops here, not in a node
        raw = np.asanyarray(image.dataobj)
        if str(path).endswith(".gz"):  # to the gzip trailer: its length and CRC checked too
            with gzip.open(path, "rb") as stream:
                while stream.read(1 << 24):
                    pass
    except (OSError, EOFError, ValueError, zlib.error) as error:
        raise InputError(f"{path}: the file is damaged or truncated ({type(error).__name__}: "
                         f"{error}); copy it again from its source.") from error
    data = validate_array(raw, path)
    affine = image.affine
    if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
        raise InputError(f"{path}: the affine is singular; fix the NIfTI header (qform/sform).")
    return Volume(data=data, affine=np.asarray(affine, dtype=np.float64), name=image_name(path),
                  path=path)


def check_header(image, path: str) -> None:
    """Refuse a header without a usable position in the scanner: NIfTI qform and sform codes
    both 0 (no orientation: nibabel would guess one), voxel sizes (pixdim) zero, negative or
    not finite, or larger than :data:`MAX_VOXEL_SIZE_MM`."""
    header = image.header
    if isinstance(header, nib.Nifti1Header) and int(header["qform_code"]) == 0 \
            and int(header["sform_code"]) == 0:
        raise InputError(f"{path}: the header holds no position in the scanner (qform and sform "
                         "codes are both 0); convert the image again from its DICOM files (e.g. "
                         "with dcm2niix) or set its sform.")
    sizes = np.asarray(header.get_zooms()[:3], dtype=np.float64)
    if not np.all(np.isfinite(sizes)) or np.any(sizes <= 0):
        raise InputError(f"{path}: the header's voxel sizes (pixdim) are {sizes.tolist()}; "
                         "fix the header (convert the image again from its DICOM files).")
    if np.any(sizes > MAX_VOXEL_SIZE_MM):
        raise InputError(f"{path}: voxel sizes {sizes.tolist()} mm, larger than "
                         f"{MAX_VOXEL_SIZE_MM:g} mm: no anatomical MRI has those; fix the "
                         "header's pixdim.")


def load_mask(path: str, volume: Volume) -> np.ndarray:
    """Load a brain mask that must lie on the grid of ``volume``; return a boolean array."""
    try:
        image = nib.load(path)
    except Exception as error:
        raise InputError(f"{path}: not a readable NIfTI mask ({error}).") from error
    data = np.asanyarray(image.dataobj)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.shape != volume.shape or not np.allclose(image.affine, volume.affine, atol=1e-3):
        raise InputError(
            f"{path}: the mask is on a different grid (shape {data.shape}) than its image "
            f"{volume.path or volume.name} (shape {volume.shape}); give a mask on the image's own "
            "grid (same shape and affine)."
        )
    mask = data > 0
    if not mask.any():
        raise InputError(f"{path}: the mask is empty.")
    return mask
