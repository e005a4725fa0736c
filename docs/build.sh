#!/usr/bin/env bash
# Build the documentation site with warnings as errors:  bash docs/build.sh [OUT_DIR]
# (default docs/_build/html; needs the docs extra, `pip install -e ".[docs]"`, and graphviz's
# `dot` for the workflow graphs). Fails on any Sphinx warning and on any reStructuredText
# problem that Sphinx renders instead of reporting (e.g. an unclosed emphasis in a --help text).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/_build/html}"
command -v dot > /dev/null || { echo "docs/build.sh: graphviz's dot is needed for the workflow graphs" >&2; exit 1; }
# nipype's graph directive runs the docstrings' examples: keep their logs and crash files out
# of the source tree
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && python -m sphinx -E -q -W --keep-going -b html "$here" "$out")
if grep -l 'class="problematic"' "$out"/*.html; then
    echo "docs/build.sh: the pages above hold reStructuredText errors" >&2
    exit 1
fi
echo "documentation built in $out"
