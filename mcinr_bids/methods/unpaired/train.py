"""Training of the unpaired contrastive method on a cohort's planes (resumable), and its model
file."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from mcinr_bids.core.device import select_device
from mcinr_bids.core.io import atomic_write
from mcinr_bids.core.slices import slice_profile
from mcinr_bids.core.volumes import Volume
from mcinr_bids.methods.unpaired.data import (
    PlaneBank,
    degrade,
    fine_planes,
    lr_planes,
    slice_factor,
)
from mcinr_bids.methods.unpaired.model import (
    FeatureDiscriminator,
    Generator,
    PatchDiscriminator,
    Projection,
    adversarial_loss,
    info_nce,
    sample_locations,
)
from mcinr_bids.methods.unpaired.settings import UnpairedSettings

MODEL_FORMAT = 1
LOSSES = ("cycle", "hr", "adversarial", "feature", "contrastive", "discriminator")


@dataclass
class TrainedUnpaired:
    """A trained LR->HR generator of one contrast and the facts of its training."""

    generator: Generator
    settings: UnpairedSettings
    contrast: str
    history: list[dict] = field(default_factory=list)
    #: names of the LR and HR training images and a hash of their data
    training: dict = field(default_factory=dict)
    seconds: float = 0.0
    device: str = "cpu"
    resumed_from_step: int | None = None

    @property
    def factor(self) -> int:
        return self.generator.factor

    @property
    def profile(self) -> str:
        """The slice profile of the LR images it was trained on (and is for)."""
        return self.generator.profile

    def summary(self) -> dict:
        """The sidecar record of the model (JSON types)."""
        return {"Contrast": self.contrast, "SliceFactor": self.factor,
                "SliceProfile": self.profile,
                "Parameters": self.settings.to_dict(), "Training": self.training,
                "Steps": len(self.history) and self.history[-1]["step"],
                "TrainingSeconds": round(self.seconds, 2), "Device": self.device,
                "ResumedFromStep": self.resumed_from_step, "LossesPerLog": self.history}


def data_hash(volumes: list[Volume]) -> str:
    """SHA-256 (16 hex digits) of the images' data and affines, in order."""
    digest = hashlib.sha256()
    for volume in volumes:
        digest.update(np.ascontiguousarray(volume.data, dtype=np.float32).tobytes())
        digest.update(np.asarray(volume.affine, dtype=np.float64).tobytes())
    return digest.hexdigest()[:16]


def training_banks(low: list[Volume], high: list[Volume], settings: UnpairedSettings,
                   masks_low: list | None = None, masks_high: list | None = None
                   ) -> tuple[PlaneBank, PlaneBank, int, str]:
    """The LR domain (planes across the thick axis of ``low``), the HR domain (fine planes of
    ``high`` and the in-plane slices of ``low``), and the slice factor and slice profile
    (:func:`~mcinr_bids.core.slices.slice_profile`) the LR images share."""
    if not low:
        raise ValueError("the unpaired method needs at least one thick (LR) image")
    factors = [slice_factor(v) for v in low]
    profiles = [slice_profile(v) for v in low]
    for volume, factor, profile in zip(low, factors, profiles):
        if factor < 2:
            raise ValueError(f"{volume.path or volume.name}: not a thick-slice image (slice "
                             "spacing < 2x the pixel size); use it as an HR image")
        if factor != factors[0]:
            raise ValueError(f"{volume.path or volume.name}: slice factor {factor}, the other "
                             f"LR images have {factors[0]}; train one model per slice factor")
        if profile != profiles[0]:
            raise ValueError(f"{volume.path or volume.name}: {profile} slice profile, the "
                             f"other LR images have {profiles[0]} (SliceThickness in their "
                             "sidecars); train one model per slice profile")
    factor, profile = factors[0], profiles[0]
    masks_low = masks_low or [None] * len(low)
    masks_high = masks_high or [None] * len(high)
    patch = max(2 * factor, settings.patch // factor * factor)
    lows, highs = [], []
    for volume, mask in zip(low, masks_low):
        lows += lr_planes(volume, mask)
        highs += fine_planes(volume, mask, settings.hr_detail)
    for volume, mask in zip(high, masks_high):
        highs += fine_planes(volume, mask, settings.hr_detail)
    return (PlaneBank(lows, patch // factor, patch, flip_rows=profile == "box"),
            PlaneBank(highs, patch, patch, transpose=True), factor, profile)


def _resume_key(settings: UnpairedSettings, training: dict) -> str:
    values = {**settings.to_dict(), "device": None, "threads": None}
    return hashlib.sha256(json.dumps([values, training], sort_keys=True).encode()).hexdigest()


def build_networks(factor: int, profile: str, settings: UnpairedSettings, device) -> dict:
    """The generator, the InfoNCE projection, the two critics and their two Adam optimisers
    (torch's random state seeds their weights: seed it first)."""
    channels = settings.channels
    generator = Generator(factor, profile, channels, settings.blocks).to(device)
    projection = Projection(channels).to(device)
    image_critic = PatchDiscriminator(channels).to(device)
    feature_critic = FeatureDiscriminator(channels).to(device)
    betas = (0.5, 0.999)
    optimise_g = torch.optim.Adam([*generator.parameters(), *projection.parameters()],
                                  lr=settings.learning_rate, betas=betas)
    optimise_d = torch.optim.Adam([*image_critic.parameters(), *feature_critic.parameters()],
                                  lr=settings.learning_rate, betas=betas)
    return {"generator": generator, "projection": projection, "image_critic": image_critic,
            "feature_critic": feature_critic, "optimise_g": optimise_g,
            "optimise_d": optimise_d}


def _resume(resume_file: str | None, key: str, nets: dict, rng, device
            ) -> tuple[int, list[dict], int | None]:
    """Load the state a run with the same ``key`` left in ``resume_file`` into ``nets`` and the
    random generators: (step, history, the step resumed from or None)."""
    if not (resume_file and os.path.exists(resume_file)):
        return 0, [], None
    state = torch.load(resume_file, map_location=device, weights_only=False)
    if state.get("key") != key:
        return 0, [], None
    for name, net in nets.items():
        net.load_state_dict(state[name])
    rng.bit_generator.state = state["rng"]
    torch.set_rng_state(state["torch_rng"])
    return state["step"], state["history"], state["step"]


def train_unpaired(low: list[Volume], high: list[Volume], settings: UnpairedSettings | None = None,
                   *, contrast: str = "", masks_low: list | None = None,
                   masks_high: list | None = None, resume_file: str | None = None,
                   progress: bool = False, say=None) -> TrainedUnpaired:
    """Train the LR->HR generator of one contrast on unpaired LR and HR images.

    Parameters
    ----------
    low : list of Volume
        Thick-slice images of the contrast (the LR domain; all with one slice factor).
    high : list of Volume
        Isotropic images of the contrast from other subjects (may be empty: the in-plane
        slices of ``low`` are the HR domain then).
    resume_file : str or None
        Training state saved here every ``checkpoint_every`` steps; a run with the same
        settings and data continues from it, and it is removed at the end.
    progress, say
        A progress bar; ``say(message)`` every 30 s (a log).
    """
    settings = settings or UnpairedSettings()
    settings.validate()
    started = time.perf_counter()
    if settings.threads:
        torch.set_num_threads(int(settings.threads))
    device = select_device(settings.device)
    lr_bank, hr_bank, factor, profile = training_banks(low, high, settings, masks_low,
                                                       masks_high)
    training = {"low": [v.path or v.name for v in low], "high": [v.path or v.name for v in high],
                "data_hash": data_hash([*low, *high]), "lr_planes": len(lr_bank.planes),
                "hr_planes": len(hr_bank.planes)}
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    nets = build_networks(factor, profile, settings, device)
    generator = nets["generator"]
    key = _resume_key(settings, training)
    step, history, resumed = _resume(resume_file, key, nets, rng, device)
    if resumed is not None and say:
        say(f"resumed the training of {contrast or 'the model'} at step {step}")
    sums = torch.zeros(len(LOSSES), device=device)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=settings.steps, initial=step, desc=f"unpaired {contrast}".strip(),
                   unit="step")
    last_said = time.perf_counter()
    while step < settings.steps:
        low_batch = torch.from_numpy(lr_bank.sample(settings.batch, rng))[:, None].to(device)
        high_batch = torch.from_numpy(hr_bank.sample(settings.batch, rng))[:, None].to(device)
        losses, fake, source = _generator_step(nets, low_batch, high_batch, settings, factor)
        losses.append(_critic_step(nets, high_batch, fake, source))
        sums += torch.stack([loss.detach() for loss in losses])
        step += 1
        if bar:
            bar.update(1)
        if step % settings.log_every == 0 or step == settings.steps:
            count = step - (history[-1]["step"] if history else 0)
            history.append({"step": step, **{f"loss_{name}": round(float(value) / count, 6)
                                             for name, value in zip(LOSSES, sums)}})
            sums.zero_()
        if resume_file and step % settings.checkpoint_every == 0 and step < settings.steps:
            state = {name: net.state_dict() for name, net in nets.items()}
            state.update(key=key, step=step, history=history, rng=rng.bit_generator.state,
                         torch_rng=torch.get_rng_state())
            atomic_write(resume_file, lambda path, state=state: torch.save(state, path))
        if say and time.perf_counter() - last_said >= 30:
            last_said = time.perf_counter()
            say(f"unpaired {contrast}: step {step}/{settings.steps}")
    if bar:
        bar.close()
    if resume_file and os.path.exists(resume_file):
        os.remove(resume_file)
    generator.eval()
    return TrainedUnpaired(generator=generator, settings=settings, contrast=contrast,
                           history=history, training=training,
                           seconds=time.perf_counter() - started, device=str(device),
                           resumed_from_step=resumed)


def _generator_step(nets, low, high, settings: UnpairedSettings, factor: int):
    """One generator update; returns the losses, X_{s~t} and f_s (detached)."""
    generator, projection = nets["generator"], nets["projection"]
    up = generator.upsample(low)
    source = generator.features(up)  # f_s
    fake = up + generator.decoder(source)  # X_{s~t}
    cycled = degrade(fake, factor, generator.profile)  # Y_{s~t~s}
    loss_cycle = (cycled - low).abs().mean()
    loss_hr = (generator(degrade(high, factor, generator.profile)) - high).abs().mean()
    loss_adversarial = adversarial_loss(nets["image_critic"](fake), True)
    loss_feature = adversarial_loss(nets["feature_critic"](source), True)
    if settings.weight_contrastive > 0:
        locations = torch.randperm(source.shape[2] * source.shape[3], device=source.device)
        locations = locations[:settings.nce_locations]
        queries = projection(sample_locations(
            generator.features(generator.upsample(cycled)), locations))  # f_{s~t~s}
        keys = projection(sample_locations(source, locations))
        loss_contrastive = info_nce(queries, keys, settings.temperature)
    else:
        loss_contrastive = torch.zeros((), device=low.device)
    total = (settings.weight_cycle * loss_cycle + settings.weight_hr * loss_hr
             + settings.weight_adversarial * loss_adversarial
             + settings.weight_feature * loss_feature
             + settings.weight_contrastive * loss_contrastive)
    nets["optimise_g"].zero_grad(set_to_none=True)
    total.backward()
    nets["optimise_g"].step()
    return ([loss_cycle, loss_hr, loss_adversarial, loss_feature, loss_contrastive],
            fake.detach(), source.detach())


def _critic_step(nets, high, fake, source):
    """One update of both discriminators (real HR / f_t against X_{s~t} / f_s)."""
    generator = nets["generator"]
    with torch.no_grad():
        target = generator.features(high)  # f_t
    image_critic, feature_critic = nets["image_critic"], nets["feature_critic"]
    loss = (adversarial_loss(image_critic(high), True)
            + adversarial_loss(image_critic(fake), False)
            + adversarial_loss(feature_critic(target), True)
            + adversarial_loss(feature_critic(source), False))
    nets["optimise_d"].zero_grad(set_to_none=True)
    loss.backward()
    nets["optimise_d"].step()
    return loss.detach()


def save_unpaired(trained: TrainedUnpaired, path: str) -> None:
    """The generator and its record; loadable with ``torch.load(weights_only=True)``."""
    checkpoint = {"format": MODEL_FORMAT, "settings": trained.settings.to_dict(),
                  "factor": trained.factor, "profile": trained.profile,
                  "contrast": trained.contrast,
                  "training": json.dumps(trained.training), "history": json.dumps(trained.history),
                  "seconds": trained.seconds, "device": trained.device,
                  "state": {k: v.detach().cpu() for k, v in
                            trained.generator.state_dict().items()}}
    atomic_write(path, lambda temporary: torch.save(checkpoint, temporary))


def load_unpaired(path: str, device: str = "auto") -> TrainedUnpaired:
    """A model written by :func:`save_unpaired`, on ``device``."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises many kinds for a bad file
        raise ValueError(f"{path}: not a readable unpaired model file ({error}); train "
                         "one with 'mcinr-bids BIDS_DIR OUTPUT_DIR group --train-unpaired'."
                         ) from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != MODEL_FORMAT:
        found = checkpoint.get("format") if isinstance(checkpoint, dict) else None
        raise ValueError(f"{path}: not an unpaired model file of this version (format "
                         f"{found!r})")
    values = dict(checkpoint["settings"])
    # models saved before 2026-12-06 kept the profile among their settings
    profile = checkpoint.get("profile") or values.pop("profile", "box")
    values.pop("profile", None)
    settings = UnpairedSettings.from_dict(values)
    generator = Generator(checkpoint["factor"], profile, settings.channels,
                          settings.blocks)
    generator.load_state_dict(checkpoint["state"])
    generator.to(select_device(device)).eval()
    return TrainedUnpaired(generator=generator, settings=settings,
                           contrast=checkpoint["contrast"],
                           history=json.loads(checkpoint["history"]),
                           training=json.loads(checkpoint["training"]),
                           seconds=checkpoint["seconds"], device=checkpoint["device"])


def write_model(trained: TrainedUnpaired, path: str) -> tuple[str, str]:
    """The model file (:func:`save_unpaired`) and its JSON sidecar beside it (the training
    images, data hash, settings, losses per logged step, software versions)."""
    from mcinr_bids import __version__
    from mcinr_bids.core.io import write_json

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_unpaired(trained, path)
    sidecar = os.path.splitext(path)[0] + ".json"
    write_json({"Description": f"Unpaired contrastive super-resolution model of "
                               f"{trained.contrast or 'one contrast'} (Li et al. 2023, "
                               "arXiv 2310.15767; mcinr-bids' implementation): LR planes "
                               f"x{trained.factor} along the thick axis -> HR planes.",
                **trained.summary(),
                "SoftwareVersions": {"mcinr-bids": __version__, "torch": torch.__version__}},
               sidecar)
    return path, sidecar
