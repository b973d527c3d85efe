"""Build lfp-snn models from the reference cases in ../shared/oracle (authors' implementation)."""

from __future__ import annotations

import os
import sys

import pytest
import torch
from torch import nn

import lfp_snn

ORACLE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "oracle"))


def oracle_available() -> bool:
    return os.path.isfile(os.path.join(ORACLE, "load_case.py"))


def load(name: str):
    """The case, or a failure in CI (where the oracle must be present) / a skip elsewhere."""
    if not oracle_available():
        if os.environ.get("CI"):
            pytest.fail(f"the oracle cases are missing: expected {ORACLE}/load_case.py")
        pytest.skip(f"oracle not found at {ORACLE}")
    if ORACLE not in sys.path:
        sys.path.insert(0, ORACLE)
    from load_case import load_case

    return load_case(name)


def build(case, dtype=torch.float64):
    """(model, {our param name: case param name}) for an oracle case."""
    layers, names = [], {}
    for spec in case.meta["layers"]:
        kind = spec["type"]
        base = kind.removeprefix("spiking_")
        if base == "linear":
            m = nn.Linear(spec["in"], spec["out"])
        elif base == "conv2d":
            m = nn.Conv2d(
                spec["in"], spec["out"], spec["kernel_size"], spec.get("stride", 1), spec.get("padding", 0)
            )
        elif base == "relu":
            m = nn.ReLU()
        elif base == "maxpool2d":
            m = nn.MaxPool2d(spec["kernel_size"], spec["stride"])
        elif base == "flatten":
            m = nn.Flatten()
        else:
            raise ValueError(kind)
        if "weight" in spec:
            idx = len(layers)
            names[f"{idx}.weight"] = spec["weight"]
            names[f"{idx}.bias"] = spec["bias"]
            with torch.no_grad():
                m.weight.copy_(torch.from_numpy(case.params[spec["weight"]]))
                m.bias.copy_(torch.from_numpy(case.params[spec["bias"]]))
        layers.append(m)
        if kind.startswith("spiking_"):
            assert spec["reset_mechanism"] == "subtract" and spec["reset_delay"]
            layers.append(lfp_snn.LIF(beta=spec["beta"], threshold=spec["threshold"]))
    model = lfp_snn.SpikingSequential(*layers).to(dtype)
    return model, names
