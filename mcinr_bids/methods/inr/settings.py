"""Every setting of one INR fit, and the named presets: the engine's own settings.

Torch-free, so that the app's configuration (:mod:`mcinr_bids.config`) can compose them without
loading the engine.  ``fast`` is the default, chosen by measurement (``benchmarks/RESULTS.md``);
``paper`` is Table 3 of McGinnis, Shit et al. (MICCAI 2023) exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from mcinr_bids.core.settings import PROFILE_MOVED, SettingsTable

ENCODINGS = ("fourier", "grid")
MODELS = ("split", "vanilla", "single")
PSF_PROFILES = ("gaussian", "box")
PSF_SAMPLINGS = ("random", "stratified")
SELECTIONS = ("mi", "last")


@dataclass
class INRSettings(SettingsTable):
    """Every parameter of one INR fit.

    Lengths are in millimetres of scanner (world) space; intensities are in the units of each input
    image after a robust per-image normalisation (see ``intensity_percentiles``).
    """

    TABLE: ClassVar[str] = "inr"
    MOVED: ClassVar[dict[str, str]] = {"consistency_profile": PROFILE_MOVED}
    SHARED: ClassVar[tuple[str, ...]] = ("device", "threads", "seed")
    #: the representation's and the optimiser's sizes, the slab model's sampling, the MI
    #: rule's numbers, the data preparation and the refinements measured as not helping
    ADVANCED: ClassVar[tuple[str, ...]] = (
        "fourier_features", "fourier_scale", "grid_cell_sizes_mm", "grid_features",
        "hash_table_log2", "feature_diffusion", "diffusion_every", "trunk_layers",
        "trunk_width", "head_layers", "head_width", "batch_size", "min_steps_per_epoch",
        "learning_rate", "image_weights", "refine_alignment", "alignment_learning_rate",
        "psf_samples", "psf_profile", "psf_unbiased", "psf_sampling", "psf_epochs",
        "through_plane_steps", "mi_bins", "mi_points", "mi_window", "mi_tolerance",
        "min_epochs", "intensity_percentiles", "foreground_dilation_mm")

    # Representation
    #: ``grid`` (multi-resolution tables of learned features at ``grid_cell_sizes_mm``, hashed
    #: where large; the default) or ``fourier`` (random Fourier features, the paper's)
    encoding: str = "grid"
    #: number of random Fourier features (``fourier`` encoding)
    fourier_features: int = 256
    #: standard deviation of the random Fourier frequencies over the normalised coordinates
    #: (``fourier`` encoding)
    fourier_scale: float = 4.0
    #: cell size of each level of the feature grid in mm, coarse to fine (``grid`` encoding)
    grid_cell_sizes_mm: list[float] = field(
        default_factory=lambda: [16.0, 11.3, 8.0, 5.7, 4.0, 2.8, 2.0, 1.4, 1.0])
    #: learned features per grid level
    grid_features: int = 2
    #: a level with more vertices than 2^hash_table_log2 is hashed into a table of that size
    hash_table_log2: int = 24
    #: smoothing of the dense feature tables: a heat-equation step of this many times the learning
    #: rate every ``diffusion_every`` steps (0 = off)
    feature_diffusion: float = 20.0
    #: steps between two smoothings of the feature tables
    diffusion_every: int = 8
    #: hidden layers of the trunk shared by every contrast
    trunk_layers: int = 2
    #: units per trunk layer
    trunk_width: int = 64
    #: hidden layers of each contrast's head (``split`` model)
    head_layers: int = 1
    #: units per head layer
    head_width: int = 64
    model: str = "split"
    # Optimisation
    #: LR voxels per optimisation step (fewer where an epoch would otherwise make less than
    #: ``min_steps_per_epoch`` steps)
    batch_size: int = 32768
    #: the batch shrinks (to no less than 256) so that each epoch makes at least this many steps
    min_steps_per_epoch: int = 32
    #: Adam's learning rate, annealed to 0 by a cosine over the epochs
    learning_rate: float = 5e-3
    epochs: int = 40
    #: the fit stops after this long and keeps its selected state (stop reason ``time limit``);
    #: unset = no limit
    time_limit_seconds: float | None = None
    #: resumable fits: the training state (model and Adam moments, ~400 MB on a BraTS pair,
    #: about a second to write) is saved at most this often; a kill loses at most this much
    checkpoint_seconds: float = 60.0
    #: weight of each image in the loss, in input order; unset = every image weighs the same
    image_weights: list[float] | None = None
    #: refine each image's rigid transform with the fit (:mod:`.alignment`: six parameters
    #: per image, the reference fixed; joint models of two or more images only).  Off: it
    #: undoes a registration error of millimetres (the phantom: 1.8 mm to 0.2 mm), but on the
    #: gli pair it drifted 0.2 mm from the true identity and did not undo ANTs' 0.3 mm error
    #: (benchmarks/RESULTS.md)
    refine_alignment: bool = False
    #: the refinement's Adam learning rate (mm per step; rotations as the arc at 50 mm),
    #: annealed with the model's
    alignment_learning_rate: float = 0.01
    # Slice profile (point spread function) model
    #: the slab model: compare each LR voxel with the model's mean across its slice profile
    #: rather than with the model at the voxel's centre (the point model); unset = the recipe
    #: decides (:mod:`.recipe`: on for thick 2D slices, with its points fixed and the whole
    #: schedule's last state kept); true or false chooses, the other settings then apply as given
    psf: bool | None = None
    #: points across each voxel's profile (K model evaluations per voxel and step)
    psf_samples: int = 2
    #: ``box`` (uniform across the slice thickness, nothing in plane: a 2D acquisition's
    #: slab) or ``gaussian`` (FWHM one voxel along every voxel axis)
    psf_profile: str = "box"
    #: the loss through the profile: False squares the K-point mean (biased by the profile's
    #: variance / K); True averages products of distinct samples (unbiased, K >= 2)
    psf_unbiased: bool = False
    #: ``stratified`` (box only: the K midpoints of equal parts of the slab, the same every
    #: step: the K-point mean is then a fixed quadrature of the slab mean, JTV's forward model,
    #: with no sampling variance) or ``random`` (K points drawn from the profile each step)
    psf_sampling: str = "stratified"
    #: the slab model in the last N epochs only, after the point model (voxel centres) in the
    #: others, the learning rate's cosine restarted at the switch: a warm start at a fraction
    #: of the slab model's cost (K model evaluations per voxel); None = every epoch
    psf_epochs: int | None = None
    # Data consistency after the fit (:mod:`.consistency`): the prediction re-simulated
    # through each input's slice profile, the residual cubic-interpolated back and added
    #: steps of x <- x + cubic(y - A x); 0 turns the step off
    consistency_steps: int = 2
    #: weight of the joint-total-variation reconstruction (mcinr_bids.methods.jtv, the [jtv]
    #: table) averaged into the output: 0 = the INR alone; 0.5 = the INR/JTV mean; unset = the
    #: recipe decides (:mod:`.recipe`: 0.5 for box-profile inputs without thick slices, else 0:
    #: the slab model is better alone on thick slices, JTV is below cubic on decimated ones)
    jtv_blend: float | None = None
    #: weight of the self-supervised through-plane network (:mod:`.throughplane`: a small 2D
    #: CNN per image with thick slices, trained on its own slices degraded along one in-plane
    #: axis, run across the thick axis on the cubic interpolation and on the INR's output, the
    #: two restorations averaged) blended into the INR's output after the consistency step
    #: (the evaluation mode scores it too): 0 = off; 2/3 = the mean of the INR and the two
    #: restorations; unset = the recipe decides (:mod:`.recipe`: 2/3 for point-sampled slices,
    #: such as decimated data; 0 for thick slabs, where the slab model
    #: is better: -0.09 to -0.31 dB on the gli T1c with it; benchmarks/RESULTS.md)
    through_plane_weight: float | None = None
    #: training steps of each image's through-plane network (16 patches of 32 x 32 a step)
    through_plane_steps: int = 3000
    #: soften each thick image's acquired slices in its output, by the weight that makes the
    #: through-plane roughness most even across slice phases (:mod:`.softening`); unset = the
    #: recipe decides (:mod:`.recipe`: on for point-sampled slices, such as decimated data,
    #: banding 1.5-2.5; off for thick slabs, the slab model's banding 1.04-1.25)
    destripe: bool | None = None

    @property
    def point_epochs(self) -> int:
        """Epochs of the point model before the slab model (0 without a warm start)."""
        if not self.psf or self.psf_epochs is None:
            return 0
        return max(0, self.epochs - self.psf_epochs)

    def slab_epoch(self, epoch: int) -> bool:
        """Whether the 1-based ``epoch`` is fitted through the slice profile."""
        return self.psf and epoch > self.point_epochs

    # The three values below read the switches that the recipe (:mod:`.recipe`) has decided;
    # unset (the recipe has not run), the stage is off.
    @property
    def blend_weight(self) -> float:
        """The JTV weight in the output (``jtv_blend``)."""
        return float(self.jtv_blend or 0.0)

    @property
    def network_weight(self) -> float:
        """The through-plane network's weight (``through_plane_weight``)."""
        return float(self.through_plane_weight or 0.0)

    @property
    def destripe_on(self) -> bool:
        """Whether the acquired slices are softened (``destripe``)."""
        return bool(self.destripe)

    # Early stopping on mutual information between predicted contrasts
    #: the paper's rule: stop when the MI between predicted contrasts varied by less than
    #: ``mi_tolerance`` (relative) over ``mi_window`` epochs
    early_stopping: bool = True
    #: the state the fit keeps: ``mi`` (the epoch the MI rule picks, the paper's; the last one
    #: when it never fires) or ``last`` (the end of the schedule: the slab model's MI pick can
    #: come far too early, epoch 11 of 40 on a thick case, 1.7 dB below the last state)
    selection: str = "mi"
    #: histogram bins per axis of the MI
    mi_bins: int = 32
    #: output points the MI is computed on after each epoch
    mi_points: int = 65536
    #: epochs the MI rule looks back over
    mi_window: int = 4
    #: the MI rule's relative tolerance
    mi_tolerance: float = 0.005
    #: epochs before the MI rule may stop the fit
    min_epochs: int = 5
    # Data
    #: each image's intensities are scaled so that these percentiles inside its foreground become 0
    #: and 1 for the fit (outputs return to the image's units)
    intensity_percentiles: list[float] = field(default_factory=lambda: [0.5, 99.5])
    #: the fit samples each image's voxels inside its foreground mask dilated by this distance
    foreground_dilation_mm: float = 2.0
    # Execution: set from [execution] (random_seed, device, omp_nthreads), one for every method
    #: random seed of the model, the sampling and the networks
    seed: int = 0
    #: ``auto`` (cuda, then mps, then cpu), ``cpu``, ``cuda`` or ``mps``
    device: str = "auto"
    #: torch threads (unset: all cores)
    threads: int | None = None
    #: output points per prediction batch (memory against speed)
    prediction_chunk: int = 262144

    def validate(self) -> None:
        """Raise ValueError on settings that cannot work."""
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.encoding == "grid" and not self.grid_cell_sizes_mm:
            raise ValueError("the grid encoding needs grid_cell_sizes_mm")
        for name in ("batch_size", "epochs", "mi_bins", "mi_points", "psf_samples",
                     "diffusion_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.psf_profile not in PSF_PROFILES:
            raise ValueError(f"psf_profile must be one of {PSF_PROFILES}, got "
                             f"{self.psf_profile!r}")
        if self.psf_sampling not in PSF_SAMPLINGS:
            raise ValueError(f"psf_sampling must be one of {PSF_SAMPLINGS}, got "
                             f"{self.psf_sampling!r}")
        if self.psf_sampling == "stratified" and self.psf_profile != "box":
            raise ValueError("psf_sampling 'stratified' needs psf_profile 'box' (set "
                             "psf_sampling = 'random' for the Gaussian profile)")
        if self.psf_epochs is not None and self.psf_epochs < 1:
            raise ValueError(f"psf_epochs must be >= 1 (or unset), got {self.psf_epochs}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {SELECTIONS}, got {self.selection!r}")
        if self.jtv_blend is not None and not 0.0 <= self.jtv_blend <= 1.0:
            raise ValueError(f"jtv_blend must be between 0 and 1, got {self.jtv_blend}")
        if self.through_plane_weight is not None and not 0.0 <= self.through_plane_weight <= 1.0:
            raise ValueError("through_plane_weight must be between 0 and 1, got "
                             f"{self.through_plane_weight}")
        if self.through_plane_steps < 1:
            raise ValueError(f"through_plane_steps must be >= 1, got {self.through_plane_steps}")
        if self.consistency_steps < 0:
            raise ValueError(f"consistency_steps must be >= 0, got {self.consistency_steps}")
        if self.checkpoint_seconds < 0:
            raise ValueError("checkpoint_seconds must be >= 0")
        if self.learning_rate <= 0:
            raise ValueError("learning_rate must be > 0")
        if self.alignment_learning_rate <= 0:
            raise ValueError("alignment_learning_rate must be > 0")
        if self.feature_diffusion < 0:
            raise ValueError("feature_diffusion must be >= 0")



def informed_cell_sizes(cell_sizes_mm: list[float], finest_spacing_mm: float) -> list[float]:
    """The grid levels that the samples can inform: cells no finer than the finest voxel spacing
    of the inputs divided by sqrt(2); the coarsest level always stays.

    A level finer than that has several vertices between neighbouring samples in every direction:
    no sample decides them, they only cost time (on 3 mm data the 1 mm table is 27 times the
    samples).  Inputs with a voxel size of 1 mm or finer in some direction keep every level of
    the presets.
    """
    limit = finest_spacing_mm / math.sqrt(2.0)
    kept = [float(c) for c in cell_sizes_mm if c >= limit]
    if not kept and cell_sizes_mm:
        kept = [float(max(cell_sizes_mm))]
    return kept


PRESETS: dict[str, dict] = {
    # Chosen by measurement on 2 CPU cores (benchmarks/RESULTS.md).
    "fast": {},
    # Table 3 of the paper: 512 Fourier features (B: 256x3 ~ N(0, 4^2)), 5 x 1024 ReLU trunk,
    # two-layer 512-wide heads, batch 1000, Adam 4e-4 with cosine annealing, 50 epochs.
    "paper": {
        "encoding": "fourier",
        "fourier_features": 256,
        "fourier_scale": 4.0,
        "trunk_layers": 5,
        "trunk_width": 1024,
        "head_layers": 2,
        "head_width": 512,
        "batch_size": 1000,
        "min_steps_per_epoch": 0,
        "feature_diffusion": 0.0,
        "learning_rate": 4e-4,
        "epochs": 50,
    },
    # fast + the box slice profile in the fit with 4 fixed points across each slab (thick 2D
    # slices; the automatic slab model has 2), the model's own output (no consistency step,
    # no JTV blend: the fit already matches the slab means, and the blend brought JTV's slab
    # steps back): the best banding-free reconstruction measured on thick slices (three
    # cases, 3 seeds on one; ~1.6x the automatic slab model's time; RESULTS.md)
    "thick-slices": {
        "psf": True,
        "psf_profile": "box",
        "psf_sampling": "stratified",
        "psf_samples": 4,
        "consistency_steps": 0,
        "jtv_blend": 0.0,
        # the whole schedule, its last state: the MI rule stopped an end-to-end run at epoch
        # 16 of 40 (33.27 / 26.25 dB on gli, below the default), and picked epoch 11 of 40 in
        # a slab fit with 2 points (1.7 dB below its last state)
        "early_stopping": False,
        "selection": "last",
    },
}


def settings_for_preset(preset: str = "fast", **overrides) -> INRSettings:
    """Return the settings of a named preset with explicit overrides applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    values = INRSettings().to_dict()
    values.update(PRESETS[preset])
    values.update({k: v for k, v in overrides.items() if v is not None})
    settings = INRSettings.from_dict(values)
    settings.validate()
    return settings
