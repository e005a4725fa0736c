"""Nothing outside the output and work folders is touched; a bad image stops only its subject;
no temporary file outlives a failed write (issue 15)."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mcinr_bids.cli.inputs import image_problem, split_by_image_content
from mcinr_bids.cli.run import main
from mcinr_bids.config import AppConfig
from mcinr_bids.core.io import remove_stale_temporaries, write_once
from mcinr_bids.pipeline.bids import (
    WORK_MARKER,
    SubjectInputs,
    find_executable,
    prepare_work_dir,
    write_simulated_dataset,
)
from mcinr_bids.quality.phantom import write_bids_phantom


@pytest.fixture
def dataset(tmp_path):
    bids = tmp_path / "bids"
    write_bids_phantom(str(bids), subjects=(("01", None, False),), resolution=4.0, factor=1,
                       motion_degrees=0.0)
    return bids


def run(bids, out, *options, capsys):
    code = main([str(bids), str(out), "participant", "--skip-bids-validation", *map(str, options)])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("where", ["output", "inside-output", "bids", "inside-bids", "parent"])
def test_work_folder_must_be_apart_from_input_and_output(tmp_path, dataset, capsys, where):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("a derivative")
    work = {"output": out, "inside-output": out / "work", "bids": dataset,
            "inside-bids": dataset / "work", "parent": tmp_path}[where]
    code, error = run(dataset, out, "-w", work, "--clean-workdir", capsys=capsys)
    assert code == 2 and "work folder" in error and str(work.resolve()) in error
    assert (out / "keep.txt").read_text() == "a derivative"
    assert (dataset / "dataset_description.json").exists()
    assert not (dataset / "work").exists() and not (out / "work").exists()


def test_clean_workdir_empties_only_its_own_folders(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("years of work")
    with pytest.raises(ValueError, match="not a mcinr-bids work folder"):
        prepare_work_dir(foreign, clean=True)
    assert (foreign / "thesis.tex").exists()
    ours = prepare_work_dir(tmp_path / "work", clean=False)
    (ours / "cached").mkdir()
    (ours / "cached" / "result.pklz").write_text("x")
    prepare_work_dir(ours, clean=True)
    assert sorted(p.name for p in ours.iterdir()) == [WORK_MARKER]


def test_filter_file_cannot_change_subject_or_suffix(tmp_path, dataset, capsys):
    for entities in ({"subject": "02"}, {"session": "x"}, {"return_type": "object"},
                     {"suffix": "FLAIR"}):
        filters = tmp_path / "filters.json"
        filters.write_text(json.dumps({"T1w": entities}))
        code, error = run(dataset, tmp_path / "out", "-w", tmp_path / "work",
                          "--bids-filter-file", filters, capsys=capsys)
        assert code == 2 and str(filters) in error and next(iter(entities)) in error
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("problem, fill", [
    ("NaN or infinite", lambda d: d.__setitem__((0, 0, 0), np.nan)),
    ("NaN or infinite", lambda d: d.__setitem__((1, 1, 1), np.inf)),
    ("all zeros", lambda d: d.__setitem__(Ellipsis, 0)),
    ("constant", lambda d: d.__setitem__(Ellipsis, 5)),
])
def test_bad_image_content_is_named(tmp_path, problem, fill):
    data = np.random.default_rng(0).random((6, 6, 6)).astype(np.float32)
    fill(data)
    path = tmp_path / "sub-01_T1w.nii.gz"
    nib.Nifti1Image(data, np.eye(4)).to_filename(path)
    message = image_problem(str(path))
    assert str(path) in message and problem in message


def test_bad_images_of_other_shapes_and_files(tmp_path):
    four_d = tmp_path / "sub-01_run-1_T1w.nii.gz"
    nib.Nifti1Image(np.ones((4, 4, 4, 3), np.float32), np.eye(4)).to_filename(four_d)
    flat = tmp_path / "sub-01_run-2_T1w.nii.gz"
    nib.Nifti1Image(np.ones((4, 4), np.float32), np.eye(4)).to_filename(flat)
    truncated = tmp_path / "sub-01_run-3_T1w.nii.gz"
    good = tmp_path / "good.nii.gz"
    nib.Nifti1Image(np.random.default_rng(1).random((6, 6, 6)), np.eye(4)).to_filename(good)
    truncated.write_bytes(good.read_bytes()[:200])
    assert "4D" in image_problem(str(four_d))
    assert "2D" in image_problem(str(flat))
    assert "not a readable NIfTI" in image_problem(str(truncated))
    assert image_problem(str(good)) is None


def test_one_bad_image_skips_only_its_subject(tmp_path, caplog):
    good = tmp_path / "good.nii.gz"
    nib.Nifti1Image(np.random.default_rng(1).random((6, 6, 6)), np.eye(4)).to_filename(good)
    bad = tmp_path / "bad.nii.gz"
    nib.Nifti1Image(np.full((6, 6, 6), np.nan, np.float32), np.eye(4)).to_filename(bad)
    groups = [SubjectInputs("01", None, [str(good), str(good)]),
              SubjectInputs("02", None, [str(good), str(bad)])]
    with caplog.at_level(logging.ERROR):
        runnable, skipped = split_by_image_content(groups, logging.getLogger("test"))
    assert [g.subject for g in runnable] == ["01"] and [g.subject for g in skipped] == ["02"]
    assert len(caplog.records) == 1 and str(bad) in caplog.records[0].getMessage()
    assert "sub-02: skipped" in caplog.records[0].getMessage()


def test_simulated_sidecars_stay_beside_their_images_under_dotted_folders(tmp_path, dataset):
    # a typical $SLURM_TMPDIR: the old code cut every path at its first dot
    work = tmp_path / "localscratch" / "user.1234.0" / "work"
    images = sorted(str(p) for p in (dataset / "sub-01" / "anat").glob("*.nii.gz"))
    groups, _ = write_simulated_dataset([SubjectInputs("01", None, images)], str(dataset),
                                        str(work / "simulated_bids"), {"T1w": "S", "FLAIR": "R"},
                                        protocol="thick", factor=2)
    for image in groups[0].images:
        sidecar = Path(image).with_name(Path(image).name.replace(".nii.gz", ".json"))
        assert sidecar.is_file(), sidecar
        # the original's metadata with the simulation's slice thickness (the phantom's
        # isotropic 4 mm voxels, 2 of them per thick slab), as the fit reads it
        metadata = json.loads(sidecar.read_text())
        assert metadata["SliceThickness"] == 8.0 and metadata["MRAcquisitionType"] == "2D"
    assert not list((tmp_path / "localscratch").glob("*.json"))
    decimated, _ = write_simulated_dataset([SubjectInputs("01", None, images)], str(dataset),
                                           str(tmp_path / "decimated"), {"T1w": "S"},
                                           factor=2)
    sidecar = Path(decimated[0].images[0].replace(".nii.gz", ".json"))
    assert json.loads(sidecar.read_text())["SliceThickness"] == 4.0


def test_failed_writes_leave_no_temporary(tmp_path, monkeypatch):
    def broken_replace(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    monkeypatch.setattr(os, "link", broken_replace)
    with pytest.raises(OSError):
        AppConfig().save(tmp_path / "mcinr.toml")
    with pytest.raises(OSError):
        write_once(tmp_path / "dataset_description.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_stale_temporaries_are_removed_fresh_ones_kept(tmp_path):
    stale = tmp_path / "sub-01" / ".staging-abc"
    stale.mkdir(parents=True)
    (stale / "half.nii.gz").write_text("x")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    stale_file = tmp_path / ".tmp-xyz.json"
    stale_file.write_text("{")
    os.utime(stale_file, (old, old))
    fresh = tmp_path / ".tmp-live.json"
    fresh.write_text("{")
    removed = remove_stale_temporaries(tmp_path, (".tmp-", ".staging-"))
    assert sorted(p.name for p in removed) == [".staging-abc", ".tmp-xyz.json"]
    assert fresh.exists() and not stale.exists()


def test_validator_is_found_beside_the_interpreter(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # an environment that was not activated
    found = find_executable("bids-validator-deno")
    assert found is not None and Path(found).parent == Path(os.sys.executable).parent


def test_fit_progress_is_reported_with_time_left(low_resolution):
    from mcinr_bids.core.volumes import Volume
    from mcinr_bids.methods.inr.settings import settings_for_preset
    from mcinr_bids.pipeline.reconstruct import superresolve

    messages: list[str] = []
    volumes = [Volume(d.astype(np.float32), a, name=n)
               for (d, a), n in zip(low_resolution, ["t1", "flair"])]
    settings = settings_for_preset("fast", epochs=3, early_stopping=False, device="cpu",
                                   grid_cell_sizes_mm=[16.0, 8.0])
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        superresolve(volumes, settings, folder, say=messages.append)
    # the recipe first (each stage on or off and why), then the progress
    recipe = [m for m in messages if m.startswith("recipe: ")]
    assert messages[:len(recipe)] == recipe and len(recipe) == 6
    assert "recipe: slab model: on: the inputs are thick 2D slices [inr] psf" in recipe
    progress = messages[len(recipe):]
    assert progress and progress[0].startswith("INR fit epoch 1/3: loss t1 ")
    assert "MI " in progress[0] and "left" in progress[0]


def test_a_killed_fit_resumes_where_it_was(tmp_path, low_resolution_files, phantom):
    """kill -9 during mcinr-fit, rerun: the history continues and the result matches an
    uninterrupted fit (issue 15)."""
    import csv
    import signal
    import subprocess
    import sys

    from mcinr_bids.pipeline.reconstruct import RESUME_FILE
    from mcinr_bids.quality import metrics

    every_epoch = tmp_path / "every-epoch.toml"  # save the state after every epoch
    every_epoch.write_text("[inr]\ncheckpoint_seconds = 0\n")

    def command(out):
        return [sys.executable, "-m", "mcinr_bids.cli.fit", *low_resolution_files, "-o",
                str(out), "--epochs", "12", "--no-early-stopping", "--quiet", "--device",
                "cpu", "--omp-nthreads", "1", "--resolution", "1", "--config-file",
                str(every_epoch)]

    killed = tmp_path / "killed"
    process = subprocess.Popen(command(killed), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (killed / RESUME_FILE).exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # a little further, so the kill lands mid-epoch
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (killed / RESUME_FILE).exists(), "the fit saved no training state"
    assert subprocess.run(command(killed), capture_output=True, check=False).returncode == 0
    assert subprocess.run(command(tmp_path / "whole"), capture_output=True,
                          check=False).returncode == 0
    resumed = json.loads((killed / "parameters.json").read_text())
    assert resumed["resumed_from_epoch"] >= 1 and resumed["epochs_run"] == 12
    with open(killed / "history.tsv") as handle:
        epochs = [int(row["epoch"]) for row in csv.DictReader(handle, delimiter="\t")]
    assert epochs == list(range(1, 13)) and not (killed / RESUME_FILE).exists()
    truth, mask = phantom[0], phantom[2] > 0
    scores = [metrics.psnr(nib.load(folder / "sub-01_T1w_desc-superres.nii.gz").get_fdata(),
                           truth, mask) for folder in (killed, tmp_path / "whole")]
    assert abs(scores[0] - scores[1]) < 0.1


@pytest.mark.parametrize("kind", ["loop", "broken", "folder"])
def test_links_and_folders_posing_as_images_are_named(tmp_path, kind):
    path = tmp_path / "sub-01_T1w.nii.gz"
    if kind == "loop":
        path.symlink_to(path)
    elif kind == "broken":
        path.symlink_to(tmp_path / "gone.nii.gz")
    else:
        path.mkdir()
    message = image_problem(str(path))
    assert str(path) in message
    assert {"loop": "cannot be followed", "broken": "broken symbolic link",
            "folder": "not a readable NIfTI"}[kind] in message


def test_app_output_that_is_a_file(tmp_path, dataset, capsys):
    output = tmp_path / "out"
    output.write_text("not a folder")
    code, error = run(dataset, output, "-w", tmp_path / "work", capsys=capsys)
    assert code == 2 and str(output) in error
    assert output.read_text() == "not a folder"


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB tmpfs (root only; skipped where it cannot be mounted)."""
    import subprocess

    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
            capture_output=True, check=False).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)


def test_disk_full_is_one_message_and_nothing_half_written(full_disk, low_resolution_files,
                                                           capsys):
    from mcinr_bids.cli import fit as fit_cli

    out = full_disk / "out"
    code = fit_cli.main([*low_resolution_files, "-o", str(out), "--epochs", "1", "--quiet",
                         "--device", "cpu"])
    error = capsys.readouterr().err
    assert code == 2 and "No space left on device" in error and str(out) in error
    assert "Traceback" not in error
    assert not list(out.rglob(".tmp-*"))
    assert all(path.stat().st_size > 0 for path in out.iterdir())


def test_verbose_run_lists_the_time_of_every_step():
    from types import SimpleNamespace

    from mcinr_bids.cli.run import node_timings

    def node(name, durations):
        runtime = [SimpleNamespace(duration=d) for d in durations]
        return SimpleNamespace(fullname=name, result=SimpleNamespace(
            runtime=runtime if len(runtime) > 1 else runtime[0]))

    class Broken:
        fullname = "crashed"

        @property
        def result(self):
            raise OSError("no result file")

    timings = node_timings([node("fit", [30.0]), node("bias_correction", [2.0, 3.5]),
                            Broken()])
    assert timings == [("fit", 30.0), ("bias_correction", 5.5)]


def test_same_seed_same_registration(tmp_path):
    """ANTs took the app's default seed 0 as 'seed from the clock': every run registered
    differently (by ~0.1 mm); with one ITK thread the same seed now gives the same matrix."""
    import subprocess
    import sys

    bids = tmp_path / "bids"
    paths = write_bids_phantom(str(bids), subjects=(("01", None, False),), resolution=3.0,
                               factor=2)[("01", None)]
    code = ("import sys, numpy as np\n"
            "from mcinr_bids.pipeline.anatomical import rigid_register\n"
            "print(repr(rigid_register(sys.argv[1], sys.argv[2], seed=0, quick=True).tolist()))")
    environment = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1"}
    results = [subprocess.run([sys.executable, "-c", code, paths["T1w"], paths["FLAIR"]],
                              capture_output=True, text=True, env=environment,
                              check=True).stdout for _ in range(2)]
    assert results[0] == results[1] and results[0].startswith("[[")


def test_a_deep_work_folder_still_starts_the_worker_pool(tmp_path):
    """The worker pool's socket lives in the temporary folder; in a work folder deeper than a
    UNIX socket path allows, the run ended at once with "AF_UNIX path too long"."""
    import subprocess
    import sys

    deep = tmp_path / ("d" * 60) / ("e" * 60)
    script = ("import multiprocessing, pathlib, sys\n"
              "from mcinr_bids.cli.run import use_work_temporaries\n"
              "use_work_temporaries(pathlib.Path(sys.argv[1]))\n"
              "with multiprocessing.get_context('forkserver').Pool(1) as pool:\n"
              "    print(pool.apply(abs, (-3,)))\n")
    result = subprocess.run([sys.executable, "-c", script, str(deep)], capture_output=True,
                            text=True, check=False, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "3", result.stderr[-2000:]
    assert (deep / "tmp").is_dir()
