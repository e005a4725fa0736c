"""The template registration from far poses, and the registration checks that say PASS/WARN or
stop a subject (mcinr_bids.pipeline.anatomical.register_to_template,
mcinr_bids.pipeline.registration_qc)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from mcinr_bids.core.geometry import apply_transform, rigid_matrix, voxel_axis, world_coordinates
from mcinr_bids.pipeline.anatomical import foreground_mask_file, register_to_template
from mcinr_bids.pipeline.registration_qc import (
    IMAGE_DICE_MIN,
    RegistrationError,
    check_subject,
    image_overlap,
    registration_status,
    template_overlap,
)
from mcinr_bids.pipeline.templates import nilearn_template
from mcinr_bids.quality.phantom import template_head
from mcinr_bids.quality.simulation import thick_slices


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return nilearn_template(str(tmp_path_factory.mktemp("templates")))


@pytest.fixture(scope="module")
def head():
    """The phantom head at 2 mm: T1-like, FLAIR-like, brain mask, affine (template space)."""
    return template_head(2.0)


def write(path, data, affine) -> str:
    nib.Nifti1Image(np.asarray(data, dtype=np.float32), affine).to_filename(path)
    return str(path)


def test_template_registration_recovers_a_pose_150_mm_and_20_degrees_away(tmp_path, template,
                                                                          head):
    t1, _, brain, affine = head
    # z-scored as many datasets are: negative over much of the brain, so the intensity-weighted
    # centre lies outside the head (the old start); thick axial slices as the app's reference
    z = np.where(brain, (t1 - t1[brain].mean()) / t1[brain].std(), -3.0)
    thick, thick_affine = thick_slices(z, affine, voxel_axis(affine, "S"), 2)
    centre = world_coordinates(affine, (np.asarray(t1.shape)[None] - 1) / 2.0)[0]
    pose = rigid_matrix((15.0, 0.0, -13.0), (150.0, -60.0, 40.0), centre)  # ~20 degrees
    moving = write(tmp_path / "moved.nii.gz", thick, pose @ thick_affine)
    mask_file = foreground_mask_file(moving, str(tmp_path / "moved_mask.nii.gz"))
    moving_mask = np.asanyarray(nib.load(mask_file).dataobj) > 0
    found = register_to_template(*template, moving, moving_mask, seed=0)
    # every brain voxel of the moved image lands where the truth (the inverse pose) puts it
    points = world_coordinates(pose @ thick_affine, np.argwhere(moving_mask))
    error = np.linalg.norm(apply_transform(found, points)
                           - apply_transform(np.linalg.inv(pose), points), axis=1)
    assert error.mean() <= 2.0 and error.max() <= 3.0, (error.mean(), error.max())
    overlap = template_overlap(mask_file, found, template[1])
    assert overlap["dice"] >= 0.85 and overlap["centre_distance_mm"] <= 5.0, overlap
    assert overlap["outside_fraction"] == 0.0


def test_template_overlap_of_the_template_itself(template):
    overlap = template_overlap(template[1], np.eye(4), template[1])
    assert overlap["dice"] == pytest.approx(1.0)
    assert overlap["centre_distance_mm"] == pytest.approx(0.0, abs=1e-6)
    assert overlap["outside_fraction"] == 0.0
    shifted = template_overlap(template[1], rigid_matrix(translation_mm=(0, 0, 60)), template[1])
    assert shifted["centre_distance_mm"] == pytest.approx(60.0, abs=0.5)
    assert 0.05 < shifted["outside_fraction"] < 0.5 and shifted["dice"] < 0.7


def test_a_brain_off_the_template_grid_stops_the_subject(tmp_path, template, head):
    t1, flair, _, affine = head
    images = [write(tmp_path / "sub-01_T1w.nii.gz", t1, affine),
              write(tmp_path / "sub-01_FLAIR.nii.gz", flair, affine)]
    mask = foreground_mask_file(images[0], str(tmp_path / "mask.nii.gz"))
    arguments = (images, ["sub-01_T1w", "sub-01_FLAIR"], 0, [np.eye(4), np.eye(4)], mask)
    rows, reasons = check_subject(*arguments, np.eye(4), template[1])
    assert reasons == []
    measures = {row["measure"]: row["value"] for row in rows}
    assert measures["registration_template_dice"] > 0.9
    assert measures["registration_image_dice"] > 0.95
    with pytest.raises(RegistrationError, match=r"sub-01_T1w\.nii\.gz.*outside the template's "
                                                r"grid.*--output-space native"):
        check_subject(*arguments, rigid_matrix(translation_mm=(0, 0, 120)), template[1])


def test_a_header_40_mm_off_is_flagged(tmp_path, head):
    t1, flair, _, affine = head
    axial, axial_affine = thick_slices(t1, affine, voxel_axis(affine, "S"), 2)
    sagittal, sagittal_affine = thick_slices(flair, affine, voxel_axis(affine, "R"), 2)
    reference = write(tmp_path / "t1w.nii.gz", axial, axial_affine)
    aligned = write(tmp_path / "flair.nii.gz", sagittal, sagittal_affine)
    shifted = write(tmp_path / "flair_shifted.nii.gz", sagittal,
                    rigid_matrix(translation_mm=(0, 40, 0)) @ sagittal_affine)
    good = image_overlap(aligned, reference, np.eye(4))
    bad = image_overlap(shifted, reference, np.eye(4))  # --registration header trusts it
    assert good >= IMAGE_DICE_MIN > bad, (good, bad)
    assert registration_status(None, {"FLAIR": good}) == []
    reasons = registration_status(None, {"FLAIR": bad})
    assert len(reasons) == 1 and reasons[0].startswith("FLAIR on the reference: Dice")
