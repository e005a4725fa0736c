"""Image-quality metrics in two conventions (pure numpy/scikit-image).

``paper``
    As McGinnis, Shit et al.: each image (prediction and ground truth separately) is shifted by
    its own in-mask minimum, set to 0 outside the mask and divided by its own maximum; PSNR and
    SSIM are computed over the whole volume with data range 1.  Kept to compare with the paper:
    it rewards a method for not overshooting, whatever its detail.
``strict``
    Prediction and ground truth are both scaled by the ground truth's in-mask minimum and maximum
    (one transform for both) and scored inside the mask only.  This is the one to decide by.
"""

from __future__ import annotations

import numpy as np

from mcinr_bids.core.statistics import detail_ratio, mutual_information

CONVENTIONS = ("paper", "strict")


def _scale_paper(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    shifted = np.where(mask, image - image[mask].min(), 0.0)
    maximum = shifted.max()
    return shifted / maximum if maximum > 0 else shifted


def _scale_strict(prediction, truth, mask):
    low, high = float(truth[mask].min()), float(truth[mask].max())
    span = high - low if high > low else 1.0
    return (prediction - low) / span, (truth - low) / span


def psnr(prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray,
         convention: str = "strict", region: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB (data range 1 after the convention's scaling).

    ``region`` (strict convention): the squared error is averaged over ``region`` inside
    ``mask`` only (e.g. a lesion), the scaling still set by the truth's range in ``mask``, so
    that a region's PSNR and the brain's are on one scale.
    """
    mask = np.asarray(mask, dtype=bool)
    if region is not None:
        if convention != "strict":
            raise ValueError("a region's PSNR is defined in the strict convention only")
        scaled_prediction, scaled_truth = _scale_strict(prediction, truth, mask)
        inside = mask & np.asarray(region, dtype=bool)
        if not inside.any():
            return float("nan")
        mse = float(np.mean((scaled_prediction[inside] - scaled_truth[inside]) ** 2))
    elif convention == "paper":
        error = _scale_paper(prediction, mask) - _scale_paper(truth, mask)
        mse = float(np.mean(error**2))
    elif convention == "strict":
        scaled_prediction, scaled_truth = _scale_strict(prediction, truth, mask)
        mse = float(np.mean((scaled_prediction[mask] - scaled_truth[mask]) ** 2))
    else:
        raise ValueError(f"convention must be one of {CONVENTIONS}")
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def ssim(prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray,
         convention: str = "strict", region: np.ndarray | None = None) -> float:
    """3D structural similarity (scikit-image, 7-voxel window, data range 1); strict: the SSIM
    map averaged inside the mask (``region``: inside ``region`` within it), both images set to
    0 outside the mask."""
    from skimage.metrics import structural_similarity

    mask = np.asarray(mask, dtype=bool)
    if region is not None and convention != "strict":
        raise ValueError("a region's SSIM is defined in the strict convention only")
    if convention == "paper":
        return float(structural_similarity(_scale_paper(truth, mask),
                                           _scale_paper(prediction, mask), data_range=1.0))
    if convention == "strict":
        scaled_prediction, scaled_truth = _scale_strict(prediction, truth, mask)
        # outside the mask both are 0: the windows at the mask's border compare the brain, not
        # each method's background fill (which counted against the app's outputs)
        _, ssim_map = structural_similarity(np.where(mask, scaled_truth, 0.0),
                                            np.where(mask, scaled_prediction, 0.0),
                                            data_range=1.0, full=True)
        inside = mask if region is None else mask & np.asarray(region, dtype=bool)
        return float(ssim_map[inside].mean()) if inside.any() else float("nan")
    raise ValueError(f"convention must be one of {CONVENTIONS}")


def mutual_information_errors(predictions: list[np.ndarray], truths: list[np.ndarray],
                              mask: np.ndarray, bins: int = 32) -> dict[str, float]:
    """The paper's three MI errors for two contrasts, inside ``mask``.

    ``epsilon_mi_1`` = |MI(pred1, true2) - MI(true1, true2)|,
    ``epsilon_mi_2`` = |MI(true1, pred2) - MI(true1, true2)|,
    ``epsilon_mi_joint`` = |MI(pred1, pred2) - MI(true1, true2)|.
    """
    mask = np.asarray(mask, dtype=bool)
    p1, p2 = predictions[0][mask], predictions[1][mask]
    t1, t2 = truths[0][mask], truths[1][mask]
    reference = mutual_information(t1, t2, bins)
    return {
        "epsilon_mi_1": abs(mutual_information(p1, t2, bins) - reference),
        "epsilon_mi_2": abs(mutual_information(t1, p2, bins) - reference),
        "epsilon_mi_joint": abs(mutual_information(p1, p2, bins) - reference),
    }


def slice_phase(length: int, factor: int, offset: int = 0) -> np.ndarray:
    """Phase ``(k - offset) mod factor`` of each index ``k`` along a thick axis of ``length``
    voxels: 0 on the acquired slices of a decimation that kept ``offset::factor``."""
    return (np.arange(length) - offset) % factor


def through_plane_roughness(image: np.ndarray, mask: np.ndarray, axis: int, factor: int,
                            offset: int = 0) -> np.ndarray:
    """Mean |second difference| along ``axis`` inside ``mask`` (a voxel and both neighbours
    inside), per slice phase (:func:`slice_phase`); shape (factor,).  A reconstruction that
    reproduces its acquired slices and smooths the gaps has very different values per phase."""
    image = np.moveaxis(np.asarray(image, dtype=np.float64), axis, 0)
    mask = np.moveaxis(np.asarray(mask, dtype=bool), axis, 0)
    second = np.abs(image[:-2] - 2 * image[1:-1] + image[2:])
    inside = mask[:-2] & mask[1:-1] & mask[2:]
    phase = slice_phase(image.shape[0], factor, offset)[1:-1]
    values = np.full(factor, np.nan)
    for number in range(factor):
        selected = inside[phase == number]
        if selected.any():
            values[number] = second[phase == number][selected].mean()
    return values


def banding_index(image: np.ndarray, mask: np.ndarray, axis: int, factor: int,
                  offset: int = 0) -> float:
    """Max / min over the slice phases of :func:`through_plane_roughness`: about 1 for an image
    without slice banding (a 1 mm truth: ~1.01), larger where every ``factor``-th slice looks
    different from the ones between (stripes in the planes across the thick axis)."""
    roughness = through_plane_roughness(image, mask, axis, factor, offset)
    low = np.nanmin(roughness)
    return float(np.nanmax(roughness) / low) if low > 0 else float("inf")


def psnr_by_slice(prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray, axis: int,
                  factor: int, offset: int = 0) -> dict[str, float]:
    """Strict PSNR on the acquired slices (phase 0) and on the slices between them, with the
    strict scaling of the whole mask: ``{"acquired": dB, "unacquired": dB}``."""
    mask = np.asarray(mask, dtype=bool)
    phase = slice_phase(mask.shape[axis], factor, offset)
    shape = [1, 1, 1]
    shape[axis] = -1
    acquired = np.broadcast_to((phase == 0).reshape(shape), mask.shape)
    scaled_prediction, scaled_truth = _scale_strict(prediction, truth, mask)
    result = {}
    for name, selected in (("acquired", mask & acquired), ("unacquired", mask & ~acquired)):
        mse = float(np.mean((scaled_prediction[selected] - scaled_truth[selected]) ** 2))
        result[name] = float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))
    return result


def band_limited(data: np.ndarray, axis: int, factor: int) -> np.ndarray:
    """``data`` keeping only the frequencies along voxel ``axis`` that slices ``factor`` voxels
    apart can carry: an ideal low-pass (FFT) at their Nyquist frequency, 1 / (2 factor) cycles
    per voxel; same shape, float64.

    Scored against ``data`` it is the reconstruction that restores every frequency the slices
    sample and nothing above (the closest such volume in L2 over the whole grid): about what
    interpolation and deconvolution can reach at best; a method above it recovers detail beyond
    the slices' Nyquist limit (from another contrast, priors).
    """
    spectrum = np.fft.rfft(np.asarray(data, dtype=np.float64), axis=axis)
    keep = np.fft.rfftfreq(data.shape[axis]) <= 1.0 / (2 * factor)
    shape = [1] * spectrum.ndim
    shape[axis] = -1
    return np.fft.irfft(spectrum * keep.reshape(shape), n=data.shape[axis], axis=axis)


#: a truth whose detail ratio along the removed axis is below this fraction of its best axis's
#: was probably acquired thick along it (the shared BraTS FLAIRs along A: 0.71-0.81; axes with
#: real 1 mm detail: 0.94-1.0)
DETAIL_WARNING = 0.85


def truth_detail(truth: np.ndarray, mask: np.ndarray, affine: np.ndarray, axis: int,
                 name: str) -> tuple[float, str | None]:
    """The truth's detail along voxel ``axis`` (the one the simulation removes) relative to
    its best axis (:func:`detail_ratio`), and a warning naming the better
    axis when it is below :data:`DETAIL_WARNING`."""
    import nibabel as nib
    from scipy import ndimage

    inner = ndimage.binary_erosion(np.asarray(mask, dtype=bool), iterations=3)
    ratios = [detail_ratio(truth, inner, a, erosion=0) for a in range(3)]
    if not np.isfinite(ratios).any():
        return float("nan"), None
    best = int(np.nanargmax(ratios))
    relative = ratios[axis] / ratios[best]
    if not relative < DETAIL_WARNING:
        return float(relative), None
    canonical = {"L": "R", "R": "R", "P": "A", "A": "A", "I": "S", "S": "S"}
    codes = [canonical[c] for c in nib.aff2axcodes(affine)]
    letter, better = codes[axis], codes[best]
    return float(relative), (
        f"{name}: the isotropic original has little detail along {letter} (detail ratio "
        f"{ratios[axis]:.2f} against {ratios[best]:.2f} along {better}): it was probably "
        f"acquired thick along {letter} and interpolated, so a score along {letter} measures "
        f"agreement with an interpolation; simulate along {better} instead")


def score_rows(method: str, name: str, prediction: np.ndarray, truth: np.ndarray,
               mask: np.ndarray, lesion: np.ndarray | None = None) -> list[dict]:
    """Long rows of PSNR and SSIM in both conventions and, with a ``lesion``, strict inside it
    (NaN where the lesion misses the mask)."""
    rows = []
    for measure in ("psnr", "ssim"):
        score_function = {"psnr": psnr, "ssim": ssim}[measure]
        for convention in CONVENTIONS:
            rows.append({"method": method, "measure": f"{measure}_{convention}", "image": name,
                         "value": score_function(prediction, truth, mask, convention)})
        if lesion is not None:
            rows.append({"method": method, "measure": f"{measure}_lesion", "image": name,
                         "value": score_function(prediction, truth, mask, "strict",
                                                 region=lesion)})
    return rows


def residual_summary(predicted: np.ndarray, volume, mask: np.ndarray) -> dict:
    """A re-simulation of LR ``volume`` (values ``predicted`` at its voxels inside ``mask``, in
    ``np.argwhere`` order) against the image.

    Returns RMSE (image units) and PSNR (dB, peak = the image's in-mask range) inside ``mask``,
    and the residual map (prediction - image, 0 outside the mask) on the image's grid.
    """
    observed = volume.data[mask].astype(np.float64)
    rmse = float(np.sqrt(np.mean((predicted - observed) ** 2)))
    peak = float(observed.max() - observed.min())
    psnr = float(20 * np.log10(peak / rmse)) if rmse > 0 and peak > 0 else float("inf")
    residual = np.zeros(volume.shape, dtype=np.float32)
    residual[mask] = predicted - observed
    return {"rmse": rmse, "psnr": psnr, "map": residual}


def slice_rows(method: str, name: str, prediction: np.ndarray, truth: np.ndarray,
               mask: np.ndarray, acquisition: tuple[int, int, int | None]) -> list[dict]:
    """Long rows of the banding index (prediction and truth) and, where the acquired slices lie
    on the truth's grid, strict PSNR on them and between them."""
    axis, factor, offset = acquisition
    phase = 0 if offset is None else offset
    rows = [{"method": method, "measure": "banding_index", "image": name,
             "value": banding_index(prediction, mask, axis, factor, phase)}]
    if offset is not None:
        split = psnr_by_slice(prediction, truth, mask, axis, factor, offset)
        rows += [{"method": method, "measure": f"psnr_{part}", "image": name, "value": value}
                 for part, value in split.items()]
    return rows


def mutual_information_rows(predictions: dict, truths: list, masks: list) -> list[dict]:
    """The paper's MI errors of each method's first two images (``image`` = None)."""
    truth_arrays = [np.asanyarray(t.dataobj, dtype=np.float32) for t in truths[:2]]
    rows = []
    for method in predictions:
        errors = mutual_information_errors(predictions[method][:2], truth_arrays,
                                                   masks[0] & masks[1])
        rows += [{"method": method, "measure": key, "image": None, "value": value}
                 for key, value in errors.items()]
    return rows


def truth_rows(truth: np.ndarray, mask: np.ndarray, affine: np.ndarray, acquisition: tuple,
               name: str, warn=None) -> list[dict]:
    """The truth's banding and its detail along the removed axis (method ``truth``), with
    ``warn(message)`` where that detail is low."""
    rows = [{"method": "truth", "measure": "banding_index", "image": name,
             "value": banding_index(truth, mask, acquisition[0], acquisition[1],
                                            acquisition[2] or 0)}]
    detail, warning = truth_detail(truth, mask, affine, acquisition[0], name)
    rows.append({"method": "truth", "measure": "truth_detail", "image": name, "value": detail})
    if warning and warn:
        warn(warning)
    return rows
