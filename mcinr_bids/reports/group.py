"""Group level: aggregate the participants' metrics from the derivatives only."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

GROUP_DICTIONARY = {
    "participant_id": {"Description": "Subject label (sub-<label>)."},
    "session_id": {"Description": "Session label (ses-<label>), n/a without sessions."},
}


class NoParticipantsError(ValueError):
    """The output folder holds no participant-level results."""


def aggregate_metrics(output_dir: str | Path, participants: list[str] | None = None) -> Path:
    """Concatenate every ``sub-*_desc-superres_metrics.tsv`` into the group table.

    Reads only the derivatives; writes ``group_desc-superres_metrics.tsv`` (+ ``.json``) at the
    output root and returns its path.
    """
    output = Path(output_dir)
    files = sorted(output.glob("sub-*/**/anat/sub-*_desc-superres_metrics.tsv"))
    if participants:
        files = [f for f in files if f.name.split("_")[0][4:] in participants]
    if not files:
        raise NoParticipantsError(
            f"{output}: no participant results (sub-*/anat/*_desc-superres_metrics.tsv); run "
            "the participant level first, with this folder as output_dir.")
    tables = []
    for path in files:
        table = pd.read_csv(path, sep="\t", na_values="n/a", keep_default_na=False)
        subject = re.search(r"sub-([a-zA-Z0-9]+)", path.name).group(1)
        session = re.search(r"_ses-([a-zA-Z0-9]+)", path.name)
        table.insert(0, "session_id", f"ses-{session.group(1)}" if session else "n/a")
        table.insert(0, "participant_id", f"sub-{subject}")
        tables.append(table)
    group = pd.concat(tables, ignore_index=True)
    target = output / "group_desc-superres_metrics.tsv"
    temporary = target.with_suffix(".tmp")
    group.to_csv(temporary, sep="\t", index=False, na_rep="n/a")
    temporary.replace(target)
    dictionary = dict(GROUP_DICTIONARY)
    sidecar = files[0].with_suffix(".json")
    if sidecar.exists():
        dictionary.update(json.loads(sidecar.read_text()))
    target.with_suffix(".json").write_text(json.dumps(dictionary, indent=2) + "\n")
    return target
