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
                     template_file: str | None = None,
                     truth_files: list[str] | None = None, ablation: bool = False,
                     method: str = "inr", jtv_settings: dict | None = None,
                     unpaired_settings: dict | None = None,
                     evaluation_models: dict | None = None, qc_holdout: int = 0,
                     slice_thickness: list[float] | None = None,
                     lesion_file: str | None = None,
                     name: str = "superres_wf") -> Workflow:
    """Fit one INR to all images of a subject and predict every contrast on the output grid
    (``method="inr"``), or reconstruct them all by joint total variation (``"jtv"``: node
    ``reconstruct``, no model file), or pass each through its contrast's cohort-trained model
    (``"unpaired"``: node ``reconstruct``, ``unpaired_settings`` = ``model_files`` and
    ``device``).

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
    names : list of str
        Unique output stems, one per image.
    settings : dict
        The resolved INR settings (``INRSettings.to_dict()``).
    jtv_settings : dict or None
        The ``[jtv]`` table: the settings of ``method="jtv"``; in the evaluation mode also a
        ``jtv`` row beside the INR's.
    evaluation_models : dict or None
        Evaluation mode: unpaired variant (``unpaired``, ``unpaired-nocontrast``) -> one model
        file per image, scored as rows of their own.
    qc_holdout : int
        ``K`` >= 2 adds ``qc_holdout`` (the ground-truth-free check: every K-th slice of each
        image left out of a second reconstruction by the method, JTV and clamped cubic, scored
        on those slices; rows added to the metrics table); 0: none.
    slice_thickness : list of float or None
        Each image's slice thickness (mm, its sidecar's ``SliceThickness``; 0 = the slice
        spacing), for the slab forward models of every reconstruction.
    use_gpu : bool
        The INR fit is a GPU job: it asks MultiProc for one GPU slot and one processor slot
        (nipype charges ``min(n_procs, n_gpu_procs)`` GPU slots per job, so ``--n-gpu-procs N``
        runs N fits at once), whatever ``omp_nthreads`` its torch uses.
    mem_gb : float
        Memory of one reconstruction (:func:`mcinr_bids.pipeline.reconstruct.estimate_memory_gb`).
    template_file : str or None
        The output grid covers this template; ``None``: the union field of view (native).
    truth_files : list of str or None
        Evaluation mode: the isotropic original of each image; adds ``evaluate`` (scores in the
        metrics table) and, with ``ablation``, ``fit_single`` (single-contrast INRs).
    lesion_file : str or None
        Evaluation mode: the subject's lesion mask (``--lesion-masks``): scores inside it too.

    Inputs
    ------
    images, to_reference, reference_to_output, brain_mask
        As :func:`~mcinr_bids.workflows.anatomical.init_anat_preproc_wf` gives them.

    Outputs
    -------
    images, mask, checkpoint (INR only), history, metrics, residuals, fit_info
    """
    workflow = Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=INPUT_FIELDS), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=[
        "images", "mask", "checkpoint", "history", "metrics", "residuals", "fit_info"]),
        name="outputnode")

    def fit_node(node_name: str, node_settings: dict, interface=FitINR, **inputs) -> pe.Node:
        gpu = use_gpu and (interface is FitINR or (interface is QCHoldout and method == "inr"))
        node = pe.Node(interface(names=names, reference_index=reference, settings=node_settings,
                                 resolution=resolution, omp_nthreads=omp_nthreads, label=label,
                                 **({"use_gpu": True} if gpu else {}), **inputs),
                       name=node_name, n_procs=1 if gpu else omp_nthreads, mem_gb=mem_gb)
        if template_file:
            node.inputs.template_file = template_file
        if slice_thickness and any(slice_thickness):
            node.inputs.slice_thickness = [float(t) for t in slice_thickness]
        workflow.connect(inputnode, "images", node, "in_files")
        for field in INPUT_FIELDS[1:]:
            workflow.connect(inputnode, field, node, field)
        return node

    if method == "jtv":
        fit = fit_node("reconstruct", dict(jtv_settings or {}), ReconstructJTV)
    elif method == "unpaired":
        fit = fit_node("reconstruct", dict(unpaired_settings or {}), ReconstructUnpaired)
    else:
        fit = fit_node("fit", settings)
        if jtv_settings:  # the INR's jtv_blend reconstructs with the [jtv] table
            fit.inputs.jtv_settings = dict(jtv_settings)
        workflow.connect(fit, "out_checkpoint", outputnode, "checkpoint")
    workflow.connect([(fit, outputnode, [
        ("out_files", "images"), ("out_mask", "mask"), ("out_history", "history"),
        ("out_residuals", "residuals"), ("fit_info", "fit_info")])])
    metrics_source = fit
    if qc_holdout:
        qc_holdout_node = fit_node("qc_holdout", settings, QCHoldout, every=qc_holdout,
                                   method=method, jtv_settings=dict(jtv_settings or {}))
        workflow.connect(fit, "out_metrics", qc_holdout_node, "metrics")
        metrics_source = qc_holdout_node
    if not truth_files:
        workflow.connect(metrics_source, "out_metrics", outputnode, "metrics")
        return workflow
    # the models are evaluated on the fit's device (a GPU job like the fit)
    gpu_evaluation = use_gpu and method == "inr"
    evaluate = pe.Node(EvaluateSuperresolution(
        truth_files=truth_files, names=names, model=settings["model"],
        jtv_settings=dict(jtv_settings or {}), unpaired_models=dict(evaluation_models or {}),
        **({"use_gpu": True, "device": settings.get("device", "auto")} if gpu_evaluation
           else {})),
        name="evaluate", n_procs=1 if gpu_evaluation else omp_nthreads, mem_gb=mem_gb)
    if lesion_file:
        evaluate.inputs.lesion_file = lesion_file
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
        fit_single = fit_node("fit_single", {**settings, "model": "single"})
        workflow.connect(fit_single, "out_checkpoint", evaluate, "ablation_checkpoint")
    return workflow
