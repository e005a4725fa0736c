"""The derivatives sinks load without indexing TemplateFlow, and know the same templates."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

PROBE = """
import json, sys
import mcinr_bids.interfaces.bids
from niworkflows.interfaces.bids import STANDARD_SPACES
from templateflow.conf import _cache
indexed = "layout" in _cache.__dict__
json.dump({"spaces": STANDARD_SPACES, "indexed": indexed}, sys.stdout)
"""


def probe(home) -> dict:
    environment = {**os.environ, "TEMPLATEFLOW_HOME": str(home)}
    result = subprocess.run([sys.executable, "-c", PROBE], env=environment, capture_output=True,
                            text=True, check=True)
    return json.loads(result.stdout)


def test_the_sinks_load_without_a_templateflow_index(tmp_path):
    loaded = probe(tmp_path / "templateflow")
    assert not loaded["indexed"]
    assert "MNI152NLin2009cAsym" in loaded["spaces"] and "MNI152NLin2009aSym" in loaded["spaces"]


@pytest.mark.slow
def test_the_folder_listing_is_templateflows_own(tmp_path):
    """TemplateFlow's answer (its pybids index of the same home) lists the same names."""
    home = tmp_path / "templateflow"
    listed = probe(home)["spaces"]
    environment = {**os.environ, "TEMPLATEFLOW_HOME": str(home)}
    own = subprocess.run(
        [sys.executable, "-c", "import json, sys; from templateflow import api; "
         "json.dump(api.templates(), sys.stdout)"],
        env=environment, capture_output=True, text=True, check=True)
    assert listed == json.loads(own.stdout)
