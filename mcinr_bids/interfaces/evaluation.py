"""Nipype interface of the evaluation mode (:func:`mcinr_bids.evaluation.evaluate_subject`)."""

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
    checkpoint = File(exists=True, mandatory=True, desc="the fitted (joint) model")
    ablation_checkpoint = File(exists=True, desc="single-contrast models")
    model = traits.Str("split", usedefault=True, desc="the joint model's kind")
    metrics = File(exists=True, mandatory=True, desc="the participant metrics to extend")


class _EvaluateOutputSpec(TraitedSpec):
    out_metrics = File(exists=True, desc="the metrics with the evaluation rows added")


class EvaluateSuperresolution(SimpleInterface):
    """Score the fit (and the ablation) against the isotropic originals."""

    input_spec = _EvaluateInputSpec
    output_spec = _EvaluateOutputSpec

    def _run_interface(self, runtime):
        from ..evaluation import evaluate_subject
        from ..superres import append_metrics

        checkpoints = {f"inr-{self.inputs.model}": self.inputs.checkpoint}
        if self.inputs.ablation_checkpoint:
            checkpoints["inr-single"] = self.inputs.ablation_checkpoint
        rows = evaluate_subject(list(self.inputs.truth_files),
                                list(self.inputs.low_resolution_files), checkpoints,
                                list(self.inputs.names))
        self._results["out_metrics"] = append_metrics(
            self.inputs.metrics, rows, os.path.join(runtime.cwd, "metrics.tsv"))
        return runtime
