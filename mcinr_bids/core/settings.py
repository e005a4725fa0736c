"""The one base of the settings tables (``[execution]``, ``[workflow]``, ``[inr]``, ``[jtv]``,
``[unpaired]``): from and to plain dicts (TOML tables), unknown keys refused, and every value
of a settings file checked for its type and range as strictly as the command line checks it.

A method's table holds what a user tunes; its research knobs sit in its ``advanced`` sub-table
(``[inr.advanced]``: documented in the settings reference, absent from ``--help``).  The
device, the thread count and the random seed are ``[execution]``'s, one of each for every
method (:data:`SHARED_EXECUTION`).  Torch-free."""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import ClassVar

#: torch devices: ``auto`` picks cuda, then mps, then cpu
DEVICES = ("auto", "cpu", "cuda", "mps")
#: where the slice profile settings went (2026-12-06): the acquisition knows its profile
PROFILE_MOVED = ("the slice profile is each image's own: box for thick 2D slices, point where "
                 "the sidecar's SliceThickness is at most half the slice spacing; remove it")
#: settings that must be above 0 (as their command-line options check)
POSITIVE = ("output_resolution", "nprocs", "omp_nthreads", "mem_gb", "simulate_factor",
            "epochs")
#: settings that must be 0 or above
NOT_NEGATIVE = ("random_seed",)
#: a method's own field -> the ``[execution]`` setting that gives it its value: one device,
#: one thread count and one seed for every method
SHARED_EXECUTION = {"device": "device", "threads": "omp_nthreads", "seed": "random_seed"}


class SettingsTable:
    """Mixin of a settings dataclass: ``TABLE`` is its name in a settings file."""

    TABLE: ClassVar[str] = ""
    #: settings that no longer exist: what to do instead
    MOVED: ClassVar[dict[str, str]] = {}
    #: fields whose value comes from ``[execution]`` (:data:`SHARED_EXECUTION`), never from
    #: this table of a settings file
    SHARED: ClassVar[tuple[str, ...]] = ()
    #: research knobs: in a settings file under ``[<TABLE>.advanced]``
    ADVANCED: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        """The table's settings from ``values``; ValueError naming unknown keys."""
        for key in sorted(set(values) & set(cls.MOVED)):
            raise ValueError(f"[{cls.TABLE}] {key}: no longer a setting: {cls.MOVED[key]}")
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown [{cls.TABLE}] settings: {', '.join(unknown)}")
        return cls(**values)

    def to_table(self) -> dict:
        """The table as a settings file holds it: the shared fields left out, the research
        knobs under ``"advanced"``."""
        values = {k: v for k, v in self.to_dict().items() if k not in self.SHARED}
        advanced = {key: values.pop(key) for key in self.ADVANCED}
        return {**values, "advanced": advanced} if advanced else values

    @classmethod
    def from_table(cls, table: dict) -> dict:
        """The flat settings of a settings file's table (its ``advanced`` sub-table merged);
        ValueError naming each key that sits in the wrong place and where it goes."""
        values = dict(table)
        advanced = values.pop("advanced", {}) if cls.ADVANCED else {}
        if not isinstance(advanced, dict):
            raise ValueError(f"[{cls.TABLE}] advanced must be a table: [{cls.TABLE}.advanced]")
        if cls.SHARED:
            check_not_shared(cls.TABLE, {**values, **advanced})
        misplaced = sorted(set(values) & set(cls.ADVANCED))
        if misplaced:
            raise ValueError(f"[{cls.TABLE}] {', '.join(misplaced)}: research settings; put "
                             f"them under [{cls.TABLE}.advanced]")
        known = {f.name for f in dataclasses.fields(cls)}
        common = sorted((set(advanced) & known) - set(cls.ADVANCED))
        if common:
            raise ValueError(f"[{cls.TABLE}.advanced] {', '.join(common)}: not advanced; put "
                             f"them in [{cls.TABLE}]")
        return {**values, **advanced}

    @classmethod
    def value_problems(cls, values: dict) -> list[str]:
        """``key = value: why`` for each value of a settings file that does not fit its
        setting's type or range (unknown keys: :meth:`from_dict`)."""
        hints = typing.get_type_hints(cls)
        problems = []
        for key, value in values.items():
            if key in hints:
                problem = type_problem(value, hints[key]) or range_problem(key, value)
                if problem:
                    problems.append(f"[{cls.TABLE}] {key} = {value!r}: {problem}")
        return problems

    def validate(self) -> None:
        """ValueError naming a setting that cannot work (the tables add their own checks)."""


def check_not_shared(table: str, values: dict) -> None:
    """ValueError naming the keys of ``values`` (a method's table) that are ``[execution]``'s
    (:data:`SHARED_EXECUTION`) and where each goes."""
    shared = [key for key in SHARED_EXECUTION if key in values]
    if shared:
        where = ", ".join(f"{SHARED_EXECUTION[key]} (for {key})" for key in shared)
        raise ValueError(f"[{table}] {', '.join(shared)}: one for every method, set in "
                         f"[execution]: {where}")


def type_problem(value, hint) -> str | None:
    """Why a settings file's ``value`` does not fit the setting's type ``hint`` (``int``,
    ``float``, ``bool``, ``str``, ``list[...]``, ``X | None``); ``None`` when it does."""
    options = [a for a in typing.get_args(hint) if a is not type(None)] \
        if isinstance(hint, types.UnionType) else [hint]
    for option in options:
        origin = typing.get_origin(option)
        if origin is list:
            item = typing.get_args(option)[0]
            if isinstance(value, list) and all(type_problem(v, item) is None for v in value):
                return None
        elif option is float:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return None
        elif option is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return None
        elif isinstance(value, option):
            return None
    names = " or ".join(_type_name(option) for option in options)
    return f"expected {names}, got {_type_name(type(value))}"


def _type_name(hint) -> str:
    if typing.get_origin(hint) is list:
        item = typing.get_args(hint)[0]
        return "a list of " + {bool: "true/false values", int: "whole numbers",
                               float: "numbers", str: "texts"}.get(item, str(item))
    return {bool: "true or false", int: "a whole number", float: "a number", str: "a text",
            list: "a list"}.get(hint, getattr(hint, "__name__", str(hint)))


def range_problem(key: str, value) -> str | None:
    """Why ``value`` is out of range for ``key`` (:data:`POSITIVE`, :data:`NOT_NEGATIVE`);
    ``None`` when it is not."""
    if key in POSITIVE and isinstance(value, (int, float)) and value <= 0:
        return "must be above 0"
    if key in NOT_NEGATIVE and isinstance(value, (int, float)) and value < 0:
        return "must be 0 or above"
    return None
