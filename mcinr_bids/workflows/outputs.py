"""Writing one subject's derivatives: sidecars and the ``ds_*`` sinks."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from mcinr_bids.config import OUTPUT_DESC
from mcinr_bids.interfaces.anatomical import ExportTransform
from mcinr_bids.interfaces.bids import DerivativesDataSink, SidecarMetadata
from mcinr_bids.interfaces.qc import AppendRows
from mcinr_bids.pipeline.bids import bids_suffix, resolution_label
from mcinr_bids.pipeline.descriptions import METRICS_DICTIONARY

#: source entities that subject-level outputs (mask, model, metrics) do not carry
SUBJECT_LEVEL_DISMISS = ("acquisition", "ceagent", "reconstruction", "run", "direction", "echo")
INPUT_FIELDS = ["images", "mask", "checkpoint", "history", "metrics", "to_reference",
                "reference_to_output", "skull_stripped", "mask_method", "fit_info",
                "registration_qc"]


def _sinks(output_dir: str, sources: list[str], reference: int, space: str,
           resolution: float, desc: str) -> tuple[pe.Node, ...]:
    """``ds_superres, ds_mask, ds_xfm, ds_model, ds_metrics, ds_history``."""
    entities = {"base_directory": output_dir, "space": space,
                "resolution": resolution_label(resolution)}
    ds_superres = pe.MapNode(
        DerivativesDataSink(desc=desc, compress=True, **entities),
        iterfield=["in_file", "source_file", "meta_dict"], name="ds_superres",
        run_without_submitting=True)
    ds_superres.inputs.source_file = sources
    ds_mask = pe.Node(
        DerivativesDataSink(desc="brain", suffix="mask", compress=True,
                            dismiss_entities=SUBJECT_LEVEL_DISMISS, **entities),
        name="ds_mask", run_without_submitting=True)
    ds_xfm = pe.MapNode(
        DerivativesDataSink(base_directory=output_dir, to=space, mode="image", suffix="xfm"),
        iterfield=["in_file", "source_file", "from"], name="ds_xfm",
        run_without_submitting=True)
    ds_xfm.inputs.source_file = sources
    setattr(ds_xfm.inputs, "from", [bids_suffix(p) for p in sources])
    subject_level = {"base_directory": output_dir, "desc": desc,
                     "dismiss_entities": SUBJECT_LEVEL_DISMISS}
    ds_model = pe.Node(DerivativesDataSink(suffix="model", **subject_level), name="ds_model",
                       run_without_submitting=True)
    ds_metrics = pe.Node(DerivativesDataSink(suffix="metrics", meta_dict=METRICS_DICTIONARY,
                                             **subject_level),
                         name="ds_metrics", run_without_submitting=True)
    ds_history = pe.Node(DerivativesDataSink(suffix="history", **subject_level),
                         name="ds_history", run_without_submitting=True)
    for node in (ds_mask, ds_model, ds_metrics, ds_history):
        node.inputs.source_file = sources[reference]
    return ds_superres, ds_mask, ds_xfm, ds_model, ds_metrics, ds_history


def init_ds_superres_wf(*, output_dir: str, sources: list[str], reference: int, space: str,
                        resolution: float, resolution_text: str, spatial_reference: str,
                        source_dir: str, settings: dict, bias_corrected: bool,
                        method: str = "inr", name: str = "ds_superres_wf") -> Workflow:
    """Sidecars and sinks of every output of one subject (never half-written: see
    :class:`~mcinr_bids.interfaces.bids.DerivativesDataSink`).

    Workflow Graph
        .. workflow::
            :graph2use: orig
            :simple_form: yes

            from mcinr_bids.workflows.outputs import init_ds_superres_wf
            wf = init_ds_superres_wf(
                output_dir="out", sources=["sub-01_T1w.nii.gz", "sub-01_FLAIR.nii.gz"],
                reference=0, space="MNI152NLin2009cAsym", resolution=1.0,
                resolution_text="1 mm", spatial_reference="", source_dir="bids",
                settings={}, bias_corrected=True)

    Parameters
    ----------
    sources : list of str
        The input images (their BIDS entities name the outputs).
    space : str
        The ``space-`` label; ``resolution`` the isotropic voxel size (``res-`` label).
    method : str
        ``inr``: ``desc-superres`` and the model file; ``jtv``, ``unpaired``: their ``desc-``.

    Inputs
    ------
    images, mask, checkpoint, history, metrics
        The fit's outputs (:func:`~mcinr_bids.workflows.fit.init_superres_wf`).
    to_reference, reference_to_output, skull_stripped, mask_method, registration_qc
        From :func:`~mcinr_bids.workflows.anatomical.init_anat_preproc_wf` (the registration
        checks' rows join the metrics table).
    fit_info
        The fit's summary (sidecars).

    Outputs
    -------
    images, mask, transforms, history, metrics
        The written derivatives (for the report).
    """
    workflow = Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=INPUT_FIELDS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=[
        "images", "mask", "transforms", "history", "metrics"]), name="outputnode")
    add_registration_qc = pe.Node(AppendRows(), name="add_registration_qc")
    export_transform = pe.MapNode(ExportTransform(), iterfield=["to_reference"],
                                  name="export_transform")
    sidecars = pe.Node(SidecarMetadata(sources=sources, bids_dir=str(source_dir), space=space,
                                       resolution=resolution_text,
                                       spatial_reference=spatial_reference, settings=settings,
                                       bias_corrected=bias_corrected, method=method),
                       name="sidecars")
    ds_superres, ds_mask, ds_xfm, ds_model, ds_metrics, ds_history = _sinks(
        output_dir, sources, reference, space, resolution, OUTPUT_DESC[method])
    workflow.connect([
        (inputnode, export_transform, [("to_reference", "to_reference"),
                                       ("reference_to_output", "reference_to_output")]),
        (inputnode, sidecars, [("skull_stripped", "skull_stripped"),
                               ("mask_method", "mask_method"), ("fit_info", "fit_info")]),
        (inputnode, ds_superres, [("images", "in_file")]),
        (sidecars, ds_superres, [("image_metadata", "meta_dict")]),
        (inputnode, ds_mask, [("mask", "in_file")]),
        (sidecars, ds_mask, [("mask_metadata", "meta_dict")]),
        (export_transform, ds_xfm, [("out_file", "in_file")]),
        (inputnode, add_registration_qc, [("metrics", "metrics"), ("registration_qc", "rows")]),
        (add_registration_qc, ds_metrics, [("out_metrics", "in_file")]),
        (inputnode, ds_history, [("history", "in_file")]),
        (ds_superres, outputnode, [("out_file", "images")]),
        (ds_mask, outputnode, [("out_file", "mask")]),
        (ds_xfm, outputnode, [("out_file", "transforms")]),
        (ds_history, outputnode, [("out_file", "history")]),
        (ds_metrics, outputnode, [("out_file", "metrics")]),
    ])
    if method == "inr":
        workflow.connect([(inputnode, ds_model, [("checkpoint", "in_file")]),
                          (sidecars, ds_model, [("model_metadata", "meta_dict")])])
    return workflow
