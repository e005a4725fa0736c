"""The recipe of the default method: which stages of the INR's reconstruction run for a
subject, each decided in this one place from the acquisitions alone (do they have thick slices;
are they thick 2D slices or point samples), each overridden by one setting of ``[inr]``.

======================  =============================  ==========================================
stage                   its switch                     automatic (the setting unset)
======================  =============================  ==========================================
slab model              ``psf``                        on for thick 2D slices (box profile)
consistency step        ``consistency_steps``          2 steps (0 turns it off)
through-plane network   ``through_plane_weight``       2/3 for point-sampled (decimated) slices
softening of slices     ``destripe``                   on for point-sampled (decimated) slices
JTV blend               ``jtv_blend``                  0.5 for box-profile inputs without thick
                                                       slices, else 0
======================  =============================  ==========================================

Each acquisition knows its slice profile (:mod:`mcinr_bids.core.slices`: ``box`` for thick 2D
slices, every real acquisition whose sidecar gives no thinner ``SliceThickness``; ``point`` for
slices at most half as thick as they are apart, such as the evaluation mode's ``decimate``
protocol makes them).  Each rule reads the acquisitions only, never another stage's setting.
The measurements behind each choice: ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mcinr_bids.methods.inr.settings import INRSettings

#: the through-plane network's weight on point-sampled slices (the INR and the network's two
#: restorations averaged)
NETWORK_WEIGHT = 2 / 3
#: the JTV blend's weight where no input has thick slices and the profile is box
BLEND_WEIGHT = 0.5


@dataclass(frozen=True)
class Stage:
    """One stage of the reconstruction: on or off (with its value), why, and its switch."""

    name: str
    on: bool
    value: object
    switch: str
    why: str

    def line(self) -> str:
        state = "on" if self.on else "off"
        value = "" if isinstance(self.value, bool) or not self.on else f" ({self.value:g})"
        return f"{self.name}: {state}{value}: {self.why} [inr] {self.switch}"


@dataclass(frozen=True)
class Recipe:
    """The stages of one subject's reconstruction, in the order they run."""

    acquisition: str
    stages: tuple[Stage, ...]

    def lines(self) -> list[str]:
        """One line per stage, for the log."""
        return [f"acquisitions: {self.acquisition}"] + [stage.line() for stage in self.stages]

    def to_dict(self) -> dict:
        """JSON types, for the sidecar and the report."""
        return {"Acquisitions": self.acquisition,
                **{stage.name: {"On": stage.on, "Value": stage.value, "Why": stage.why,
                                "Switch": f"[inr] {stage.switch}"}
                   for stage in self.stages}}


def describe_acquisitions(thick_slices: bool, profile: str) -> str:
    if not thick_slices:
        return "no input has thick slices (all near-isotropic)"
    if profile == "point":
        return ("thick slices that are point samples (slices at most half as thick as they "
                "are apart, e.g. decimated)")
    return "thick 2D slices: each voxel the mean across its slice (box profile)"


def decide_recipe(settings: INRSettings, thick_slices: bool, profile: str = "box"
                  ) -> tuple[INRSettings, Recipe]:
    """``settings`` with every automatic stage decided, and the recipe that says which stages
    run and why.

    ``thick_slices``, ``profile``: whether any input has thick slices and the inputs' slice
    profile (:func:`mcinr_bids.core.slices.acquisitions`).  A stage whose switch is set keeps
    it; an automatic one follows the acquisitions (the module's table).  The automatic slab
    model also fixes its points (``psf_profile`` box, ``psf_sampling`` stratified) and trains
    the whole schedule, keeping its last state (``early_stopping`` off, ``selection`` last: the
    MI rule stopped it under-trained or picked an early epoch).
    """
    box_thick = thick_slices and profile == "box"
    changes, stages = {}, []

    def decide(name, switch, automatic, why_on, why_off, value_of=bool):
        given = getattr(settings, switch)
        value = automatic if given is None else given
        if given is None:
            changes[switch] = value
        on = bool(value)
        why = ("set" if given is not None else (why_on if on else why_off))
        stages.append(Stage(name, on, value_of(value), switch, why))
        return value

    if decide("slab model", "psf", box_thick, "the inputs are thick 2D slices",
              "no thick 2D slices") and settings.psf is None:
        changes.update(psf_profile="box", psf_sampling="stratified", early_stopping=False,
                       selection="last")
    steps = settings.consistency_steps
    stages.append(Stage("consistency step", steps > 0, steps, "consistency_steps",
                        "every reconstruction is re-simulated and corrected" if steps
                        else "set to 0"))
    decide("through-plane network", "through_plane_weight",
           NETWORK_WEIGHT if profile == "point" else 0.0,
           "point-sampled slices leave gaps a 2D network restores", "no point-sampled slices",
           float)
    decide("softening of acquired slices", "destripe", profile == "point",
           "point-sampled slices stripe the output", "no point-sampled slices")
    decide("JTV blend", "jtv_blend",
           BLEND_WEIGHT if profile == "box" and not thick_slices else 0.0,
           "box-profile inputs without thick slices",
           "thick slices: the slab model is better alone" if box_thick
           else "point-sampled slices: JTV is below cubic there", float)
    resolved = dataclasses.replace(settings, **changes)
    return resolved, Recipe(describe_acquisitions(thick_slices, profile), tuple(stages))
