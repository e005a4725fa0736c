"""Registration checks of one subject, without any truth: does the reference's brain lie on the
template's brain, and does every image lie on the reference?

Small functions on files and 4x4 RAS world-to-world matrices (nibabel, numpy).  The numbers go
into the subject's metrics table (:func:`qc_rows`), the log, the participant report and the
group table; the thresholds are chosen from ``benchmarks/template_registration.py`` on real
cases far from the template's origin (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np

from mcinr_bids.core.geometry import apply_transform, mask_centre, world_coordinates
from mcinr_bids.core.interpolation import mask_on_grid
from mcinr_bids.core.volumes import automatic_foreground_mask

#: the reference's brain on the template: below this Dice with the template's brain mask, WARN
TEMPLATE_DICE_MIN = 0.80
#: ... or with its centre further than this from the template brain's centre (mm), WARN
TEMPLATE_CENTRE_MAX_MM = 5.0
#: an image's foreground on the reference's (inside the image's field of view): below, WARN
IMAGE_DICE_MIN = 0.85
#: above this fraction of the registered brain outside the output grid, the subject stops
OUTSIDE_GRID_MAX = 0.01


class RegistrationError(ValueError):
    """The registered brain leaves the output grid: its outputs would be cut or empty."""


def dice(first: np.ndarray, second: np.ndarray) -> float:
    """Dice overlap of two boolean arrays of one shape (0 when both are empty)."""
    total = int(first.sum()) + int(second.sum())
    return 2.0 * float(np.logical_and(first, second).sum()) / total if total else 0.0


def template_overlap(mask_file: str, to_template: np.ndarray, template_mask_file: str) -> dict:
    """The brain ``mask_file`` carried onto the template by ``to_template`` (its world ->
    template world) against the template's brain mask.

    Returns ``dice``, ``centre_distance_mm`` (between the two brains' centres, in the
    template's space) and ``outside_fraction`` (the share of the brain's voxels that land
    outside the template's grid, the output grid of a template space).
    """
    template = nib.load(template_mask_file)
    template_mask = np.asanyarray(template.dataobj) > 0
    shape = template_mask.shape
    carried = mask_on_grid(mask_file, shape, template.affine,
                           grid_to_mask_world=np.linalg.inv(to_template))
    image = nib.load(mask_file)
    brain = np.asanyarray(image.dataobj) > 0
    points = apply_transform(to_template, world_coordinates(image.affine, np.argwhere(brain)))
    voxels = apply_transform(np.linalg.inv(template.affine), points)
    outside = ((voxels < -0.5) | (voxels > np.asarray(shape) - 0.5)).any(axis=1)
    centre = apply_transform(to_template, mask_centre(brain, image.affine)[None])[0]
    return {"dice": dice(carried, template_mask),
            "centre_distance_mm": float(np.linalg.norm(
                centre - mask_centre(template_mask, template.affine))),
            "outside_fraction": float(outside.mean()) if outside.size else 1.0}


def image_overlap(image_file: str, reference_file: str, to_reference: np.ndarray) -> float:
    """Dice of an image's foreground carried onto the reference's grid by ``to_reference``
    (image world -> reference world) with the reference's own foreground, inside the part of
    the reference's grid that the image covers (a partial field of view is no misalignment).

    Both foregrounds are :func:`~mcinr_bids.core.volumes.automatic_foreground_mask`: the head of a
    raw image, the brain of a skull-stripped one.
    """
    image, reference = nib.load(image_file), nib.load(reference_file)
    image_foreground = automatic_foreground_mask(np.asanyarray(image.dataobj, dtype=np.float32))
    reference_foreground = automatic_foreground_mask(
        np.asanyarray(reference.dataobj, dtype=np.float32))
    shape = reference_foreground.shape
    points = world_coordinates(reference.affine, np.indices(shape).reshape(3, -1).T)
    voxels = apply_transform(np.linalg.inv(image.affine),
                             apply_transform(np.linalg.inv(to_reference), points))
    covered = ((voxels >= -0.5) & (voxels <= np.asarray(image.shape[:3]) - 0.5)).all(axis=1)
    covered = covered.reshape(shape)
    carried = mask_on_grid(nib.Nifti1Image(image_foreground.astype(np.uint8), image.affine),
                           shape, reference.affine, np.linalg.inv(to_reference))
    return dice(carried & covered, reference_foreground & covered)


def registration_status(template: dict | None, images: dict[str, float]) -> list[str]:
    """The reasons to look at a subject's registrations (empty: PASS)."""
    reasons = []
    if template is not None:
        if template["dice"] < TEMPLATE_DICE_MIN:
            reasons.append(f"brain on the template: Dice {template['dice']:.2f} < "
                           f"{TEMPLATE_DICE_MIN:g}")
        if template["centre_distance_mm"] > TEMPLATE_CENTRE_MAX_MM:
            reasons.append(f"brain centre {template['centre_distance_mm']:.1f} mm from the "
                           f"template's (> {TEMPLATE_CENTRE_MAX_MM:g} mm)")
        if template["outside_fraction"] > 0:
            reasons.append(f"{100 * template['outside_fraction']:.2f} % of the brain outside "
                           "the template's grid")
    for name, value in images.items():
        if value < IMAGE_DICE_MIN:
            reasons.append(f"{name} on the reference: Dice {value:.2f} < {IMAGE_DICE_MIN:g}")
    return reasons


def describe_checks(template: dict | None, images: dict[str, float]) -> str:
    """The checks' numbers in words (``n/a`` without checks)."""
    numbers = []
    if template:
        numbers.append(f"reference brain on the template's: Dice "
                       f"{template.get('dice', float('nan')):.2f}, centre "
                       f"{template.get('centre_distance_mm', float('nan')):.1f} mm off")
    numbers += [f"{name} on the reference: Dice {value:.2f}" for name, value in images.items()]
    return "; ".join(numbers) or "n/a"


def qc_rows(reference_name: str, template: dict | None, images: dict[str, float]) -> list[dict]:
    """The checks as rows of the metrics table (``measure``, ``image``, ``value``): the
    template's on the reference image, each image's on itself."""
    rows = []
    if template is not None:
        rows += [{"measure": f"registration_template_{key}", "image": reference_name,
                  "value": round(float(template[key]), 4)}
                 for key in ("dice", "centre_distance_mm", "outside_fraction")]
    rows += [{"measure": "registration_image_dice", "image": name, "value": round(value, 4)}
             for name, value in images.items()]
    return rows


def checks_from_rows(rows) -> tuple[dict | None, dict[str, float]]:
    """The template and image checks back from metrics-table rows (dicts or a DataFrame's
    records with ``measure``, ``image``, ``value``): the inverse of :func:`qc_rows`."""
    template, images = {}, {}
    for row in rows:
        measure = str(row["measure"])
        if measure.startswith("registration_template_"):
            template[measure.removeprefix("registration_template_")] = float(row["value"])
        elif measure == "registration_image_dice":
            images[str(row["image"])] = float(row["value"])
    return (template or None), images


def check_subject(images: list[str], names: list[str], reference: int,
                  to_reference: list[np.ndarray], brain_mask_file: str,
                  reference_to_output: np.ndarray | None = None,
                  template_mask_file: str | None = None) -> tuple[list[dict], list[str]]:
    """Every check of one subject: (metrics rows, reasons to look; empty = PASS).

    Raises :class:`RegistrationError` when more than :data:`OUTSIDE_GRID_MAX` of the
    registered brain leaves the template's grid: its outputs would be cut or empty.
    """
    template = None
    if template_mask_file:
        template = template_overlap(brain_mask_file, reference_to_output, template_mask_file)
        if template["outside_fraction"] > OUTSIDE_GRID_MAX:
            raise RegistrationError(
                f"{images[reference]}: after its registration to the template "
                f"{100 * template['outside_fraction']:.0f} % of the brain lies outside the "
                f"template's grid (Dice with the template's brain {template['dice']:.2f}, "
                f"centre {template['centre_distance_mm']:.0f} mm away): the registration "
                "failed, and its outputs would be cut or empty. Check the image's header "
                "(orientation, voxel sizes) or run with --output-space native.")
    image_checks = {name: image_overlap(path, images[reference], matrix)
                    for index, (path, name, matrix) in enumerate(zip(images, names, to_reference))
                    if index != reference}
    return (qc_rows(names[reference], template, image_checks),
            registration_status(template, image_checks))
