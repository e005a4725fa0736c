"""Preparing a subject's images for the fit: N4, rigid registrations, brain mask."""

from __future__ import annotations

import os

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe
from niworkflows.engine.workflows import LiterateWorkflow as Workflow

from mcinr_bids.interfaces.anatomical import BiasCorrection, BrainMask, RigidRegistration
from mcinr_bids.interfaces.qc import RegistrationQC
from mcinr_bids.pipeline.templates import OutputSpace

OUTPUT_FIELDS = ["images", "to_reference", "reference_to_output", "brain_mask", "skull_stripped",
                 "mask_method", "registration_qc", "registration_status"]


def init_anat_preproc_wf(*, images: list[str], reference: int, bias_correction: bool,
                         skull_strip: str, space: OutputSpace, seed: int, quick: bool,
                         registration: str = "rigid",
                         omp_nthreads: int = 1, use_gpu: bool = False,
                         registration_images: list[str] | None = None,
                         names: list[str] | None = None, label: str = "",
                         name: str = "anat_preproc_wf") -> Workflow:
    """N4 (unless ``bias_correction`` is off), the reference's brain mask, and the
    registrations with their checks (:func:`init_registration_wf`).

    Workflow Graph
        .. workflow::
            :graph2use: orig
            :simple_form: yes

            import tempfile
            from pathlib import Path
            from mcinr_bids.pipeline.templates import OutputSpace
            from mcinr_bids.workflows.anatomical import init_anat_preproc_wf
            images = [Path(tempfile.mkdtemp()) / n for n in ("sub-01_T1w.nii", "sub-01_FLAIR.nii")]
            [image.touch() for image in images]  # the nodes check that their inputs exist
            wf = init_anat_preproc_wf(images=[str(image) for image in images],
                                      reference=0, bias_correction=True, skull_strip="auto",
                                      space=OutputSpace(name="native"), seed=0, quick=False)

    Parameters
    ----------
    images, reference
        The subject's LR images and the index of the reference (the registrations' target).
    bias_correction : bool
        N4 on every image (off in the evaluation mode).
    skull_strip : str
        ``auto``, ``force`` or ``skip`` (:class:`~mcinr_bids.interfaces.anatomical.BrainMask`).
    omp_nthreads, use_gpu
        ITK threads of N4 and the registrations; deepbet on the GPU (a MultiProc GPU slot).
    registration, space, seed, quick, registration_images, names, label
        As :func:`init_registration_wf` takes them.

    Outputs
    -------
    images, to_reference, reference_to_output, registration_qc, registration_status
        The (bias-corrected) images in order, and :func:`init_registration_wf`'s outputs.
    brain_mask, skull_stripped, mask_method
        The brain mask on the reference's grid and how it was made.
    """
    workflow = Workflow(name=name)
    outputnode = pe.Node(niu.IdentityInterface(fields=OUTPUT_FIELDS), name="outputnode")
    if bias_correction:
        bias_correction_node = pe.MapNode(BiasCorrection(num_threads=omp_nthreads),
                                          iterfield=["in_file"], name="bias_correction",
                                          n_procs=omp_nthreads)
        bias_correction_node.inputs.in_file = images
    else:
        bias_correction_node = pe.Node(niu.IdentityInterface(fields=["out_file"]),
                                       name="bias_correction")
        bias_correction_node.inputs.out_file = images
    select_reference = pe.Node(niu.Select(index=[reference]), name="select_reference")
    # deepbet uses the GPU when there is one: counted in MultiProc's GPU slots (use_gpu)
    brain_mask = pe.Node(BrainMask(skull_strip=skull_strip, use_gpu=use_gpu), name="brain_mask")
    registration_wf = init_registration_wf(
        images=images, reference=reference, space=space, seed=seed, quick=quick,
        registration=registration, omp_nthreads=omp_nthreads,
        registration_images=registration_images, names=names, label=label)
    workflow.connect([
        (bias_correction_node, select_reference, [("out_file", "inlist")]),
        (select_reference, brain_mask, [("out", "in_file")]),
        (bias_correction_node, registration_wf, [("out_file", "inputnode.images")]),
        (select_reference, registration_wf, [("out", "inputnode.reference_image")]),
        (brain_mask, registration_wf, [("out_mask", "inputnode.brain_mask")]),
        (bias_correction_node, outputnode, [("out_file", "images")]),
        (registration_wf, outputnode, [
            (f"outputnode.{field}", field) for field in (
                "to_reference", "reference_to_output", "registration_qc",
                "registration_status")]),
        (brain_mask, outputnode, [("out_mask", "brain_mask"),
                                  ("skull_stripped", "skull_stripped"),
                                  ("method", "mask_method")]),
    ])
    return workflow


def init_registration_wf(*, images: list[str], reference: int, space: OutputSpace, seed: int,
                         quick: bool, registration: str = "rigid", omp_nthreads: int = 1,
                         registration_images: list[str] | None = None,
                         names: list[str] | None = None, label: str = "",
                         name: str = "registration_wf") -> Workflow:
    """Every image rigidly registered to the reference, the reference's brain registered to the
    template's brain, and the checks of both (``registration_qc``: the fit waits for it, and a
    brain that leaves the template's grid stops the subject there).

    Parameters
    ----------
    registration : str
        ``rigid`` (ANTs) or ``header``: the images' scanner coordinates as they are (already
        co-registered; the reference's registration to a template still runs).
    space : OutputSpace
        Template (its T1w and mask are the fixed image) or native (the reference itself).
    seed, quick, omp_nthreads
        Seed of the metric sampling; ``--sloppy``'s half-resolution runs; ITK threads (1:
        deterministic registrations).
    registration_images : list of str or None
        Registered to the reference in place of the inputs (same order and world frames): the
        evaluation mode's isotropic originals (registering the thick simulations misplaces
        them by ~0.3 mm, which cost the INR 0.7 dB on the BraTS T1c).
    names, label
        The images' output stems (default: file names) and ``sub-X[_ses-Y]`` for the checks.

    Inputs
    ------
    images, reference_image, brain_mask
        The (bias-corrected) images, the reference among them, its brain mask.

    Outputs
    -------
    to_reference, reference_to_output
        Text 4x4 matrices: each image's world -> the reference's, the reference's -> output.
    registration_qc, registration_status
        The checks as metrics-table rows (TSV) and PASS or WARN
        (:mod:`mcinr_bids.pipeline.registration_qc`).
    """
    workflow = Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["images", "reference_image",
                                                      "brain_mask"]), name="inputnode")
    outputnode = pe.Node(niu.IdentityInterface(fields=[
        "to_reference", "reference_to_output", "registration_qc", "registration_status"]),
        name="outputnode")
    register_to_reference = pe.MapNode(
        RigidRegistration(seed=seed, quick=quick, num_threads=omp_nthreads,
                          header=registration == "header"),
        iterfield=["moving_file"], name="register_to_reference", n_procs=omp_nthreads)
    register_to_template = pe.Node(
        RigidRegistration(seed=seed, same_session=False, quick=quick, num_threads=omp_nthreads),
        name="register_to_template", n_procs=omp_nthreads)
    registration_qc = pe.Node(RegistrationQC(
        reference_index=reference, label=label, names=list(names or [
            os.path.basename(path).split(".")[0] for path in images])), name="registration_qc")
    if space.is_template:
        register_to_template.inputs.fixed_file = space.t1w
        register_to_template.inputs.fixed_mask = space.mask
        registration_qc.inputs.template_mask = space.mask
    else:  # native space: the reference registered onto itself is the identity
        workflow.connect(inputnode, "reference_image", register_to_template, "fixed_file")
    if registration_images:
        register_to_reference.inputs.fixed_file = registration_images[reference]
        register_to_reference.inputs.moving_file = list(registration_images)
    else:
        workflow.connect([(inputnode, register_to_reference, [
            ("reference_image", "fixed_file"), ("images", "moving_file")])])
    workflow.connect([
        (inputnode, register_to_template, [("reference_image", "moving_file"),
                                           ("brain_mask", "moving_mask")]),
        (inputnode, registration_qc, [("images", "images"), ("brain_mask", "brain_mask")]),
        (register_to_reference, registration_qc, [("out_matrix", "to_reference")]),
        (register_to_template, registration_qc, [("out_matrix", "reference_to_output")]),
        (register_to_reference, outputnode, [("out_matrix", "to_reference")]),
        (registration_qc, outputnode, [("reference_to_output", "reference_to_output"),
                                       ("out_tsv", "registration_qc"),
                                       ("status", "registration_status")]),
    ])
    return workflow
