"""The participant workflow: one sub-workflow chain per subject/session (N4, registrations,
brain mask -> INR fit -> derivatives -> report)."""

from __future__ import annotations

import dataclasses
import os

import nibabel as nib
from nipype.pipeline import engine as pe
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from mcinr_bids.config import AppConfig
from mcinr_bids.core.slices import acquisitions_of
from mcinr_bids.interfaces.reports import ParticipantReport
from mcinr_bids.methods.inr.recipe import decide_recipe
from mcinr_bids.methods.inr.settings import INRSettings
from mcinr_bids.pipeline.bids import (
    SubjectInputs,
    bids_stem,
    bids_suffix,
    bids_uri,
    choose_reference,
    find_lesion_mask,
    sidecar_slabs,
)
from mcinr_bids.pipeline.descriptions import methods_text
from mcinr_bids.pipeline.reconstruct import estimate_memory_gb
from mcinr_bids.pipeline.templates import OutputSpace
from mcinr_bids.pipeline.unpaired_models import MODEL_DESC, model_files_for, models_folder
from mcinr_bids.workflows.anatomical import init_anat_preproc_wf
from mcinr_bids.workflows.fit import init_superres_wf
from mcinr_bids.workflows.outputs import init_ds_superres_wf


def init_mcinr_wf(*, config: AppConfig, groups: list[SubjectInputs], space: OutputSpace,
                  originals: dict[str, str] | None = None, source_dir: str | None = None,
                  name: str = "mcinr_wf") -> Workflow:
    """Build the workflow of every selected subject/session.

    Workflow Graph
        One ``init_single_subject_wf`` per subject/session, all independent.

    Parameters
    ----------
    config : AppConfig
    groups : list of SubjectInputs
        Subjects/sessions with at least the images the model needs.
    space : OutputSpace
    originals : dict or None
        Evaluation mode: simulated input -> its isotropic original.
    source_dir : str or None
        The BIDS dataset the inputs belong to (default: the input dataset).
    """
    workflow = Workflow(name=name)
    workflow.base_dir = config.execution.work_dir
    for group in groups:
        single_subject_wf = init_single_subject_wf(
            config=config, inputs=group, space=space, originals=originals,
            source_dir=source_dir,
            name=group.label.replace("-", "_") + "_wf")
        set_crash_folder(single_subject_wf, os.path.join(
            config.execution.output_dir, f"sub-{group.subject}", "log",
            config.run_uuid))
        workflow.add_nodes([single_subject_wf])
    return workflow


def init_single_subject_wf(*, config: AppConfig, inputs: SubjectInputs, space: OutputSpace,
                           originals: dict[str, str] | None = None,
                           source_dir: str | None = None,
                           name: str = "single_subject_wf") -> Workflow:
    """Super-resolve every selected anatomical image of one subject/session:
    ``anat_preproc_wf`` (N4, registrations, brain mask) -> ``superres_wf`` (INR fit and
    prediction; evaluation) -> ``ds_superres_wf`` (sidecars, sinks) -> ``participant_report``.

    Parameters
    ----------
    config : AppConfig
    inputs : SubjectInputs
        The subject's LR images (any grids and orientations).
    space : OutputSpace
        Template (or native) space of the outputs.
    originals : dict or None
        Evaluation mode: each (simulated) input's isotropic original; the fit's metrics then
        hold the scores against them.
    source_dir : str or None
        The BIDS dataset the inputs belong to, for ``Sources`` URIs.
    """
    images = list(inputs.images)
    source_dir = source_dir or config.execution.bids_dir
    reference = choose_reference(images)
    output_dir = config.execution.output_dir
    omp_nthreads = config.execution.omp_nthreads or 1
    space_label = space.name if space.is_template else bids_suffix(images[reference])
    resolution = config.workflow.output_resolution
    resolution_text, spatial_reference = grid_description(space, resolution, images[reference],
                                                          source_dir)
    method = config.workflow.method
    inr_settings, fit_settings, jtv_settings, acquisitions = method_settings(
        config, inputs, images)
    settings = inr_settings.to_dict()
    device = config.execution.device
    use_gpu = device == "cuda" or (device == "auto" and _cuda_available())
    unpaired_settings, evaluation_models = unpaired_inputs(config, images, bool(originals))

    workflow = Workflow(name=name)
    workflow.__desc__ = methods_text(
        n_images=len(images), reference=bids_stem(images[reference]), space=space_label,
        resolution=resolution, settings=inr_settings, evaluation=bool(originals),
        jtv_settings=jtv_settings if method == "jtv" else None, unpaired=method == "unpaired",
        slabs=[] if originals else sidecar_slabs(images, inputs.slice_thickness),
        acquisitions=acquisitions if method == "inr" else "",
        **{key: getattr(config.workflow, key) for key in (
            "bias_correction", "qc_holdout", "registration")})
    anat_preproc_wf = init_anat_preproc_wf(
        images=images, reference=reference, bias_correction=config.workflow.bias_correction,
        skull_strip=config.workflow.skull_strip, registration=config.workflow.registration,
        space=space, seed=config.execution.random_seed,
        quick=config.execution.sloppy, omp_nthreads=omp_nthreads, use_gpu=use_gpu,
        registration_images=[originals[p] for p in images] if originals else None,
        names=[bids_stem(p) for p in images], label=inputs.label)
    superres_wf = init_superres_wf(
        names=[bids_stem(p) for p in images], reference=reference, settings=fit_settings,
        resolution=resolution, omp_nthreads=omp_nthreads, use_gpu=use_gpu, label=inputs.label,
        template_file=space.t1w if space.is_template else None,
        method=method, jtv_settings=jtv_settings, unpaired_settings=unpaired_settings,
        qc_holdout=config.workflow.qc_holdout, mem_gb=estimate_memory_gb(
            images, space.t1w if space.is_template else None, resolution),
        **evaluation_inputs(config, inputs, images, originals, evaluation_models))
    ds_superres_wf = init_ds_superres_wf(
        output_dir=output_dir, sources=images, reference=reference, space=space_label,
        resolution=resolution, resolution_text=resolution_text,
        spatial_reference=spatial_reference, source_dir=source_dir,
        settings={"jtv": jtv_settings, "unpaired": unpaired_settings}.get(method, settings),
        bias_corrected=config.workflow.bias_correction, method=method)
    participant_report = pe.Node(
        ParticipantReport(label=inputs.label, output_dir=output_dir, inputs=images,
                          reference_index=reference, methods=workflow.__desc__,
                          **({"template_file": space.t1w} if space.is_template else {})),
        name="participant_report")
    connect_subject(workflow, anat_preproc_wf, superres_wf, ds_superres_wf, participant_report)
    return workflow


def connect_subject(workflow: Workflow, anat_preproc_wf: Workflow, superres_wf: Workflow,
                    ds_superres_wf: Workflow, participant_report: pe.Node) -> None:
    """The connections of one subject's workflow (:func:`init_single_subject_wf`)."""
    def fields(*names):
        return [(f"outputnode.{field}", f"inputnode.{field}") for field in names]

    workflow.connect([
        (anat_preproc_wf, superres_wf, fields(
            "images", "to_reference", "reference_to_output", "brain_mask")),
        (anat_preproc_wf, ds_superres_wf, fields(
            "to_reference", "reference_to_output", "skull_stripped", "mask_method",
            "registration_qc")),
        (superres_wf, ds_superres_wf, fields(
            "images", "mask", "checkpoint", "history", "metrics", "fit_info")),
        (ds_superres_wf, participant_report, [
            ("outputnode.images", "outputs"), ("outputnode.transforms", "transforms"),
            ("outputnode.mask", "mask"), ("outputnode.history", "history"),
            ("outputnode.metrics", "metrics")]),
        (superres_wf, participant_report, [("outputnode.residuals", "residuals"),
                                           ("outputnode.fit_info", "fit_info")]),
    ])


def method_settings(config: AppConfig, inputs: SubjectInputs, images: list[str]
                    ) -> tuple[INRSettings, dict, dict, str]:
    """The INR settings of one subject with its recipe decided from its inputs' headers and
    sidecars' slice thickness (for the methods text and the sidecars), the same undecided (the
    fit decides them again from the same acquisitions, and logs and records why), its ``[jtv]``
    table and the acquisitions in words."""
    settings = config.inr.to_dict()
    thick, profile = acquisitions_of([nib.load(path).affine for path in images],
                                     [inputs.slice_thickness.get(path) for path in images])
    inr_settings, recipe = decide_recipe(INRSettings.from_dict(settings), thick, profile)
    return inr_settings, settings, dataclasses.asdict(config.jtv), recipe.acquisition


def evaluation_inputs(config: AppConfig, inputs: SubjectInputs, images: list[str],
                      originals: dict[str, str] | None, evaluation_models: dict) -> dict:
    """The arguments of :func:`~mcinr_bids.workflows.fit.init_superres_wf` that differ in the
    evaluation mode: the truths, the ablation, the unpaired rows, the lesion mask, and each
    image's slice thickness (the simulations' own in the evaluation mode)."""
    thickness = [inputs.slice_thickness.get(path, 0.0) for path in images]
    if not originals:
        return {"slice_thickness": thickness}
    lesion_masks = config.workflow.lesion_masks
    return {"slice_thickness": thickness, "truth_files": [originals[p] for p in images],
            "ablation": config.workflow.evaluate_ablation,
            "evaluation_models": evaluation_models,
            "lesion_file": find_lesion_mask(lesion_masks, inputs.subject, inputs.session)
            if lesion_masks else None}


def unpaired_inputs(config, images: list[str], evaluation: bool) -> tuple[dict, dict]:
    """The unpaired method's settings (one model file per image, the device) when it is the
    method, and in the evaluation mode the model files of each unpaired variant found for
    every image (their rows in the scores)."""
    folder = models_folder(config)
    settings = {}
    if config.workflow.method == "unpaired":
        settings = {"model_files": model_files_for(images, folder),
                    "device": config.execution.device}
    found = {}
    if evaluation:
        for variant in MODEL_DESC:
            try:
                found[variant] = model_files_for(images, folder, variant)
            except ValueError:
                continue
    return settings, found


def set_crash_folder(workflow: Workflow, folder: str) -> None:
    """Crash files of every node of ``workflow`` (nested ones included) go to ``folder``.

    Nipype merges only the top workflow's configuration into the nodes it runs; a
    sub-workflow's ``crashdump_dir`` was ignored and crash files landed in the current folder.
    """
    for node in workflow._get_all_nodes():  # noqa: SLF001 - nipype has no public walk
        node.config = {**(node.config or {}),
                       "execution": {**((node.config or {}).get("execution", {})),
                                     "crashdump_dir": folder}}


def grid_description(space: OutputSpace, resolution: float, reference_file: str,
                     source_dir: str) -> tuple[str, str]:
    """The output grid in words, and its ``SpatialReference`` (empty for TemplateFlow's)."""
    if space.is_template:
        return (f"{resolution:g} mm isotropic grid over the {space.name} template's field of view "
                f"({space.source}: {os.path.basename(space.t1w)})",
                "" if space.templateflow else space.t1w)
    return (f"{resolution:g} mm isotropic grid over the union field of view of the inputs, in the "
            f"world space of {bids_stem(reference_file)}", bids_uri(reference_file, source_dir))


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
