"""The ground-truth-free check (``--qc-holdout K``): which slices are held out, that no
reconstruction can see them, and that the check tells a reconstruction that beats
interpolation from one that does not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mcinr_bids.core import geometry
from mcinr_bids.core.interpolation import fill_slices
from mcinr_bids.core.volumes import (
    Volume,
    automatic_foreground_mask,
    observed_region,
    training_samples,
)
from mcinr_bids.quality import simulation
from mcinr_bids.quality.holdout import held_out_slices, hold_out, holdout_scores


def test_every_kth_slice_is_held_out_and_the_first_stays():
    assert held_out_slices(10, 4).tolist() == [False, False, True, False, False, False, True,
                                               False, False, False]
    assert held_out_slices(5, 2).tolist() == [False, True, False, True, False]
    with pytest.raises(ValueError, match="--qc-holdout"):
        held_out_slices(10, 1)


def test_the_fill_is_a_cubic_spline_through_the_kept_slices():
    """A cubic polynomial along the axis is reproduced exactly at the held-out slices."""
    z = np.arange(12, dtype=float)
    data = np.broadcast_to(0.5 * z**3 - 2 * z**2 + z + 7, (3, 4, 12)).copy()
    held = held_out_slices(12, 3)
    broken = data.copy()
    broken[:, :, held] = -1000.0
    np.testing.assert_allclose(fill_slices(broken, 2, held), data, rtol=1e-10)


def test_held_out_values_reach_no_reconstruction(phantom):
    """Two acquisitions that differ only on the held-out slices give the same data to every
    method (their stored values are an interpolation from the kept slices), and those slices
    leave every data term (observed_region, the INR's training samples)."""
    t1, _, _, affine = phantom
    data, low_affine = simulation.thick_slices(t1, affine, geometry.voxel_axis(affine, "S"), 4)
    axis = geometry.thick_axis(low_affine)
    assert data.shape[axis] == 10
    other = data.copy()
    other[:, :, 2] += 500.0
    other[:, :, 6] = 0.0
    first, second = (hold_out(Volume(d, low_affine, "t1"), 4) for d in (data, other))
    np.testing.assert_array_equal(first.data, second.data)
    np.testing.assert_array_equal(first.data[:, :, ~first.held_out[1]],
                                  data[:, :, ~first.held_out[1]])
    assert first.held_out[0] == axis and np.flatnonzero(first.held_out[1]).tolist() == [2, 6]
    mask = automatic_foreground_mask(data)
    region = observed_region(first, mask, 2.0)
    assert region.any() and not region[:, :, [2, 6]].any()
    normaliser_free = training_samples([first], [mask], [None], _Identity(), [_Unit()], 2.0)
    slice_positions = geometry.world_coordinates(low_affine, np.argwhere(region))[:, 2]
    np.testing.assert_allclose(np.unique(normaliser_free[0][:, 2]), np.unique(slice_positions))


class _Identity:
    def normalise(self, world):
        return world.astype(np.float32)


class _Unit:
    def normalise(self, values):
        return values.astype(np.float32)


def test_too_few_slices_is_one_clear_error():
    volume = Volume(np.ones((8, 8, 2), np.float32), np.diag([1, 1, 4, 1.0]), "t1",
                    path="sub-01_T1w.nii.gz")
    with pytest.raises(ValueError, match="sub-01_T1w.nii.gz: 2 slices are too few"):
        hold_out(volume, 4)


def test_the_check_ranks_the_truth_above_interpolation(phantom):
    """Scored on the held-out slices through the box profile, the isotropic truth (a perfect
    reconstruction) beats clamped cubic from the kept slices by far; the rows say so."""
    from mcinr_bids.core.interpolation import cubic_on_grid

    t1, flair, mask, affine = phantom
    originals, held, cubic = [], [], []
    for image, letter, name in ((t1, "S", "t1"), (flair, "R", "flair")):
        data, low_affine = simulation.thick_slices(image, affine,
                                                 geometry.voxel_axis(affine, letter), 4)
        original = Volume(data, low_affine, name)
        originals.append(original)
        held.append(hold_out(original, 4))
        cubic.append(cubic_on_grid(held[-1].data, low_affine, t1.shape, affine))
    masks = [automatic_foreground_mask(v.data) for v in originals]
    rows = pd.DataFrame(holdout_scores(originals, held, {"truth": [t1, flair], "cubic": cubic},
                                       (t1.shape, affine), masks, [None, None]))
    gains = rows[rows["measure"] == "holdout_gain"].set_index("image")["value"]
    assert set(gains.index) == {"t1", "flair"} and (gains > 8).all(), rows
    assert set(rows["measure"]) == {"holdout_psnr_truth", "holdout_rmse_truth",
                                    "holdout_psnr_cubic", "holdout_rmse_cubic", "holdout_gain"}


def test_mcinr_fit_reports_the_check(tmp_path, low_resolution_files, capsys):
    """``mcinr-fit`` with ``qc_holdout = 4`` in its settings file: holdout rows for the INR,
    JTV and cubic in metrics.tsv;
    on the phantom the INR beats cubic on the held-out slices of both images; a K below 2 is
    refused before any fit."""
    from mcinr_bids.cli.fit import main

    assert main([*low_resolution_files, "-o", str(tmp_path / "bad"), "--qc-holdout", "1",
                 "--quiet"]) == 2
    assert "qc_holdout must be 0 (off) or >= 2" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "metrics.tsv").exists()
    out = tmp_path / "out"
    # K from a settings file's [workflow] table reaches the check
    config = tmp_path / "settings.toml"
    config.write_text("[workflow]\nqc_holdout = 4\n[inr]\nepochs = 12\n")
    assert main([*low_resolution_files, "-o", str(out), "--config-file", str(config),
                 "--quiet", "--no-early-stopping"]) == 0
    table = pd.read_csv(out / "metrics.tsv", sep="\t", na_values="n/a")
    psnr = table[table["measure"].str.startswith("holdout_psnr_")]
    assert set(psnr["measure"]) == {"holdout_psnr_inr", "holdout_psnr_jtv",
                                    "holdout_psnr_cubic"}
    gains = table[table["measure"] == "holdout_gain"].set_index("image")["value"]
    assert len(gains) == 2 and (gains > 1.0).all(), table
    assert "on the left-out slices" in capsys.readouterr().out


def test_the_second_fit_keeps_the_first_fits_reference(phantom, monkeypatch):
    """The hold-out fit is given the reference image the app's fit keeps fixed (the in-fit
    alignment moves every other image), not image 0 whatever the reference."""
    import mcinr_bids.methods.inr

    t1, flair, _, affine = phantom
    volumes = [Volume(*simulation.thick_slices(image, affine, geometry.voxel_axis(affine, letter),
                                             4), name)
               for image, letter, name in ((t1, "S", "t1"), (flair, "R", "flair"))]
    seen = {}

    class Stop(Exception):
        pass

    def fit_inr(volumes, settings, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(mcinr_bids.methods.inr, "fit_inr", fit_inr)
    from mcinr_bids.methods.inr.settings import settings_for_preset
    from mcinr_bids.quality.holdout import holdout_check

    with pytest.raises(Stop):
        holdout_check(volumes, 4, (t1.shape, affine), masks=None, transforms=None,
                      settings=settings_for_preset("fast"), reference=1)
    assert seen["reference"] == 1
