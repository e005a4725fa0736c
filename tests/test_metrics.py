import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sklearn.metrics import mutual_info_score

from mcinr_bids import metrics


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
    _, full = structural_similarity((truth - low) / (high - low),
                                    (prediction - low) / (high - low), data_range=1.0,
                                    full=True)
    assert metrics.ssim(prediction, truth, mask, "strict") == pytest.approx(full[mask].mean())
    assert metrics.ssim(truth, truth, mask, "paper") == pytest.approx(1.0)
    assert 0 < metrics.ssim(prediction, truth, mask, "paper") < 1


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
