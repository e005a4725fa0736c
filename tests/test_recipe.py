"""The recipe of the default method: each stage decided from the acquisitions alone, each with
one switch, the same outputs as the rules it replaced, recorded in the fit, the checkpoint, the
sidecar and the report."""

import json

import pytest

from mcinr_bids.methods.inr.recipe import decide_recipe
from mcinr_bids.methods.inr.settings import INRSettings

SWITCHES = ("psf", "through_plane_weight", "destripe", "jtv_blend")


def stages(recipe) -> dict:
    return {stage.name: stage for stage in recipe.stages}


@pytest.mark.parametrize("thick, profile, expected", [
    # thick 2D slices (every real acquisition): the slab model alone, with the consistency step
    (True, "box", {"psf": True, "through_plane_weight": 0.0, "destripe": False,
                   "jtv_blend": 0.0}),
    # decimated (point-sampled) slices: the point model, the network at 2/3, the softening
    (True, "point", {"psf": False, "through_plane_weight": 2 / 3, "destripe": True,
                     "jtv_blend": 0.0}),
    # nothing thick, box profile: the point model blended with JTV
    (False, "box", {"psf": False, "through_plane_weight": 0.0, "destripe": False,
                    "jtv_blend": 0.5}),
])
def test_each_stage_follows_the_acquisitions(thick, profile, expected):
    settings, recipe = decide_recipe(INRSettings(), thick, profile)
    assert {name: getattr(settings, name) for name in SWITCHES} == pytest.approx(expected)
    # the values the rest of the code reads are the recipe's
    assert settings.blend_weight == pytest.approx(expected["jtv_blend"])
    assert settings.network_weight == pytest.approx(expected["through_plane_weight"])
    assert settings.destripe_on is expected["destripe"]
    by_name = stages(recipe)
    assert by_name["slab model"].on is expected["psf"]
    assert by_name["consistency step"].on  # 2 steps by default, whatever the acquisitions
    assert all(stage.why != "set" for stage in recipe.stages if stage.name != "consistency step")


def test_a_switch_overrides_its_stage_alone():
    """Setting one switch changes that stage only; no automatic value follows another."""
    automatic, _ = decide_recipe(INRSettings(), thick_slices=True)
    forced, recipe = decide_recipe(INRSettings(psf=False), thick_slices=True)
    assert forced.psf is False
    for name in ("through_plane_weight", "destripe", "jtv_blend"):
        assert getattr(forced, name) == getattr(automatic, name)
    assert stages(recipe)["slab model"].why == "set"
    assert forced.selection == "mi" and forced.early_stopping  # the slab model's companions
    off, recipe = decide_recipe(INRSettings(consistency_steps=0), thick_slices=True)
    assert not stages(recipe)["consistency step"].on


def test_deciding_twice_changes_nothing():
    settings, _ = decide_recipe(INRSettings(), True, "point")
    assert decide_recipe(settings, True, "point")[0] == settings


def test_the_lines_say_why_and_name_the_switch():
    _, recipe = decide_recipe(INRSettings(), thick_slices=True)
    lines = recipe.lines()
    assert lines[0].startswith("acquisitions: thick 2D slices")
    assert "slab model: on: the inputs are thick 2D slices [inr] psf" in lines
    assert any(line.startswith("JTV blend: off: thick slices") and line.endswith("jtv_blend")
               for line in lines)
    record = recipe.to_dict()
    assert record["slab model"] == {"On": True, "Value": True,
                                    "Why": "the inputs are thick 2D slices",
                                    "Switch": "[inr] psf"}
    json.dumps(record)  # JSON types for the sidecar


def test_the_fit_records_its_recipe(tmp_path, decimated):
    """The fit decides the recipe from its own inputs (decimated: 1 mm slices 4 mm apart, point
    samples), and the checkpoint keeps it."""
    from mcinr_bids.methods.inr import fit_inr, load_checkpoint, save_checkpoint

    settings = INRSettings(epochs=1, min_epochs=1, grid_cell_sizes_mm=[16.0, 8.0],
                           mi_points=1024, batch_size=4096)
    fitted = fit_inr(decimated, settings)
    assert fitted.recipe["Acquisitions"].startswith("thick slices that are point samples")
    assert fitted.recipe["through-plane network"]["On"] is True
    assert fitted.summary()["recipe"] == fitted.recipe
    save_checkpoint(fitted, str(tmp_path / "model.pt"))
    assert load_checkpoint(str(tmp_path / "model.pt")).recipe == fitted.recipe
