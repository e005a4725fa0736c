"""Command line of the BIDS App (fMRIPrep conventions: argument groups, defaults shown)."""

from __future__ import annotations

import argparse
from pathlib import Path

from mcinr_bids import __version__
from mcinr_bids.cli.options import HelpFormatter
from mcinr_bids.config import DEFAULT_CONTRASTS, METHODS, OUTPUT_SPACES, REGISTRATIONS, SKULL_STRIP
from mcinr_bids.core.settings import DEVICES
from mcinr_bids.methods.inr.settings import MODELS, PRESETS
from mcinr_bids.quality.simulation import PROTOCOLS


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    """``mcinr-bids bids_dir output_dir {participant,group} [options]``."""
    parser = argparse.ArgumentParser(
        prog="mcinr-bids",
        description="Super-resolve every anisotropic anatomical MRI of a subject to isotropic "
                    "voxels with one subject-specific multi-contrast implicit neural "
                    "representation (McGinnis, Shit et al., MICCAI 2023).",
        formatter_class=HelpFormatter)
    parser.add_argument("bids_dir", type=Path, help="root of the input BIDS dataset")
    parser.add_argument("output_dir", type=Path,
                        help="output folder (a BIDS-Derivatives dataset), outside bids_dir")
    parser.add_argument("analysis_level", choices=("participant", "group"),
                        help="participant: process subjects; group: aggregate their metrics")
    parser.add_argument("--version", action="version", version=f"mcinr-bids {__version__}")

    bids = parser.add_argument_group("Options for filtering BIDS queries")
    bids.add_argument("--participant-label", "--participant_label", nargs="+", default=[],
                      metavar="LABEL", help="subjects to process ('sub-' is optional); default: "
                                            "all")
    bids.add_argument("--session-label", nargs="+", default=[], metavar="LABEL",
                      help="sessions to process ('ses-' is optional); default: all")
    bids.add_argument("--bids-filter-file", type=Path, metavar="FILE",
                      help="JSON mapping a contrast to extra pybids entities, e.g. "
                           '{"T1w": {"acquisition": "axial"}}')
    bids.add_argument("--bids-database-dir", type=Path, metavar="PATH",
                      help="reuse (or create) a pybids database here to index large datasets "
                           "once")
    bids.add_argument("--skip-bids-validation", "--skip_bids_validation", action="store_true",
                      help="do not validate the input dataset with bids-validator-deno")
    bids.add_argument("--contrasts", nargs="+", default=list(DEFAULT_CONTRASTS),
                      metavar="SUFFIX", help="BIDS suffixes of the anatomical images to use")

    space = parser.add_argument_group("Output space")
    space.add_argument("--output-space", choices=OUTPUT_SPACES, default="MNI152NLin2009cAsym",
                       help="template (rigid alignment) or native (the reference image's world "
                            "space)")
    space.add_argument("--output-resolution", type=_positive_float, default=1.0, metavar="MM",
                       help="isotropic voxel size of the outputs")

    workflow = parser.add_argument_group("Workflow")
    workflow.add_argument("--method", choices=METHODS, default="inr",
                          help="inr: the subject's implicit neural representation (outputs "
                               "desc-superres); jtv: the classical joint-total-variation "
                               "reconstruction ([jtv] table; outputs desc-jtv); unpaired: the "
                               "cohort-trained unpaired contrastive network of each contrast "
                               "(train it first with the group level's --train-unpaired; "
                               "outputs desc-unpaired)")
    workflow.add_argument("--skull-strip", choices=SKULL_STRIP, default="auto",
                          help="auto: extract the brain unless the inputs are already "
                               "skull-stripped; force: always; skip: never (head mask)")
    workflow.add_argument("--registration", choices=REGISTRATIONS, default="rigid",
                          help="rigid: register each image to the reference (ANTs, mutual "
                               "information); header: trust the scanner coordinates, for images "
                               "already co-registered (BraTS and other preprocessed datasets: a "
                               "registration can only add error there)")
    workflow.add_argument("--preset", choices=sorted(PRESETS), default="fast",
                          help="'fast' (CPU-friendly default), 'paper' (the paper's network) or "
                               "'thick-slices' (fast + each slab's mean in the fit, ~4x "
                               "slower)")
    workflow.add_argument("--model", choices=MODELS, default="split",
                          help="split: shared trunk + one head per contrast; vanilla: one "
                               "trunk, N outputs; single: one model per image")
    workflow.add_argument("--psf", action=argparse.BooleanOptionalAction, default=None,
                          help="compare each LR voxel with the model's mean across its slice "
                               "(2 points across the slab) instead of its centre (default: "
                               "automatic: on for thick slices, i.e. an input's voxels 2x "
                               "longer along one axis, that are not point samples)")
    workflow.add_argument("--qc-holdout", type=int, default=0, metavar="K",
                          help="ground-truth-free quality check: leave every K-th acquired "
                               "slice of each image out of a second reconstruction (doubles "
                               "the time) and score the method, jtv and clamped cubic on those "
                               "slices (report, metrics, group table); 0: off")
    workflow.add_argument("--sloppy", action="store_true",
                          help="a tiny fit and half-resolution registrations for testing the "
                               "pipeline; not for results")

    evaluation = parser.add_argument_group(
        "Evaluation mode (the paper's experiment on isotropic inputs)")
    evaluation.add_argument("--simulate-lowres", nargs="+", default=[], metavar="CONTRAST:AXIS",
                            help="simulate anisotropic acquisitions from isotropic inputs, e.g. "
                                 "T1w:S FLAIR:A, super-resolve them and score against the "
                                 "originals (PSNR, SSIM, MI errors)")
    evaluation.add_argument("--simulate-factor", type=_positive_int, default=4, metavar="N",
                            help="slice thickness factor of the simulation")
    evaluation.add_argument("--simulate-protocol", choices=PROTOCOLS,
                            default="decimate",
                            help="decimate: keep every N-th slice (the paper); thick: average "
                                 "through a box slice profile")
    evaluation.add_argument("--evaluate-ablation", action="store_true",
                            help="also fit and score single-contrast INRs")
    evaluation.add_argument("--lesion-masks", metavar="DIR",
                            help="a folder of lesion masks laid out as BIDS derivatives "
                                 "(sub-X[/ses-Y]/anat/sub-X[_ses-Y]_..._desc-lesion_mask.nii.gz "
                                 "or ..._label-lesion_roi.nii.gz, on the originals' world space, "
                                 "label > 0): strict PSNR and SSIM inside the lesion as well")

    unpaired = parser.add_argument_group(
        "Unpaired cohort method (Li et al.: trained at the group level, applied per "
        "participant)")
    unpaired.add_argument("--train-unpaired", action="store_true",
                          help="group level: train one model per contrast on the selected "
                               "participants' images ([unpaired] table), written to "
                               "OUTPUT_DIR/models; resumable from the work folder")
    unpaired.add_argument("--unpaired-models", type=Path, metavar="DIR",
                          help="folder of the trained models (desc-unpaired_<suffix>.pt) for "
                               "--method unpaired and the evaluation mode's unpaired rows "
                               "(default: OUTPUT_DIR/models)")

    performance = parser.add_argument_group("Options to handle performance")
    performance.add_argument("--device", choices=DEVICES, default="auto",
                             help="auto picks cuda, then mps, then cpu")
    performance.add_argument("--n-gpu-procs", type=_positive_int, default=1, metavar="N",
                             help="INR fits that may share the GPU(s) at once")
    performance.add_argument("--nprocs", "--n-cpus", type=_positive_int, metavar="N",
                             help="processes for the whole workflow (default: all CPUs)")
    performance.add_argument("--omp-nthreads", type=_positive_int, metavar="N",
                             help="threads per process (torch, ANTs) (default: nprocs)")
    performance.add_argument("--mem", "--mem-gb", dest="mem_gb", type=_positive_float,
                             metavar="GB", help="memory the workflow may use")

    other = parser.add_argument_group("Other options")
    other.add_argument("-w", "--work-dir", type=Path, default=Path("work"),
                       help="folder for intermediate results; reusing it resumes a run")
    other.add_argument("--clean-workdir", action="store_true",
                       help="delete the work folder's contents before running")
    other.add_argument("--config-file", type=Path, metavar="TOML",
                       help="settings file ([execution], [workflow], [inr], [jtv], "
                            "[unpaired] tables); command-line options win")
    other.add_argument("--random-seed", type=int, default=0, metavar="N",
                       help="seed of the INR fit and the registrations")
    other.add_argument("--stop-on-first-crash", action="store_true",
                       help="stop at the first failing step instead of finishing the others")
    other.add_argument("-v", "--verbose", dest="verbose_count", action="count", default=0,
                       help="more log output (-vv for debug)")
    return parser
