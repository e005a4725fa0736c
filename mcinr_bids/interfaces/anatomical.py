"""Nipype interfaces for bias correction, rigid registration and brain masks."""

from __future__ import annotations

import os

import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)


def use_itk_threads(count: int) -> None:
    """ANTs/ITK steps of this process use ``count`` threads (``--omp-nthreads``; with 1 the
    registrations are deterministic, so the same seed gives bit-identical derivatives).  ITK
    reads the variable when it first runs in a process; every step of a run asks the same."""
    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(max(1, int(count)))


class _BiasCorrectionInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="image to correct")
    num_threads = traits.Int(1, usedefault=True, desc="ITK threads (--omp-nthreads)")


class _BiasCorrectionOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="N4-corrected image, same grid and units")


class BiasCorrection(SimpleInterface):
    """N4 bias-field correction (:func:`mcinr_bids.pipeline.anatomical.bias_correct`)."""

    input_spec = _BiasCorrectionInputSpec
    output_spec = _BiasCorrectionOutputSpec

    def _run_interface(self, runtime):
        from mcinr_bids.pipeline.anatomical import bias_correct

        use_itk_threads(self.inputs.num_threads)
        name = os.path.basename(self.inputs.in_file).split(".")[0]
        self._results["out_file"] = bias_correct(
            self.inputs.in_file, os.path.join(runtime.cwd, f"{name}_n4.nii.gz"))
        return runtime


class _RigidRegistrationInputSpec(BaseInterfaceInputSpec):
    fixed_file = File(exists=True, mandatory=True, desc="image defining the target space")
    moving_file = File(exists=True, mandatory=True, desc="image to align")
    fixed_mask = File(exists=True, desc="brain mask on the fixed image's grid (cuts it)")
    moving_mask = File(exists=True, desc="brain mask on the moving image's grid (cuts it)")
    seed = traits.Int(0, usedefault=True, desc="random seed of the metric sampling")
    same_session = traits.Bool(True, usedefault=True,
                               desc="start from the identity (images of one session); False: "
                                    "the fixed image is a template, registered brain to brain "
                                    "from several starting poses (both masks needed)")
    quick = traits.Bool(False, usedefault=True,
                        desc="stop at half resolution (--sloppy: testing, not results)")
    num_threads = traits.Int(1, usedefault=True, desc="ITK threads (--omp-nthreads)")
    header = traits.Bool(False, usedefault=True,
                         desc="the identity without running ANTs: the images' scanner "
                              "coordinates are trusted (--registration header)")


class _RigidRegistrationOutputSpec(TraitedSpec):
    out_matrix = File(exists=True, desc="4x4 RAS moving-world -> fixed-world matrix (text)")


class RigidRegistration(SimpleInterface):
    """Rigid registration of images of one session
    (:func:`mcinr_bids.pipeline.anatomical.rigid_register`) or onto a template
    (``same_session=False``: :func:`mcinr_bids.pipeline.anatomical.register_to_template`).

    The fixed image registered onto itself, and every image with ``header``, gives the identity
    without running ANTs.  Images on the very same voxel grid as the fixed one were resampled
    into its space already (co-registered): registering them can only add error, and the log
    says so (``--registration header``).
    """

    input_spec = _RigidRegistrationInputSpec
    output_spec = _RigidRegistrationOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        from nipype import logging

        from mcinr_bids.core.geometry import same_grid
        from mcinr_bids.pipeline.anatomical import (
            register_to_template,
            rigid_register,
            transform_to_file,
        )

        use_itk_threads(self.inputs.num_threads)
        fixed, moving = self.inputs.fixed_file, self.inputs.moving_file
        if self.inputs.header or os.path.abspath(fixed) == os.path.abspath(moving):
            matrix = np.eye(4)
        else:
            grids = [(image.shape, image.affine) for image in map(nib.load, (fixed, moving))]
            if same_grid(*grids):
                logging.getLogger("nipype.workflow").warning(
                    "%s lies on the same voxel grid as %s: already co-registered? A rigid "
                    "registration can only add error there; --registration header trusts "
                    "the scanner coordinates.", moving, fixed)
            masks = {}
            for name in ("fixed_mask", "moving_mask"):
                value = getattr(self.inputs, name)
                if value and os.path.exists(value):
                    masks[name] = np.asanyarray(nib.load(value).dataobj) > 0
            if self.inputs.same_session:
                matrix = rigid_register(fixed, moving, seed=self.inputs.seed,
                                        quick=self.inputs.quick, **masks)
            else:  # a template: its brain mask and the moving brain's are mandatory here
                matrix = register_to_template(fixed, self.inputs.fixed_mask, moving,
                                              masks["moving_mask"], seed=self.inputs.seed,
                                              quick=self.inputs.quick)
        name = os.path.basename(moving).split(".")[0]
        self._results["out_matrix"] = transform_to_file(
            matrix, os.path.join(runtime.cwd, f"{name}_rigid.txt"))
        return runtime


class _BrainMaskInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="reference image")
    skull_strip = traits.Enum("auto", "force", "skip", usedefault=True,
                              desc="auto: extract only when the image is not stripped yet")
    use_gpu = traits.Bool(False, usedefault=True,
                          desc="deepbet runs on the GPU: a GPU job for MultiProc's slots")


class _BrainMaskOutputSpec(TraitedSpec):
    out_mask = File(exists=True, desc="brain mask on the reference image's grid")
    skull_stripped = traits.Bool(desc="whether the mask is a brain mask (input stripped or "
                                      "brain extracted), not a head mask")
    method = traits.Str(desc="how the mask was made")


class BrainMask(SimpleInterface):
    """Brain mask of the reference image: its foreground if already stripped, else deepbet."""

    input_spec = _BrainMaskInputSpec
    output_spec = _BrainMaskOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib

        from mcinr_bids.core.interpolation import mask_on_grid
        from mcinr_bids.core.io import save_nifti
        from mcinr_bids.pipeline.anatomical import (
            extract_brain,
            foreground_mask_file,
            is_skull_stripped,
        )

        image = nib.load(self.inputs.in_file)
        data = np.asanyarray(image.dataobj, dtype=np.float32)
        stripped = is_skull_stripped(data)
        out_mask = os.path.join(runtime.cwd, "brain_mask.nii.gz")
        mode = self.inputs.skull_strip
        if mode == "skip" or (mode == "auto" and stripped):
            foreground_mask_file(self.inputs.in_file, out_mask)
            method = "foreground of the skull-stripped input" if stripped else \
                "head foreground (skull stripping skipped)"
        else:
            isotropic_mask = extract_brain(self.inputs.in_file,
                                           os.path.join(runtime.cwd, "brain_mask_1mm.nii.gz"),
                                           use_gpu=self.inputs.use_gpu)
            save_nifti(mask_on_grid(isotropic_mask, image.shape[:3], image.affine),
                       image.affine, out_mask)
            method = "deepbet on the reference image resampled to 1 mm"
        self._results.update(out_mask=out_mask, method=method,
                             skull_stripped=bool(stripped or mode != "skip"))
        return runtime


class _ExportTransformInputSpec(BaseInterfaceInputSpec):
    to_reference = File(exists=True, mandatory=True, desc="image -> reference (text 4x4)")
    reference_to_output = File(exists=True, mandatory=True, desc="reference -> output")


class _ExportTransformOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="image -> output space, ITK .mat")


class ExportTransform(SimpleInterface):
    """The composed rigid transform of an image to the output space, as an ITK file."""

    input_spec = _ExportTransformInputSpec
    output_spec = _ExportTransformOutputSpec

    def _run_interface(self, runtime):
        from mcinr_bids.pipeline.anatomical import compose_to_output

        name = os.path.basename(self.inputs.to_reference).split(".")[0]
        self._results["out_file"] = compose_to_output(
            self.inputs.to_reference, self.inputs.reference_to_output,
            os.path.join(runtime.cwd, f"{name}_to_output.mat"))
        return runtime
