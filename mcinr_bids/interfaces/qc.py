"""Nipype interfaces of the registration checks (:mod:`mcinr_bids.pipeline.registration_qc`)."""

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


class _RegistrationQCInputSpec(BaseInterfaceInputSpec):
    images = InputMultiObject(File(exists=True), mandatory=True, desc="the subject's images")
    names = traits.List(traits.Str, mandatory=True, desc="their output stems")
    reference_index = traits.Int(0, usedefault=True)
    to_reference = InputMultiObject(File(exists=True), mandatory=True,
                                    desc="4x4 text matrices: each image -> the reference")
    reference_to_output = File(exists=True, mandatory=True,
                               desc="4x4 text matrix: the reference -> the output space")
    brain_mask = File(exists=True, mandatory=True, desc="brain mask on the reference's grid")
    template_mask = File(exists=True, desc="the template's brain mask (template spaces)")
    label = traits.Str("", usedefault=True, desc="sub-X[_ses-Y], for the log")


class _RegistrationQCOutputSpec(TraitedSpec):
    out_tsv = File(exists=True, desc="the checks as metrics-table rows")
    reference_to_output = File(exists=True, desc="the input's, once checked (the fit waits "
                                                 "for the check: a failed one stops it)")
    status = traits.Str(desc="PASS or WARN")
    reasons = traits.List(traits.Str, desc="why WARN (empty for PASS)")


class RegistrationQC(SimpleInterface):
    """The subject's registration checks
    (:func:`mcinr_bids.pipeline.registration_qc.check_subject`):
    a WARN line in the log when one fails; the subject stops when its brain leaves the
    template's grid."""

    input_spec = _RegistrationQCInputSpec
    output_spec = _RegistrationQCOutputSpec

    def _run_interface(self, runtime):
        import numpy as np
        from nipype import logging

        from mcinr_bids.core.io import write_tsv
        from mcinr_bids.pipeline.registration_qc import check_subject

        rows, reasons = check_subject(
            list(self.inputs.images), list(self.inputs.names), self.inputs.reference_index,
            [np.loadtxt(p) for p in self.inputs.to_reference], self.inputs.brain_mask,
            np.loadtxt(self.inputs.reference_to_output), self.inputs.template_mask or None)
        if reasons:
            logging.getLogger("nipype.workflow").warning(
                "%s: registration WARN: %s", self.inputs.label or "subject", "; ".join(reasons))
        out_tsv = os.path.join(runtime.cwd, "registration_qc.tsv")
        write_tsv(rows, out_tsv, columns=["measure", "image", "value"])
        self._results.update(out_tsv=out_tsv, status="WARN" if reasons else "PASS",
                             reasons=reasons,
                             reference_to_output=self.inputs.reference_to_output)
        return runtime


class _AppendRowsInputSpec(BaseInterfaceInputSpec):
    metrics = File(exists=True, mandatory=True, desc="the subject's metrics table")
    rows = File(exists=True, mandatory=True, desc="rows to add (measure, image, value)")


class _AppendRowsOutputSpec(TraitedSpec):
    out_metrics = File(exists=True, desc="the metrics table with the rows added")


class AppendRows(SimpleInterface):
    """A copy of a metrics table with the rows of another TSV added."""

    input_spec = _AppendRowsInputSpec
    output_spec = _AppendRowsOutputSpec

    def _run_interface(self, runtime):
        import csv

        from mcinr_bids.pipeline.reconstruct import append_metrics

        with open(self.inputs.rows, newline="") as handle:
            rows = [{**row, "value": float(row["value"])}
                    for row in csv.DictReader(handle, delimiter="\t")]
        self._results["out_metrics"] = append_metrics(
            self.inputs.metrics, rows, os.path.join(runtime.cwd, "metrics.tsv"))
        return runtime
