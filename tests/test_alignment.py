"""Each image's rigid transform refined inside the fit (mcinr_bids.methods.inr.alignment)."""

import numpy as np
import pytest
import torch

from mcinr_bids.core.geometry import apply_transform
from mcinr_bids.core.volumes import CoordinateNormaliser, Volume
from mcinr_bids.methods.inr import fit_inr, load_checkpoint, predict_on_grid, save_checkpoint
from mcinr_bids.methods.inr.alignment import LEVER_MM, ImageAlignment, rotation_matrices
from mcinr_bids.methods.inr.settings import settings_for_preset
from mcinr_bids.quality import metrics
from mcinr_bids.quality.phantom import rigid_matrix


def test_rotation_matrices_match_the_closed_form():
    """Rodrigues' series: about x by 5 degrees it is the phantom's closed-form matrix; about a
    general axis it is a rotation (orthonormal, determinant 1)."""
    angle = np.deg2rad(5.0)
    rotation = rotation_matrices(torch.tensor([[angle, 0.0, 0.0]], dtype=torch.float64))[0]
    assert np.allclose(rotation.numpy(), rigid_matrix((5.0, 0.0, 0.0))[:3, :3], atol=1e-9)
    general = rotation_matrices(torch.tensor([[0.05, -0.08, 0.11]], dtype=torch.float64))[0]
    assert np.allclose(general.T @ general, np.eye(3), atol=1e-9)
    assert np.linalg.det(general.numpy()) == pytest.approx(1.0, abs=1e-9)


def test_refinement_in_normalised_coordinates_is_the_world_matrix():
    """Moving normalised points by the module equals moving the world points by the folded 4x4
    matrix and normalising them; the reference (``fix``) does not move, and the matrices fold
    into the transforms once (the refinement is then zero)."""
    normaliser = CoordinateNormaliser(low=np.array([-80.0, -100.0, -60.0]),
                                      high=np.array([90.0, 110.0, 70.0]))
    alignment = ImageAlignment(2, normaliser.extent_mm)
    alignment.fix(0)
    with torch.no_grad():
        alignment.offsets.copy_(torch.tensor([[1.0, 1.0, 1.0, 2.0, 2.0, 2.0],
                                              [0.4, -0.7, 0.3, 1.5, -0.5, 0.25]]))
    world = np.random.default_rng(0).uniform(-70, 70, (50, 3))
    image = torch.tensor([0] * 25 + [1] * 25)
    moved = alignment(torch.from_numpy(normaliser.normalise(world)), image).detach().numpy()
    centre = (normaliser.low + normaliser.high) / 2
    matrices = alignment.world_matrices(centre)
    assert np.allclose(matrices[0], np.eye(4))
    expected = np.concatenate([world[:25], apply_transform(matrices[1], world[25:])])
    assert np.allclose(moved, normaliser.normalise(expected), atol=2e-6)
    summary = alignment.summary(["t1", "flair"])
    assert summary["t1"] == {"translation_mm": [0.0, 0.0, 0.0], "rotation_deg": 0.0}
    assert summary["flair"]["rotation_deg"] == pytest.approx(
        np.degrees(np.linalg.norm([0.4, -0.7, 0.3]) / LEVER_MM), abs=1e-3)
    shifted = rigid_matrix(translation_mm=(0.0, 3.0, 0.0))
    folded = alignment.folded_transforms([None, shifted], centre)
    assert np.allclose(folded[0], np.eye(4)) and np.allclose(folded[1], matrices[1] @ shifted)
    assert not alignment.offsets.detach().any()


@pytest.fixture(scope="module")
def misregistered(phantom, low_resolution):
    """The decimated phantom pair with the FLAIR's transform 1.5 mm off along A and 1 mm
    along R (a registration error); fits with and without the refinement."""
    volumes = [Volume(d, a, n, slice_thickness_mm=1.0)  # 1 mm slices 4 mm apart
               for (d, a), n in zip(low_resolution, ["t1", "flair"])]
    wrong = [None, rigid_matrix(translation_mm=(1.0, -1.5, 0.0))]
    fits = {}
    for refine in (True, False):
        settings = settings_for_preset("fast", early_stopping=False,
                                       through_plane_weight=0.0, refine_alignment=refine)
        fits[refine] = fit_inr(volumes, settings, transforms=wrong)
    return fits


def test_the_fit_undoes_a_registration_error(misregistered, phantom, tmp_path):
    """The refined FLAIR transform lands within 0.4 mm of the truth (the identity) from 1.8 mm
    off; the T1 (the reference) keeps its transform; both contrasts score higher than the fit
    that keeps the wrong transform; the saved model predicts with the refined transform."""
    t1, flair, mask, affine = phantom
    refined = misregistered[True]
    assert np.allclose(refined.transforms[0], np.eye(4))
    corners = np.array([[x, y, z] for x in (-24, 24) for y in (-24, 24) for z in (-20, 20)])
    error = np.linalg.norm(apply_transform(refined.transforms[1], corners) - corners, axis=1)
    print("refinement", refined.alignment, "corner error", error.max())
    assert error.max() < 0.4
    assert refined.alignment["flair"]["translation_mm"][1] == pytest.approx(1.5, abs=0.4)
    scores = {}
    for refine, fitted in misregistered.items():
        prediction = predict_on_grid(fitted, t1.shape, affine)[0]
        scores[refine] = [metrics.psnr(p, t, mask, "strict")
                          for p, t in zip(prediction, (t1, flair))]
    print("PSNR refined", scores[True], "kept", scores[False])
    assert all(a > b + 0.5 for a, b in zip(scores[True], scores[False]))
    save_checkpoint(refined, str(tmp_path / "model.pt"))
    loaded = load_checkpoint(str(tmp_path / "model.pt"))
    assert np.allclose(loaded.transforms[1], refined.transforms[1])
    assert not hasattr(loaded.model, "alignment")
