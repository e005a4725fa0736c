"""Slice thickness from BIDS sidecars: slices thinner than their spacing (gaps) narrow the slab
of every forward model (the INR's slab model, JTV, the consistency step); a thickness that
cannot describe the slices is one error naming the file."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from mcinr_bids.core.slices import (
    acquisitions,
    load_acquisition,
    read_slice_thickness,
    slab_fraction,
    slice_profile,
    slice_profile_factors,
)
from mcinr_bids.core.volumes import CoordinateNormaliser, InputError, Volume

GAPPED = np.diag([1.0, 1.0, 6.5, 1.0])  # 5 mm slices every 6.5 mm: 1.5 mm gaps


def write_image(path, affine, sidecar: dict | str | None):
    data = np.random.default_rng(0).random((8, 8, 6)).astype(np.float32) + 1.0
    nib.Nifti1Image(data, affine).to_filename(path)
    if sidecar is not None:
        text = sidecar if isinstance(sidecar, str) else json.dumps(sidecar)
        (path.parent / path.name.replace(".nii.gz", ".json")).write_text(text)
    return str(path)


def test_sidecar_thickness_narrows_the_slab_of_every_forward_model(tmp_path):
    from mcinr_bids.core.forward import profile_offsets

    path = write_image(tmp_path / "sub-01_FLAIR.nii.gz", GAPPED, {"SliceThickness": 5.0})
    volume = load_acquisition(path)
    assert volume.slice_thickness_mm == 5.0 and slab_fraction(volume) == pytest.approx(5 / 6.5)
    normaliser = CoordinateNormaliser(low=np.zeros(3), high=np.full(3, 50.0))
    factors = slice_profile_factors([volume], [None], normaliser, "box")[0]
    # offsets = u @ L.T, u in [-1/2, 1/2]: the slab is 5 mm (2 * 5 / 50 normalised), not 6.5
    np.testing.assert_allclose(factors, np.diag([0.0, 0.0, 0.2]), atol=1e-6)
    # JTV / consistency step: 5 points 1 mm apart across the 5 mm slab, centred on the slice
    offsets_mm = profile_offsets(volume, 1.0)[:, 2] * 6.5
    np.testing.assert_allclose(offsets_mm, [-2.0, -1.0, 0.0, 1.0, 2.0], atol=1e-9)
    contiguous = load_acquisition(write_image(tmp_path / "b.nii.gz", GAPPED, None))
    assert contiguous.slice_thickness_mm is None and slab_fraction(contiguous) == 1.0
    assert len(profile_offsets(contiguous, 1.0)) == 6  # round(6.5)
    # a 3D image's sidecar thickness changes nothing (it has no slab)
    iso = Volume(np.ones((4, 4, 4), np.float32), np.eye(4), slice_thickness_mm=2.0)
    assert slab_fraction(iso) == 1.0


def test_the_acquisition_knows_its_slice_profile(tmp_path):
    """box for thick 2D slices (no SliceThickness, or a slab wider than half the spacing);
    point for slices at most half as thick as they are apart (the paper's decimation: 1 mm of
    every 4); the subject is point-sampled only when every thick image is."""
    assert slice_profile(load_acquisition(write_image(tmp_path / "a.nii.gz", GAPPED,
                                                      None))) == "box"
    for thickness, profile in ((5.0, "box"), (3.3, "box"), (3.25, "point"), (1.0, "point")):
        path = write_image(tmp_path / f"{thickness}.nii.gz", GAPPED,
                           {"SliceThickness": thickness})
        assert slice_profile(load_acquisition(path)) == profile, thickness
    iso = Volume(np.ones((4, 4, 4), np.float32), np.eye(4), slice_thickness_mm=0.2)
    thin = Volume(np.ones((4, 4, 4), np.float32), GAPPED, slice_thickness_mm=1.0)
    thick = Volume(np.ones((4, 4, 4), np.float32), GAPPED)
    assert slice_profile(iso) == "box"  # no slices to speak of: a 3D voxel
    assert acquisitions([thin, iso]) == (True, "point")
    assert acquisitions([thin, thick]) == (True, "box")
    assert acquisitions([iso]) == (False, "box")


def test_the_old_profile_settings_say_where_the_profile_went():
    from mcinr_bids.methods.inr.settings import INRSettings
    from mcinr_bids.methods.jtv.settings import JTVSettings
    from mcinr_bids.methods.unpaired.settings import UnpairedSettings

    for table, key in ((INRSettings, "consistency_profile"), (JTVSettings, "profile"),
                       (UnpairedSettings, "profile")):
        with pytest.raises(ValueError, match=rf"\[{table.TABLE}\] {key}: no longer a setting: "
                                             "the slice profile is each image's own"):
            table.from_dict({key: "point"})


def test_models_saved_with_a_profile_setting_still_load():
    """A checkpoint of before 2026-12-06 kept ``consistency_profile`` and undecided stages:
    they are decided as that model was run."""
    from mcinr_bids.methods.inr.predict import saved_settings

    point = saved_settings({"consistency_profile": "point", "jtv_blend": None,
                            "through_plane_weight": None, "destripe": None})
    assert (point.blend_weight, point.network_weight, point.destripe_on) == (0.0, 2 / 3, True)
    box = saved_settings({"consistency_profile": "box", "jtv_blend": None, "destripe": False})
    assert (box.blend_weight, box.network_weight, box.destripe_on) == (0.5, 0.0, False)


@pytest.mark.parametrize("sidecar, words", [
    ({"SliceThickness": 30.0}, "30.0 mm does not fit slices 6.5 mm apart"),
    ({"SliceThickness": 0}, "does not fit"),
    ('{"SliceThickness": "thick"}', "numeric SliceThickness"),
    ("{not json", "not a readable JSON sidecar"),
])
def test_a_thickness_that_cannot_be_is_named_with_its_file(tmp_path, sidecar, words):
    from mcinr_bids.cli.inputs import image_problem

    path = write_image(tmp_path / "sub-01_T2w.nii.gz", GAPPED, sidecar)
    with pytest.raises(InputError, match=words) as error:
        load_acquisition(path)
    assert "sub-01_T2w" in str(error.value) and "fix" in str(error.value)
    # the app's check before any work: the same message (the thickness pybids found given)
    thickness = sidecar.get("SliceThickness") if isinstance(sidecar, dict) else None
    if thickness is not None:
        assert words in image_problem(path, thickness)
    assert image_problem(path, 5.0) is None  # the app checks the thickness pybids found
    assert read_slice_thickness(str(tmp_path / "none.nii.gz")) is None


def test_the_app_reads_inherited_thickness_and_gives_it_to_every_reconstruction(tmp_path):
    """A top-level ``FLAIR.json`` (BIDS inheritance) reaches the subject's inputs; the
    reconstruction nodes get one thickness per image (0 = the spacing)."""
    from bids import BIDSLayout

    from mcinr_bids.cli.inputs import image_problem
    from mcinr_bids.methods.inr.settings import settings_for_preset
    from mcinr_bids.pipeline.bids import collect_inputs
    from mcinr_bids.pipeline.reconstruct import load_subject
    from mcinr_bids.quality.phantom import write_bids_phantom
    from mcinr_bids.workflows import fit

    root = tmp_path / "bids"
    paths = write_bids_phantom(str(root), subjects=(("01", None, False),), resolution=4.0,
                               factor=2, motion_degrees=0.0)[("01", None)]
    flair_sidecar = paths["FLAIR"].replace(".nii.gz", ".json")
    values = json.loads(open(flair_sidecar).read())
    assert values.pop("SliceThickness") == 8.0  # the phantom's own: contiguous slices
    with open(flair_sidecar, "w") as handle:
        json.dump(values, handle)
    (root / "FLAIR.json").write_text(json.dumps({"SliceThickness": 6.0}))
    layout = BIDSLayout(str(root), validate=False)
    group = collect_inputs(layout, ["01"], [], ["T1w", "FLAIR"])[0]
    assert group.slice_thickness == {paths["T1w"]: 8.0, paths["FLAIR"]: 6.0}
    # a thickness that is not a number stops that subject only, with its file named
    (root / "FLAIR.json").write_text(json.dumps({"SliceThickness": "6 mm"}))
    bad = collect_inputs(BIDSLayout(str(root), validate=False), ["01"], [], ["FLAIR"])[0]
    assert "not a number" in image_problem(paths["FLAIR"], bad.slice_thickness[paths["FLAIR"]])
    (root / "FLAIR.json").write_text(json.dumps({"SliceThickness": 6.0}))
    thickness = [group.slice_thickness[p] for p in group.images]
    volumes, _, _ = load_subject(group.images, ["a", "b"], [np.eye(4)] * 2, np.eye(4), None,
                                 thickness)
    assert [v.slice_thickness_mm for v in volumes] == thickness
    # the methods text names the image whose slices are thinner than their spacing
    from mcinr_bids.pipeline.bids import sidecar_slabs

    assert sidecar_slabs(group.images, group.slice_thickness) == [
        ("sub-01_FLAIR", 6.0, 8.0)]
    settings = settings_for_preset("fast").to_dict()
    workflow = fit.init_superres_wf(names=["a", "b"], reference=0, settings=settings,
                                    resolution=1.0, omp_nthreads=1, use_gpu=False,
                                    qc_holdout=4, slice_thickness=thickness)
    for node in ("fit", "qc_holdout"):
        assert workflow.get_node(node).inputs.slice_thickness == thickness
    plain = fit.init_superres_wf(names=["a", "b"], reference=0, settings=settings,
                                 resolution=1.0, omp_nthreads=1, use_gpu=False,
                                 method="jtv", slice_thickness=[0.0, 0.0])
    assert not plain.get_node("reconstruct").inputs.slice_thickness
