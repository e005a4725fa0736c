import numpy as np
import pytest

from mcinr_bids.core import geometry
from mcinr_bids.core.geometry import world_coordinates
from mcinr_bids.quality import simulation


def test_decimation_equals_slicing_with_matching_affine(phantom):
    t1, _, _, affine = phantom
    axis = geometry.voxel_axis(affine, "S")
    low, low_affine = simulation.decimate(t1, affine, axis)
    np.testing.assert_array_equal(low, t1[:, :, 3::4])
    # LR voxel (i, j, k) sits where HR voxel (i, j, 3 + 4k) sits
    indices = np.array([[0, 0, 0], [5, 7, 2], [47, 47, 8]])
    high_indices = indices * [1, 1, 4] + [0, 0, 3]
    np.testing.assert_allclose(world_coordinates(low_affine, indices),
                               world_coordinates(affine, high_indices))


def test_voxel_axis_follows_orientation():
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])
    assert geometry.voxel_axis(lps, "R") == 0
    assert geometry.voxel_axis(lps, "A") == 1
    swapped = np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1.0]])
    assert geometry.voxel_axis(swapped, "S") == 1
    with pytest.raises(ValueError):
        geometry.voxel_axis(lps, "X")


@pytest.mark.parametrize("profile", ["box", "gaussian"])
def test_thick_slices_preserve_constants_and_place_centres(profile):
    data = np.full((10, 12, 16), 7.0, dtype=np.float32)
    low, low_affine = simulation.thick_slices(data, np.eye(4), axis=2, factor=4, profile=profile)
    assert low.shape == (10, 12, 4)
    np.testing.assert_allclose(low, 7.0, rtol=1e-6)
    np.testing.assert_allclose(low_affine[:3, 2], [0, 0, 4])
    assert low_affine[2, 3] == pytest.approx(1.5)  # centre of HR slices 0..3


def test_box_profile_averages_the_slices_it_covers():
    ramp = np.broadcast_to(np.arange(16, dtype=np.float32), (3, 3, 16))
    low, _ = simulation.thick_slices(ramp, np.eye(4), axis=2, factor=4, profile="box")
    np.testing.assert_allclose(low[0, 0], [1.5, 5.5, 9.5, 13.5], rtol=1e-6)
    weights, _ = simulation.slice_profile_weights(16, 4, "box", gap=1.0)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0)
    assert weights[0, 0] < weights[0, 1]  # a 3-slice-thick profile covers slice 0 partially


def test_rician_noise_is_positive_and_seeded():
    data = np.ones((8, 8, 8), dtype=np.float32)
    first, _ = simulation.thick_slices(data, np.eye(4), 2, 4, noise_level=0.1, seed=3)
    second, _ = simulation.thick_slices(data, np.eye(4), 2, 4, noise_level=0.1, seed=3)
    np.testing.assert_array_equal(first, second)
    assert (first >= 0).all() and first.std() > 0.01
