"""The authors' reference vectors (../shared/oracle): every case reproduced in float64 and float32."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from oracle import build, load

import lfp_snn

CASES = {
    "mlp_eps": "epsilon",
    "mlp_eps_signed": "epsilon",
    "mlp_zpzm": "zplus-zminus",
    "mlp_ab21": "alpha2-beta1",
    "mlp_ab21_signed": "alpha2-beta1",
    "conv_eps": "epsilon",
    "conv_zpzm": "zplus-zminus",
    "conv_ab21": "alpha2-beta1",
    "snn_mlp_T5": "epsilon",
    "snn_mlp_T25": "epsilon",
    "snn_conv_T5": "epsilon",
}
TOL = {torch.float64: 1e-9, torch.float32: 1e-5}


def _run(case, dtype, rule, **kw):
    model, names = build(case, dtype)
    x = torch.from_numpy(case.x).to(dtype)
    y = torch.from_numpy(case.labels)
    if case.meta["kind"] == "snn":
        res = lfp_snn.feedback_result(
            model, x, y, "sequence", rule, steps=case.meta["n_steps"], input_reward=True, **kw
        )
    else:
        res = lfp_snn.feedback_result(model, x, y, "sigmoid", rule, input_reward=True, **kw)
    return model, names, res


def _close(ours: torch.Tensor, ref: np.ndarray, tol: float) -> None:
    scale = np.abs(ref).max()
    err = np.abs(ours.detach().double().numpy() - ref).max()
    assert err <= tol * scale, f"max error {err:.3g} > {tol:g} x largest {scale:.3g}"


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_oracle_case(name, dtype):
    case = load(name)
    _, names, res = _run(case, dtype, CASES[name])
    ref = case.feedback if dtype == torch.float64 else case.feedback_f32
    assert set(res.feedback) == set(names), "one feedback per parameter"
    for ours, theirs in names.items():
        _close(res.feedback[ours], ref[theirs], TOL[dtype])
    _close(res.reward, case.reward, TOL[dtype])
    _close(res.input_reward, case.input_reward, TOL[dtype])
    if case.meta["kind"] == "snn":
        np.testing.assert_array_equal(res.output.numpy(), case.spikes_out)
    else:
        _close(res.output, case.output, TOL[dtype])


@pytest.mark.parametrize("name", ["snn_mlp_T5", "snn_conv_T5"])
def test_oracle_hidden_states(name):
    """Hidden spikes and membranes of every LIF layer, step by step."""
    case = load(name)
    model, _, _ = _run(case, torch.float64, "epsilon")
    x = torch.from_numpy(case.x).double()
    T = case.meta["n_steps"]
    lifs = [m for m in model if isinstance(m, lfp_snn.LIF)]
    keys = sorted(case.mem, key=lambda k: int(k.split(".")[-1]))
    a = x.unsqueeze(0).expand(T, *x.shape)
    i = 0
    torch.set_grad_enabled(False)
    for m in model:
        if isinstance(m, lfp_snn.LIF):
            s, u, _ = m.scan(a)
            np.testing.assert_array_equal(s.numpy(), case.hidden_spikes[keys[i]])
            np.testing.assert_allclose(u.numpy(), case.mem[keys[i]], rtol=0, atol=1e-12)
            a, i = s, i + 1
        else:
            a = m(a.flatten(0, 1)).unflatten(0, (T, -1))
    torch.set_grad_enabled(True)
    assert i == len(lifs) == len(keys)


@pytest.mark.parametrize("name", ["snn_mlp_T5", "snn_conv_T5"])
def test_oracle_time_expanded_input_matches_steps(name):
    """A [T, B, ...] input made by expand() (constant shortcut) and a materialised copy (T·B rows) agree."""
    case = load(name)
    model, names, res = _run(case, torch.float64, "epsilon")
    x = torch.from_numpy(case.x).double()
    T = case.meta["n_steps"]
    full = x.unsqueeze(0).repeat(T, *[1] * x.dim())
    fb = lfp_snn.feedback(model, full, torch.from_numpy(case.labels), "sequence", "epsilon")
    for k in names:
        torch.testing.assert_close(fb[k], res.feedback[k], rtol=1e-12, atol=1e-12)
