"""FeedbackPlan: one frozen set of engine options, validated against the model and its input before any
compute; every option that does not apply is an error naming it, and every option applies where it is
given (ε of the neuron scans, GEMM precision for every rule)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import lfp_snn
from lfp_snn import LIF, Epsilon, FeedbackPlan, SpikingSequential
from lfp_snn.encoders import constant_encode
from lfp_snn.engine import schedules
from lfp_snn.rules import MembraneShare

DT = torch.float64


def _snn(conv=False):
    torch.manual_seed(0)
    if conv:
        m = SpikingSequential(
            nn.Conv2d(1, 3, 3), LIF(0.8, 0.7), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(27, 5), LIF(0.8, 0.7)
        )
    else:
        m = SpikingSequential(nn.Flatten(), nn.Linear(64, 16), LIF(0.8, 0.7), nn.Linear(16, 5), LIF(0.8, 0.7))
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(3)
    return m.double()


def _x(T=6, B=4, conv=False):
    g = torch.Generator().manual_seed(1)
    return torch.rand(T, B, 1, 8, 8, generator=g, dtype=DT), torch.randint(0, 5, (B,), generator=g)


def _ann():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3)).double()


# ---------------------------------------------------------------------------------------------- the plan


def test_the_plan_is_frozen_and_checks_its_fields():
    p = FeedbackPlan("zplus-zminus", eps=1e-4, micro_batch=8)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.micro_batch = 4
    assert p.replace(micro_batch=4).micro_batch == 4 and p.micro_batch == 8
    assert p.composite.default.eps == 1e-4
    for kw, match in [
        ({"storage": "disk"}, "storage must be one of"),
        ({"micro_batch": 0}, "micro_batch must be an integer >= 1"),
        ({"time_chunk": 2.5}, "time_chunk must be an integer >= 1"),
        ({"gemm_dtype": "int8"}, "gemm_dtype must be one of"),
        ({"backend": "cuda"}, "backend must be one of"),
        ({"sparse_input": "always"}, "sparse_input must be one of"),
        ({"input_noise": -1}, "input_noise must be a finite number >= 0"),
        ({"eps": -1}, "eps must be a number >= 0"),
        ({"rule": "nosuchrule"}, "unknown rule or composite 'nosuchrule'"),
    ]:
        with pytest.raises(ValueError, match=match):
            FeedbackPlan(**kw)


def test_a_plan_and_keyword_options_together_name_both():
    m, (x, y) = _snn(), _x()
    with pytest.raises(ValueError, match=r"plan= and micro_batch= were both given"):
        lfp_snn.feedback_result(m, x, y, plan=FeedbackPlan(), micro_batch=2)
    with pytest.raises(ValueError, match=r"plan= and rule= were both given"):
        lfp_snn.feedback_result(m, x, y, "sequence", "epsilon", plan=FeedbackPlan())


def test_a_plan_gives_the_same_feedback_as_its_keywords():
    m, (x, y) = _snn(), _x()
    a = lfp_snn.feedback_result(m, x, y, "sequence", "zplus-zminus", micro_batch=2, recompute=True).feedback
    plan = FeedbackPlan("zplus-zminus", micro_batch=2, storage="recompute")
    b = lfp_snn.feedback_result(m, x, y, "sequence", plan=plan).feedback
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"time_chunk": 2}, r"time_chunk is for spiking models"),
        ({"recompute": True}, r"storage='recompute' is for spiking models"),
        ({"membrane_share": 0.3}, r"membrane_share is for spiking models"),
        ({"backend": "torch"}, r"backend is for spiking models"),
        ({"steps": 3}, r"steps= is for spiking models"),
        ({"time_chunk": 2, "backend": "torch"}, r"time_chunk, backend are for spiking models"),
    ],
)
def test_spiking_options_on_an_ann_are_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        lfp_snn.feedback_result(_ann(), torch.rand(2, 4, dtype=DT), torch.tensor([0, 1]), **kw)


def test_combinations_that_are_not_implemented_name_both_options():
    m, (x, y) = _snn(), _x()
    with pytest.raises(ValueError, match=r"time_chunk=2 cannot be combined with input_noise=0.1"):
        lfp_snn.feedback_result(m, x, y, time_chunk=2, input_noise=0.1)
    with pytest.raises(ValueError, match=r"membrane_share is a variant of the ε rule.*'zplus-zminus'"):
        lfp_snn.feedback_result(m, x, y, rule="zplus-zminus", membrane_share=MembraneShare(0.3))
    one_layer = SpikingSequential(nn.Flatten(), nn.Linear(64, 5), LIF()).double()
    with pytest.raises(ValueError, match=r"membrane_share applies to Linear/Conv layers that read a LIF"):
        lfp_snn.feedback_result(one_layer, x, y, membrane_share=0.3)
    lifs_only = SpikingSequential(nn.Flatten(), LIF(), nn.Linear(64, 5), LIF()).double()
    lfp_snn.feedback_result(lifs_only, x, y, recompute=True)  # the second LIF reads a Linear: fine
    on_input = SpikingSequential(nn.Flatten(), LIF()).double()
    with pytest.raises(
        ValueError, match=r"storage='recompute' recomputes the current of LIF layers that read"
    ):
        lfp_snn.feedback_result(on_input, x, y, recompute=True)


def test_an_explicit_backend_that_cannot_run_fails_before_any_compute(monkeypatch):
    m, (x, y) = _snn(), _x()
    calls = []
    real = schedules.run_forward
    monkeypatch.setattr(schedules, "run_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="Triton|triton"):
        lfp_snn.feedback_result(m, x, y, backend="triton")
    assert not calls
    lfp_snn.feedback_result(m, x, y, backend="torch")
    assert calls  # the spy sees a forward pass when there is one


# ---------------------------------------------------------------------------------------------- ε


def test_the_rules_epsilon_is_the_scans_epsilon():
    """rule=Epsilon(1e-3) runs the LIF scans with ε = 1e-3 too (it used to keep 1e-6)."""
    m, (x, y) = _snn(), _x()
    a = lfp_snn.feedback(m, x, y, "sequence", Epsilon(1e-3))
    b = lfp_snn.feedback(m, x, y, "sequence", plan=FeedbackPlan(Epsilon(1e-3), eps=1e-3))
    c = lfp_snn.feedback(m, x, y, "sequence", plan=FeedbackPlan(Epsilon(1e-3), eps=1e-6))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a), "the scans' ε must matter here"
    assert lfp_snn.FeedbackPlan(Epsilon(1e-3)).validate(m, x).eps == 1e-3
    assert lfp_snn.FeedbackPlan("epsilon", eps=1e-4).validate(m, x).eps == 1e-4


def test_a_composite_with_several_epsilons_needs_one_for_the_scans():
    m, (x, y) = _snn(), _x()
    mixed = lfp_snn.Composite(by_name={"1": Epsilon(1e-3)}, default=Epsilon(1e-5))
    with pytest.raises(ValueError, match=r"different ε \(\[1e-05, 0.001\]\).*FeedbackPlan\(eps=...\)"):
        lfp_snn.feedback(m, x, y, "sequence", mixed)
    lfp_snn.feedback(m, x, y, "sequence", plan=FeedbackPlan(mixed, eps=1e-6))
    # an ANN has no scans: no ε is needed beside the rules'
    lfp_snn.feedback(
        _ann(),
        torch.rand(2, 4, dtype=DT),
        torch.tensor([0, 1]),
        "sigmoid",
        lfp_snn.Composite(by_name={"0": Epsilon(1e-3)}, default=Epsilon(1e-5)),
    )


# ---------------------------------------------------------------------------------------------- bf16


@pytest.mark.parametrize("rule", ["epsilon", "zplus-zminus", "alpha2-beta1"])
@pytest.mark.parametrize("spiking", [False, True])
def test_bf16_gemms_apply_to_every_rule_and_layer(rule, spiking):
    if spiking:
        m, (x, y), reward = _snn(conv=True).float(), _x(), "sequence"
        x = x.float()
    else:
        torch.manual_seed(0)
        m = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(108, 3))
        x, y, reward = torch.rand(4, 1, 8, 8) - 0.3, torch.tensor([0, 1, 2, 0]), "sigmoid"
    full = lfp_snn.feedback_result(m, x, y, reward, rule).feedback
    low = lfp_snn.feedback_result(m, x, y, reward, rule, matmul_dtype=torch.bfloat16).feedback
    for k in full:
        scale = full[k].abs().max()
        assert low[k].dtype == full[k].dtype == torch.float32
        assert (low[k] - full[k]).abs().max() <= 0.05 * scale, k
    # and bf16 did apply: the weight feedback of every parametric layer moved (8 significant bits)
    for k in full:
        if k.endswith("weight"):
            assert not torch.equal(low[k], full[k]), k


# ---------------------------------------------------------------------------------------------- input


def test_a_spiking_model_without_a_time_axis_says_which_axis_is_T():
    m = _snn()
    x = torch.rand(8, 1, 8, 8, dtype=DT)  # [B, C, H, W]: no time axis
    with pytest.raises(ValueError, match=r"axis 0 is the time step T and axis 1 the batch.*steps=T"):
        lfp_snn.feedback(m, x, torch.randint(0, 5, (8,)))
    conv = _snn(conv=True)
    with pytest.raises(
        ValueError, match=r"expected input of shape \[T, B, C, H, W\].*axis 0 is the time step T"
    ):
        lfp_snn.feedback(conv, torch.rand(8, 1, 8, 8, dtype=DT), torch.randint(0, 5, (8,)))
    lfp_snn.feedback(conv, torch.rand(8, 1, 8, 8, dtype=DT), torch.randint(0, 5, (8,)), steps=4)  # fine


def test_a_feature_size_mismatch_names_the_layer():
    m = SpikingSequential(nn.Flatten(), nn.Linear(64, 16), LIF(), nn.Linear(15, 5), LIF()).double()
    x, y = _x()
    with pytest.raises(
        ValueError, match=r"layer '3' \(Linear\) cannot take its input of shape \[24, 16\] \(rows = T·B\)"
    ):
        lfp_snn.feedback(m, x, y)


def test_input_and_model_dtypes_must_agree():
    m, (x, y) = _snn(), _x()
    with pytest.raises(
        ValueError, match=r"the input is torch.float32 but the model's parameters are torch.float64"
    ):
        lfp_snn.feedback(m, x.float(), y)
    # integer inputs (spikes, counts) compute in the parameters' dtype
    fb = lfp_snn.feedback(m, (x > 0.5).to(torch.uint8), y)
    assert all(v.dtype == DT for v in fb.values())


def test_a_meta_model_or_a_model_on_two_devices_is_refused():
    meta = SpikingSequential(nn.Flatten(), nn.Linear(64, 5), LIF()).to("meta")
    x, y = _x()
    with pytest.raises(ValueError, match=r"meta device and holds no values"):
        lfp_snn.feedback(meta, x.float(), y)
    with pytest.raises(ValueError, match=r"the plan asks for device cuda:0, but the model is on cpu"):
        lfp_snn.feedback_result(_snn(), x, y, plan=FeedbackPlan(device="cuda:0"))


def test_labels_must_match_the_batch():
    m, (x, y) = _snn(), _x()
    with pytest.raises(ValueError, match=r"expected labels of shape \[4\], got \[3\]"):
        lfp_snn.feedback(m, x, y[:3])
    with pytest.raises(ValueError, match=r"integer class indices"):
        lfp_snn.feedback(m, x, y.double())


def test_constant_input_forms_agree():
    m, (x, y) = _snn(), _x()
    a = lfp_snn.feedback(m, x[0], y, steps=6)
    b = lfp_snn.feedback(m, constant_encode(x[0], 6), y)
    c = lfp_snn.feedback(m, x[0].expand(6, *x[0].shape).contiguous(), y)
    for k in a:
        assert torch.equal(a[k], b[k])
        torch.testing.assert_close(a[k], c[k], rtol=1e-10, atol=1e-12)


def test_auto_says_once_when_it_falls_back_to_the_torch_scans(monkeypatch):
    import warnings

    from lfp_snn import kernels

    monkeypatch.setattr(kernels, "_WORKS", {})

    def no_compiler(backend, device=None):
        raise RuntimeError("no C compiler found (tried cc, gcc, clang)")

    monkeypatch.setattr(kernels, "check_backend", no_compiler)
    with pytest.warns(
        RuntimeWarning,
        match=r"backend 'auto': the native scans cannot run on cpu here \(no C "
        r"compiler found.*\); using the torch reference scans instead, which take 13-23x longer",
    ):
        assert kernels.resolve_backend("auto", "cpu", torch.float32) == "torch"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second time: no second warning
        assert kernels.resolve_backend("auto", "cpu", torch.float32) == "torch"
