"""The Boutiques descriptor of ``mcinr-bids``, generated from its own argparse parser.

``python -m mcinr_bids.cli.descriptor > descriptor.json`` regenerates the top-level file; a test
checks that the committed file equals this output, so the two can never drift.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mcinr_bids import __version__
from mcinr_bids.cli.parser import build_parser

IMAGE = f"mcinr-bids:{__version__}"
#: options whose value is an existing input file
FILE_OPTIONS = {"bids_filter_file", "config_file"}
#: positional and label inputs with the value keys ``bosh validate --bids`` requires
BIDS_KEYS = {"bids_dir": "[BIDS_DIR]", "output_dir": "[OUTPUT_DIR]",
             "analysis_level": "[ANALYSIS_LEVEL]", "participant_label": "[PARTICIPANT_LABEL]",
             "session_label": "[SESSION_LABEL]"}


def _input(action: argparse.Action) -> dict:
    identifier = action.dest
    value_key = BIDS_KEYS.get(identifier, f"[{identifier.upper()}]")
    entry = {"id": identifier, "name": identifier.replace("_", " ").capitalize(),
             "description": (action.help or "").replace("%(default)s", str(action.default)),
             "value-key": value_key, "optional": bool(action.option_strings)}
    if action.option_strings:
        entry["command-line-flag"] = max(action.option_strings, key=len) \
            if identifier != "verbose_count" else "-v"
    if isinstance(action, argparse.BooleanOptionalAction):
        # a Boutiques flag is present or absent: --psf, or nothing (automatic); the --no-
        # form is for the command line
        entry["command-line-flag"] = action.option_strings[0]
        entry["type"] = "Flag"
        return entry
    if isinstance(action, (argparse._StoreTrueAction, argparse._CountAction)):
        entry["type"] = "Flag"
        return entry
    if identifier in FILE_OPTIONS or identifier == "bids_dir":
        entry["type"] = "File"
    elif action.type in (int, float) or getattr(action.type, "__name__", "") in (
            "_positive_int", "_positive_float"):
        entry["type"] = "Number"
        entry["integer"] = action.type is int or action.type.__name__ == "_positive_int"
    else:
        entry["type"] = "String"
    if action.nargs in ("+", "*"):
        entry["list"] = True
    if action.choices:
        entry["value-choices"] = list(action.choices)
    default = action.default
    if action.option_strings and default not in (None, [], False) and \
            identifier not in BIDS_KEYS:
        entry["default-value"] = [str(v) for v in default] if isinstance(default, list) \
            else default if isinstance(default, (int, float)) else str(default)
    return entry


def build_descriptor() -> dict:
    """A Boutiques 0.5 descriptor with every argument of ``mcinr-bids`` (but --help/--version)."""
    parser = build_parser()
    inputs = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            continue
        entry = _input(action)
        if action.dest == "output_dir":
            entry.update(id="output_dir_name", name="Output directory name", optional=True)
            inputs.append(entry)
            inputs.append({"id": "participant_level_analysis_dir",
                           "name": "Participant-level output directory", "type": "File",
                           "description": "For the group level: the output folder of the "
                                          "participant level.",
                           "value-key": "[OUTPUT_DIR]", "optional": True})
            continue
        inputs.append(entry)
    keys = [entry["value-key"] for entry in inputs]
    ordered = list(BIDS_KEYS.values()) + [k for k in dict.fromkeys(keys)
                                          if k not in BIDS_KEYS.values()]
    return {
        "name": "mcinr-bids",
        "tool-version": __version__,
        "description": parser.description,
        "author": "mcinr-bids developers",
        "url": "https://github.com/mcinr-bids/mcinr-bids",
        "command-line": "mkdir -p [OUTPUT_DIR]; mcinr-bids " + " ".join(ordered),
        "container-image": {"type": "docker", "image": IMAGE},
        "schema-version": "0.5",
        "inputs": inputs,
        "output-files": [{"id": "output_dir", "name": "Output directory",
                          "description": "The BIDS-Derivatives dataset written by mcinr-bids.",
                          "path-template": "[OUTPUT_DIR]", "optional": False}],
        "groups": [{"id": "output_directory", "name": "Output directory",
                    "members": ["output_dir_name", "participant_level_analysis_dir"],
                    "description": "A new output folder (participant level) or one holding "
                                   "participant outputs (group level).",
                    "mutually-exclusive": True, "one-is-required": True}],
        "suggested-resources": {"cpu-cores": 4, "ram": 8, "disk-space": 4,
                                "walltime-estimate": 1800},
        "tags": {"domain": ["neuroinformatics", "mri", "super-resolution"],
                 "gpu": "optional (CUDA); CPU runs ~6 min per subject on 2 cores"},
        "error-codes": [{"code": 1, "description": "A step failed or a subject was skipped; "
                                                   "the others finished."},
                        {"code": 2, "description": "Bad input: the message names the file or "
                                                   "option and the fix; nothing was written."}],
    }


def main() -> int:
    text = json.dumps(build_descriptor(), indent=2) + "\n"
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
