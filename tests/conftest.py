import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))


@pytest.fixture(autouse=True, scope="session")
def _runs_go_to_a_temporary_folder(tmp_path_factory):
    """``lfp-snn train`` without ``--out`` makes a new ``runs/<date-time>`` folder: under a temporary folder
    in the tests (``$LFP_SNN_RUNS``), not in the checkout."""
    os.environ["LFP_SNN_RUNS"] = str(tmp_path_factory.mktemp("runs"))
