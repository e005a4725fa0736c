"""Outputs honour the umask as any other tool's files do (they were 0600: a colleague's group
run on a shared cluster failed with 'Permission denied')."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from mcinr_bids.core.io import save_nifti, write_once, write_text, write_tsv
from mcinr_bids.pipeline.anatomical import write_itk_transform


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_every_writer_honours_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        paths = [tmp_path / "text.json", tmp_path / "table.tsv", tmp_path / "image.nii.gz",
                 tmp_path / "once.txt", tmp_path / "xfm.mat"]
        write_text("{}\n", paths[0])
        write_tsv([{"measure": "a", "value": 1.0}], paths[1])
        save_nifti(np.zeros((3, 3, 3), np.float32), np.eye(4), paths[2])
        write_once(paths[3], "once\n")
        write_itk_transform(np.eye(4), str(paths[4]))
    finally:
        os.umask(previous)
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == mode, path.name
