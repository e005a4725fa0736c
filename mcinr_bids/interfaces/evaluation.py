"""Nipype interface of the evaluation mode
(:func:`mcinr_bids.quality.evaluation.evaluate_subject`)."""

from __future__ import annotations

import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _EvaluateInputSpec(BaseInterfaceInputSpec):
    truth_files = InputMultiObject(File(exists=True), mandatory=True,
                                   desc="isotropic originals, one per simulated input")
    low_resolution_files = InputMultiObject(File(exists=True), mandatory=True)
    names = traits.List(traits.Str, mandatory=True)
    checkpoint = File(exists=True, desc="the fitted (joint) model (absent: --method jtv)")
    ablation_checkpoint = File(exists=True, desc="single-contrast models")
    model = traits.Str("split", usedefault=True, desc="the joint model's kind")
    metrics = File(exists=True, mandatory=True, desc="the participant metrics to extend")
    jtv_settings = traits.Dict(desc="the [jtv] table: adds the 'jtv' rows (truths on one grid)")
    unpaired_models = traits.Dict(desc="unpaired variant -> one model file per image: adds "
                                       "their rows")
    to_reference = InputMultiObject(File(exists=True), mandatory=True,
                                    desc="4x4 text matrices: image world -> reference world")
    reference_to_output = File(exists=True, desc="4x4 text matrix: reference -> output space")
    brain_mask = File(exists=True, desc="brain mask on the reference image's grid")
    device = traits.Str("cpu", usedefault=True, desc="where the models are evaluated "
                        "(auto, cpu, cuda, mps: the fit's --device)")
    use_gpu = traits.Bool(False, usedefault=True,
                          desc="a GPU job for MultiProc (one --n-gpu-procs slot)")
    slice_thickness = traits.List(traits.Float, desc="SliceThickness (mm) of each simulated "
                                  "image (its slice profile); 0 = contiguous slices")
    lesion_file = File(exists=True, desc="lesion mask in the originals' world (label > 0): "
                                         "scores inside it as well (--lesion-masks)")


class _EvaluateOutputSpec(TraitedSpec):
    out_metrics = File(exists=True, desc="the metrics with the evaluation rows added")


def _warn(message: str) -> None:
    from nipype import logging

    logging.getLogger("nipype.workflow").warning(message)


class EvaluateSuperresolution(SimpleInterface):
    """Score the fit (and the ablation) against the isotropic originals."""

    input_spec = _EvaluateInputSpec
    output_spec = _EvaluateOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np

        from mcinr_bids.core.volumes import prepare_masks
        from mcinr_bids.methods.jtv import JTVSettings
        from mcinr_bids.pipeline.reconstruct import append_metrics, load_subject
        from mcinr_bids.quality.evaluation import evaluate_subject, jtv_on_truth_grid, on_one_grid

        checkpoints = {}
        if self.inputs.checkpoint:
            checkpoints[f"inr-{self.inputs.model}"] = self.inputs.checkpoint
        if self.inputs.ablation_checkpoint:
            checkpoints["inr-single"] = self.inputs.ablation_checkpoint
        reference_to_output = (np.loadtxt(self.inputs.reference_to_output)
                               if self.inputs.reference_to_output else np.eye(4))
        volumes, masks, transforms = load_subject(
            list(self.inputs.low_resolution_files), list(self.inputs.names),
            [np.loadtxt(p) for p in self.inputs.to_reference], reference_to_output,
            self.inputs.brain_mask or None, list(self.inputs.slice_thickness or []) or None)
        masks = prepare_masks(volumes, masks)
        extra = {}
        jtv_settings = (JTVSettings(**dict(self.inputs.jtv_settings))
                        if self.inputs.jtv_settings else None)
        truths = [nib.load(p) for p in self.inputs.truth_files]
        one_grid = on_one_grid(truths)
        if self.inputs.jtv_settings and one_grid:
            extra["jtv"] = jtv_on_truth_grid(volumes, masks, transforms,
                                             self.inputs.truth_files[0], jtv_settings)
        if self.inputs.unpaired_models:
            from mcinr_bids.methods.unpaired.apply import predict_images

            for variant, files in dict(self.inputs.unpaired_models).items():
                # each LR image's world is its truth's: no transform
                try:
                    extra[variant] = [predict_images([path], [volume], truth.shape,
                                                     truth.affine, [mask],
                                                     device=self.inputs.device)[0][0]
                                      for path, volume, mask, truth in zip(files, volumes,
                                                                           masks, truths)]
                except ValueError as error:  # a model trained for other slices: no row
                    _warn(f"{variant} not scored: {error}")
        rows = evaluate_subject(list(self.inputs.truth_files),
                                list(self.inputs.low_resolution_files), checkpoints,
                                list(self.inputs.names), transforms=transforms, masks=masks,
                                extra=extra, warn=_warn, device=self.inputs.device,
                                jtv_settings=jtv_settings, volumes=volumes,
                                lesion_file=self.inputs.lesion_file or None)
        self._results["out_metrics"] = append_metrics(
            self.inputs.metrics, rows, os.path.join(runtime.cwd, "metrics.tsv"))
        return runtime
