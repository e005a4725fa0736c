"""The participant workflow: N4, rigid registration, brain mask, INR fit, derivatives."""

from __future__ import annotations

import os

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from ..config import AppConfig
from ..interfaces.anatomical import BiasCorrection, BrainMask, ExportTransform, RigidRegistration
from ..interfaces.bids import DerivativesDataSink, SidecarMetadata
from ..interfaces.evaluation import EvaluateSuperresolution
from ..interfaces.inr import FitINR
from ..interfaces.reports import ParticipantReport
from ..utils.bids import (
    METRICS_DICTIONARY,
    SubjectInputs,
    bids_stem,
    bids_suffix,
    bids_uri,
    choose_reference,
    methods_text,
    resolution_label,
)
from ..utils.templates import OutputSpace

#: source entities that subject-level outputs (mask, model, metrics) do not carry
SUBJECT_LEVEL_DISMISS = ("acquisition", "ceagent", "reconstruction", "run", "direction", "echo")


def init_mcinr_wf(config: AppConfig, groups: list[SubjectInputs], space: OutputSpace,
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
            config, group, space, originals=originals, source_dir=source_dir,
            name=group.label.replace("-", "_") + "_wf")
        single_subject_wf.config["execution"]["crashdump_dir"] = os.path.join(
            config.execution.output_dir, f"sub-{group.subject}", "log",
            config.execution.run_uuid)
        workflow.add_nodes([single_subject_wf])
    return workflow


def init_single_subject_wf(config: AppConfig, inputs: SubjectInputs, space: OutputSpace,
                           originals: dict[str, str] | None = None,
                           source_dir: str | None = None,
                           name: str = "single_subject_wf") -> Workflow:
    """Super-resolve every selected anatomical image of one subject/session.

    Workflow Graph
        .. workflow::
            :graph2use: orig
            :simple_form: yes

            bias_correction (each image) -> register_to_reference (each image)
            select_reference -> brain_mask -> register_to_template
            -> fit -> sidecars -> ds_superres, ds_mask, ds_xfm, ds_model, ds_metrics
            -> participant_report

    Parameters
    ----------
    config : AppConfig
    inputs : SubjectInputs
        The subject's LR images (any grids and orientations).
    space : OutputSpace
        Template (or native) space of the outputs.
    originals : dict or None
        Evaluation mode: each (simulated) input's isotropic original; adds ``evaluate`` (and
        ``fit_single`` with ``--evaluate-ablation``) between ``fit`` and ``ds_metrics``.
    source_dir : str or None
        The BIDS dataset the inputs belong to, for ``Sources`` URIs.
    """
    images = list(inputs.images)
    source_dir = source_dir or config.execution.bids_dir
    reference = choose_reference(images)
    output_dir = config.execution.output_dir
    seed = config.inr.seed
    omp_nthreads = config.execution.omp_nthreads or 1
    space_label = space.name if space.is_template else bids_suffix(images[reference])
    resolution = config.workflow.output_resolution
    if space.is_template:
        resolution_text = (f"{resolution:g} mm isotropic grid over the {space.name} template's "
                           f"field of view ({space.source}: {os.path.basename(space.t1w)})")
        spatial_reference = "" if space.templateflow else space.t1w
    else:
        resolution_text = (f"{resolution:g} mm isotropic grid over the union field of view of "
                           f"the inputs, in the world space of {bids_stem(images[reference])}")
        spatial_reference = bids_uri(images[reference], source_dir)
    settings = config.inr.to_dict()
    use_gpu = config.inr.device == "cuda" or (config.inr.device == "auto" and _cuda_available())

    workflow = Workflow(name=name)
    workflow.__desc__ = methods_text(
        n_images=len(images), reference=bids_stem(images[reference]), space=space_label,
        resolution=resolution, settings=config.inr,
        bias_correction=config.workflow.bias_correction, evaluation=bool(originals))

    if config.workflow.bias_correction:
        bias_correction = pe.MapNode(BiasCorrection(), iterfield=["in_file"],
                                     name="bias_correction")
        bias_correction.inputs.in_file = images
    else:  # evaluation mode: the inputs as they are
        bias_correction = pe.Node(niu.IdentityInterface(fields=["out_file"]),
                                  name="bias_correction")
        bias_correction.inputs.out_file = images
    select_reference = pe.Node(niu.Select(index=[reference]), name="select_reference")
    brain_mask = pe.Node(BrainMask(skull_strip=config.workflow.skull_strip), name="brain_mask")
    quick = config.execution.sloppy
    register_to_reference = pe.MapNode(RigidRegistration(seed=seed, quick=quick),
                                       iterfield=["moving_file"], name="register_to_reference")
    register_to_template = pe.Node(RigidRegistration(seed=seed, same_session=False, quick=quick),
                                   name="register_to_template")
    if space.is_template:
        register_to_template.inputs.fixed_file = space.t1w
        register_to_template.inputs.fixed_mask = space.mask
    def fit_node(name: str, model_settings: dict) -> pe.Node:
        node = pe.Node(FitINR(names=[bids_stem(p) for p in images], reference_index=reference,
                              settings=model_settings, resolution=resolution,
                              omp_nthreads=omp_nthreads, use_gpu=use_gpu),
                       name=name, n_procs=omp_nthreads, mem_gb=4.0)
        if space.is_template:
            node.inputs.template_file = space.t1w
        return node

    def connect_fit(node: pe.Node) -> None:
        workflow.connect([
            (bias_correction, node, [("out_file", "in_files")]),
            (register_to_reference, node, [("out_matrix", "to_reference")]),
            (register_to_template, node, [("out_matrix", "reference_to_output")]),
            (brain_mask, node, [("out_mask", "brain_mask")]),
        ])

    fit = fit_node("fit", settings)
    export_transform = pe.MapNode(ExportTransform(), iterfield=["to_reference"],
                                  name="export_transform")
    sidecars = pe.Node(SidecarMetadata(sources=images, bids_dir=str(source_dir),
                                       space=space_label, resolution=resolution_text,
                                       spatial_reference=spatial_reference, settings=settings,
                                       bias_corrected=config.workflow.bias_correction),
                       name="sidecars")

    sink_entities = {"base_directory": output_dir, "space": space_label,
                     "resolution": resolution_label(resolution)}
    ds_superres = pe.MapNode(
        DerivativesDataSink(desc="superres", compress=True, **sink_entities),
        iterfield=["in_file", "source_file", "meta_dict"], name="ds_superres",
        run_without_submitting=True)
    ds_superres.inputs.source_file = images
    ds_mask = pe.Node(
        DerivativesDataSink(desc="brain", suffix="mask", compress=True,
                            dismiss_entities=SUBJECT_LEVEL_DISMISS, **sink_entities),
        name="ds_mask", run_without_submitting=True)
    ds_mask.inputs.source_file = images[reference]
    ds_xfm = pe.MapNode(
        DerivativesDataSink(base_directory=output_dir, to=space_label, mode="image",
                            suffix="xfm"),
        iterfield=["in_file", "source_file", "from"], name="ds_xfm",
        run_without_submitting=True)
    ds_xfm.inputs.source_file = images
    setattr(ds_xfm.inputs, "from", [bids_suffix(p) for p in images])
    ds_model = pe.Node(
        DerivativesDataSink(base_directory=output_dir, desc="superres", suffix="model",
                            dismiss_entities=SUBJECT_LEVEL_DISMISS),
        name="ds_model", run_without_submitting=True)
    ds_model.inputs.source_file = images[reference]
    ds_metrics = pe.Node(
        DerivativesDataSink(base_directory=output_dir, desc="superres", suffix="metrics",
                            dismiss_entities=SUBJECT_LEVEL_DISMISS, meta_dict=METRICS_DICTIONARY),
        name="ds_metrics", run_without_submitting=True)
    ds_metrics.inputs.source_file = images[reference]
    ds_history = pe.Node(
        DerivativesDataSink(base_directory=output_dir, desc="superres", suffix="history",
                            dismiss_entities=SUBJECT_LEVEL_DISMISS),
        name="ds_history", run_without_submitting=True)
    ds_history.inputs.source_file = images[reference]

    participant_report = pe.Node(
        ParticipantReport(label=inputs.label, output_dir=output_dir, inputs=images,
                          reference_index=reference, methods=workflow.__desc__),
        name="participant_report")
    if space.is_template:
        participant_report.inputs.template_file = space.t1w

    connect_fit(fit)
    workflow.connect([
        (ds_superres, participant_report, [("out_file", "outputs")]),
        (ds_xfm, participant_report, [("out_file", "transforms")]),
        (ds_mask, participant_report, [("out_file", "mask")]),
        (ds_history, participant_report, [("out_file", "history")]),
        (ds_metrics, participant_report, [("out_file", "metrics")]),
        (fit, participant_report, [("out_residuals", "residuals"), ("fit_info", "fit_info")]),
        (bias_correction, select_reference, [("out_file", "inlist")]),
        (select_reference, brain_mask, [("out", "in_file")]),
        (select_reference, register_to_reference, [("out", "fixed_file")]),
        (bias_correction, register_to_reference, [("out_file", "moving_file")]),
        (select_reference, register_to_template, [("out", "moving_file")]),
        (brain_mask, register_to_template, [("out_mask", "moving_mask")]),
        (register_to_reference, export_transform, [("out_matrix", "to_reference")]),
        (register_to_template, export_transform, [("out_matrix", "reference_to_output")]),
        (brain_mask, sidecars, [("skull_stripped", "skull_stripped"),
                                ("method", "mask_method")]),
        (fit, sidecars, [("fit_info", "fit_info")]),
        (fit, ds_superres, [("out_files", "in_file")]),
        (sidecars, ds_superres, [("image_metadata", "meta_dict")]),
        (fit, ds_mask, [("out_mask", "in_file")]),
        (sidecars, ds_mask, [("mask_metadata", "meta_dict")]),
        (export_transform, ds_xfm, [("out_file", "in_file")]),
        (fit, ds_model, [("out_checkpoint", "in_file")]),
        (sidecars, ds_model, [("model_metadata", "meta_dict")]),

        (fit, ds_history, [("out_history", "in_file")]),
    ])
    if originals:
        evaluate = pe.Node(EvaluateSuperresolution(
            truth_files=[originals[p] for p in images], low_resolution_files=images,
            names=[bids_stem(p) for p in images], model=config.inr.model),
            name="evaluate")
        workflow.connect([
            (fit, evaluate, [("out_checkpoint", "checkpoint"), ("out_metrics", "metrics")]),
            (evaluate, ds_metrics, [("out_metrics", "in_file")]),
        ])
        if config.workflow.evaluate_ablation and config.inr.model != "single":
            fit_single = fit_node("fit_single", {**settings, "model": "single"})
            connect_fit(fit_single)
            workflow.connect(fit_single, "out_checkpoint", evaluate, "ablation_checkpoint")
    else:
        workflow.connect(fit, "out_metrics", ds_metrics, "in_file")
    if not space.is_template:
        # native space: the reference registered onto itself is the identity
        workflow.connect(select_reference, "out", register_to_template, "fixed_file")
    return workflow


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()
