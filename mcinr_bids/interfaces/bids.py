"""BIDS-Derivatives writing: niworkflows' DerivativesDataSink, atomically, at the output root."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from mcinr_bids.config import METHODS
from mcinr_bids.core.io import STAGING_PREFIX


@contextlib.contextmanager
def templates_listed_from_folders():
    """TemplateFlow's template names from the ``tpl-*`` folders of its home, for a while.

    niworkflows lists the templates when its BIDS interfaces are imported
    (``STANDARD_SPACES = templateflow.api.templates()``), and TemplateFlow answers by building
    a pybids index of every file in ``TEMPLATEFLOW_HOME`` (2,540 files in its bare skeleton):
    5-12 s of CPU in every process that loads a sink, the app and each of its workers.  A
    template is a ``tpl-<name>`` folder of that home (made here as TemplateFlow makes it when
    it is empty), so the same names come from the folder listing.
    """
    from templateflow import api

    try:  # TemplateFlow's internals as of 25.x; another layout: its own (slower) answer
        from templateflow.conf import _cache

        client, root = api._client, Path(_cache.config.root)
    except (ImportError, AttributeError):
        yield
        return

    def templates(**filters):
        if filters:  # only the plain listing is answered from the folders
            return type(client).templates(client, **filters)
        _cache.ensure()
        return sorted(path.name[len("tpl-"):] for path in root.glob("tpl-*") if path.is_dir())

    client.templates = templates
    try:
        yield
    finally:
        del client.templates


with templates_listed_from_folders():
    from niworkflows.interfaces.bids import DerivativesDataSink as _DerivativesDataSink

_ANAT = "sub-{subject}[/ses-{session}]/{datatype<anat>|anat}/sub-{subject}[_ses-{session}]"
_SOURCE = "[_acq-{acquisition}][_ce-{ceagent}][_rec-{reconstruction}][_run-{run}]"

#: file patterns for what mcinr-bids writes and niworkflows' patterns do not cover
PATTERNS = (
    _ANAT + _SOURCE + "[_space-{space}][_res-{resolution}][_desc-{desc}]"
    "_{suffix<T1w|T2w|FLAIR|PDw|PD|T2starw|T1map|T2map>}{extension<.nii|.nii.gz|.json>|.nii.gz}",
    _ANAT + _SOURCE + "_from-{from}_to-{to}_mode-{mode<image|points>|image}"
    "_{suffix<xfm>|xfm}{extension<.mat|.txt|.h5>}",
    _ANAT + "[_desc-{desc}]_{suffix<metrics|history|model>}{extension<.tsv|.json|.pt>}",
)


class DerivativesDataSink(_DerivativesDataSink):
    """niworkflows' sink writing at the output root (no ``niworkflows/`` subfolder).

    Files are first written into a hidden staging folder inside the output directory and then
    renamed into place, so a crash never leaves a half-written derivative.  A ``Resolution``
    given in ``meta_dict`` is kept in the sidecar (niworkflows would overwrite it with
    TemplateFlow's description of the template's own grid, which our grid may not be).
    """

    out_path_base = ""
    _file_patterns = PATTERNS + tuple(_DerivativesDataSink._file_patterns)

    def _run_interface(self, runtime):
        # niworkflows replaces meta_dict["Resolution"] in place: keep ours first
        resolution = (dict(self.inputs.meta_dict).get("Resolution")
                      if isdefined(self.inputs.meta_dict) else None)
        final = Path(self.inputs.base_directory).absolute()
        final.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=final))
        self.inputs.base_directory = str(staging)
        try:
            runtime = super()._run_interface(runtime)
            written = list(self._results["out_file"])
            if self._results.get("out_meta"):
                sidecar = Path(self._results["out_meta"])
                if resolution:
                    metadata = json.loads(sidecar.read_text())
                    metadata["Resolution"] = resolution
                    sidecar.write_text(json.dumps(metadata, sort_keys=True, indent=2))
                written.append(str(sidecar))
            moved = {}
            for path in written:
                relative = Path(path).relative_to(staging)
                target = final / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
                moved[path] = str(target)
            self._results["out_file"] = [moved[p] for p in self._results["out_file"]]
            if self._results.get("out_meta"):
                self._results["out_meta"] = moved[self._results["out_meta"]]
        finally:
            shutil.rmtree(staging, ignore_errors=True)
            self.inputs.base_directory = str(final)
        return runtime


class _SidecarMetadataInputSpec(BaseInterfaceInputSpec):
    sources = traits.List(traits.Str, mandatory=True, desc="input images (BIDS paths)")
    bids_dir = traits.Str(mandatory=True)
    skull_stripped = traits.Bool(mandatory=True, desc="whether the outputs are brain-only")
    mask_method = traits.Str("", usedefault=True)
    space = traits.Str(mandatory=True)
    resolution = traits.Str(mandatory=True, desc="human-readable description of the grid")
    spatial_reference = traits.Str("", usedefault=True, desc="for non-TemplateFlow spaces")
    settings = traits.Dict(mandatory=True)
    fit_info = traits.Dict(mandatory=True)
    bias_corrected = traits.Bool(True, usedefault=True, desc="whether N4 ran before the fit")
    method = traits.Enum(*METHODS, usedefault=True, desc="the reconstruction method")


class _SidecarMetadataOutputSpec(TraitedSpec):
    image_metadata = traits.List(traits.Dict, desc="one sidecar per super-resolved image")
    mask_metadata = traits.Dict()
    model_metadata = traits.Dict()


class SidecarMetadata(SimpleInterface):
    """Assemble the JSON sidecars of the outputs (:func:`mcinr_bids.pipeline.bids.sidecars`)."""

    input_spec = _SidecarMetadataInputSpec
    output_spec = _SidecarMetadataOutputSpec

    def _run_interface(self, runtime):
        from mcinr_bids.pipeline.descriptions import sidecars

        self._results.update(sidecars(
            list(self.inputs.sources), self.inputs.bids_dir, self.inputs.skull_stripped,
            self.inputs.mask_method, self.inputs.space, self.inputs.resolution,
            self.inputs.spatial_reference or None, dict(self.inputs.settings),
            dict(self.inputs.fit_info), bias_corrected=self.inputs.bias_corrected,
            method=self.inputs.method))
        return runtime
