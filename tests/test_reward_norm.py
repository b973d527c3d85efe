"""The max-abs reward normalisation (``FeedbackPlan(reward_norm="maxabs")``, ``--reward-norm maxabs``): at
every LIF layer and step the reward at the membrane, R_t = (reward at S_t) + C_{t+1}, is divided by its
largest absolute value over the batch and the layer's neurons before g_t = R_t / (D_t + ε). Checked against
the literal step-by-step SNN of tests/test_snn_literal.py in float64."""

from __future__ import annotations

import warnings

import pytest
import torch
from test_snn_literal import LABELS, MODELS, T, _assert_close, _inputs, literal_snn
from torch import nn

import lfp_snn
from lfp_snn import FeedbackPlan
from lfp_snn.engine.handlers import neuron as neuron_handler

pytestmark = pytest.mark.usefixtures("one_thread")

DT = torch.float64


def _reward_fn(out, labels=LABELS):
    dense = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=DT)
    return lfp_snn.sequence_reward(out, labels) + 0.3 * dense


@pytest.mark.parametrize("chunk", [None, 2], ids=["whole", "time-chunk-2"])
@pytest.mark.parametrize("inp", ["constant", "rate"])
@pytest.mark.parametrize("reset,delay", [("subtract", True), ("subtract", False), ("zero", True)])
@pytest.mark.parametrize("rule", ["epsilon", "zplus-zminus"])
@pytest.mark.parametrize("arch", list(MODELS))
def test_normalised_feedback_matches_the_literal_snn(arch, rule, reset, delay, inp, chunk):
    build, shape = MODELS[arch]
    model = build(reset, delay)
    xs = _inputs(inp, shape)
    _, _, want, rin_want, _ = literal_snn(model, xs, _reward_fn, rule, norm=True)
    _, _, plain, _, _ = literal_snn(model, xs, _reward_fn, rule, norm=False)
    plan = FeedbackPlan(rule, reward_norm="maxabs", backend="torch", time_chunk=chunk, input_reward=True)
    res = lfp_snn.feedback_result(model, xs, LABELS, lambda o, y: _reward_fn(o, y), plan=plan)
    for name, w in want.items():
        assert float((w - plain[name]).abs().max()) > 1e-6 * float(w.abs().max()), (
            f"{name}: norm changed nothing"
        )
        _assert_close(res.feedback[name], w, f"feedback {name}")
    if inp == "rate":
        _assert_close(res.input_reward.reshape(rin_want.shape), rin_want, "input reward")


def test_the_floor_leaves_tiny_rewards_alone():
    """A reward whose maximum is at most 1e-10 is not divided (the reference's guard against 0/0)."""
    build, shape = MODELS["mlp"]
    model = build("subtract", True)
    xs = _inputs("rate", shape)

    def tiny(out, labels=LABELS):
        return 1e-12 * _reward_fn(out, labels)

    _, _, want, _, _ = literal_snn(model, xs, tiny, "epsilon", norm=True)
    _, _, plain, _, _ = literal_snn(model, xs, tiny, "epsilon", norm=False)
    res = lfp_snn.feedback_result(
        model, xs, LABELS, lambda o, y: tiny(o, y), plan=FeedbackPlan(reward_norm="maxabs", backend="torch")
    )
    # the output layer's reward stays below the floor, so its feedback is the plain one
    _assert_close(res.feedback["2.weight"], plain["2.weight"], "output layer, below the floor", 1e-9)
    _assert_close(res.feedback["2.weight"], want["2.weight"], "literal", 1e-9)


def test_auto_backend_says_once_that_it_takes_the_torch_scans(monkeypatch):
    monkeypatch.setattr(neuron_handler, "_NORM_WARNED", set())
    build, shape = MODELS["mlp"]
    model = build("subtract", True)
    xs = _inputs("rate", shape)
    plan = FeedbackPlan(reward_norm="maxabs", backend="auto")
    with pytest.warns(RuntimeWarning, match="torch scans"):
        a = lfp_snn.feedback_result(model, xs, LABELS, "sequence", plan=plan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lfp_snn.feedback_result(model, xs, LABELS, "sequence", plan=plan)
    b = lfp_snn.feedback_result(model, xs, LABELS, "sequence", plan=plan.replace(backend="torch"))
    for name in a.feedback:
        assert torch.equal(a.feedback[name], b.feedback[name])


@pytest.mark.parametrize(
    "make, plan, match",
    [
        (lambda: MODELS["mlp"][0]("subtract", True), dict(micro_batch=2), "micro_batch"),
        (lambda: MODELS["mlp"][0]("subtract", True), dict(backend="native"), "backend 'native'"),
        (
            lambda: nn.Sequential(
                nn.Linear(12, 5), lfp_snn.CubaLIF(0.5, 0.9), nn.Linear(5, 4), lfp_snn.LIF(0.9)
            ),
            {},
            "implemented for LIF layers",
        ),
        (lambda: nn.Sequential(nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 4)), {}, "spiking models"),
    ],
    ids=["micro-batch", "native", "cuba", "ann"],
)
def test_what_it_does_not_apply_to(make, plan, match):
    model = make().to(DT)
    x = _inputs("rate", (12,)) if any(isinstance(m, lfp_snn.LIF) for m in model.modules()) else None
    x = x if x is not None else torch.rand(3, 12, dtype=DT)
    with pytest.raises(ValueError, match=match):
        lfp_snn.feedback_result(model, x, LABELS, "auto", plan=FeedbackPlan(reward_norm="maxabs", **plan))


def test_bad_value():
    with pytest.raises(ValueError, match="reward_norm must be one of"):
        FeedbackPlan(reward_norm="max")


def test_training_option(tmp_path, capsys):
    """--reward-norm maxabs trains (digits, a few steps) and is refused where it does not apply."""
    from lfp_snn import cli

    argv = ["train", "--subset", "100", "--test-subset", "50", "--epochs", "1", "-T", str(T)]
    assert (
        cli.main([*argv, "--reward-norm", "maxabs", "--backend", "torch", "--out", str(tmp_path / "a")]) == 0
    )
    assert (
        cli.main(
            [*argv, "--reward-norm", "maxabs", "--method", "bptt-snntorch", "--out", str(tmp_path / "b")]
        )
        != 0
    )
    assert "--reward-norm does not apply" in capsys.readouterr().err
