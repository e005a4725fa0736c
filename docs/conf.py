"""Sphinx configuration of the mcinr-bids documentation (``sphinx-build -W -b html docs
docs/_build/html``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

from mcinr_bids import __version__  # noqa: E402

project = "mcinr-bids"
author = "the mcinr-bids developers"
copyright = "2026, the mcinr-bids developers"
version = release = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinxarg.ext",
    "nipype.sphinxext.plot_workflow",
    "settings_reference",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build"]
html_theme = "furo"
html_title = "mcinr-bids"
html_static_path = ["_static"]
autodoc_member_order = "bysource"
autodoc_typehints = "none"
# the workflow factories' docstrings (nipreps style) have Inputs and Outputs sections
napoleon_custom_sections = [("Inputs", "params_style"), ("Outputs", "params_style")]
