"""``settings-reference``: the settings tables of a ``--config-file``, generated from the
settings dataclasses (:mod:`mcinr_bids.config`): each table, each key, its default and its
meaning (the ``#:`` comment above the field, else the help of the command-line option that
sets it).  A key documented nowhere is a build warning (an error with ``-W``)."""

from __future__ import annotations

import dataclasses
import importlib

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.pycode import ModuleAnalyzer
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

LOGGER = logging.getLogger(__name__)


def field_documentation(cls) -> dict[str, str]:
    """The ``#:`` comments of a dataclass's fields, by field name."""
    analyzer = ModuleAnalyzer.for_module(cls.__module__)
    docs = analyzer.find_attr_docs()
    return {name: " ".join(line.strip() for line in lines if line.strip())
            for (scope, name), lines in docs.items() if scope == cls.__qualname__}


def option_help() -> dict[str, str]:
    """The help text of every option of the three commands, by its destination."""
    helps = {}
    for module in ("mcinr_bids.cli.parser", "mcinr_bids.cli.fit", "mcinr_bids.cli.evaluate"):
        parser = importlib.import_module(module).build_parser()
        for action in parser._actions:
            if action.help and action.help != "==SUPPRESS==":
                text = action.help.replace("%(default)s", str(action.default))
                options = "``, ``".join(action.option_strings)
                helps.setdefault(action.dest, f"{text} (``{options}``)" if options else text)
    return helps


def shown(value) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, str):
        return f'``"{value}"``' if value else '``""``'
    if isinstance(value, bool):
        return f"``{str(value).lower()}``"
    return f"``{value}``"


def default_of(field):
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


class SettingsReference(SphinxDirective):
    """``.. settings-reference:: TABLE``: the keys of one table of :class:`AppConfig`;
    with ``:advanced:``, the keys of its ``[TABLE.advanced]`` sub-table (its research knobs)."""

    has_content = False
    required_arguments = 1
    option_spec = {"advanced": lambda argument: True}

    def run(self):
        from mcinr_bids.config import AppConfig

        helps = option_help()
        tables = {table.name: table for table in dataclasses.fields(AppConfig)}
        if self.arguments[0] not in tables:
            raise self.error(f"no settings table {self.arguments[0]!r}: {', '.join(tables)}")
        lines = []
        for table in [tables[self.arguments[0]]]:
            cls = table.default_factory().__class__
            own = field_documentation(cls)
            advanced = "advanced" in self.options
            fields = [f for f in dataclasses.fields(cls) if f.name not in cls.SHARED
                      and (f.name in cls.ADVANCED) == advanced]
            summary = " ".join((cls.__doc__ or "").split("\n\n")[0].split())
            if advanced:
                summary = f"The research knobs of ``[{table.name}]``, in a settings file only."
            elif cls.SHARED:
                names = [f"``{key}``" for key in cls.SHARED]
                summary += (" Its " + ", ".join(names[:-1]) + " and " + names[-1]
                            + " come from ``[execution]`` (one of each for every method).")
            lines += [summary, "",
                      ".. list-table::", "   :header-rows: 1", "   :widths: 22 18 60", "",
                      "   * - key", "     - default", "     - meaning"]
            for field in fields:
                meaning = own.get(field.name) or helps.get(field.name)
                if not meaning:
                    LOGGER.warning("setting [%s] %s has no documentation (a #: comment above "
                                   "the field)", table.name, field.name,
                                   location=(self.env.docname, self.lineno))
                    meaning = ""
                lines += [f"   * - ``{field.name}``", f"     - {shown(default_of(field))}",
                          f"     - {meaning}"]
            lines.append("")
        container = nodes.section()
        container.document = self.state.document
        self.state.nested_parse(StringList(lines, source="settings-reference"),
                                self.content_offset, container)
        return container.children


def setup(app):
    app.add_directive("settings-reference", SettingsReference)
    return {"parallel_read_safe": True, "version": "1"}
