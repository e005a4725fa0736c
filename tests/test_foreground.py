"""The output foreground: where the model is predicted rather than set to the background."""

from __future__ import annotations

import numpy as np

from mcinr_bids.core.volumes import output_foreground


def test_the_rim_between_a_brain_slice_and_a_background_slice_is_foreground():
    """An axial image with 4 mm slices whose mask ends after its third slice (z = 8 mm) and an
    isotropic image whose mask reaches z = 11 mm: the points up to the first background slice
    (z = 12 mm) are foreground where the isotropic mask says so.  With the 0.5 level used
    before, the foreground stopped halfway (z = 10 mm) and the brain's rim was cut off."""
    thick = np.zeros((10, 10, 5), dtype=bool)
    thick[:, :, :3] = True
    thick_affine = np.diag([1.0, 1.0, 4.0, 1.0])
    fine = np.zeros((10, 10, 20), dtype=bool)
    fine[:, :, :12] = True  # z = 0 .. 11 mm
    fine_affine = np.eye(4)
    heights = np.arange(0.0, 16.0)
    points = np.stack([np.full_like(heights, 5.0), np.full_like(heights, 5.0), heights], 1)
    inside = output_foreground(points, [thick, fine], [thick_affine, fine_affine])
    np.testing.assert_array_equal(heights[inside], np.arange(0.0, 12.0))
    # the thick image alone: up to, not including, its first background slice
    alone = output_foreground(points, [thick], [thick_affine])
    np.testing.assert_array_equal(heights[alone], np.arange(0.0, 12.0))
    # the isotropic mask trims it (its last foreground voxel at z = 9 mm)
    fine[:, :, 10:] = False
    trimmed = output_foreground(points, [thick, fine], [thick_affine, fine_affine])
    np.testing.assert_array_equal(heights[trimmed], np.arange(0.0, 10.0))
