"""Anatomical preprocessing around the INR: bias correction, rigid registration, brain masks.

Small functions on files, arrays and affines (antspyx, nibabel, numpy, scipy; deepbet for brain
extraction).  No nipype, pybids or niworkflows here: the interfaces in
:mod:`mcinr_bids.interfaces` call these.  Transforms are 4x4 world-to-world matrices in RAS+
scanner millimetres that map points of a *moving* image's world space into the *fixed* (common)
space, the convention the INR engine uses for its training coordinates.
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
from scipy import ndimage

from mcinr_bids.core.geometry import mask_centre, rigid_matrix, voxel_sizes
from mcinr_bids.core.io import atomic_write, save_nifti
from mcinr_bids.core.volumes import automatic_foreground_mask

#: fraction of voxels exactly at the image minimum above which an image counts as skull-stripped
STRIPPED_BACKGROUND_FRACTION = 0.30


def _ants():
    import ants

    return ants


def bias_correct(in_file: str, out_file: str, shrink_factor: int = 4) -> str:
    """N4 bias-field correction (antspyx) inside the head; the background is kept as it is.

    The corrected image keeps the input's intensity units (the field is normalised to mean 1
    inside the head), its grid and its affine.
    """
    ants = _ants()
    image = nib.load(in_file)
    data = np.asanyarray(image.dataobj, dtype=np.float32)
    head = automatic_foreground_mask(data)
    ants_image = ants.from_numpy(data, spacing=tuple(float(v) for v in voxel_sizes(image.affine)))
    ants_mask = ants.from_numpy(head.astype(np.float32), spacing=ants_image.spacing)
    # B-spline spacing ~ 200 mm: a smooth field, robust on thick slices
    corrected = ants.n4_bias_field_correction(ants_image, mask=ants_mask,
                                              shrink_factor=shrink_factor,
                                              spline_param=200).numpy()
    inside = corrected[head]
    if inside.size and np.isfinite(inside).all() and inside.mean() > 0:
        corrected *= float(data[head].mean() / inside.mean())
    output = np.where(head, corrected, data).astype(np.float32)
    save_nifti(output, image.affine, out_file)
    return out_file


def is_skull_stripped(data: np.ndarray) -> bool:
    """True when the background is one constant value over a large part of the image.

    Skull-stripped data (BraTS and the like) sit at exactly their minimum in most voxels outside
    the brain; a head with skull and scalp has noise there.
    """
    return float((data <= data.min()).mean()) >= STRIPPED_BACKGROUND_FRACTION


def rigid_register(fixed_file: str, moving_file: str, seed: int = 0,
                   fixed_mask: np.ndarray | None = None, moving_mask: np.ndarray | None = None,
                   quick: bool = False) -> np.ndarray:
    """Rigid registration (antspyx, Mattes mutual information) of ``moving`` onto ``fixed``,
    two images of one session (a template: :func:`register_to_template`).

    Masks (on each image's own grid) cut the images to the brain when given.  Images of one
    session share the scanner frame up to the subject's motion: the search starts from the
    identity and samples half of the voxels.  (Measured on the BraTS case, thick-slice t2f onto
    thick-slice t1c, whose truth is the identity: starting from the centres of mass, as ANTs
    does by default, ends 0.2-2.5 mm off depending on the seed; from the identity with half the
    voxels 0.13-0.15 mm.)  ``quick`` (``--sloppy``) stops at the half-resolution level of the
    pyramid: for testing a pipeline, not for results.  Returns the 4x4 RAS world-to-world matrix
    that maps points of the moving image's world space into the fixed image's world space.
    """
    import tempfile

    ants = _ants()
    from ants.config import set_ants_deterministic

    # seeds the metric's random sampling (ANTs takes a seed of 0 as "seed from the clock", so
    # our seed s is its s + 1) without forcing ITK onto one thread: with --omp-nthreads 1 the
    # result is then reproducible, with more threads the parallel metric sums still vary
    set_ants_deterministic(on=False, seed_value=int(seed) + 1)
    fixed = _ants_image(fixed_file)
    moving = _ants_image(moving_file)
    kwargs = {}
    # masks cut the images to the brain rather than restricting the metric's samples: the
    # brain's outline is the strongest feature the two images share
    if fixed_mask is not None:
        fixed = fixed * ants.from_numpy(fixed_mask.astype(np.float32), origin=fixed.origin,
                                        spacing=fixed.spacing, direction=fixed.direction)
        # ... and the metric samples only around the brain (the outline included): fast
        near_brain = ndimage.binary_dilation(fixed_mask, iterations=4).astype(np.float32)
        kwargs["mask"] = ants.from_numpy(near_brain, origin=fixed.origin,
                                         spacing=fixed.spacing, direction=fixed.direction)
    if moving_mask is not None:
        moving = moving * ants.from_numpy(moving_mask.astype(np.float32), origin=moving.origin,
                                          spacing=moving.spacing, direction=moving.direction)
    levels = 2 if quick else 3
    with tempfile.TemporaryDirectory(prefix="mcinr-ants-") as folder:
        result = ants.registration(
            fixed, moving, type_of_transform="Rigid", outprefix=os.path.join(folder, "rigid_"),
            aff_metric="mattes", aff_sampling=32, aff_shrink_factors=(4, 2, 1)[:levels],
            aff_smoothing_sigmas=(2, 1, 0)[:levels], initial_transform="Identity",
            aff_random_sampling_rate=0.5, aff_iterations=(300, 150, 50)[:levels], **kwargs)
        fixed_to_moving = itk_file_to_ras(result["fwdtransforms"][0])
    # ANTs stores the transform that pulls moving values into the fixed grid (fixed -> moving
    # points); the engine wants the push direction (moving -> fixed)
    return np.linalg.inv(fixed_to_moving)


#: rotations (degrees about R, A, S) tried from the brains' aligned centres before a
#: template registration: a head tilted by up to ~40 degrees lies near one of them
START_ROTATIONS = ((0, 0, 0), (20, 0, 0), (-20, 0, 0), (0, 20, 0), (0, -20, 0), (0, 0, 20),
                   (0, 0, -20))
#: the template's voxel size (mm) in its registration
TEMPLATE_RESOLUTION_MM = 2.0


def brain_intensities(data: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The brain alone for registration: in-mask intensities mapped from their 1st-99th
    percentiles onto 0.2-1, 0 outside the mask (a float32 array of ``data``'s shape).

    The brain's outline then stands out whatever the intensity units: z-scored images
    (negative over much of the brain) and skull-stripped ones alike.
    """
    inside = data[mask]
    low, high = np.percentile(inside, [1, 99]) if inside.size else (0.0, 1.0)
    scaled = np.clip((data - low) / max(float(high - low), 1e-12), 0.0, 1.0)
    return np.where(mask, 0.2 + 0.8 * scaled, 0.0).astype(np.float32)


def register_to_template(template_file: str, template_mask_file: str, moving_file: str,
                         moving_mask: np.ndarray, seed: int = 0, quick: bool = False
                         ) -> np.ndarray:
    """Rigid registration of a subject's brain onto a template's brain (antspyx, Mattes MI).

    Both images are cut to their brain masks with their intensities ranked
    (:func:`brain_intensities`).  The search starts from each of :data:`START_ROTATIONS` about
    the moving brain's centre, moved onto the template brain's centre; each start is refined at
    4 mm and the one with the best Mattes mutual information goes on to the template at 2 mm
    (``quick``, ``--sloppy``: stops at 4 mm).  The brains' geometric centres, not the
    intensity-weighted ones, set the translation: an image whose brain is partly negative
    (z-scored) or far from the scanner's origin starts on the template all the same.  Returns
    the 4x4 RAS moving-world -> template-world matrix.
    """
    import tempfile

    ants = _ants()
    from ants.config import set_ants_deterministic

    set_ants_deterministic(on=False, seed_value=int(seed) + 1)
    images = []
    centres = []
    for path, mask in ((template_file, _read_mask(template_mask_file)),
                       (moving_file, np.asarray(moving_mask, dtype=bool))):
        image = nib.load(path)
        data = np.asanyarray(image.dataobj, dtype=np.float32)
        centres.append(mask_centre(mask, image.affine))
        ants_image = _ants_image(path)
        images.append(ants_image.new_image_like(brain_intensities(data, mask)))
    # the template at 2 mm (smoothed against aliasing): a rigid pose is found as exactly there
    # (the finest level at 1 mm took 100 s of the 115 s on the BraTS T1c and moved it by 1 mm)
    fixed = ants.resample_image(ants.smooth_image(images[0], TEMPLATE_RESOLUTION_MM / 2.0),
                                (TEMPLATE_RESOLUTION_MM,) * 3, use_voxels=False, interp_type=0)
    moving = images[1]
    common = dict(type_of_transform="Rigid", aff_metric="mattes", aff_sampling=32,
                  aff_random_sampling_rate=0.25)
    with tempfile.TemporaryDirectory(prefix="mcinr-ants-") as folder:
        coarse_fixed, coarse_moving = (
            ants.resample_image(ants.smooth_image(image, 2.0), (4.0, 4.0, 4.0),
                                use_voxels=False, interp_type=0) for image in (fixed, moving))
        best = None
        for index, rotation in enumerate(START_ROTATIONS):
            start = rigid_matrix(rotation, centres[0] - centres[1], centres[1])
            start_file = write_itk_transform(start, os.path.join(folder, f"start{index}.mat"))
            result = ants.registration(
                coarse_fixed, coarse_moving, initial_transform=start_file,
                outprefix=os.path.join(folder, f"coarse{index}_"), aff_iterations=(200,),
                aff_shrink_factors=(1,), aff_smoothing_sigmas=(0,), **common)
            warped = ants.apply_transforms(coarse_fixed, coarse_moving,
                                           result["fwdtransforms"])
            value = ants.image_similarity(coarse_fixed, warped, "MattesMutualInformation")
            if best is None or value < best[0]:
                best = (value, result["fwdtransforms"][0])
        levels = 1 if quick else 2
        result = ants.registration(
            fixed, moving, initial_transform=best[1], outprefix=os.path.join(folder, "rigid_"),
            aff_iterations=(100, 100)[:levels], aff_shrink_factors=(2, 1)[:levels],
            aff_smoothing_sigmas=(1, 0)[:levels], **common)
        fixed_to_moving = itk_file_to_ras(result["fwdtransforms"][0])
    return np.linalg.inv(fixed_to_moving)


def _read_mask(path: str) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj) > 0


def _ants_image(path: str):
    """Read a NIfTI file into antspyx as float (ANTs handles the RAS/LPS conversion)."""
    return _ants().image_read(path, pixeltype="float")


def itk_file_to_ras(path: str) -> np.ndarray:
    """The 4x4 RAS matrix of an ITK/ANTs linear transform file (fixed -> moving points)."""
    from nitransforms.io.itk import ITKLinearTransform

    return np.asarray(ITKLinearTransform.from_filename(path).to_ras(), dtype=np.float64)


def write_itk_transform(moving_to_fixed: np.ndarray, path: str) -> str:
    """Write a moving -> fixed RAS matrix as an ITK transform (``.mat`` binary or ``.txt``).

    ITK files hold the pull-back (fixed -> moving) in LPS; ``antsApplyTransforms`` and
    nitransforms read the result and resample a moving image onto the fixed space with it.
    """
    from nitransforms.io.itk import ITKLinearTransform

    transform = ITKLinearTransform.from_ras(np.linalg.inv(moving_to_fixed))
    atomic_write(path, transform.to_filename)
    return path


def compose_to_output(to_reference_file: str, reference_to_output_file: str,
                      out_file: str) -> str:
    """Image -> output-space transform (text matrices in) written as an ITK ``.mat`` file."""
    matrix = np.loadtxt(reference_to_output_file) @ np.loadtxt(to_reference_file)
    return write_itk_transform(matrix, out_file)


def transform_to_file(matrix: np.ndarray, path: str) -> str:
    """Save a 4x4 matrix as text (the format ``mcinr-fit --transform`` reads)."""
    def write(temporary):
        np.savetxt(temporary, np.asarray(matrix, dtype=np.float64), fmt="%.10g")

    atomic_write(path, write)
    return path


def resample_to_isotropic(in_file: str, resolution: float = 1.0
                          ) -> nib.Nifti1Image:
    """Linear resampling of an image onto an isotropic grid over its own field of view.

    Used only to feed brain extraction, which expects near-isotropic images; the INR always
    trains on the original voxels.
    """
    image = nib.load(in_file)
    data = np.asanyarray(image.dataobj, dtype=np.float32)
    sizes = voxel_sizes(image.affine)
    shape = np.maximum(1, np.round(np.asarray(data.shape) * sizes / resolution)).astype(int)
    scale = (np.asarray(data.shape) - 1) / np.maximum(shape - 1, 1)
    # voxel centres of the new grid expressed in the old voxel indices (same field of view)
    affine = image.affine.copy()
    affine[:3, :3] = image.affine[:3, :3] @ np.diag(scale)
    grid = np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, scale)], indexing="ij")
    resampled = ndimage.map_coordinates(data, grid, order=1, mode="nearest")
    return nib.Nifti1Image(resampled.astype(np.float32), affine)


def extract_brain(in_file: str, out_file: str, threshold: float = 0.5,
                  use_gpu: bool | None = None) -> str:
    """Brain mask of one image with deepbet (offline; its weights ship in its wheel), on the
    GPU when ``use_gpu`` (``None``: when CUDA is available).

    The image is first resampled to 1 mm isotropic (deepbet assumes near-isotropic input); the
    mask is written on that 1 mm grid.  Carry it to any other grid with :func:`mask_on_grid`.
    """
    import torch
    from deepbet.bet import BrainExtraction

    isotropic = resample_to_isotropic(in_file, 1.0)
    if use_gpu is None:
        use_gpu = torch.cuda.is_available()
    extraction = BrainExtraction(no_gpu=not (use_gpu and torch.cuda.is_available()))
    _, mask_image, _ = extraction.run(isotropic, threshold=threshold)
    mask = np.asanyarray(mask_image.dataobj) > 0
    if not mask.any():
        raise ValueError(f"{in_file}: brain extraction found no brain; check the image or run "
                         "with --skull-strip skip and give stripped inputs.")
    save_nifti(mask, mask_image.affine, out_file)
    return out_file


def foreground_mask_file(in_file: str, out_file: str) -> str:
    """The automatic foreground (for already skull-stripped images) written as a mask."""
    image = nib.load(in_file)
    data = np.asanyarray(image.dataobj, dtype=np.float32)
    save_nifti(automatic_foreground_mask(data), image.affine, out_file)
    return out_file
