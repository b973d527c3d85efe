import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors (float64 convolutions above all) run far slower with 2 OpenMP threads on a busy machine
    than with one: modules of small-tensor tests use this (``pytestmark = pytest.mark.usefixtures(...)``)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True, scope="session")
def _runs_go_to_a_temporary_folder(tmp_path_factory):
    """``lfp-snn train`` without ``--out`` makes a new ``runs/<date-time>`` folder: under a temporary folder
    in the tests (``$LFP_SNN_RUNS``), not in the checkout."""
    os.environ["LFP_SNN_RUNS"] = str(tmp_path_factory.mktemp("runs"))


def pytest_collection_modifyitems(config, items):
    """The NIR reader cross-checks run last: spyx imports jax, which starts threads, and the tests that fork
    worker processes (sweeps) must not fork a process that holds them."""
    items.sort(key=lambda item: item.fspath.basename == "test_nir_targets.py")
