"""Evaluation mode end to end: isotropic phantom -> simulated thick slices -> pipeline -> scores.

Also the group level over three generated participants' derivatives.
"""

from __future__ import annotations

import gzip
import json
import pickle

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from mcinr_bids.cli.run import main
from mcinr_bids.quality.phantom import template_head, write_bids_phantom
from mcinr_bids.reports.group import aggregate_metrics, robust_z


def run_evaluation_mode(tmp_path, monkeypatch, *options: str):
    """The evaluation mode on a one-subject isotropic phantom (T1w along S, FLAIR along R,
    x3, 3 mm native grid); returns (bids, output, exit code)."""
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(tmp_path / "templateflow-empty"))
    bids = tmp_path / "bids"
    write_bids_phantom(str(bids), subjects=(("01", None, False),), resolution=3.0, factor=1,
                       motion_degrees=0.0)
    output = tmp_path / "out"
    code = main([str(bids), str(output), "participant", "-w", str(tmp_path / "work"),
                 "--simulate-lowres", "T1w:S", "FLAIR:R", "--simulate-factor", "3",
                 "--output-space", "native", "--output-resolution", "3", "--nprocs", "2",
                 "--omp-nthreads", "2", *options])
    return bids, output, code


@pytest.mark.slow
def test_evaluation_mode_beats_clamped_cubic(tmp_path, monkeypatch):
    # decimation: the through-plane network is blended in by default (its steps cut here for
    # time; tests/test_throughplane.py measures what it learns)
    config = tmp_path / "short_network.toml"
    config.write_text("[inr.advanced]\nthrough_plane_steps = 40\n")
    lesions = tmp_path / "lesions"  # a ball in the brain, laid out as derivatives
    lesion_file = lesions / "sub-01" / "anat" / "sub-01_desc-lesion_mask.nii.gz"
    lesion_file.parent.mkdir(parents=True)
    t1, _, brain, affine = template_head(3.0)
    centre = np.argwhere(brain).mean(axis=0)
    ball = np.linalg.norm(np.indices(brain.shape) - centre[:, None, None, None], axis=0) < 5
    nib.Nifti1Image(ball.astype(np.uint8), affine).to_filename(lesion_file)
    bids, output, code = run_evaluation_mode(tmp_path, monkeypatch, "--config-file",
                                             str(config), "--lesion-masks", str(lesions))
    assert code == 0
    table = pd.read_csv(output / "sub-01" / "anat" / "sub-01_desc-superres_metrics.tsv",
                        sep="\t", na_values="n/a")
    strict = table[table["measure"] == "psnr_strict"].pivot(index="image", columns="method",
                                                            values="value")
    # every evaluation table has the JTV reconstruction of the same inputs beside the INR
    assert set(strict.columns) == {"inr-split", "cubic-clamped", "jtv"}
    assert (strict["inr-split"] > strict["cubic-clamped"]).all(), strict
    assert {"epsilon_mi_joint", "ssim_paper", "psnr_paper"} <= set(table["measure"])
    lesion = table[table["measure"] == "psnr_lesion"].pivot(index="image", columns="method",
                                                            values="value")
    assert set(lesion.columns) == set(strict.columns) and len(lesion) == 2
    assert np.isfinite(lesion.to_numpy()).all() and (lesion.to_numpy() > 10).all()
    # the group level shows the Table-1 summary
    assert main([str(bids), str(output), "group"]) == 0
    summary = pd.read_csv(output / "group_desc-evaluation_metrics.tsv", sep="\t")
    row = summary[(summary["method"] == "inr-split") & (summary["measure"] == "psnr_strict")]
    assert len(row) == 2 and (row["difference_vs_cubic_mean"] > 0).all()
    assert "psnr_lesion" in set(summary["measure"])
    assert "Table 1" in (output / "group_report.html").read_text()
    sidecar = json.loads(next(output.rglob("*desc-superres_T1w.json")).read_text())
    assert sidecar["Sources"] == ["bids::sub-01/anat/sub-01_T1w.nii.gz"]
    assert ("through-plane network's reconstruction (weight 0.67; a residual CNN trained for "
            "40 steps") in sidecar["Description"]
    # the registrations ran on the co-registered originals, not on the thick simulations
    # (which they misplace by ~0.3 mm): the FLAIR lands within 0.2 mm of the identity
    node = next((tmp_path / "work").rglob("anat_preproc_wf/registration_wf/register_to_reference"))
    with gzip.open(node / "_inputs.pklz") as handle:
        moving = pickle.load(handle)["moving_file"]
    assert moving == [str(bids / "sub-01" / "anat" / f"sub-01_{c}.nii.gz")
                      for c in ("T1w", "FLAIR")], moving
    matrix = np.loadtxt(next(node.rglob("sub-01_FLAIR_rigid.txt")))
    corners = np.array([[x, y, z, 1.0] for x in (-80, 80) for y in (-100, 100)
                        for z in (-60, 60)])
    assert np.abs(corners @ (matrix - np.eye(4)).T).max() < 0.2, matrix


def fake_participant(output, subject, psnr_shift=0.0, mi=0.9):
    anat = output / f"sub-{subject}" / "anat"
    anat.mkdir(parents=True)
    rows = ["measure\tmethod\timage\tother_image\tvalue"]
    for contrast, psnr in (("T1w", 50.0), ("FLAIR", 48.0)):
        rows.append(f"resimulation_rmse\tn/a\tsub-{subject}_{contrast}\tn/a\t3.0")
        rows.append(f"resimulation_psnr\tn/a\tsub-{subject}_{contrast}\tn/a\t"
                    f"{psnr + psnr_shift}")
    rows.append(f"mutual_information\tn/a\tsub-{subject}_T1w\tsub-{subject}_FLAIR\t{mi}")
    (anat / f"sub-{subject}_desc-superres_metrics.tsv").write_text("\n".join(rows) + "\n")
    (output / f"sub-{subject}.html").write_text("<html></html>")


def test_group_level_rows_outliers_and_links(tmp_path):
    output = tmp_path / "out"
    for index, subject in enumerate(("01", "02", "03", "04", "05", "06")):
        fake_participant(output, subject, psnr_shift=0.1 * index)
    fake_participant(output, "07", psnr_shift=-20.0)  # a failed fit
    target = aggregate_metrics(output)
    table = pd.read_csv(target, sep="\t")
    assert len(table) == 14  # 7 subjects x 2 contrasts
    assert list(table.columns) == ["participant_id", "session_id", "image", "contrast",
                                   "method", "resimulation_rmse", "resimulation_psnr",
                                   "mutual_information"]
    assert np.allclose(table["mutual_information"], 0.9)
    assert set(table["method"]) == {"inr"}
    dictionary = json.loads(target.with_suffix(".json").read_text())
    assert {"participant_id", "resimulation_psnr"} <= set(dictionary)
    page = (output / "group_report.html").read_text()
    outliers = page.split("Outliers")[1].split("All subjects")[0]
    assert '<a href="sub-07.html">sub-07</a>' in outliers
    assert "sub-03" not in outliers
    assert (output / "group_figures" / "group_desc-distribution_metrics.svg").stat().st_size


def test_robust_z():
    values = pd.Series([1.0, 1.1, 0.9, 1.0, 10.0])
    z = robust_z(values)
    assert z.iloc[-1] > 3 and abs(z.iloc[0]) < 1
    assert (robust_z(pd.Series([2.0, 2.0, 2.0])) == 0).all()


@pytest.mark.parametrize("spec", ["T1w", "T1w:Q", ":S"])
def test_bad_simulation_spec(tmp_path, capsys, spec):
    bids = tmp_path / "bids"
    write_bids_phantom(str(bids), subjects=(("01", None, False),), resolution=4.0, factor=1,
                       motion_degrees=0.0)
    code = main([str(bids), str(tmp_path / "out"), "participant", "--simulate-lowres", spec,
                 "--skip-bids-validation", "-w", str(tmp_path / "w")])
    assert code == 2
    assert "CONTRAST:AXIS" in capsys.readouterr().err


@pytest.mark.slow
def test_jtv_method_through_the_app(tmp_path, monkeypatch):
    """``--method jtv`` on simulated thick slices: desc-jtv outputs (no model), sidecars and
    report saying what ran, scores above clamped cubic, the group table's method column; with
    ``--qc-holdout 3`` the ground-truth-free check's rows, report section and group columns
    (JTV beats cubic on the left-out slices too)."""
    bids, output, code = run_evaluation_mode(tmp_path, monkeypatch, "--method", "jtv",
                                             "--simulate-protocol", "thick",
                                             "--qc-holdout", "3")
    assert code == 0
    anat = output / "sub-01" / "anat"
    names = sorted(p.name for p in anat.iterdir())
    assert [n for n in names if "desc-jtv_" in n and n.endswith(".nii.gz")] == [
        "sub-01_space-T1w_res-3_desc-jtv_FLAIR.nii.gz",
        "sub-01_space-T1w_res-3_desc-jtv_T1w.nii.gz"], names
    assert not [n for n in names if "superres" in n or "model" in n], names
    table = pd.read_csv(anat / "sub-01_desc-jtv_metrics.tsv", sep="\t", na_values="n/a")
    strict = table[table["measure"] == "psnr_strict"].pivot(index="image", columns="method",
                                                            values="value")
    assert set(strict.columns) == {"jtv", "cubic-clamped"}
    assert (strict["jtv"] > strict["cubic-clamped"] + 0.5).all(), strict
    # the re-simulation of each input by the JTV forward model is close to the input
    resimulated = table[table["measure"] == "resimulation_psnr"]["value"]
    assert len(resimulated) == 2 and (resimulated > 25).all(), table
    held_out = table[table["measure"].str.startswith("holdout_")]
    assert set(held_out["measure"]) == {"holdout_psnr_jtv", "holdout_rmse_jtv",
                                        "holdout_psnr_cubic", "holdout_rmse_cubic",
                                        "holdout_gain"}, table
    gains = held_out[held_out["measure"] == "holdout_gain"]["value"]
    assert len(gains) == 2 and (gains > 0).all(), held_out
    sidecar = json.loads((anat / "sub-01_space-T1w_res-3_desc-jtv_T1w.json").read_text())
    assert "joint-total-variation" in sidecar["Description"]
    assert sidecar["JTV"]["Parameters"]["regularisation"] == 1.0
    assert len(sidecar["JTV"]["NoiseSigma"]) == 2 and "INR" not in sidecar
    report = (output / "sub-01.html").read_text()
    assert "Joint-total-variation reconstruction" in report and "UniRes" in report
    assert "Ground-truth-free check: left-out slices" in report
    assert "The output beats interpolation on 2 of 2 images" in report
    assert main([str(bids), str(output), "group"]) == 0
    group = pd.read_csv(output / "group_desc-superres_metrics.tsv", sep="\t")
    assert set(group["method"]) == {"jtv"} and len(group) == 2
    assert (group["holdout_gain"] > 0).all() and (group["holdout_psnr_jtv"] > 0).all()
    assert "holdout_psnr_inr" not in group  # no INR ran
    assert "beats clamped cubic interpolation on 2 of 2 images" in (
        output / "group_report.html").read_text()


def test_group_level_names_a_damaged_table_and_goes_on(tmp_path, capsys, caplog):
    output = tmp_path / "out"
    for subject in ("01", "02", "03"):
        fake_participant(output, subject)
    fake_participant(output, "04")
    damaged = output / "sub-04" / "anat" / "sub-04_desc-superres_metrics.tsv"
    damaged.write_bytes(b"\x00\x01 not a table \xff\n\x02")
    empty = output / "sub-05" / "anat" / "sub-05_desc-superres_metrics.tsv"
    empty.parent.mkdir(parents=True)
    empty.write_text("")
    code = main([str(tmp_path / "raw-gone"), str(output), "group"])
    error = capsys.readouterr().err + caplog.text
    assert code == 1
    assert f"{damaged}: not a readable participant metrics table" in error
    assert f"{empty}: not a readable participant metrics table" in error
    assert "Traceback" not in error
    table = pd.read_csv(output / "group_desc-superres_metrics.tsv", sep="\t")
    assert set(table["participant_id"]) == {"sub-01", "sub-02", "sub-03"}
    assert not (output / "group_desc-evaluation_metrics.tsv").exists()


def test_lesion_masks_are_found_per_subject_and_session(tmp_path):
    from mcinr_bids.pipeline.bids import BIDSError, find_lesion_mask

    anat = tmp_path / "sub-01" / "ses-a" / "anat"
    anat.mkdir(parents=True)
    mask = anat / "sub-01_ses-a_desc-lesion_mask.nii.gz"
    mask.write_bytes(b"")
    (anat / "sub-01_ses-a_desc-brain_mask.nii.gz").write_bytes(b"")
    assert find_lesion_mask(str(tmp_path), "01", "a") == str(mask)
    assert find_lesion_mask(str(tmp_path), "01", None) is None
    with pytest.MonkeyPatch.context() as patch:  # a relative folder (a config file's) too
        patch.chdir(tmp_path)
        assert find_lesion_mask(".", "01", "a") == str(mask)
    assert find_lesion_mask(str(tmp_path), "02", "a") is None
    (anat / "sub-01_ses-a_label-lesion_roi.nii.gz").write_bytes(b"")
    with pytest.raises(BIDSError, match="2 lesion masks for sub-01_ses-a"):
        find_lesion_mask(str(tmp_path), "01", "a")
