"""Early stopping on the mutual information (MI) between the predicted contrasts (the paper's
rule): MI on a fixed random set of foreground points of the 1 mm output grid, recorded every
epoch; the fit stops when it varied by less than a tolerance over a window of epochs."""

from __future__ import annotations

import itertools

import numpy as np

from mcinr_bids.core.statistics import mutual_information


def mutual_information_points(fitted, count: int, seed: int) -> np.ndarray:
    """A fixed random set (at most ``count``) of foreground points of the 1 mm output grid."""
    rng = np.random.default_rng(seed + 7919)
    low = np.ceil(fitted.normaliser.low)
    high = np.floor(fitted.normaliser.high)
    candidates = rng.integers(low, high + 1, size=(4 * count, 3)).astype(np.float64)
    candidates = np.unique(candidates, axis=0)
    rng.shuffle(candidates)
    inside = fitted.foreground(candidates)
    return candidates[inside][:count]


def plateau_reached(values: list[float], window: int, tolerance: float) -> bool:
    """The paper's rule: MI varied by less than ``tolerance`` (relative) over ``window`` epochs."""
    if len(values) < window + 1:
        return False
    recent = np.asarray(values[-(window + 1):])
    scale = max(abs(float(recent.mean())), 1e-12)
    return float(recent.max() - recent.min()) / scale < tolerance


def pairwise_mutual_information(predictions: np.ndarray, bins: int) -> float:
    """Mean MI over all pairs of columns of (M, N) predictions; NaN for one column."""
    pairs = list(itertools.combinations(range(predictions.shape[1]), 2))
    if not pairs:
        return float("nan")
    return float(np.mean([mutual_information(predictions[:, a], predictions[:, b], bins)
                          for a, b in pairs]))


def mutual_information_rule(fitted, mi_values: list[float], epoch: int) -> bool:
    """Apply the paper's MI plateau rule after ``epoch`` (1-based); return True when it fires
    for the first time (then ``selected_epoch`` is set, and with early stopping the fit stops)."""
    settings = fitted.settings
    # with a warm start (``psf_epochs``) only the slab model's epochs can be selected
    fired = (fitted.n_images > 1 and epoch >= settings.point_epochs + settings.min_epochs
             and fitted.selected_epoch is None
             and plateau_reached(mi_values, settings.mi_window, settings.mi_tolerance))
    if fired:
        fitted.selected_epoch = epoch
        if settings.early_stopping:
            fitted.stopped_early = True
            fitted.stop_reason = "early stopping"
    return fired
