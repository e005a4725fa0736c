import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sklearn.metrics import mutual_info_score

from mcinr_bids.quality import metrics


@pytest.fixture
def images():
    rng = np.random.default_rng(0)
    truth = rng.uniform(10, 200, (20, 22, 18))
    mask = np.zeros(truth.shape, bool)
    mask[3:17, 4:18, 2:15] = True
    prediction = truth + rng.normal(0, 8, truth.shape)
    return prediction, truth, mask


def test_strict_psnr_matches_scikit_image_inside_mask(images):
    prediction, truth, mask = images
    low, high = truth[mask].min(), truth[mask].max()
    expected = peak_signal_noise_ratio((truth[mask] - low) / (high - low),
                                       (prediction[mask] - low) / (high - low), data_range=1.0)
    assert metrics.psnr(prediction, truth, mask, "strict") == pytest.approx(expected, abs=1e-9)


def test_paper_psnr_matches_scikit_image_on_whole_volume(images):
    prediction, truth, mask = images

    def scale(image):
        shifted = np.where(mask, image - image[mask].min(), 0)
        return shifted / shifted.max()

    expected = peak_signal_noise_ratio(scale(truth), scale(prediction), data_range=1.0)
    assert metrics.psnr(prediction, truth, mask, "paper") == pytest.approx(expected, abs=1e-9)


def test_ssim_conventions_match_scikit_image(images):
    prediction, truth, mask = images
    low, high = truth[mask].min(), truth[mask].max()
    # strict: both scaled by the truth's in-mask range and 0 outside the mask
    _, full = structural_similarity(np.where(mask, (truth - low) / (high - low), 0),
                                    np.where(mask, (prediction - low) / (high - low), 0),
                                    data_range=1.0, full=True)
    assert metrics.ssim(prediction, truth, mask, "strict") == pytest.approx(full[mask].mean())
    assert metrics.ssim(truth, truth, mask, "paper") == pytest.approx(1.0)
    assert 0 < metrics.ssim(prediction, truth, mask, "paper") < 1


def test_region_scores_use_the_brain_scaling_inside_the_region(images):
    prediction, truth, mask = images
    region = np.zeros(truth.shape, bool)
    region[6:10, 6:10, 4:8] = True
    low, high = truth[mask].min(), truth[mask].max()
    expected = peak_signal_noise_ratio((truth[region] - low) / (high - low),
                                       (prediction[region] - low) / (high - low), data_range=1.0)
    assert metrics.psnr(prediction, truth, mask, region=region) == pytest.approx(expected)
    _, full = structural_similarity(np.where(mask, (truth - low) / (high - low), 0),
                                    np.where(mask, (prediction - low) / (high - low), 0),
                                    data_range=1.0, full=True)
    assert metrics.ssim(prediction, truth, mask, region=region) == pytest.approx(
        full[region].mean())
    # an error confined to the region lowers its PSNR, not much the brain's
    damaged = np.where(region, truth + 40, truth)
    assert (metrics.psnr(damaged, truth, mask, region=region)
            < metrics.psnr(damaged, truth, mask) - 10)
    assert np.isnan(metrics.psnr(prediction, truth, mask, region=~mask))
    with pytest.raises(ValueError, match="strict"):
        metrics.psnr(prediction, truth, mask, "paper", region=region)


def test_paper_convention_punishes_overshoot_that_strict_scores_locally(images):
    """One overshooting voxel rescales the whole prediction in the paper convention only."""
    _, truth, mask = images
    overshoot = truth.copy()
    overshoot[10, 10, 10] = truth[mask].max() * 3
    strict = metrics.psnr(overshoot, truth, mask, "strict")
    paper = metrics.psnr(overshoot, truth, mask, "paper")
    assert strict > 20 and paper < strict - 10


def test_mutual_information_matches_scikit_learn(images):
    prediction, truth, _ = images
    bins = 32
    labels = [np.digitize(a.ravel(), np.histogram_bin_edges(a.ravel(), bins)[1:-1])
              for a in (prediction, truth)]
    expected = mutual_info_score(labels[0], labels[1])
    assert metrics.mutual_information(prediction, truth, bins) == pytest.approx(expected,
                                                                                rel=1e-6)


def test_mutual_information_errors_are_zero_for_perfect_predictions(images):
    prediction, truth, mask = images
    errors = metrics.mutual_information_errors([truth, prediction], [truth, prediction], mask)
    assert errors == {"epsilon_mi_1": 0.0, "epsilon_mi_2": 0.0, "epsilon_mi_joint": 0.0}
    noisy = metrics.mutual_information_errors([truth + 30 * np.sin(truth), prediction],
                                              [truth, prediction], mask)
    assert noisy["epsilon_mi_1"] > 0.01


def test_unknown_convention_is_rejected(images):
    with pytest.raises(ValueError):
        metrics.psnr(*images, convention="other")


def test_banding_index_sees_stripes_every_factor_slices():
    from scipy import ndimage

    from mcinr_bids.quality import metrics

    rng = np.random.default_rng(3)
    truth = ndimage.gaussian_filter(rng.random((24, 24, 40)), 1.5)
    mask = np.ones(truth.shape, bool)
    assert metrics.banding_index(truth, mask, axis=2, factor=4, offset=3) < 1.15
    # acquired slices kept exactly, the gaps linearly interpolated: smooth between, kinks on
    low = truth[:, :, 3::4]
    positions = np.arange(40)
    striped = np.stack([[np.interp(positions, np.arange(3, 40, 4), low[i, j])
                         for j in range(24)] for i in range(24)])
    assert metrics.banding_index(striped, mask, axis=2, factor=4, offset=3) > 3.0
    split = metrics.psnr_by_slice(striped, truth, mask, axis=2, factor=4, offset=3)
    assert split["acquired"] == float("inf") and split["unacquired"] < 60
    roughness = metrics.through_plane_roughness(striped, mask, 2, 4, 3)
    assert roughness.argmax() == 0  # the kinks sit on the acquired slices


def test_acquisition_on_the_truth_grid():
    from mcinr_bids.core import geometry
    from mcinr_bids.core.geometry import acquisition_on_grid
    from mcinr_bids.quality import simulation

    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    data = np.zeros((8, 8, 16), np.float32)
    _, decimated = simulation.decimate(data, affine, geometry.voxel_axis(affine, "S"), 4)
    assert acquisition_on_grid(decimated, affine) == (2, 4, 3)
    _, thick = simulation.thick_slices(data, affine, 0, 4)
    assert acquisition_on_grid(thick, affine) == (0, 4, None)


def test_strict_ssim_ignores_the_background_fill():
    from mcinr_bids.quality import metrics

    rng = np.random.default_rng(0)
    truth = rng.random((20, 20, 20))
    mask = np.zeros(truth.shape, bool)
    mask[5:15, 5:15, 5:15] = True
    filled = np.where(mask, truth, 7.0)  # a method's own background value outside the mask
    assert metrics.ssim(filled, truth, mask) == pytest.approx(1.0)


def test_truth_acquired_thick_along_an_axis_is_flagged(phantom):
    """A truth interpolated from 4 mm slices along S gets a warning naming a better axis; the
    isotropic phantom along the same axis does not."""
    from scipy import ndimage

    from mcinr_bids.core import geometry
    from mcinr_bids.quality.metrics import DETAIL_WARNING, truth_detail

    t1, _, mask, affine = phantom
    axis = geometry.voxel_axis(affine, "S")
    detail, warning = truth_detail(t1, mask > 0, affine, axis, "t1")
    assert detail > DETAIL_WARNING and warning is None
    thick = np.take(t1, np.arange(0, t1.shape[axis], 4), axis=axis)
    zoom = [1.0] * 3
    zoom[axis] = t1.shape[axis] / thick.shape[axis]
    smooth = ndimage.zoom(thick, zoom, order=1)
    detail, warning = truth_detail(smooth, mask > 0, affine, axis, "t1")
    assert detail < DETAIL_WARNING
    assert warning.startswith("t1: the isotropic original has little detail along S")
    assert "simulate along R" in warning or "simulate along A" in warning


def test_band_limited_keeps_what_slices_factor_apart_can_carry():
    """A sine of period 16 voxels survives an ideal low-pass for slices 4 apart (Nyquist: period
    8), one of period 3 is removed, and nothing changes along the other axes."""
    z = np.arange(48, dtype=np.float64)  # whole periods of both: no leakage in the FFT
    low, high = np.sin(2 * np.pi * z / 16), np.sin(2 * np.pi * z / 3)
    data = np.broadcast_to(low + high, (5, 6, 48)) * np.arange(1, 6)[:, None, None]
    kept = metrics.band_limited(data, axis=2, factor=4)
    expected = np.broadcast_to(low, (5, 6, 48)) * np.arange(1, 6)[:, None, None]
    np.testing.assert_allclose(kept, expected, atol=1e-10)
    assert kept.shape == data.shape
    np.testing.assert_allclose(metrics.band_limited(expected, axis=2, factor=4), expected,
                               atol=1e-10)
