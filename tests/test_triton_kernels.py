"""The Triton LIF kernels (lfp_snn.kernels.triton_scan) against the plain-torch reference scans.

Without a GPU these run in Triton's interpreter (TRITON_INTERPRET=1, set below before triton is imported;
slow, so sizes stay small). With ``TRITON_INTERPRET=0`` in the environment and a CUDA device they run the
compiled kernels on the GPU instead. Spikes must be identical, the membrane within 1e-6 and the feedback g
within 1e-5 (relative); in practice the kernels reproduce the reference bit for bit.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before anything imports triton

import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

pytest.importorskip("triton", reason="the Triton kernels need the triton package (pip install triton)")

import lfp_snn  # noqa: E402
from lfp_snn import kernels  # noqa: E402
from lfp_snn.kernels import torch_scan, triton_scan  # noqa: E402

pytestmark = pytest.mark.triton

INTERPRET = os.environ["TRITON_INTERPRET"].lower() in ("1", "true", "on", "yes")
if INTERPRET:
    DEVICE = torch.device("cpu")
elif torch.cuda.is_available():
    DEVICE = torch.device("cuda")
else:
    pytest.skip(
        "TRITON_INTERPRET is off and there is no CUDA device: nothing can run the Triton kernels",
        allow_module_level=True,
    )

B, N = 17, 61  # one step: M = 1037 neurons, not a multiple of any block size
RESETS = ("subtract", "zero")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _randn(*shape, seed: int, scale: float = 1.0, dtype=torch.float32) -> torch.Tensor:
    return (torch.randn(*shape, generator=_gen(seed)) * scale).to(device=DEVICE, dtype=dtype)


def _params(per_neuron: bool, shape=(N,), seed: int = 0):
    """(β, θ): python floats, or per-neuron tensors of ``shape`` (broadcast over the batch)."""
    if not per_neuron:
        return 0.85, 1.0
    g = _gen(seed)
    beta = (0.5 + 0.5 * torch.rand(shape, generator=g)).to(DEVICE)
    thr = (0.5 + torch.rand(shape, generator=g)).to(DEVICE)
    return beta, thr


def _assert_close_rel(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> None:
    scale = max(float(b.abs().max()), 1e-30)
    err = float((a - b).abs().max()) if a.numel() else 0.0
    assert err <= rel * scale, f"max |Δ| = {err:.3g} > {rel:g} · max |ref| = {rel * scale:.3g}"


def _case(T: int, constant: bool, per_neuron: bool, seed: int):
    current = _randn(B, N, seed=seed, scale=1.5) if constant else _randn(T, B, N, seed=seed, scale=1.5)
    beta, thr = _params(per_neuron, seed=seed + 1)
    return current, beta, thr, (T if constant else None)


# --------------------------------------------------------------------------------------------------------
# the scans against the reference
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("T", [1, 7])
@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per-neuron"])
@pytest.mark.parametrize("constant", [False, True], ids=["varying", "constant"])
@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "no-delay"])
@pytest.mark.parametrize("reset", RESETS)
def test_forward_matches_torch(reset, reset_delay, constant, per_neuron, T):
    current, beta, thr, steps = _case(T, constant, per_neuron, seed=T)
    s_ref, v_ref = torch_scan.lif_forward_scan(current, beta, thr, reset, reset_delay, None, steps)
    s, v = triton_scan.lif_forward_scan(current, beta, thr, reset, reset_delay, None, steps)
    assert s.shape == v.shape == (T, B, N) and s.dtype == v.dtype == torch.float32
    assert 0 < float(s_ref.mean()) < 1, "the case should spike, but not everywhere"
    assert torch.equal(s, s_ref)
    assert float((v - v_ref).abs().max()) <= 1e-6


@pytest.mark.parametrize("T", [1, 7])
@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per-neuron"])
@pytest.mark.parametrize("constant", [False, True], ids=["varying", "constant"])
@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "no-delay"])
@pytest.mark.parametrize("reset", RESETS)
def test_feedback_matches_torch(reset, reset_delay, constant, per_neuron, T):
    current, beta, thr, steps = _case(T, constant, per_neuron, seed=10 + T)
    _, pot = torch_scan.lif_forward_scan(current, beta, thr, reset, reset_delay, None, steps)
    reward = _randn(T, B, N, seed=99)
    g_ref = torch_scan.lif_feedback_scan(reward, pot, beta, thr, reset, reset_delay, None, 1e-6)
    g = triton_scan.lif_feedback_scan(reward, pot, beta, thr, reset, reset_delay, None, 1e-6)
    assert g.shape == (T, B, N) and g.dtype == torch.float32
    _assert_close_rel(g, g_ref)
    # in place (as the propagation does): each step reads its reward before writing g there
    buf = reward.clone()
    assert triton_scan.lif_feedback_scan(buf, pot, beta, thr, reset, reset_delay, None, 1e-6, out=buf) is buf
    assert torch.equal(buf, g)


@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "no-delay"])
@pytest.mark.parametrize("reset", RESETS)
def test_conv_shaped_with_mem0_and_small_blocks(reset, reset_delay):
    """[T, B, C, H, W] with [C, 1, 1] parameters, an initial membrane, several programs and a masked tail."""
    T, shape = 5, (3, 4, 9, 10)  # M = 1080 = 4 blocks of 256 + 56
    current = _randn(T, *shape, seed=3, scale=1.5)
    beta, thr = _params(True, shape=(4, 1, 1), seed=4)
    mem0 = _randn(*shape, seed=5, scale=1.5)
    s_ref, v_ref = torch_scan.lif_forward_scan(current, beta, thr, reset, reset_delay, mem0)
    s, v = triton_scan.lif_forward_scan(current, beta, thr, reset, reset_delay, mem0, block=256)
    assert torch.equal(s, s_ref)
    assert float((v - v_ref).abs().max()) <= 1e-6
    reward = _randn(T, *shape, seed=6)
    g_ref = torch_scan.lif_feedback_scan(reward, v_ref, beta, thr, reset, reset_delay, mem0, 1e-6)
    g = triton_scan.lif_feedback_scan(reward, v_ref, beta, thr, reset, reset_delay, mem0, block=256)
    _assert_close_rel(g, g_ref)
    g128 = triton_scan.lif_feedback_scan(reward, v_ref, beta, thr, reset, reset_delay, mem0, block=128)
    assert torch.equal(g128, g)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "no-delay"])
@pytest.mark.parametrize("reset", RESETS)
def test_other_dtypes_match_bit_for_bit(dtype, reset, reset_delay):
    """Half types round after every operation like torch's element-wise kernels: identical results."""
    T = 6
    current = _randn(T, 7, 45, seed=7, scale=1.5, dtype=dtype)
    beta, thr = (
        (0.83, 0.97) if dtype == torch.float16 else (t.to(dtype) for t in _params(True, (45,), seed=8))
    )
    mem0 = _randn(7, 45, seed=9, scale=1.5, dtype=dtype)
    s_ref, v_ref = torch_scan.lif_forward_scan(current, beta, thr, reset, reset_delay, mem0)
    s, v = triton_scan.lif_forward_scan(current, beta, thr, reset, reset_delay, mem0)
    assert s.dtype == v.dtype == dtype
    assert torch.equal(s, s_ref) and torch.equal(v, v_ref)
    reward = _randn(T, 7, 45, seed=10, dtype=dtype)
    g_ref = torch_scan.lif_feedback_scan(reward, v_ref, beta, thr, reset, reset_delay, mem0, 1e-3)
    g = triton_scan.lif_feedback_scan(reward, v_ref, beta, thr, reset, reset_delay, mem0, 1e-3)
    assert g.dtype == dtype
    assert torch.equal(g, g_ref)


@pytest.mark.parametrize("spike_dtype", [torch.uint8, torch.bool, torch.float16])
def test_spike_dtype(spike_dtype):
    current, beta, thr, _ = _case(4, False, True, seed=11)
    s_ref, v_ref = torch_scan.lif_forward_scan(current, beta, thr)
    s, v = triton_scan.lif_forward_scan(current, beta, thr, spike_dtype=spike_dtype)
    assert s.dtype == spike_dtype and v.dtype == torch.float32
    assert torch.equal(s.to(torch.float32), s_ref) and torch.equal(v, v_ref)


def test_expanded_current_is_read_as_constant():
    one = _randn(B, N, seed=12, scale=1.5)
    s_ref, v_ref = torch_scan.lif_forward_scan(one, 0.9, 1.0, steps=5)
    for s, v in (
        triton_scan.lif_forward_scan(one.expand(5, B, N), 0.9, 1.0),
        triton_scan.lif_forward_scan(one, 0.9, 1.0, steps=5),
    ):
        assert torch.equal(s, s_ref) and torch.equal(v, v_ref)


@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "no-delay"])
def test_forward_in_place_over_the_current(reset_delay):
    current, beta, thr, _ = _case(4, False, True, seed=16)
    s_ref, v_ref = torch_scan.lif_forward_scan(current, beta, thr, "subtract", reset_delay)
    buf = current.clone()
    s, v = triton_scan.lif_forward_scan(buf, beta, thr, "subtract", reset_delay, None, None, buf)
    assert v is buf
    assert torch.equal(s, s_ref) and torch.equal(v, v_ref)


def test_out_of_another_dtype_or_layout():
    current, beta, thr, _ = _case(3, False, False, seed=13)
    _, pot = torch_scan.lif_forward_scan(current, beta, thr)
    reward = _randn(3, B, N, seed=14)
    g = triton_scan.lif_feedback_scan(reward, pot, beta, thr)
    out = torch.empty(N, B, 3, device=DEVICE).permute(2, 1, 0)  # not contiguous
    assert triton_scan.lif_feedback_scan(reward, pot, beta, thr, out=out) is out
    assert torch.equal(out, g)
    out64 = torch.empty(3, B, N, dtype=torch.float64, device=DEVICE)
    _, v = triton_scan.lif_forward_scan(current, beta, thr, out=out64)
    assert v is out64 and torch.equal(v, pot.double())


def test_dispatch_through_kernels_module():
    current, beta, thr, _ = _case(3, False, False, seed=14)
    s_ref, v_ref = kernels.lif_forward(current, beta, thr, "zero", False, backend="torch")
    s, v = kernels.lif_forward(current, beta, thr, "zero", False, backend="triton")
    assert torch.equal(s, s_ref) and torch.equal(v, v_ref)
    reward = _randn(3, B, N, seed=15)
    g_ref = kernels.lif_feedback(reward, v_ref, beta, thr, "zero", False, backend="torch")
    g = kernels.lif_feedback(reward, v, beta, thr, "zero", False, backend="triton")
    _assert_close_rel(g, g_ref)


def test_bad_arguments_raise():
    current = _randn(2, 3, 4, seed=16)
    with pytest.raises(ValueError, match="reset must be one of"):
        triton_scan.lif_forward_scan(current, 0.9, 1.0, reset="hard")
    with pytest.raises(ValueError, match="beta of shape"):
        triton_scan.lif_forward_scan(current, torch.full((5,), 0.9, device=DEVICE), 1.0)
    with pytest.raises(ValueError, match="would broadcast"):
        triton_scan.lif_forward_scan(current, torch.full((2, 3, 4), 0.9, device=DEVICE), 1.0)
    with pytest.raises(TypeError, match="spike_dtype"):
        triton_scan.lif_forward_scan(current, 0.9, 1.0, spike_dtype=torch.int64)
    with pytest.raises(TypeError, match="float"):
        triton_scan.lif_forward_scan(current.to(torch.int32), 0.9, 1.0)
    with pytest.raises(ValueError, match="power of two"):
        triton_scan.lif_forward_scan(current, 0.9, 1.0, block=100)


# --------------------------------------------------------------------------------------------------------
# availability
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "0"])
def test_check_available_needs_interpreter_on_cpu(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    else:
        monkeypatch.setenv("TRITON_INTERPRET", value)
    with pytest.raises(RuntimeError, match=r"need a CUDA device; on the CPU set TRITON_INTERPRET=1"):
        triton_scan.check_available("cpu")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        kernels.check_backend("triton", torch.device("cpu"))
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):  # no silent fallback to torch
        kernels.lif_forward(torch.zeros(2, 3, 4), 0.9, 1.0, "subtract", True, backend="triton")


def test_check_available_other_devices(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    triton_scan.check_available("cpu")  # fine under the interpreter
    with pytest.raises(RuntimeError, match="not on meta"):
        triton_scan.check_available("meta")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="torch.cuda is not available"):
            triton_scan.check_available("cuda")


def test_check_available_without_triton(monkeypatch):
    monkeypatch.setattr(triton_scan, "triton", None)
    with pytest.raises(RuntimeError, match="pip install triton"):
        triton_scan.check_available(DEVICE)


# --------------------------------------------------------------------------------------------------------
# end to end: LFP feedback through whole spiking networks
# --------------------------------------------------------------------------------------------------------


def _set_backend(model: nn.Module, backend: str) -> None:
    for m in model.modules():
        if isinstance(m, lfp_snn.LIF):
            m.backend = backend


def _scale_weights(model: nn.Module, factor: float) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight.mul_(factor)


def _compare_backends(model: nn.Module, x_seq: torch.Tensor, labels: torch.Tensor, rule: str) -> None:
    _set_backend(model, "torch")
    out_ref = model(x_seq)
    res_ref = lfp_snn.feedback_result(model, x_seq, labels, reward="sequence", rule=rule)
    _set_backend(model, "triton")
    out = model(x_seq)
    res = lfp_snn.feedback_result(model, x_seq, labels, reward="sequence", rule=rule)
    assert torch.equal(out, out_ref)
    for name, count in res_ref.spike_counts.items():
        assert torch.equal(res.spike_counts[name], count), name
        assert res_ref.spike_rate[name] > 0, f"{name} does not spike: the comparison would be vacuous"
    assert res.feedback.keys() == res_ref.feedback.keys()
    top = max(float(f.abs().max()) for f in res_ref.feedback.values())
    assert top > 0
    for name, f_ref in res_ref.feedback.items():
        err = float((res.feedback[name] - f_ref).abs().max())
        assert err <= 1e-5 * top, f"{name}: max |Δ| = {err:.3g} (largest feedback {top:.3g})"


@pytest.mark.parametrize("rule", ["epsilon", "zplus-zminus"])
@pytest.mark.parametrize(("reset", "reset_delay"), [("subtract", True), ("zero", False)])
def test_feedback_mlp_triton_equals_torch(rule, reset, reset_delay):
    torch.manual_seed(0)
    beta = torch.linspace(0.7, 0.95, 33)  # per neuron in the hidden layer
    model = lfp_snn.SpikingSequential(
        nn.Flatten(),
        nn.Linear(20, 33),
        lfp_snn.LIF(beta, 1.0, reset, reset_delay, backend="torch"),
        nn.Linear(33, 10),
        lfp_snn.LIF(0.9, 0.8, reset, reset_delay, backend="torch"),
    ).to(DEVICE)
    _scale_weights(model, 3.0)
    x_seq = torch.rand(6, 8, 4, 5, generator=_gen(1)).to(DEVICE)
    labels = torch.arange(8, device=DEVICE) % 10
    _compare_backends(model, x_seq, labels, rule)


@pytest.mark.parametrize("rule", ["epsilon", "zplus-zminus"])
def test_feedback_conv_triton_equals_torch(rule):
    torch.manual_seed(1)
    model = lfp_snn.SpikingSequential(
        nn.Conv2d(1, 4, 3),
        lfp_snn.LIF(0.9, 1.0, "subtract", True, backend="torch"),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(36, 10),
        lfp_snn.LIF(0.85, 0.7, "zero", True, backend="torch"),
    ).to(DEVICE)
    _scale_weights(model, 3.0)
    x_seq = torch.rand(5, 4, 1, 8, 8, generator=_gen(2)).to(DEVICE)
    labels = torch.tensor([0, 3, 7, 9], device=DEVICE)
    _compare_backends(model, x_seq, labels, rule)
