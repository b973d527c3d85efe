"""The benchmark's method names: ``lfp-<backend>[-<option>...]`` must map to the engine options it claims."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_step", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_step.py"
)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_lfp_method_names_map_to_engine_options():
    o = bench.lfp_options("lfp-native-chunk-bf16", T=100)
    assert o == dict(
        backend="native", matmul_dtype="bfloat16", micro_batch=None, recompute=False, time_chunk=10
    )
    assert bench.lfp_options("lfp-torch-chunk", T=25)["time_chunk"] == 5
    o = bench.lfp_options("lfp-triton-mb32-recompute-chunk7", T=25)
    assert (o["backend"], o["micro_batch"], o["recompute"], o["time_chunk"]) == ("triton", 32, True, 7)
    assert bench.lfp_options("lfp-torch") == dict(
        backend="torch", matmul_dtype=None, micro_batch=None, recompute=False, time_chunk=None
    )


def test_every_default_method_parses():
    for m in bench.METHODS:
        assert bench.method_name(m) == m
        if m.startswith("lfp"):
            bench.lfp_options(m, T=25)


@pytest.mark.parametrize("bad", ["lfp-torch-fast", "lfp-torch-mbx", "lfp"])
def test_unknown_methods_are_refused_with_the_accepted_options(bad):
    with pytest.raises(argparse.ArgumentTypeError, match="lfp|option"):
        bench.method_name(bad)
