"""The BIDS App refuses bad input with one clear message, exit code 2 and nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mcinr_bids.cli.run import build_config, main
from mcinr_bids.core.io import write_once
from mcinr_bids.pipeline.bids import choose_reference
from mcinr_bids.pipeline.templates import TemplateError, local_template, resolve_output_space
from mcinr_bids.quality.phantom import write_bids_phantom


def tiny_dataset(root: Path) -> Path:
    anat = root / "bids" / "sub-01" / "anat"
    anat.mkdir(parents=True)
    (root / "bids" / "dataset_description.json").write_text(
        json.dumps({"Name": "tiny", "BIDSVersion": "1.10.0"}))
    for suffix, zooms in (("T1w", (1.0, 1.0, 4.0)), ("FLAIR", (4.0, 1.0, 1.0))):
        image = nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.diag([*zooms, 1.0]))
        image.to_filename(anat / f"sub-01_{suffix}.nii.gz")
    return root / "bids"


def run_app(arguments, capsys):
    code = main([str(a) for a in arguments])
    return code, capsys.readouterr().err


def assert_nothing_written(path: Path):
    assert not path.exists() or not any(path.iterdir())


def test_missing_dataset_description(tmp_path, capsys):
    bids = tiny_dataset(tmp_path)
    (bids / "dataset_description.json").unlink()
    code, error = run_app([bids, tmp_path / "out", "participant", "-w", tmp_path / "w"], capsys)
    assert code == 2
    assert "dataset_description.json" in error and str(bids) in error
    assert_nothing_written(tmp_path / "out")


def test_unknown_participant(tmp_path, capsys):
    bids = tiny_dataset(tmp_path)
    code, error = run_app([bids, tmp_path / "out", "participant", "--participant-label", "99",
                           "--skip-bids-validation", "-w", tmp_path / "w"], capsys)
    assert code == 2
    assert "99" in error and "--participant-label" in error
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("label", ["../01", "sub-01/..", "a/b", ".."])
def test_label_that_escapes(tmp_path, capsys, label):
    bids = tiny_dataset(tmp_path)
    code, error = run_app([bids, tmp_path / "out", "participant", "--participant-label", label,
                           "-w", tmp_path / "w"], capsys)
    assert code == 2
    assert "letters and digits" in error
    assert_nothing_written(tmp_path / "out")


@pytest.mark.parametrize("inside", ["", "derivatives/mcinr"])
def test_output_inside_input(tmp_path, capsys, inside):
    bids = tiny_dataset(tmp_path)
    output = bids / inside if inside else bids
    code, error = run_app([bids, output, "participant", "-w", tmp_path / "w"], capsys)
    assert code == 2
    assert "outside it" in error
    assert not (bids / "derivatives").exists()


def test_validator_errors_are_shown(tmp_path, capsys):
    bids = tiny_dataset(tmp_path)
    (bids / "sub-01" / "anat" / "sub-01_notabidsname.nii.gz").write_bytes(b"x")
    code, error = run_app([bids, tmp_path / "out", "participant", "-w", tmp_path / "w"], capsys)
    assert code == 2
    assert "bids-validator-deno found" in error and "notabidsname" in error
    assert_nothing_written(tmp_path / "out")


def test_group_without_participants(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    code, error = run_app([tmp_path / "bids", tmp_path / "out", "group"], capsys)
    assert code == 2
    assert "run the participant level first" in error


def test_config_file_and_command_line(tmp_path):
    settings = tmp_path / "settings.toml"
    settings.write_text('[workflow]\noutput_space = "native"\n[inr]\nepochs = 7\n')
    config = build_config([str(tmp_path), str(tmp_path / "o"), "participant",
                           "--config-file", str(settings), "--model", "vanilla",
                           "--participant-label", "sub-01", "02"])
    assert config.workflow.output_space == "native"
    assert config.inr.epochs == 7 and config.inr.model == "vanilla"
    assert config.execution.participant_label == ["01", "02"]
    written = config.save(tmp_path / "again.toml")
    again = type(config).load(written)
    assert again.inr.epochs == 7 and again.workflow.output_space == "native"


def test_sloppy_is_tiny(tmp_path):
    config = build_config([str(tmp_path), str(tmp_path / "o"), "participant", "--sloppy"])
    assert config.inr.epochs <= 3


def test_reference_is_finest_in_plane_t1w(tmp_path):
    paths = []
    for name, zooms in (("sub-01_FLAIR", (0.5, 0.5, 4)), ("sub-01_run-1_T1w", (1, 1, 4)),
                        ("sub-01_run-2_T1w", (0.8, 4, 0.8))):
        path = tmp_path / f"{name}.nii.gz"
        nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.diag([*zooms, 1])).to_filename(path)
        paths.append(str(path))
    assert choose_reference(paths) == 2
    assert choose_reference(paths[:1]) == 0


def test_templates_are_never_downloaded(tmp_path, monkeypatch):
    home = tmp_path / "tf"
    folder = home / "tpl-MNI152NLin2009cAsym"
    folder.mkdir(parents=True)
    t1w = folder / "tpl-MNI152NLin2009cAsym_res-01_T1w.nii.gz"
    mask = folder / "tpl-MNI152NLin2009cAsym_res-01_desc-brain_mask.nii.gz"
    t1w.touch()
    mask.touch()  # 0-byte placeholders, as in an empty TemplateFlow home
    monkeypatch.setenv("TEMPLATEFLOW_HOME", str(home))
    space = resolve_output_space("MNI152NLin2009cAsym", str(tmp_path / "cache"))
    assert space.name == "MNI152NLin2009aSym" and space.source == "nilearn"
    assert nib.load(space.t1w).shape == nib.load(space.mask).shape
    image = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4))
    image.to_filename(t1w)
    image.to_filename(mask)
    assert local_template("MNI152NLin2009cAsym") == (str(t1w), str(mask))
    space = resolve_output_space("MNI152NLin2009cAsym", str(tmp_path / "cache"))
    assert space.name == "MNI152NLin2009cAsym" and space.source == "templateflow"
    with pytest.raises(TemplateError, match="tpl-SRI24"):
        resolve_output_space("SRI24", str(tmp_path / "cache"))


def test_write_once_keeps_the_first(tmp_path):
    target = tmp_path / "dataset_description.json"
    write_once(target, "first")
    write_once(target, "second")
    assert target.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["dataset_description.json"]


def test_mask_on_grid_binarises_before_interpolating(tmp_path):
    from mcinr_bids.core.interpolation import mask_on_grid

    data = np.zeros((10, 10, 10), np.uint8)
    data[3:7, 3:7, 3:7] = 255
    path = tmp_path / "mask.nii.gz"
    nib.Nifti1Image(data, np.eye(4)).to_filename(path)
    # half-voxel shift: linear weights 0.5 on the border; 0/255 values must not dilate the mask
    shifted = np.eye(4)
    shifted[0, 3] = 0.4
    carried = mask_on_grid(str(path), (10, 10, 10), np.eye(4), grid_to_mask_world=shifted)
    assert carried.sum() == (data > 0).sum()


def test_simulated_dataset_is_reused_only_for_the_same_simulation(tmp_path, monkeypatch):
    from mcinr_bids.pipeline.bids import SubjectInputs, write_simulated_dataset

    bids = tmp_path / "bids"
    write_bids_phantom(str(bids), subjects=(("01", None, False),), resolution=4.0, factor=1,
                       motion_degrees=0.0)
    images = sorted(str(p) for p in (bids / "sub-01" / "anat").glob("*.nii.gz"))
    groups = [SubjectInputs("01", None, images)]
    target = tmp_path / "simulated"
    axes = {"T1w": "S", "FLAIR": "R"}

    def simulate(factor):
        simulated, _ = write_simulated_dataset(groups, str(bids), str(target), axes,
                                               factor=factor)
        return {p: (nib.load(p).shape, os.stat(p).st_mtime_ns) for p in simulated[0].images}

    first = simulate(2)
    assert simulate(2) == first  # same simulation: files kept, cached steps stay valid
    # a different factor that is interrupted half-way must not leave a marker that passes the
    # old files off as the new simulation
    original_load = nib.load
    monkeypatch.setattr(nib, "load", lambda *a, **k: (_ for _ in ()).throw(OSError("killed")))
    with pytest.raises(OSError):
        simulate(4)
    monkeypatch.setattr(nib, "load", original_load)
    changed = simulate(4)
    assert all(changed[p][0] != first[p][0] for p in first)  # rewritten, not trusted
