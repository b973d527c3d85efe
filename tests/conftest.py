import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors (float64 convolutions above all) run far slower with 2 OpenMP threads on a busy machine
    than with one: modules of small-tensor tests use this (``pytestmark = pytest.mark.usefixtures(...)``)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
