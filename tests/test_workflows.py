"""The workflow factories build, as their graph docstrings show, and the methods text says
what was run."""

from __future__ import annotations

import re
import textwrap

import numpy as np
import pytest

from mcinr_bids.methods.inr.recipe import decide_recipe
from mcinr_bids.methods.inr.settings import settings_for_preset
from mcinr_bids.pipeline.descriptions import methods_text, sidecars
from mcinr_bids.workflows import anatomical, fit, outputs


@pytest.fixture
def user_folder(tmp_path, monkeypatch):
    """The current folder holds the (empty) inputs the docstrings and tests name."""
    monkeypatch.chdir(tmp_path)
    for name in ("sub-01_T1w.nii.gz", "sub-01_FLAIR.nii.gz", "a.nii.gz", "b.nii.gz"):
        (tmp_path / name).touch()
    return tmp_path


def docstring_code(function) -> str:
    """The code under ``.. workflow::`` in a factory's docstring."""
    doc = textwrap.dedent(function.__doc__.split("\n", 1)[1])
    block = doc.split(".. workflow::", 1)[1].split("\nParameters", 1)[0]
    lines = [line for line in block.splitlines() if not line.strip().startswith(":")]
    return textwrap.dedent("\n".join(lines))


@pytest.mark.parametrize("factory, nodes", [
    (anatomical.init_anat_preproc_wf, {"bias_correction", "registration_wf.register_to_reference",
                                       "registration_wf.register_to_template",
                                       "registration_wf.registration_qc", "brain_mask",
                                       "outputnode"}),
    (fit.init_superres_wf, {"inputnode", "fit", "outputnode"}),
    (outputs.init_ds_superres_wf, {"inputnode", "sidecars", "ds_superres", "ds_mask", "ds_xfm",
                                   "ds_model", "ds_metrics", "ds_history", "outputnode"}),
])
def test_graph_docstrings_build(factory, nodes, user_folder):
    namespace: dict = {}
    exec(docstring_code(factory), namespace)  # noqa: S102 - our own docstring
    workflow = namespace["wf"]
    assert nodes <= set(workflow.list_node_names())
    workflow._create_flat_graph()  # every connection names existing fields


def test_registrations_can_run_on_other_images_of_the_same_frames(user_folder):
    """The evaluation mode registers the isotropic originals, not their thick simulations: the
    registration nodes get the originals and no edge from the (bias-corrected) inputs."""
    from mcinr_bids.pipeline.templates import OutputSpace

    kwargs = dict(images=["sub-01_T1w.nii.gz", "sub-01_FLAIR.nii.gz"], reference=0,
                  bias_correction=False, skull_strip="auto", space=OutputSpace(name="native"),
                  seed=0, quick=False)
    workflow = anatomical.init_anat_preproc_wf(**kwargs, registration_images=["a.nii.gz",
                                                                              "b.nii.gz"])
    node = workflow.get_node("registration_wf.register_to_reference")
    assert node.inputs.moving_file == ["a.nii.gz", "b.nii.gz"]
    assert node.inputs.fixed_file == "a.nii.gz"
    edges = {(u.name, v.name) for u, v in workflow._create_flat_graph().edges()}
    assert not {(u, v) for u, v in edges if v == "register_to_reference"}
    assert ("select_reference", "brain_mask") in edges  # the mask stays the input's
    default = anatomical.init_anat_preproc_wf(**kwargs)
    connections = {(u.name, v.name): set(data["connect"])
                   for u, v, data in default._create_flat_graph().edges(data=True)}
    # the (bias-corrected) inputs and the reference reach the registration's inputnode
    assert ("out_file", "images") in connections[("bias_correction", "inputnode")]
    assert ("out", "reference_image") in connections[("select_reference", "inputnode")]
    assert {("reference_image", "fixed_file"), ("images", "moving_file")} == connections[
        ("inputnode", "register_to_reference")]


def test_header_registration_trusts_the_scanner_coordinates(tmp_path):
    """``--registration header`` reaches the image-to-reference node (the template's still
    registers); the node then writes the identity without running ANTs, even for an image on
    another grid, and ``same_grid`` tells images resampled onto one grid from the rest."""
    import nibabel as nib

    from mcinr_bids.cli.run import build_config
    from mcinr_bids.core.geometry import same_grid
    from mcinr_bids.interfaces.anatomical import RigidRegistration
    from mcinr_bids.pipeline.templates import OutputSpace

    config = build_config([str(tmp_path), str(tmp_path / "o"), "participant",
                           "--registration", "header"])
    assert config.workflow.registration == "header"
    workflow = anatomical.init_anat_preproc_wf(
        images=["sub-01_T1w.nii.gz", "sub-01_FLAIR.nii.gz"], reference=0,
        bias_correction=False, skull_strip="auto", space=OutputSpace(name="native"), seed=0,
        quick=False, registration="header")
    assert workflow.get_node("registration_wf.register_to_reference").interface.inputs.header
    assert not workflow.get_node("registration_wf.register_to_template").interface.inputs.header
    affine = np.diag([1.0, 1.0, 4.0, 1.0])
    data = np.random.default_rng(0).random((20, 20, 6)).astype(np.float32)
    fixed, moving = tmp_path / "fixed.nii.gz", tmp_path / "moving.nii.gz"
    nib.save(nib.Nifti1Image(data, affine), str(fixed))
    nib.save(nib.Nifti1Image(data[:, :, :5], np.diag([1.0, 0.9, 4.0, 1.0])), str(moving))
    result = RigidRegistration(fixed_file=str(fixed), moving_file=str(moving), header=True,
                               ).run(cwd=str(tmp_path))
    assert np.array_equal(np.loadtxt(result.outputs.out_matrix), np.eye(4))
    shifted = affine.copy()
    shifted[0, 3] = 0.01
    assert same_grid(((20, 20, 6), affine), ((20, 20, 6), affine.copy()))
    assert not same_grid(((20, 20, 6), affine), ((20, 20, 5), affine))
    assert not same_grid(((20, 20, 6), affine), ((20, 20, 6), shifted))
    assert same_grid(((20, 20, 6), affine), ((20, 20, 6), shifted), tolerance_mm=0.02)


def test_evaluation_adds_the_scoring_and_the_ablation(user_folder):
    settings = settings_for_preset("fast").to_dict()
    workflow = fit.init_superres_wf(names=["a", "b"], reference=0, settings=settings,
                                    resolution=1.0, omp_nthreads=1, use_gpu=False,
                                    truth_files=["a.nii.gz", "b.nii.gz"], ablation=True)
    assert {"evaluate", "fit_single"} <= set(workflow.list_node_names())


@pytest.mark.parametrize("method, gpu", [("inr", True), ("jtv", False)])
def test_qc_holdout_adds_its_node_between_the_fit_and_the_outputs(user_folder, method, gpu):
    """``--qc-holdout 4``: a ``qc_holdout`` node with K, the method and the [jtv] table, fed the
    fit's metrics and feeding the outputs; a GPU job where the INR fit is one."""
    settings = settings_for_preset("fast").to_dict()
    workflow = fit.init_superres_wf(names=["a", "b"], reference=0, settings=settings,
                                    resolution=1.0, omp_nthreads=2, use_gpu=True,
                                    method=method, jtv_settings={"iterations": 7},
                                    qc_holdout=4)
    node = workflow.get_node("qc_holdout")
    assert node.inputs.every == 4 and node.inputs.method == method
    assert node.inputs.jtv_settings == {"iterations": 7}
    assert node.inputs.use_gpu is gpu and node.n_procs == (1 if gpu else 2)
    edges = {(u.name, v.name) for u, v in workflow._graph.edges()}
    fitted = "fit" if method == "inr" else "reconstruct"
    assert {(fitted, "qc_holdout"), ("qc_holdout", "outputnode")} <= edges
    assert (fitted, "outputnode") in edges  # images etc. still come from the fit
    without = fit.init_superres_wf(names=["a", "b"], reference=0, settings=settings,
                                   resolution=1.0, omp_nthreads=1, use_gpu=False)
    assert "qc_holdout" not in without.list_node_names()


def test_methods_text_says_what_was_run():
    split = methods_text(n_images=2, reference="sub-01_T1w", space="MNI", resolution=1.0,
                         settings=settings_for_preset("fast"), bias_correction=True,
                         evaluation=False)
    assert "N4" in split and "one head per contrast" in split and "Evaluation" not in split
    assert "voxel's centre" in split
    single = methods_text(n_images=2, reference="sub-01_T1w", space="MNI", resolution=1.0,
                          settings=settings_for_preset("fast", model="single", psf=True),
                          bias_correction=False, evaluation=True)
    assert "no N4" in single and "independent" in single and "head" not in single
    assert "across its slice thickness (a box profile, 2 evenly spaced points)" in single
    assert "Evaluation mode" in single
    assert "rigidly registered (mutual information) to sub-01_T1w" in split
    header = methods_text(n_images=2, reference="sub-01_T1w", space="MNI", resolution=1.0,
                          settings=settings_for_preset("fast"), bias_correction=False,
                          evaluation=False, registration="header")
    assert ("aligned by their scanner coordinates (already co-registered; no registration) "
            "with sub-01_T1w (no N4" in header) and "mutual information" not in header
    assert re.search(r"\bN4 \(antspyx\)", single) is None
    assert "ground-truth-free" not in split
    checked = methods_text(n_images=2, reference="sub-01_T1w", space="MNI", resolution=1.0,
                           settings=settings_for_preset("fast"), bias_correction=True,
                           evaluation=False, qc_holdout=3)
    assert "every 3rd acquired slice of each image was left out" in checked
    assert "sidecars' slice thickness" not in checked
    gapped = methods_text(n_images=2, reference="sub-01_T1w", space="MNI", resolution=1.0,
                          settings=settings_for_preset("fast"), bias_correction=True,
                          evaluation=False, slabs=[("sub-01_FLAIR", 5.0, 6.5)])
    assert ("followed the sidecars' slice thickness: sub-01_FLAIR 5 mm slices 6.5 mm apart."
            in gapped)
    assert "through-plane network" not in split and "softened" not in split
    decimated = methods_text(n_images=2, reference="sub-01_T1w", space="MNI", resolution=1.0,
                             settings=decide_recipe(settings_for_preset("fast"), True,
                                                    "point")[0],
                             bias_correction=True, evaluation=True)
    assert ("the acquired slices of each image with thick slices were softened by one "
            "diffusion step along the slice axis" in decimated)
    networked = methods_text(n_images=2, reference="sub-01_T1w", space="MNI", resolution=1.0,
                             settings=settings_for_preset("fast", through_plane_weight=0.25,
                                                          through_plane_steps=800),
                             bias_correction=True, evaluation=False)
    assert ("output (weight 0.75) was averaged with a self-supervised through-plane "
            "network's reconstruction (weight 0.25; a residual CNN trained for 800 steps"
            in networked)


def test_sidecar_description_follows_the_model(tmp_path):
    import nibabel as nib
    import numpy as np

    path = tmp_path / "sub-01_T1w.nii.gz"
    nib.Nifti1Image(np.ones((2, 2, 2), np.float32), np.diag([1, 1, 4, 1])).to_filename(path)
    fit_info = {"device": "cpu"}
    for model, bias, words in (("vanilla", True, "one output channel per contrast"),
                               ("single", False, "no information shared")):
        settings = settings_for_preset("fast", model=model).to_dict()
        meta = sidecars([str(path)], str(tmp_path), True, "deepbet", "MNI", "1 mm", None,
                        settings, fit_info, bias_corrected=bias)
        description = meta["image_metadata"][0]["Description"]
        assert words in description
        assert ("after N4" in description) == bias
        assert meta["image_metadata"][0]["InputSliceAxis"] == "S"
        assert "through-plane network" not in description
    settings = settings_for_preset("fast", through_plane_weight=0.5).to_dict()
    meta = sidecars([str(path)], str(tmp_path), True, "deepbet", "MNI", "1 mm", None, settings,
                    fit_info)
    assert "through-plane network's reconstruction (weight 0.5" in (
        meta["image_metadata"][0]["Description"])


def test_crash_files_go_to_the_subjects_log_folder(user_folder):
    """Nipype ignores a sub-workflow's crashdump_dir; every node carries it itself."""
    from mcinr_bids.workflows.base import set_crash_folder

    tmp_path = user_folder
    settings = settings_for_preset("fast").to_dict()
    workflow = fit.init_superres_wf(names=["a", "b"], reference=0, settings=settings,
                                    resolution=1.0, omp_nthreads=1, use_gpu=False)
    set_crash_folder(workflow, str(tmp_path / "out" / "log"))
    nodes = workflow._get_all_nodes()
    assert nodes and all(n.config["execution"]["crashdump_dir"] == str(tmp_path / "out" / "log")
                         for n in nodes)
