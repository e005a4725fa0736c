"""The package's size rules: no module over 400 lines, no function over 80 (the argparse
declarations of ``build_parser`` aside), so that each stays readable in one sitting."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mcinr_bids"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
#: functions that are declarations rather than logic (one add_argument call per option)
DECLARATIONS = {("cli/parser.py", "build_parser")}


def long_functions(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            where = (path.relative_to(PACKAGE).as_posix(), node.name)
            if length > MAX_FUNCTION_LINES and where not in DECLARATIONS:
                found.append(f"{where[0]}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_module_is_over_400_lines():
    long = [f"{p.relative_to(PACKAGE)} ({n})" for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert long == []


def test_no_function_is_over_80_lines():
    assert [f for p in sorted(PACKAGE.rglob("*.py")) for f in long_functions(p)] == []


def test_the_rule_sees_a_long_function(tmp_path, monkeypatch):
    module = tmp_path / "mcinr_bids" / "long.py"
    module.parent.mkdir()
    module.write_text("def long():\n" + "    x = 1\n" * 81)
    monkeypatch.setattr(f"{__name__}.PACKAGE", module.parent)
    assert long_functions(module) == ["long.py:1 long (82 lines)"]
