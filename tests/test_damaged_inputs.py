"""Damaged files and implausible headers stop only their subject, with one message naming the
file and the fix, before anything of that subject runs (no traceback, nothing written)."""

from __future__ import annotations

import errno
import logging

import nibabel as nib
import numpy as np
import pytest

from mcinr_bids.cli import fit as fit_cli
from mcinr_bids.cli.inputs import image_problem, overlap_problem, split_by_image_content
from mcinr_bids.cli.options import describe_os_error
from mcinr_bids.pipeline.bids import SubjectInputs


def write_image(path, data=None, affine=None):
    data = np.random.default_rng(0).random((8, 8, 6)).astype(np.float32) if data is None \
        else data
    nib.Nifti1Image(data, np.diag([1.0, 1.0, 4.0, 1.0]) if affine is None else affine
                    ).to_filename(path)
    return str(path)


def damaged(tmp_path, kind: str) -> str:
    """A file damaged as a copy or transfer leaves them."""
    if kind == "truncated-gz":  # the last 20 bytes cut: the header reads, the data do not
        path = write_image(tmp_path / "sub-02_T1w.nii.gz")
        data = open(path, "rb").read()
        open(path, "wb").write(data[:-20])
    elif kind == "bad-crc":  # one byte of the gzip trailer's CRC changed
        path = write_image(tmp_path / "sub-02_T1w.nii.gz")
        data = bytearray(open(path, "rb").read())
        data[-6] ^= 0xFF
        open(path, "wb").write(bytes(data))
    elif kind == "truncated-nii":
        path = write_image(tmp_path / "sub-02_T1w.nii")
        data = open(path, "rb").read()
        open(path, "wb").write(data[:-100])
    return path


@pytest.mark.parametrize("kind", ["truncated-gz", "bad-crc", "truncated-nii"])
def test_a_damaged_file_is_named_and_skips_only_its_subject(tmp_path, kind, caplog):
    bad = damaged(tmp_path, kind)
    message = image_problem(bad)
    assert message.startswith(f"{bad}: the file is damaged or truncated")
    assert "copy it again" in message
    good = write_image(tmp_path / "good.nii.gz")
    groups = [SubjectInputs("01", None, [good, good]), SubjectInputs("02", None, [good, bad])]
    with caplog.at_level(logging.ERROR):
        runnable, skipped = split_by_image_content(groups, logging.getLogger("test"))
    assert [g.subject for g in runnable] == ["01"] and [g.subject for g in skipped] == ["02"]
    assert "sub-02: skipped" in caplog.text and bad in caplog.text


def test_mcinr_fit_names_a_truncated_file_without_a_traceback(tmp_path, capsys):
    bad = damaged(tmp_path, "truncated-gz")
    good = write_image(tmp_path / "sub-02_FLAIR.nii.gz")
    code = fit_cli.main([bad, good, "-o", str(tmp_path / "out"), "--epochs", "1", "--quiet"])
    error = capsys.readouterr().err
    assert code == 2 and f"{bad}: the file is damaged or truncated" in error
    assert "Traceback" not in error


def test_a_header_without_position_or_voxel_sizes_is_refused(tmp_path):
    path = write_image(tmp_path / "sub-01_T1w.nii.gz")
    image = nib.load(path)
    header = image.header.copy()
    header["pixdim"][1:4] = 0.0
    header.set_qform(None, code=0)
    header.set_sform(None, code=0)
    blank = tmp_path / "sub-01_FLAIR.nii.gz"
    nib.Nifti1Image(image.get_fdata(dtype=np.float32), None, header).to_filename(blank)
    message = image_problem(str(blank))
    assert message.startswith(f"{blank}: the header holds no position in the scanner")
    # nibabel sets zero pixdim to 1 when it reads a header: only the codes tell
    assert nib.load(blank).header.get_zooms()[:3] == (1.0, 1.0, 1.0)


def test_voxels_larger_than_20_mm_are_refused(tmp_path):
    path = write_image(tmp_path / "sub-01_T1w.nii.gz", affine=np.diag([100.0, 1.0, 1.0, 1.0]))
    assert "larger than 20 mm" in image_problem(path)


def test_an_image_far_from_the_others_is_refused_before_registration(tmp_path):
    first = write_image(tmp_path / "sub-01_T1w.nii.gz")
    far = np.diag([1.0, 1.0, 4.0, 1.0])
    far[:3, 3] = (500.0, 0.0, 0.0)
    second = write_image(tmp_path / "sub-01_FLAIR.nii.gz", affine=far)
    assert "does not overlap" in overlap_problem([first, second])
    assert overlap_problem([first, first]) is None


def test_values_beyond_float32_are_not_called_nan(tmp_path):
    data = np.random.default_rng(0).random((8, 8, 6))
    data[0, 0, 0] = 1e300
    path = write_image(tmp_path / "sub-01_T1w.nii.gz", data=data)
    message = image_problem(path)
    assert "beyond what 32-bit floats can hold" in message and "NaN" not in message


def test_os_errors_blame_the_folders_only_when_writing_failed():
    damaged_read = OSError(errno.EIO, "Input/output error", "/data/sub-01_T1w.nii.gz")
    assert describe_os_error(damaged_read, "the output folder") == \
        "/data/sub-01_T1w.nii.gz: Input/output error"
    assert describe_os_error(OSError("CRC check failed"), "x") == "CRC check failed"
    full = describe_os_error(OSError(errno.ENOSPC, "No space left on device", "/out/a.nii.gz"),
                             "the output folder")
    assert full.startswith("/out/a.nii.gz: No space left on device")
    denied = describe_os_error(OSError(errno.EACCES, "Permission denied"), "the output folder")
    assert denied == "the output folder: Permission denied; check that the output folder can " \
                     "be written."


@pytest.mark.parametrize("text, message", [
    ('[inr]\nepochs = "many"\n', "[inr] epochs = 'many': expected a whole number, got a text"),
    ('[execution]\nnprocs = "two"\n', "[execution] nprocs = 'two': expected a whole number"),
    ("[workflow]\noutput_resolution = 0\n", "[workflow] output_resolution = 0: must be above 0"),
    ('[workflow]\ncontrasts = "T1w"\n', "[workflow] contrasts = 'T1w': expected a list of texts"),
    ("[workflow]\nbias_correction = 1\n",
     "[workflow] bias_correction = 1: expected true or false, got a whole number"),
])
def test_config_values_of_the_wrong_type_stop_before_anything_is_written(tmp_path, capsys,
                                                                         text, message):
    from mcinr_bids.cli.run import main
    from mcinr_bids.quality.phantom import write_bids_phantom

    bids = tmp_path / "bids"
    write_bids_phantom(str(bids), subjects=(("01", None, False),), resolution=4.0, factor=1)
    config = tmp_path / "settings.toml"
    config.write_text(text)
    code = main([str(bids), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "work"),
                 "--config-file", str(config), "--skip-bids-validation"])
    error = capsys.readouterr().err
    assert code == 2 and f"{config}: {message}" in error and "Traceback" not in error
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_time_left_counts_the_epochs_of_this_run_after_a_resume(monkeypatch):
    from types import SimpleNamespace

    from mcinr_bids.pipeline import reconstruct

    clock = iter([100.0, 110.0, 120.0])  # started; then epochs 118 and 119, 10 s each
    monkeypatch.setattr(reconstruct.time, "perf_counter", lambda: next(clock))
    messages: list[str] = []
    report = reconstruct.progress_reporter(messages.append, every_seconds=0.0)
    fitted = SimpleNamespace(settings=SimpleNamespace(epochs=300), names=["t1"],
                             history=[{"loss_t1": 0.1, "mutual_information": 0.5}])
    report(118, fitted)
    report(119, fitted)
    assert messages[0].endswith("10 s so far, at most 1820 s left")  # 182 epochs x 10 s
    assert messages[1].endswith("20 s so far, at most 1810 s left")


@pytest.fixture
def small_dataset(tmp_path):
    from mcinr_bids.quality.phantom import write_bids_phantom

    bids = tmp_path / "bids"
    write_bids_phantom(str(bids), subjects=(("01", "a", False),), resolution=4.0, factor=1)
    return bids


@pytest.mark.parametrize("option, message", [
    (["--session-label", "zz"], "no session(s) zz for the selected participant(s) (they "
                                "have: a); check --session-label"),
    (["--bids-filter-file", "{filters}"], "filters for T3w, which is not among the selected "
                                          "contrasts"),
    (["--bids-database-dir", "{bids}/db"], "--bids-database-dir lies inside the input dataset"),
])
def test_selection_mistakes_are_named(tmp_path, small_dataset, capsys, option, message):
    from mcinr_bids.cli.run import main

    filters = tmp_path / "filters.json"
    filters.write_text('{"T3w": {"acquisition": "axial"}}')
    option = [o.format(filters=filters, bids=small_dataset) for o in option]
    code = main([str(small_dataset), str(tmp_path / "out"), "participant", "-w",
                 str(tmp_path / "work"), "--skip-bids-validation", *option])
    assert code == 2 and message in capsys.readouterr().err
    assert not (small_dataset / "db").exists() and not (tmp_path / "out").exists()
    assert not (tmp_path / "work").exists()


def test_a_failed_step_is_reported_by_its_own_error(tmp_path):
    from mcinr_bids.cli.run import crash_summaries

    folder = tmp_path / "sub-01" / "log" / "run1"
    folder.mkdir(parents=True)
    (folder / "crash-20261206-fit.txt").write_text(
        "Node: mcinr_wf.sub_01_wf.superres_wf.fit\nWorking directory: /work/fit\n\n"
        "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\n"
        "OSError: [Errno 28] No space left on device: '/out/sub-01/anat/model.pt'\n\n")
    assert crash_summaries(str(tmp_path), "run1") == [
        "sub-01: step mcinr_wf.sub_01_wf.superres_wf.fit failed: OSError: [Errno 28] No space "
        "left on device: '/out/sub-01/anat/model.pt'"]
    assert crash_summaries(str(tmp_path), "another-run") == []


def test_a_state_held_by_a_live_process_is_not_resumed(tmp_path):
    import subprocess
    import sys

    from mcinr_bids.methods.inr.resume import StateInUseError, exclusive_state

    state = tmp_path / ".mcinr-fit-resume.pt"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom mcinr_bids.methods.inr.resume import exclusive_state\n"
        f"with exclusive_state({str(state)!r}):\n    print('held', flush=True)\n"
        "    time.sleep(30)\n")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StateInUseError, match=rf"another live process \(pid {holder.pid}\)"):
            with exclusive_state(str(state)):
                pass
    finally:
        holder.kill()  # kill -9: the system releases its lock
        holder.wait()
    with exclusive_state(str(state)):
        assert (tmp_path / ".mcinr-fit-resume.pt.lock").exists()
    assert not (tmp_path / ".mcinr-fit-resume.pt.lock").exists()


def test_outputs_of_an_earlier_run_with_other_options_are_named(tmp_path):
    from mcinr_bids.cli.inputs import earlier_outputs

    anat = tmp_path / "sub-01" / "ses-a" / "anat"
    anat.mkdir(parents=True)
    for name in ("sub-01_ses-a_space-MNI152NLin2009aSym_res-1_desc-superres_T1w.nii.gz",
                 "sub-01_ses-a_space-MNI152NLin2009aSym_res-1_desc-brain_mask.nii.gz",
                 "sub-01_ses-a_space-T1w_res-1_desc-superres_T1w.nii.gz",
                 "sub-01_ses-a_space-MNI152NLin2009aSym_res-2_desc-superres_FLAIR.nii.gz"):
        (anat / name).write_bytes(b"")
    group = SubjectInputs("01", "a", [])
    assert earlier_outputs(str(tmp_path), group, "MNI152NLin2009aSym", "1", "superres") == [
        "sub-01_ses-a_space-MNI152NLin2009aSym_res-2_desc-superres_FLAIR.nii.gz",
        "sub-01_ses-a_space-T1w_res-1_desc-superres_T1w.nii.gz"]
    assert earlier_outputs(str(tmp_path), SubjectInputs("02", None, []), "T1w", "1",
                           "superres") == []
