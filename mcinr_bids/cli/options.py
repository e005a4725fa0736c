"""From parsed command lines to the settings tables of :func:`mcinr_bids.config.resolve_config`:
only the options the user typed count, whatever their value."""

from __future__ import annotations

import argparse
import errno
from collections.abc import Callable
from pathlib import Path

#: dest -> (table, key) or (table, key, convert)
OptionMap = dict[str, tuple]


def given_options(build_parser: Callable[[], argparse.ArgumentParser],
                  argv: list[str] | None) -> dict:
    """``{dest: value}`` of the options present in ``argv`` (positionals included).

    The command line is parsed by a copy of the parser whose defaults are all suppressed, so an
    option given with its default value (``--model split``) is still seen as given.
    """
    parser = build_parser()
    for action in parser._actions:  # noqa: SLF001 - argparse has no public API for this
        action.default = argparse.SUPPRESS
    return vars(parser.parse_args(argv))


def absolute(path) -> str:
    """A path option as an absolute path string."""
    return str(Path(path).absolute())


def to_tables(given: dict, option_map: OptionMap) -> dict[str, dict]:
    """Sort given options into ``{"execution": ..., "workflow": ..., "inr": ...}``."""
    tables: dict[str, dict] = {}
    for dest, value in given.items():
        if dest not in option_map:
            continue
        table, key, *convert = option_map[dest]
        tables.setdefault(table, {})[key] = convert[0](value) if convert else value
    return tables


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Defaults in the help (fMRIPrep's convention), except where there is none to show (``None``)
    or the help already says what happens by default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or "(default" in text:
            return text
        return super()._get_help_string(action)


#: errors of writing: the folders' fault, not the inputs'
WRITE_ERRNOS = {errno.ENOSPC, errno.EACCES, errno.EROFS, errno.EDQUOT, errno.EPERM}


def describe_os_error(error: OSError, where: str) -> str:
    """One line for an ``OSError`` that ended a command: the file and the reason, and the fix
    where the error was one of writing (no space, no permission) into ``where`` (the output
    and work folders, in words)."""
    name = error.filename or ""
    reason = error.strerror or str(error) or type(error).__name__
    if error.errno == errno.ENOSPC:
        return (f"{name or where}: No space left on device; free space there or choose other "
                "output and work folders. Nothing half-written was left.")
    if error.errno in WRITE_ERRNOS:
        return f"{name or where}: {reason}; check that {where} can be written."
    return f"{name}: {reason}" if name else reason
