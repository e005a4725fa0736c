"""Bad input: one clear error naming the file, exit code != 0, nothing half-written."""


import numpy as np
import pytest

from mcinr_bids.cli import fit as fit_cli
from mcinr_bids.core.images import load_mask, load_volume
from mcinr_bids.core.volumes import InputError, Volume
from mcinr_bids.methods.inr import fit_inr
from mcinr_bids.methods.inr.settings import settings_for_preset

from .conftest import write_nifti


def run_cli(argv, capsys):
    code = fit_cli.main(argv)
    return code, capsys.readouterr().err


@pytest.mark.parametrize("shape", [(8, 8, 8, 3), (8, 8)])
def test_4d_and_2d_images_are_rejected(tmp_path, shape):
    path = write_nifti(tmp_path / "bad.nii.gz", np.ones(shape, np.float32), np.eye(4))
    with pytest.raises(InputError, match="bad.nii.gz.*3D"):
        load_volume(path)


def test_single_volume_4d_image_is_accepted(tmp_path):
    data = np.random.default_rng(0).random((6, 6, 6, 1)).astype(np.float32)
    volume = load_volume(write_nifti(tmp_path / "one.nii.gz", data, np.eye(4)))
    assert volume.shape == (6, 6, 6)


def test_nan_and_all_zero_images_are_rejected(tmp_path):
    data = np.ones((6, 6, 6), np.float32)
    data[1, 2, 3] = np.nan
    with pytest.raises(InputError, match="nan.nii.gz: 1 voxels are NaN"):
        load_volume(write_nifti(tmp_path / "nan.nii.gz", data, np.eye(4)))
    with pytest.raises(InputError, match="zero.nii.gz: the image is all zeros"):
        load_volume(write_nifti(tmp_path / "zero.nii.gz", np.zeros((6, 6, 6)), np.eye(4)))


def test_mask_on_another_grid_is_rejected(tmp_path, low_resolution_files):
    volume = load_volume(low_resolution_files[0])
    path = write_nifti(tmp_path / "mask.nii.gz", np.ones((5, 5, 5), np.uint8), np.eye(4))
    with pytest.raises(InputError, match="mask.nii.gz: the mask is on a different grid"):
        load_mask(path, volume)


def test_fields_of_view_that_do_not_overlap_are_rejected(low_resolution):
    (t1, t1_affine), (flair, flair_affine) = low_resolution
    far = flair_affine.copy()
    far[:3, 3] += 500.0
    volumes = [Volume(t1, t1_affine, "t1", "t1.nii.gz"), Volume(flair, far, "flair",
                                                                 "flair.nii.gz")]
    with pytest.raises(InputError, match="does not overlap"):
        fit_inr(volumes, settings_for_preset(epochs=1))


def test_split_model_with_one_image_fails_on_the_command_line(tmp_path, capsys,
                                                              low_resolution_files):
    out = tmp_path / "out"
    code, err = run_cli([low_resolution_files[0], "-o", str(out), "--quiet"], capsys)
    assert code == 2
    assert "sub-01_T1w.nii.gz" in err and "needs at least 2 images" in err
    assert not any(out.iterdir())


def test_unwritable_output_folder_is_reported(tmp_path, capsys, low_resolution_files):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code, err = run_cli([*low_resolution_files, "-o", str(blocker / "out"), "--quiet"], capsys)
    assert code == 2 and str(blocker / "out") in err and "cannot be written" in err


def test_missing_file_is_named(tmp_path, capsys, low_resolution_files):
    out = tmp_path / "out"
    code, err = run_cli([low_resolution_files[0], str(tmp_path / "missing.nii.gz"), "-o",
                         str(out), "--quiet"], capsys)
    assert code == 2 and "missing.nii.gz: no such file" in err
    assert not out.exists()  # inputs are checked before the output folder is made


def test_bad_setting_in_a_config_file_leaves_no_output_folder(tmp_path, capsys,
                                                              low_resolution_files):
    config = tmp_path / "settings.toml"
    config.write_text("[inr.advanced]\npsf_epochs = 0\n")
    out = tmp_path / "out"
    code, err = run_cli([*low_resolution_files, "-o", str(out), "--config-file", str(config),
                         "--quiet"], capsys)
    assert code == 2 and "psf_epochs must be >= 1" in err
    assert not out.exists()


@pytest.mark.parametrize("option, message", [
    (["--omp-nthreads", "-1"], "omp_nthreads must be above 0, got -1"),
    (["--random-seed", "-2"], "random_seed must be 0 or above, got -2")])
def test_execution_options_are_checked_as_strictly_as_in_a_file(tmp_path, capsys, option,
                                                                message, low_resolution_files):
    """A negative thread count used to reach torch (a traceback after the output folder was
    made); the command line is now held to the settings file's ranges."""
    out = tmp_path / "out"
    code, err = run_cli([*low_resolution_files, "-o", str(out), "--quiet", *option], capsys)
    assert code == 2 and message in err
    assert not out.exists()


def test_automatic_mask_keeps_slices_at_the_array_border():
    """A thick-slice image whose brain reaches its first and last slice keeps them."""
    from mcinr_bids.core.volumes import automatic_foreground_mask

    data = np.zeros((20, 20, 5), np.float32)
    data[4:16, 4:16, :] = 100.0
    mask = automatic_foreground_mask(data)
    assert mask[10, 10, 0] and mask[10, 10, -1]
    assert mask.sum() == 12 * 12 * 5
