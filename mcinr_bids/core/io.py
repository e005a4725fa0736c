"""Writing files so that no reader ever sees half of one: every writer goes through
:func:`atomic_write` (a hidden temporary file beside the target, renamed onto it, removed
whatever goes wrong).  Pure numpy/nibabel."""

from __future__ import annotations

import csv
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np

#: prefix of the temporary files of :func:`atomic_write` (a killed run may leave some)
TEMPORARY_PREFIX = ".tmp-"
#: prefix of the derivative sinks' staging folders (renamed into place when complete)
STAGING_PREFIX = ".staging-"


def current_umask() -> int:
    """The process's file-creation mask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def honour_umask(path: str | Path) -> None:
    """Give a file the mode any ``open()`` would: 0666 less the umask (a temporary file from
    :func:`tempfile.mkstemp` is 0600, which kept a colleague's group run out of the outputs)."""
    os.chmod(path, 0o666 & ~current_umask())


def atomic_write(path: str | Path, write: Callable[[str], object]) -> None:
    """Call ``write(temporary_path)`` then rename onto ``path``; no half-written file remains,
    and the file's mode honours the umask as any other tool's files do."""
    path = str(path)
    directory = os.path.dirname(os.path.abspath(path)) or "."
    suffix = ".nii.gz" if path.endswith(".nii.gz") else os.path.splitext(path)[1]
    handle, temporary = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, suffix=suffix, dir=directory)
    os.close(handle)
    try:
        write(temporary)
        honour_umask(temporary)
        os.replace(temporary, path)
    except BaseException as error:
        if os.path.exists(temporary):
            os.unlink(temporary)
        if isinstance(error, OSError) and error.errno is not None:
            # name the file the caller meant, not the hidden temporary one
            raise OSError(error.errno, error.strerror, path) from error
        raise


def write_text(text: str, path: str | Path) -> None:
    """Write ``text`` to ``path`` atomically."""
    def write(temporary):
        with open(temporary, "w") as handle:
            handle.write(text)

    atomic_write(path, write)


def write_json(values: dict, path: str | Path) -> None:
    """Write ``values`` as indented JSON, atomically (non-JSON values as ``str``)."""
    write_text(json.dumps(values, indent=2, default=str) + "\n", path)


def write_tsv(rows: list[dict], path: str | Path, columns: list[str] | None = None,
              missing: str = "n/a") -> None:
    """Write ``rows`` as a tab-separated table with a header, atomically; ``None`` -> ``missing``.
    ``columns`` default to the keys of the first row."""
    columns = list(columns or (rows[0] if rows else []))

    def write(temporary):
        with open(temporary, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, delimiter="\t",
                                    extrasaction="ignore")
            writer.writeheader()
            for row in rows:
                writer.writerow({k: (missing if row.get(k) is None else row[k])
                                 for k in columns})

    atomic_write(path, write)


def save_image(image: nib.Nifti1Image, path: str | Path) -> None:
    """Write a nibabel image atomically."""
    atomic_write(path, lambda temporary: nib.save(image, temporary))


def save_nifti(data: np.ndarray, affine: np.ndarray, path: str | Path) -> None:
    """Write a float32 (or bool as uint8) NIfTI with qform and sform set to ``affine``."""
    array = data.astype(np.uint8) if data.dtype == bool else data.astype(np.float32)
    image = nib.Nifti1Image(array, affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    image.header.set_xyzt_units("mm", "sec")
    save_image(image, path)


def write_once(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically unless it exists; concurrent writers (array jobs)
    race safely: exactly one file, complete, and no temporary left behind."""
    path = Path(path)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=TEMPORARY_PREFIX, dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        honour_umask(temporary)
        try:
            # os.link fails if another job won the race: the file is then complete already
            os.link(temporary, path)
        except FileExistsError:
            pass
        except OSError:  # no hard links on this file system: rename, last writer wins
            os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def remove_stale_temporaries(folder: str | Path, prefixes: tuple[str, ...] = (TEMPORARY_PREFIX,),
                             older_than_seconds: float = 3600.0) -> list[Path]:
    """Delete files and folders named ``<prefix>*`` below ``folder`` that have not changed for
    ``older_than_seconds`` (left by a killed run; a live writer's are fresher); return them."""
    import shutil
    import time

    folder = Path(folder)
    if not folder.is_dir():
        return []
    now, removed = time.time(), []
    for prefix in prefixes:
        for path in folder.rglob(f"{prefix}*"):
            try:
                if now - path.lstat().st_mtime < older_than_seconds:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path)
            except FileNotFoundError:
                continue
    return removed
