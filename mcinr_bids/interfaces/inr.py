"""Nipype interfaces of one subject's reconstruction: the INR fit
(:func:`mcinr_bids.pipeline.reconstruct.superresolve`), the joint-total-variation reconstruction
(:func:`mcinr_bids.pipeline.reconstruct.reconstruct_subject_jtv`) and the cohort-trained unpaired
models
(:func:`mcinr_bids.pipeline.reconstruct.reconstruct_subject_unpaired`)."""

from __future__ import annotations

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    OutputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _FitINRInputSpec(BaseInterfaceInputSpec):
    in_files = InputMultiObject(File(exists=True), mandatory=True, desc="LR images")
    names = traits.List(traits.Str, mandatory=True, desc="unique output names, one per image")
    to_reference = InputMultiObject(File(exists=True), mandatory=True,
                                    desc="4x4 text matrices: image world -> reference world")
    reference_to_output = File(exists=True, desc="4x4 text matrix: reference -> output space")
    reference_index = traits.Int(0, usedefault=True)
    brain_mask = File(exists=True, desc="brain mask on the reference image's grid")
    template_file = File(exists=True, desc="output grid covers this template (else native)")
    resolution = traits.Float(1.0, usedefault=True, desc="output voxel size (mm)")
    settings = traits.Dict(mandatory=True, desc="the method's settings (INRSettings.to_dict() "
                           "or the [jtv] table)")
    omp_nthreads = traits.Int(1, usedefault=True, desc="torch threads")
    label = traits.Str("", usedefault=True, desc="subject/session, for the progress log")
    use_gpu = traits.Bool(False, usedefault=True,
                          desc="a GPU job for MultiProc's n_gpu_procs scheduling (one slot)")
    jtv_settings = traits.Dict(desc="the [jtv] table, for the INR's jtv_blend")
    slice_thickness = traits.List(traits.Float, desc="SliceThickness (mm) of each image's "
                                  "sidecar; 0 = the slice spacing")


class _ReconstructionOutputSpec(TraitedSpec):
    out_files = OutputMultiObject(File(exists=True), desc="super-resolved images")
    out_mask = File(exists=True, desc="brain mask on the output grid")
    out_history = File(exists=True)
    out_metrics = File(exists=True)
    out_residuals = OutputMultiObject(File(exists=True), desc="re-simulation residual maps")
    fit_info = traits.Dict(desc="epochs, stop epoch, seconds, device")


class _FitINROutputSpec(_ReconstructionOutputSpec):
    out_checkpoint = File(exists=True)


SUMMARY_KEYS = ("method", "epochs_run", "selected_epoch", "stopped_early", "stop_reason",
                "fit_seconds", "predict_seconds", "device", "grid_cell_sizes_mm",
                "resumed_from_epoch", "noise_sigma", "models", "recipe")


def load_inputs(inputs) -> tuple[list, list | None, list, tuple | None]:
    """Volumes, masks, transforms and output grid from a reconstruction node's inputs."""
    from mcinr_bids.pipeline.reconstruct import load_subject, template_grid

    to_reference = [np.loadtxt(path) for path in inputs.to_reference]
    reference_to_output = (np.loadtxt(inputs.reference_to_output)
                           if inputs.reference_to_output else np.eye(4))
    volumes, masks, transforms = load_subject(
        list(inputs.in_files), list(inputs.names), to_reference, reference_to_output,
        inputs.brain_mask or None, list(inputs.slice_thickness or []) or None)
    grid = (template_grid(inputs.template_file, inputs.resolution)
            if inputs.template_file else None)
    return volumes, masks, transforms, grid


def progress_log(label: str):
    """``say(message)`` into nipype's workflow log, prefixed by the subject's label."""
    from nipype import logging

    log = logging.getLogger("nipype.workflow")
    return lambda message: log.info("%s: %s", label or "fit", message)


def reconstruction_results(outputs: dict, threads: int) -> dict:
    """The node outputs shared by both methods from the subject pipeline's return value."""
    return {"out_files": outputs["images"], "out_mask": outputs["mask"],
            "out_history": outputs["history"], "out_metrics": outputs["metrics"],
            "out_residuals": outputs["residuals"],
            "fit_info": {**{k: outputs[k] for k in SUMMARY_KEYS if k in outputs},
                         "threads": threads}}


class FitINR(SimpleInterface):
    """Fit one INR to all images of a subject and predict them on the output grid."""

    input_spec = _FitINRInputSpec
    output_spec = _FitINROutputSpec
    # a rerun after the fit was killed keeps the node folder, where the fit left its training
    # state (mcinr_bids.pipeline.reconstruct.RESUME_FILE), and continues from it
    _can_resume = True

    def _run_interface(self, runtime):
        import torch

        from mcinr_bids.methods.inr.settings import INRSettings
        from mcinr_bids.methods.jtv import JTVSettings
        from mcinr_bids.pipeline.reconstruct import superresolve

        settings = INRSettings.from_dict(dict(self.inputs.settings))
        settings.threads = self.inputs.omp_nthreads
        torch.set_num_threads(max(1, self.inputs.omp_nthreads))
        volumes, masks, transforms, grid = load_inputs(self.inputs)
        try:
            outputs = superresolve(volumes, settings, runtime.cwd, masks=masks,
                                   transforms=transforms, grid=grid,
                                   resolution=self.inputs.resolution,
                                   reference=self.inputs.reference_index,
                                   say=progress_log(self.inputs.label),
                                   jtv_settings=JTVSettings(**dict(self.inputs.jtv_settings))
                                   if self.inputs.jtv_settings else None)
        finally:
            if torch.cuda.is_available():  # the next fit in this worker gets the memory
                torch.cuda.empty_cache()
        self._results.update(reconstruction_results(outputs, self.inputs.omp_nthreads),
                             out_checkpoint=outputs["checkpoint"])
        return runtime


class ReconstructJTV(SimpleInterface):
    """The joint-total-variation reconstruction of all images of a subject on the output grid
    (``settings``: the ``[jtv]`` table)."""

    input_spec = _FitINRInputSpec
    output_spec = _ReconstructionOutputSpec

    def _run_interface(self, runtime):
        import torch

        from mcinr_bids.methods.jtv import JTVSettings
        from mcinr_bids.pipeline.reconstruct import reconstruct_subject_jtv

        torch.set_num_threads(max(1, self.inputs.omp_nthreads))
        volumes, masks, transforms, grid = load_inputs(self.inputs)
        outputs = reconstruct_subject_jtv(
            volumes, JTVSettings(**dict(self.inputs.settings)), runtime.cwd, masks=masks,
            transforms=transforms, grid=grid, resolution=self.inputs.resolution,
            say=progress_log(self.inputs.label))
        self._results.update(reconstruction_results(outputs, self.inputs.omp_nthreads))
        return runtime


class ReconstructUnpaired(SimpleInterface):
    """Each image of a subject through its contrast's unpaired model onto the output grid
    (``settings``: ``model_files``, one per image, and ``device``)."""

    input_spec = _FitINRInputSpec
    output_spec = _ReconstructionOutputSpec

    def _run_interface(self, runtime):
        import torch

        from mcinr_bids.pipeline.reconstruct import reconstruct_subject_unpaired

        torch.set_num_threads(max(1, self.inputs.omp_nthreads))
        volumes, masks, transforms, grid = load_inputs(self.inputs)
        settings = dict(self.inputs.settings)
        outputs = reconstruct_subject_unpaired(
            volumes, list(settings["model_files"]), runtime.cwd, masks=masks,
            transforms=transforms, grid=grid, resolution=self.inputs.resolution,
            device=settings.get("device", "auto"))
        self._results.update(reconstruction_results(outputs, self.inputs.omp_nthreads))
        return runtime


class _QCHoldoutInputSpec(_FitINRInputSpec):
    every = traits.Int(mandatory=True, desc="leave every K-th acquired slice out (K >= 2)")
    method = traits.Enum("inr", "jtv", usedefault=True, desc="the subject's method")
    metrics = File(exists=True, mandatory=True, desc="the reconstruction's metrics table")


class _QCHoldoutOutputSpec(TraitedSpec):
    out_metrics = File(exists=True, desc="the metrics table with the hold-out rows added")


class QCHoldout(SimpleInterface):
    """The ground-truth-free check (:func:`~mcinr_bids.quality.holdout.holdout_check`): the
    subject's
    method, JTV and clamped cubic reconstructed again without every K-th slice and scored on
    those slices (``settings``: the INR's; ``jtv_settings``: the ``[jtv]`` table)."""

    input_spec = _QCHoldoutInputSpec
    output_spec = _QCHoldoutOutputSpec

    def _run_interface(self, runtime):
        import os

        import torch

        from mcinr_bids.methods.inr.settings import INRSettings
        from mcinr_bids.methods.jtv import JTVSettings
        from mcinr_bids.pipeline.reconstruct import append_metrics
        from mcinr_bids.quality.holdout import holdout_check

        settings = INRSettings.from_dict(dict(self.inputs.settings))
        settings.threads = self.inputs.omp_nthreads
        torch.set_num_threads(max(1, self.inputs.omp_nthreads))
        volumes, masks, transforms, _ = load_inputs(self.inputs)
        jtv = dict(self.inputs.jtv_settings) if self.inputs.jtv_settings else {}
        methods = ("inr", "jtv", "cubic") if self.inputs.method == "inr" else ("jtv", "cubic")
        try:
            rows = holdout_check(volumes, self.inputs.every, masks=masks, transforms=transforms,
                                 resolution=self.inputs.resolution, settings=settings,
                                 jtv_settings=JTVSettings(**jtv) if jtv else None,
                                 methods=methods, reference=self.inputs.reference_index,
                                 say=progress_log(self.inputs.label))
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        self._results["out_metrics"] = append_metrics(
            self.inputs.metrics, rows, os.path.join(runtime.cwd, "metrics.tsv"))
        return runtime
