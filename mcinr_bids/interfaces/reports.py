"""Nipype interface writing a subject/session's report section and figures."""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _ParticipantReportInputSpec(BaseInterfaceInputSpec):
    label = traits.Str(mandatory=True, desc="sub-X or sub-X_ses-Y")
    output_dir = traits.Str(mandatory=True)
    inputs = InputMultiObject(File(exists=True), mandatory=True, desc="the LR inputs")
    outputs = InputMultiObject(File(exists=True), mandatory=True, desc="super-resolved images")
    transforms = InputMultiObject(File(exists=True), mandatory=True,
                                  desc="ITK transforms of the inputs to the output space")
    mask = File(exists=True, mandatory=True, desc="output brain mask")
    reference_index = traits.Int(0, usedefault=True)
    template_file = File(exists=True, desc="template T1w (absent for native space)")
    history = File(exists=True, mandatory=True)
    metrics = File(exists=True, mandatory=True)
    residuals = InputMultiObject(File(exists=True), mandatory=True)
    fit_info = traits.Dict(mandatory=True)
    methods = traits.Str("", usedefault=True)


class _ParticipantReportOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the HTML section of this subject/session")


class ParticipantReport(SimpleInterface):
    """Figures and report section (:func:`mcinr_bids.reports.participant.write_fragment`)."""

    input_spec = _ParticipantReportInputSpec
    output_spec = _ParticipantReportOutputSpec

    def _run_interface(self, runtime):
        from mcinr_bids.reports.participant import write_fragment

        self._results["out_file"] = write_fragment(
            self.inputs.label, self.inputs.output_dir, list(self.inputs.inputs),
            list(self.inputs.outputs), list(self.inputs.transforms), self.inputs.mask,
            self.inputs.reference_index, self.inputs.template_file or None,
            self.inputs.history, self.inputs.metrics, list(self.inputs.residuals),
            dict(self.inputs.fit_info), self.inputs.methods)
        return runtime
