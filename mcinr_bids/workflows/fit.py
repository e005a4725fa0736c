"""One subject's reconstruction (the INR fit, JTV or the unpaired models) and, in the
evaluation mode, its scores against the truth."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from mcinr_bids.interfaces.evaluation import EvaluateSuperresolution
from mcinr_bids.interfaces.inr import FitINR, QCHoldout, ReconstructJTV, ReconstructUnpaired

INPUT_FIELDS = ["images", "to_reference", "reference_to_output", "brain_mask"]


def init_superres_wf(*, names: list[str], reference: int, settings: dict, resolution: float,
                     omp_nthreads: int, use_gpu: bool, label: str = "", mem_gb: float = 4.0,
                     template_file: str | None = None, truth_files: list[str] | None = None,
                     ablation: bool = False, method: str = "inr", jtv_settings: dict | None = None,
                     unpaired_settings: dict | None = None, evaluation_models: dict | None = None,
                     qc_holdout: int = 0, slice_thickness: list[float] | None = None,
                     lesion_file: str | None = None, name: str = "superres_wf") -> Workflow:
    """Reconstruct every contrast on the output grid: one INR fitted to all images (``inr``,
    node ``fit``), joint total variation (``jtv``) or each contrast's cohort-trained model
    (``unpaired``; node ``reconstruct`` for both); then the held-out check and, in the
    evaluation mode, the scores against the truth. The inputnode takes images, to_reference,
    reference_to_output and brain_mask as
    :func:`~mcinr_bids.workflows.anatomical.init_anat_preproc_wf` gives them; the outputnode
    gives images, mask, checkpoint (INR only), history, metrics, residuals and fit_info.

    Workflow Graph
        .. workflow::
            :graph2use: orig
            :simple_form: yes

            from mcinr_bids.methods.inr.settings import INRSettings
            from mcinr_bids.workflows.fit import init_superres_wf
            wf = init_superres_wf(names=["sub-01_T1w", "sub-01_FLAIR"], reference=0,
                                  settings=INRSettings().to_dict(), resolution=1.0,
                                  omp_nthreads=1, use_gpu=False)

    Parameters
    ----------
    names, settings, jtv_settings, unpaired_settings
        Unique output stems (one per image); the INR settings (``INRSettings.to_dict()``); the
        ``[jtv]`` table (JTV's, and the INR's JTV blend); ``model_files`` and ``device``.
    use_gpu, omp_nthreads, mem_gb
        The INR fit asks MultiProc for one GPU slot (``--n-gpu-procs N`` runs N at once) and one
        processor, else ``omp_nthreads``; the memory of one reconstruction
        (:func:`mcinr_bids.pipeline.reconstruct.estimate_memory_gb`).
    template_file, slice_thickness
        The template the output grid covers (None: the inputs' union); each image's slice
        thickness in mm (0: the spacing), for every slab forward model.
    qc_holdout : int
        ``K`` >= 2 adds ``qc_holdout``: every K-th slice left out of a second reconstruction
        and scored (:func:`mcinr_bids.quality.holdout.holdout_check`); 0: none.
    truth_files, ablation, evaluation_models, lesion_file
        The evaluation mode (:func:`add_evaluation`).
    """
    workflow = Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=INPUT_FIELDS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=[
        "images", "mask", "checkpoint", "history", "metrics", "residuals", "fit_info"]),
        name="outputnode")
    common = {"names": names, "reference_index": reference, "resolution": resolution,
              "omp_nthreads": omp_nthreads, "label": label, "template_file": template_file,
              "slice_thickness": slice_thickness, "mem_gb": mem_gb,
              "use_gpu": use_gpu and method == "inr"}
    if method in ("jtv", "unpaired"):
        interface = ReconstructJTV if method == "jtv" else ReconstructUnpaired
        fit = reconstruction_node(workflow, inputnode, "reconstruct", interface, dict(
            (jtv_settings if method == "jtv" else unpaired_settings) or {}), common)
    else:
        fit = reconstruction_node(workflow, inputnode, "fit", FitINR, settings, common)
        if jtv_settings:  # the INR's jtv_blend reconstructs with the [jtv] table
            fit.inputs.jtv_settings = dict(jtv_settings)
        workflow.connect(fit, "out_checkpoint", outputnode, "checkpoint")
    workflow.connect([(fit, outputnode, [
        ("out_files", "images"), ("out_mask", "mask"), ("out_history", "history"),
        ("out_residuals", "residuals"), ("fit_info", "fit_info")])])
    metrics_source = fit
    if qc_holdout:
        metrics_source = reconstruction_node(
            workflow, inputnode, "qc_holdout", QCHoldout, settings, common, every=qc_holdout,
            method=method, jtv_settings=dict(jtv_settings or {}))
        workflow.connect(fit, "out_metrics", metrics_source, "metrics")
    if not truth_files:
        workflow.connect(metrics_source, "out_metrics", outputnode, "metrics")
        return workflow
    add_evaluation(workflow, inputnode, outputnode, fit, metrics_source, common, settings=settings,
                   truth_files=truth_files, method=method, jtv_settings=jtv_settings,
                   evaluation_models=evaluation_models, ablation=ablation,
                   lesion_file=lesion_file)
    return workflow


def reconstruction_node(workflow: Workflow, inputnode: pe.Node, name: str, interface,
                        settings: dict, common: dict, **inputs) -> pe.Node:
    """A reconstruction node fed by ``inputnode`` (images, transforms, brain mask); a GPU job
    (one MultiProc GPU slot and one processor) when ``common["use_gpu"]``."""
    gpu = common["use_gpu"]
    node = pe.Node(interface(names=common["names"], reference_index=common["reference_index"],
                             settings=settings, resolution=common["resolution"],
                             omp_nthreads=common["omp_nthreads"], label=common["label"],
                             **({"use_gpu": True} if gpu else {}), **inputs),
                   name=name, n_procs=1 if gpu else common["omp_nthreads"],
                   mem_gb=common["mem_gb"])
    if common["template_file"]:
        node.inputs.template_file = common["template_file"]
    thickness = common["slice_thickness"]
    if thickness and any(thickness):
        node.inputs.slice_thickness = [float(t) for t in thickness]
    workflow.connect(inputnode, "images", node, "in_files")
    for field in INPUT_FIELDS[1:]:
        workflow.connect(inputnode, field, node, field)
    return node


def add_evaluation(workflow: Workflow, inputnode: pe.Node, outputnode: pe.Node, fit: pe.Node,
                   metrics_source: pe.Node, common: dict, *, settings: dict,
                   truth_files: list[str], method: str, jtv_settings: dict | None,
                   evaluation_models: dict | None, ablation: bool,
                   lesion_file: str | None) -> None:
    """The evaluation mode's nodes: ``evaluate`` scores the reconstruction (and a ``jtv`` row,
    the ``evaluation_models``' unpaired rows, with ``ablation`` the single-contrast INRs of
    ``fit_single``) against ``truth_files``, the isotropic original of each image, inside
    ``lesion_file``'s lesion as well; its rows end the metrics table."""
    # the models are evaluated on the fit's device (a GPU job like the fit)
    gpu_evaluation = common["use_gpu"]
    omp_nthreads = common["omp_nthreads"]
    evaluate = pe.Node(EvaluateSuperresolution(
        truth_files=truth_files, names=common["names"], model=settings["model"],
        jtv_settings=dict(jtv_settings or {}), unpaired_models=dict(evaluation_models or {}),
        **({"use_gpu": True, "device": settings.get("device", "auto")} if gpu_evaluation
           else {})),
        name="evaluate", n_procs=1 if gpu_evaluation else omp_nthreads, mem_gb=common["mem_gb"])
    if lesion_file:
        evaluate.inputs.lesion_file = lesion_file
    if common["slice_thickness"] and any(common["slice_thickness"]):
        evaluate.inputs.slice_thickness = [float(t) for t in common["slice_thickness"]]
    workflow.connect([
        (inputnode, evaluate, [("images", "low_resolution_files"),
                               ("to_reference", "to_reference"),
                               ("reference_to_output", "reference_to_output"),
                               ("brain_mask", "brain_mask")]),
        (metrics_source, evaluate, [("out_metrics", "metrics")]),
        (evaluate, outputnode, [("out_metrics", "metrics")]),
    ])
    if method == "inr":
        workflow.connect(fit, "out_checkpoint", evaluate, "checkpoint")
    if ablation and method == "inr" and settings["model"] != "single":
        fit_single = reconstruction_node(workflow, inputnode, "fit_single", FitINR,
                                         {**settings, "model": "single"}, common)
        workflow.connect(fit_single, "out_checkpoint", evaluate, "ablation_checkpoint")
