"""One precedence rule for every command line: defaults -> preset -> --sloppy -> config file ->
options given (whatever their value); each setting in one table."""

import dataclasses
import sys

import numpy as np
import pytest

from mcinr_bids.cli import evaluate as evaluate_cli
from mcinr_bids.cli.fit import build_parser as build_fit_parser
from mcinr_bids.cli.fit import inr_settings
from mcinr_bids.cli.options import given_options
from mcinr_bids.cli.run import build_config
from mcinr_bids.config import (
    AppConfig,
    ExecutionSettings,
    WorkflowSettings,
    resolve_config,
)
from mcinr_bids.methods.inr.settings import PRESETS, INRSettings, settings_for_preset


def app(tmp_path, *options):
    return build_config([str(tmp_path), str(tmp_path / "out"), "participant", *options])


def fit_settings(*options):
    return inr_settings(given_options(build_fit_parser, ["a.nii.gz", "-o", "o", *options]))


@pytest.fixture
def single_file(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text('[execution]\ndevice = "cpu"\nrandom_seed = 11\n'
                    '[workflow]\noutput_space = "native"\n'
                    '[inr]\nmodel = "single"\nepochs = 7\npsf = true\n')
    return path


def test_every_setting_lives_in_one_table():
    from itertools import combinations

    from mcinr_bids.methods.jtv import JTVSettings
    from mcinr_bids.methods.unpaired.settings import UnpairedSettings

    def file_keys(cls):  # what a settings file may set in the table (advanced merged)
        return {f.name for f in dataclasses.fields(cls)} - set(cls.SHARED)

    names = [file_keys(c) for c in (ExecutionSettings, WorkflowSettings, INRSettings,
                                    JTVSettings)]
    # [unpaired] shares only the learning rate with [inr]: each method's own optimiser
    assert file_keys(UnpairedSettings) & set().union(*names) == {"learning_rate"}
    assert all(not (a & b) for a, b in combinations(names, 2))
    # the device, the threads and the seed: [execution]'s, one of each for every method
    for cls in (INRSettings, UnpairedSettings):
        assert set(cls.SHARED) == {"device", "threads", "seed"}


def test_inr_table_of_the_config_file_is_used(tmp_path, single_file):
    config = app(tmp_path, "--config-file", str(single_file))
    assert (config.inr.model, config.inr.device, config.inr.seed, config.inr.epochs,
            config.inr.psf) == ("single", "cpu", 11, 7, True)
    assert config.workflow.output_space == "native"


def test_an_option_given_with_its_default_value_still_wins(tmp_path, single_file):
    config = app(tmp_path, "--config-file", str(single_file), "--model", "split",
                 "--random-seed", "0", "--device", "auto", "--output-space",
                 "MNI152NLin2009cAsym")
    assert (config.inr.model, config.inr.seed, config.inr.device) == ("split", 0, "auto")
    assert config.workflow.output_space == "MNI152NLin2009cAsym"
    assert config.inr.epochs == 7  # not given: the file's


def test_without_a_file_the_defaults_and_the_preset(tmp_path):
    config = app(tmp_path)
    threads = config.execution.omp_nthreads  # the app's per-process count, for every method
    assert config.inr == settings_for_preset("fast", threads=threads)
    paper = app(tmp_path, "--preset", "paper", "--random-seed", "4")
    assert paper.inr == settings_for_preset("paper", seed=4, threads=threads)


def test_preset_from_the_file_then_its_inr_table(tmp_path):
    path = tmp_path / "paper.toml"
    path.write_text('[workflow]\npreset = "paper"\n[inr]\nepochs = 3\n')
    config = app(tmp_path, "--config-file", str(path))
    assert config.inr.encoding == "fourier" and config.inr.epochs == 3
    fast = app(tmp_path, "--config-file", str(path), "--preset", "fast")
    assert fast.inr.encoding == "grid" and fast.inr.epochs == 3


def test_sloppy_shrinks_the_preset_but_not_what_the_file_says(tmp_path, single_file):
    assert app(tmp_path, "--sloppy").inr.epochs == 3
    assert app(tmp_path, "--sloppy", "--config-file", str(single_file)).inr.epochs == 7


def test_execution_options_and_paths(tmp_path):
    path = tmp_path / "execution.toml"
    path.write_text('[execution]\nwork_dir = "/scratch/w"\nnprocs = 1\n')
    config = app(tmp_path, "--config-file", str(path))
    assert config.execution.work_dir == "/scratch/w" and config.execution.nprocs == 1
    again = app(tmp_path, "--config-file", str(path), "-w", "work")
    assert again.execution.work_dir == str((tmp_path.cwd() / "work").absolute())


def test_saved_config_reads_back_the_same_and_gets_a_new_run(tmp_path, single_file):
    config = app(tmp_path, "--config-file", str(single_file), "--participant-label", "01")
    saved = config.save(tmp_path / "mcinr.toml")
    assert AppConfig.load(saved).inr == config.inr
    rerun = app(tmp_path, "--config-file", str(saved))
    assert rerun.inr == config.inr and rerun.execution.participant_label == ["01"]
    assert rerun.run_uuid != config.run_uuid
    # the run's identifier is the run's, not a setting: a comment in the saved file, and the
    # key that configurations saved before 2026-12-06 hold is read back without complaint
    assert saved.read_text().startswith(f"# mcinr-bids run {config.run_uuid}\n")
    assert "run_uuid" not in saved.read_text().split("\n", 1)[1]
    old = tmp_path / "old.toml"
    old.write_text(saved.read_text().replace("[execution]\n",
                                             '[execution]\nrun_uuid = "20261201-000000_x"\n'))
    assert app(tmp_path, "--config-file", str(old)).inr == config.inr


def test_mcinr_fit_precedence(single_file):
    assert fit_settings() == settings_for_preset("fast")
    from_file = fit_settings("--config-file", str(single_file))
    assert (from_file.model, from_file.seed, from_file.epochs) == ("single", 11, 7)
    # the bug: --config-file used to drop --preset
    paper = fit_settings("--config-file", str(single_file), "--preset", "paper")
    assert paper.encoding == "fourier" and paper.model == "single"
    explicit = fit_settings("--config-file", str(single_file), "--model", "split", "--seed",
                            "0", "--no-early-stopping", "--time-limit", "60")
    assert (explicit.model, explicit.seed, explicit.early_stopping,
            explicit.time_limit_seconds) == ("split", 0, False, 60.0)


def test_mcinr_evaluate_precedence(single_file):
    given = given_options(evaluate_cli.build_parser,
                          ["a.nii.gz", "--axes", "S", "-o", "o", "--config-file",
                           str(single_file), "--seed", "0"])
    settings = inr_settings(given, evaluate_cli.EVALUATE_OPTIONS)
    assert (settings.model, settings.seed, settings.epochs) == ("single", 0, 7)


@pytest.mark.parametrize("text, message", [
    ("[inr]\nno_such = 1\n", "unknown [inr] settings: no_such"),
    ("[workflow]\nmodel = 'split'\n", "unknown [workflow] settings: model"),
    ("[other]\na = 1\n", "unknown table [other]"),
    ("not toml = = 1", "not a readable TOML"),
    ("[workflow]\npreset = 'slow'\n", "unknown preset 'slow'"),
    ("[jtv]\nprofile = 'point'\n", "[jtv] profile: no longer a setting: the slice profile is"),
    ("[workflow]\nmethod = 'unires'\n", "unknown method 'unires'"),
    ("[workflow]\nregistration = 'none'\n", "unknown registration 'none'; choose from rigid"),
    ("[workflow]\nskull_strip = 'yes'\n", "unknown skull_strip 'yes'"),
    # a typo used to mean decimation silently
    ("[workflow]\nsimulate_protocol = 'thik'\n",
     "unknown simulate_protocol 'thik'; choose from decimate, thick"),
    ("[unpaired]\nsteps = 0\n", "[unpaired] steps must be >= 1"),
    ("[unpaired]\nwidth = 3\n", "unknown [unpaired] settings: width"),
    ("[workflow]\nqc_holdout = 1\n", "qc_holdout must be 0 (off) or >= 2"),
    ("[workflow]\nqc_holdout = 4\nmethod = 'unpaired'\n", "with the inr or jtv method"),
    # one device, thread count and seed for every method: [execution]'s
    ("[inr]\nseed = 3\n", "[inr] seed: one for every method, set in [execution]: random_seed"),
    ("[unpaired]\ndevice = 'cpu'\n", "[unpaired] device: one for every method, set in "
                                      "[execution]: device"),
    ("[execution]\ndevice = 'tpu'\n", "unknown device 'tpu'; choose from auto, cpu"),
    ("[execution]\nrandom_seed = -1\n", "random_seed = -1: must be 0 or above"),
    # research knobs in their own sub-table, and only there
    ("[inr]\nlearning_rate = 0.01\n",
     "[inr] learning_rate: research settings; put them under [inr.advanced]"),
    ("[inr.advanced]\nepochs = 3\n", "[inr.advanced] epochs: not advanced; put them in [inr]"),
    ("[jtv]\nadvanced = 3\n", "[jtv] advanced must be a table: [jtv.advanced]"),
    ("[unpaired.advanced]\nwidth = 3\n", "unknown [unpaired] settings: width"),
])
def test_bad_config_files_name_the_file(tmp_path, capsys, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    from mcinr_bids.cli.run import main

    code = main([str(tmp_path), str(tmp_path / "out"), "participant", "--config-file",
                 str(path)])
    assert code == 2
    error = capsys.readouterr().err
    assert message in error and str(path) in error
    assert not (tmp_path / "out").exists()


def test_jtv_table_of_the_config_file_reaches_the_reconstruction(tmp_path):
    from mcinr_bids.workflows.fit import init_superres_wf

    path = tmp_path / "settings.toml"
    path.write_text('[workflow]\nmethod = "jtv"\n[jtv]\nregularisation = 3.0\n'
                    "iterations = 40\n")
    config = app(tmp_path, "--config-file", str(path), "--sloppy")
    # the file beats --sloppy's 10 iterations; the method comes from [workflow]
    assert (config.workflow.method, config.jtv.regularisation, config.jtv.iterations) == (
        "jtv", 3.0, 40)
    assert app(tmp_path, "--sloppy").jtv.iterations == 10
    assert 'iterations = 40' in config.to_toml()
    workflow = init_superres_wf(names=["a_T1w", "a_FLAIR"], reference=0,
                                settings=config.inr.to_dict(), resolution=1.0, omp_nthreads=1,
                                use_gpu=False, method=config.workflow.method,
                                jtv_settings=dataclasses.asdict(config.jtv))
    node = workflow.get_node("reconstruct")
    assert node.inputs.settings["regularisation"] == 3.0
    assert node.inputs.settings["iterations"] == 40


def test_unpaired_table_of_the_config_file_is_used(tmp_path):
    path = tmp_path / "settings.toml"
    path.write_text("[unpaired]\nsteps = 300\n[unpaired.advanced]\nweight_contrastive = 0.5\n")
    config = app(tmp_path, "--config-file", str(path), "--sloppy")
    # the file beats --sloppy's steps; the rest of --sloppy's tiny network stays
    assert (config.unpaired.steps, config.unpaired.weight_contrastive,
            config.unpaired.channels) == (300, 0.5, 8)
    assert "[unpaired]" in config.to_toml() and "steps = 300" in config.to_toml()
    assert app(tmp_path).unpaired.steps == 1000


def test_resolve_config_layers():
    config = resolve_config({"inr": {"epochs": 9}, "workflow": {"preset": "paper"}},
                            {"inr": {"epochs": 2}})
    assert config.inr.epochs == 2 and config.inr.trunk_width == PRESETS["paper"]["trunk_width"]


def test_pure_modules_import_with_torch_blocked():
    import subprocess

    code = ("import sys; sys.modules['torch'] = None\n"  # any import of torch now fails
            "import mcinr_bids.config, mcinr_bids.methods.inr.settings, mcinr_bids.cli.parser\n"
            "import mcinr_bids.quality.metrics, mcinr_bids.quality.simulation\n"
            "import mcinr_bids.core.interpolation\n"
            "import mcinr_bids.core.geometry, mcinr_bids.core.io, mcinr_bids.core.volumes")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr


def test_thick_slices_preset_fits_each_slab_mean():
    """--preset thick-slices: fast + the box slice profile with fixed points across each slab
    in the fit, the model's own output (no consistency step, no JTV blend)."""
    settings = settings_for_preset("thick-slices", seed=2)
    assert (settings.psf, settings.psf_profile, settings.psf_sampling, settings.psf_samples,
            settings.consistency_steps, settings.blend_weight, settings.early_stopping,
            settings.selection, settings.seed) == (True, "box", "stratified", 4, 0, 0.0, False,
                                                   "last", 2)
    assert settings.encoding == INRSettings().encoding


def test_slice_model_rule():
    """The recipe's slab model on thick, not point-sampled slices; a jtv_blend given is kept;
    psf given is never changed.  has_thick_slices: a voxel side >= 2x another."""
    from mcinr_bids.core.geometry import has_thick_slices
    from mcinr_bids.methods.inr.recipe import decide_recipe

    automatic = INRSettings()
    slab, _ = decide_recipe(automatic, thick_slices=True)
    assert (slab.psf, slab.psf_samples, slab.consistency_steps, slab.jtv_blend,
            slab.early_stopping, slab.selection) == (True, 2, 2, 0.0, False, "last")
    assert decide_recipe(INRSettings(jtv_blend=0.3), True)[0].jtv_blend == 0.3
    assert decide_recipe(automatic, thick_slices=False)[0].psf is False
    assert decide_recipe(automatic, True, "point")[0].psf is False
    given = INRSettings(psf=False, jtv_blend=0.0, through_plane_weight=0.0, destripe=False)
    assert decide_recipe(given, True)[0] == given
    rotation = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    assert has_thick_slices(np.diag([1.0, 1.0, 4.0, 1.0]))
    assert has_thick_slices(np.block([[rotation @ np.diag([0.9, 3.0, 0.9]), np.zeros((3, 1))],
                                      [np.zeros((1, 3)), np.ones((1, 1))]]))
    assert not has_thick_slices(np.diag([1.0, 1.0, 1.5, 1.0]))


@pytest.mark.parametrize("argv, expected", [([], None), (["--psf"], True),
                                            (["--no-psf"], False)])
def test_psf_option_is_automatic_unless_given(argv, expected):
    assert inr_settings(given_options(build_fit_parser, ["a.nii.gz", "-o", "x", *argv])).psf \
        is expected
    app = build_config(["/data", "/out", "participant", *argv])
    assert app.inr.psf is expected


def test_slice_model_settings_from_a_config_file(tmp_path):
    """[inr] psf = false and selection = "last" in a config file reach the settings; --psf on
    the command line wins over the file (one precedence rule)."""
    path = tmp_path / "settings.toml"
    path.write_text('[inr]\npsf = false\nselection = "last"\n')
    given = app(tmp_path, "--config-file", str(path)).inr
    assert (given.psf, given.selection) == (False, "last")
    assert app(tmp_path, "--config-file", str(path), "--psf").inr.psf is True
    path.write_text('[inr]\nselection = "best"\n')
    with pytest.raises(ValueError, match="selection must be one of"):
        fit_settings("--config-file", str(path))


def test_an_option_typed_wrong_does_not_blame_the_config_file(tmp_path, capsys):
    """A value the command line makes invalid is reported without the (valid) file's path."""
    path = tmp_path / "good.toml"
    path.write_text("[inr]\nepochs = 5\n")
    from mcinr_bids.cli.run import main

    code = main([str(tmp_path), str(tmp_path / "out"), "participant", "--config-file",
                 str(path), "--qc-holdout", "1"])
    assert code == 2
    error = capsys.readouterr().err
    assert "qc_holdout must be 0 (off) or >= 2" in error and str(path) not in error
    assert not (tmp_path / "out").exists()


def test_the_seed_has_one_name_in_the_three_commands():
    """--random-seed (fMRIPrep's name) everywhere; mcinr-fit's and mcinr-evaluate's old --seed
    still works, out of --help."""
    from mcinr_bids.cli import evaluate, fit
    from mcinr_bids.cli.parser import build_parser

    assert "--random-seed" in build_parser().format_help()
    for module in (fit, evaluate):
        parser = module.build_parser()
        assert "--random-seed" in parser.format_help()
        assert "--seed" not in parser.format_help().replace("--random-seed", "")
        required = ["a.nii.gz", "b.nii.gz", "-o", "out"] + (
            ["--axes", "S", "R"] if module is evaluate else [])
        assert parser.parse_args([*required, "--random-seed", "3"]).seed == 3
        assert parser.parse_args([*required, "--seed", "4"]).seed == 4
        assert parser.parse_args(required).seed == 0


def test_every_table_has_the_one_settings_base():
    """One base parses, refuses unknown keys and checks the values of every table."""
    import dataclasses as dc

    from mcinr_bids.config import AppConfig
    from mcinr_bids.core.settings import SettingsTable

    tables = [f for f in dc.fields(AppConfig) if f.default_factory is not dc.MISSING]
    assert [t.name for t in tables] == ["execution", "workflow", "inr", "jtv", "unpaired"]
    for table in tables:
        cls = table.default_factory().__class__
        assert issubclass(cls, SettingsTable) and cls.TABLE == table.name
        with pytest.raises(ValueError, match=rf"unknown \[{table.name}\] settings: typo"):
            cls.from_dict({"typo": 1})
        assert cls.from_dict(cls().to_dict()) == cls()
    assert INRSettings.value_problems({"epochs": "many", "seed": 3}) == [
        "[inr] epochs = 'many': expected a whole number, got a text"]


def test_the_thread_count_has_one_name_in_the_commands():
    """--omp-nthreads (fMRIPrep's name) in mcinr-bids and mcinr-fit; mcinr-fit's old
    --threads still works, out of --help."""
    from mcinr_bids.cli import fit
    from mcinr_bids.cli.parser import build_parser

    assert "--omp-nthreads" in build_parser().format_help()
    parser = fit.build_parser()
    assert "--omp-nthreads" in parser.format_help()
    assert "--threads" not in parser.format_help()
    required = ["a.nii.gz", "b.nii.gz", "-o", "out"]
    assert parser.parse_args([*required, "--omp-nthreads", "3"]).threads == 3
    assert parser.parse_args([*required, "--threads", "4"]).threads == 4
    assert parser.parse_args(required).threads is None


def test_one_device_thread_count_and_seed_for_every_method(tmp_path):
    """--device, --omp-nthreads and --random-seed ([execution]) reach the INR and the unpaired
    training alike (the app used to replace [unpaired] device/threads silently and never
    seeded the training with --random-seed)."""
    config = app(tmp_path, "--device", "cpu", "--random-seed", "5", "--nprocs", "2",
                 "--omp-nthreads", "1")
    for table in (config.inr, config.unpaired):
        assert (table.device, table.seed, table.threads) == ("cpu", 5, 1)
    path = tmp_path / "execution.toml"
    path.write_text('[execution]\ndevice = "cpu"\nrandom_seed = 8\nomp_nthreads = 3\n')
    fit = fit_settings("--config-file", str(path))
    assert (fit.device, fit.seed, fit.threads) == ("cpu", 8, 3)
    assert fit_settings("--config-file", str(path), "--omp-nthreads", "2").threads == 2
    assert fit_settings().threads is None  # mcinr-fit alone: torch's own choice
    given = given_options(evaluate_cli.build_parser, ["a.nii.gz", "--axes", "S", "-o", "o",
                                                      "--omp-nthreads", "2", "--device", "cpu"])
    evaluated = inr_settings(given, evaluate_cli.EVALUATE_OPTIONS)
    assert (evaluated.threads, evaluated.device) == (2, "cpu")


def test_research_knobs_are_out_of_help_and_in_their_sub_table(tmp_path):
    """The advanced keys: in [<table>.advanced] of a settings file (read and written there),
    in no command's --help."""
    import re

    from mcinr_bids.cli import evaluate, fit
    from mcinr_bids.cli.parser import build_parser
    from mcinr_bids.methods.jtv import JTVSettings
    from mcinr_bids.methods.unpaired.settings import UnpairedSettings

    helps = " ".join(module().format_help() for module in (
        build_parser, fit.build_parser, evaluate.build_parser))
    for cls in (INRSettings, JTVSettings, UnpairedSettings):
        assert cls.ADVANCED and set(cls.ADVANCED) <= {f.name for f in dataclasses.fields(cls)}
        for key in cls.ADVANCED:
            assert not re.search(rf"(--{key.replace('_', '-')}|\b{key})\b", helps), key
    path = tmp_path / "advanced.toml"
    path.write_text("[inr]\nepochs = 6\n[inr.advanced]\nlearning_rate = 0.01\n"
                    "[jtv.advanced]\nstep_size = 0.02\n")
    config = app(tmp_path, "--config-file", str(path))
    assert (config.inr.epochs, config.inr.learning_rate, config.jtv.step_size) == (6, 0.01, 0.02)
    saved = config.to_toml()
    assert "learning_rate = 0.01" in saved.split("[inr.advanced]")[1].split("[jtv]")[0]
