"""The native (C, via ctypes) LIF kernels (lfp_snn.kernels.native_scan) against the plain-torch reference.

The C loops perform the reference's floating-point operations in the reference's order, so everything is
compared bit for bit (the sign of zero included), in float32 and float64. The library is compiled on first
use into the usual cache directory (``$LFP_SNN_CACHE/native`` or ``~/.cache/lfp_snn/native``); the tests of
the build itself use a fresh directory.
"""

from __future__ import annotations

import stat
import sys

import pytest
import torch
from torch import nn

import lfp_snn
from lfp_snn import kernels
from lfp_snn.kernels import native_scan, torch_scan

try:
    native_scan.find_compiler()
except RuntimeError as e:
    pytest.skip(f"the native kernels need a C compiler: {e}", allow_module_level=True)

RESETS = ("subtract", "zero")
DTYPES = (torch.float32, torch.float64)
B, N = 3, 37  # one step: M = 111 neurons, not a multiple of the block


pytestmark = pytest.mark.usefixtures("one_thread")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _current(*shape, seed: int, dtype=torch.float32) -> torch.Tensor:
    """U(-0.5, 1.5): with θ around 1, some neurons fire most steps, some rarely, some never."""
    return (torch.rand(*shape, generator=_gen(seed), dtype=torch.float64) * 2 - 0.5).to(dtype)


def _params(per_neuron: bool, shape=(N,), seed: int = 0):
    """(β, θ): python floats, or per-neuron float32 tensors of ``shape`` (broadcast over the batch)."""
    if not per_neuron:
        return 0.85, 1.0
    g = _gen(seed)
    return 0.5 + 0.5 * torch.rand(shape, generator=g), 0.5 + torch.rand(shape, generator=g)


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit for bit (so -0. differs from 0.), with the same dtype and shape."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype in (torch.float32, torch.float64):
        bits = torch.int32 if a.dtype == torch.float32 else torch.int64
        return torch.equal(a.contiguous().view(bits), b.contiguous().view(bits))
    return torch.equal(a, b)


def _check(current, beta, thr, reset, reset_delay, mem0=None, steps=None, seed=0):
    """Forward and feedback of both implementations; returns the reference's spikes."""
    s_ref, v_ref = torch_scan.lif_forward_scan(current, beta, thr, reset, reset_delay, mem0, steps)
    s, v = native_scan.lif_forward_scan(current, beta, thr, reset, reset_delay, mem0, steps)
    assert _same(s, s_ref) and _same(v, v_ref)
    reward = torch.randn(v_ref.shape, generator=_gen(seed + 1000), dtype=torch.float64).to(v_ref.dtype)
    g_ref = torch_scan.lif_feedback_scan(reward, v_ref, beta, thr, reset, reset_delay, mem0, 1e-6)
    g = native_scan.lif_feedback_scan(reward, v_ref, beta, thr, reset, reset_delay, mem0, 1e-6)
    assert _same(g, g_ref)
    # summed inside the scan: g's steps added from t = T down to 1, starting at -0. (so bit for bit)
    total = torch.full_like(g_ref[0], -0.0)
    for t in reversed(range(g_ref.shape[0])):
        total = total + g_ref[t]
    gs = native_scan.lif_feedback_scan(reward, v_ref, beta, thr, reset, reset_delay, mem0, 1e-6, summed=True)
    assert _same(gs, total)
    if steps is not None:  # a constant current: V made again inside the feedback, and a forward without V
        args = (beta, thr, reset, reset_delay, mem0, 1e-6)
        assert _same(native_scan.lif_feedback_constant_scan(reward, current, *args), g_ref)
        assert _same(native_scan.lif_feedback_constant_scan(reward, current, *args, summed=True), total)
        s2, none = native_scan.lif_forward_scan(
            current, beta, thr, reset, reset_delay, mem0, steps, spike_dtype=torch.uint8, potential=False
        )
        assert none is None and torch.equal(s2, s_ref.to(torch.uint8))
    return s_ref


# --------------------------------------------------------------------------------------------------------
# the scans against the reference, bit for bit
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("constant", [False, True], ids=["varying", "constant"])
@pytest.mark.parametrize("with_mem0", [False, True], ids=["zero-mem0", "mem0"])
@pytest.mark.parametrize("per_neuron", [False, True], ids=["scalar", "per-neuron"])
@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "no-delay"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_matches_torch(dtype, reset, reset_delay, per_neuron, with_mem0, constant):
    T = 9
    seed = 64 * DTYPES.index(dtype) + 32 * RESETS.index(reset) + 16 * reset_delay + 8 * per_neuron
    seed += 4 * with_mem0 + 2 * constant
    current = (
        _current(B, N, seed=seed, dtype=dtype) if constant else _current(T, B, N, seed=seed, dtype=dtype)
    )
    beta, thr = _params(per_neuron, seed=seed + 1)
    mem0 = _current(B, N, seed=seed + 2, dtype=dtype) if with_mem0 else None
    s = _check(current, beta, thr, reset, reset_delay, mem0, T if constant else None, seed)
    assert 0.05 < float(s.mean()) < 0.95, "the case should spike at a mix of rates"


@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "no-delay"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_conv_shaped_with_mem0(dtype, reset, reset_delay):
    """[T, B, C, H, W] with [C, 1, 1] parameters: M = 1080, several blocks and a partial one."""
    T, shape = 5, (3, 4, 9, 10)
    beta, thr = _params(True, shape=(4, 1, 1), seed=4)
    mem0 = _current(*shape, seed=5, dtype=dtype)
    _check(_current(T, *shape, seed=3, dtype=dtype), beta, thr, reset, reset_delay, mem0, seed=6)


@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "no-delay"])
@pytest.mark.parametrize("reset", RESETS)
def test_one_step(reset, reset_delay):
    _check(_current(1, B, N, seed=7), 0.9, 1.0, reset, reset_delay, _current(B, N, seed=8) + 0.5)
    _check(_current(B, N, seed=9), *_params(True, seed=10), reset, reset_delay, steps=1)


@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "no-delay"])
@pytest.mark.parametrize("reset", RESETS)
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_potential_exactly_at_threshold(dtype, reset, reset_delay):
    """Dyadic currents with β = 1/2, θ = 1: the potential often equals θ exactly (H(0) = 0: no spike),
    the membrane often is exactly 0 (signs of zero must match too)."""
    current = (torch.randint(-2, 7, (12, B, N), generator=_gen(11)) * 0.25).to(dtype)
    mem0 = (torch.randint(-4, 8, (B, N), generator=_gen(12)) * 0.25).to(dtype)
    current[current == 0] = -0.0  # signed zeros through the zero reset's arithmetic
    mem0[::2][mem0[::2] == 0] = -0.0
    _, v = torch_scan.lif_forward_scan(current, 0.5, 1.0, reset, reset_delay, mem0)
    assert int((v == 1.0).sum()) > 5 and int((v == 0).sum()) > 0
    _check(current, 0.5, 1.0, reset, reset_delay, mem0, seed=13)
    _check(current, 0.5, 1.0, reset, reset_delay, None, seed=14)


def test_expanded_current_is_read_as_constant():
    one = _current(B, N, seed=15)
    s_ref, v_ref = torch_scan.lif_forward_scan(one, 0.9, 1.0, steps=6)
    for s, v in (
        native_scan.lif_forward_scan(one.expand(6, B, N), 0.9, 1.0),
        native_scan.lif_forward_scan(one, 0.9, 1.0, steps=6),
    ):
        assert _same(s, s_ref) and _same(v, v_ref)


@pytest.mark.parametrize("spike_dtype", [torch.uint8, torch.bool, torch.int8, torch.float32, torch.float64])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_spike_dtype(dtype, spike_dtype):
    current = _current(6, B, N, seed=16, dtype=dtype)
    beta, thr = _params(True, seed=17)
    s_ref, v_ref = torch_scan.lif_forward_scan(current, beta, thr, spike_dtype=spike_dtype)
    s, v = native_scan.lif_forward_scan(current, beta, thr, spike_dtype=spike_dtype)
    assert s.dtype == spike_dtype and v.dtype == dtype
    assert _same(s, s_ref) and _same(v, v_ref)


@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "no-delay"])
@pytest.mark.parametrize("reset", RESETS)
def test_in_place(reset, reset_delay):
    """out = the current (forward) and out = the reward (feedback): each step is read before it is written."""
    current = _current(7, 4, 300, seed=18)  # M = 1200: several blocks
    beta, thr = _params(True, shape=(300,), seed=19)
    s_ref, v_ref = torch_scan.lif_forward_scan(current, beta, thr, reset, reset_delay)
    buf = current.clone()
    s, v = native_scan.lif_forward_scan(buf, beta, thr, reset, reset_delay, None, None, buf, torch.uint8)
    assert v is buf and _same(v, v_ref) and _same(s, s_ref.to(torch.uint8))
    reward = torch.randn(v.shape, generator=_gen(20))
    g_ref = torch_scan.lif_feedback_scan(reward, v_ref, beta, thr, reset, reset_delay)
    buf = reward.clone()
    assert native_scan.lif_feedback_scan(buf, v_ref, beta, thr, reset, reset_delay, None, 1e-6, buf) is buf
    assert _same(buf, g_ref)


def test_out_of_another_dtype_or_layout():
    current = _current(3, B, N, seed=21)
    s_ref, pot = torch_scan.lif_forward_scan(current, 0.9, 1.0)
    reward = torch.randn(3, B, N, generator=_gen(22))
    g = torch_scan.lif_feedback_scan(reward, pot, 0.9, 1.0)
    out = torch.empty(N, B, 3).permute(2, 1, 0)  # not contiguous
    assert native_scan.lif_feedback_scan(reward, pot, 0.9, 1.0, out=out) is out
    assert _same(out, g)
    out64 = torch.empty(3, B, N, dtype=torch.float64)
    s, v = native_scan.lif_forward_scan(current, 0.9, 1.0, out=out64)
    assert v is out64 and _same(v, pot.double()) and _same(s, s_ref)
    # a non-contiguous current, written over in place
    cur_t = current.permute(0, 2, 1).contiguous().permute(0, 2, 1)
    s, v = native_scan.lif_forward_scan(cur_t, 0.9, 1.0, out=cur_t)
    assert v is cur_t and _same(v.contiguous(), pot) and _same(s, s_ref)


@pytest.mark.parametrize("reset_delay", [True, False], ids=["delay", "no-delay"])
@pytest.mark.parametrize("reset", RESETS)
def test_multithreaded(monkeypatch, reset, reset_delay):
    """Two threads, each a range of whole blocks (M = 9 * 571 = 5139: 10 blocks of 512 and a partial one)."""
    torch.set_num_threads(2)  # the fixture restores it
    parts = []
    pool = native_scan._pool
    monkeypatch.setattr(native_scan, "_pool", lambda workers: parts.append(workers) or pool(workers))
    monkeypatch.setattr(native_scan, "PARALLEL_MIN_ELEMENTS", 1)  # split small problems too
    T, shape = 20, (9, 571)
    current = _current(T, *shape, seed=23)
    beta, thr = _params(True, shape=(571,), seed=24)
    mem0 = _current(*shape, seed=25)
    _check(current, beta, thr, reset, reset_delay, mem0, seed=26)
    _check(current[0], beta, thr, reset, reset_delay, mem0, steps=T, seed=27)
    # every scan should split over two threads: forward, feedback, summed feedback (twice); for the constant
    # current also the two feedbacks from the current and the forward without V
    assert parts == [1] * 9


def test_dispatch_through_kernels_module():
    current = _current(4, B, N, seed=28)
    for reset, delay in (("zero", False), ("subtract", True)):
        s_ref, v_ref = kernels.lif_forward(current, 0.9, 1.0, reset, delay, backend="torch")
        s, v = kernels.lif_forward(current, 0.9, 1.0, reset, delay, backend="native")
        assert _same(s, s_ref) and _same(v, v_ref)
        reward = torch.randn(4, B, N, generator=_gen(29))
        g_ref = kernels.lif_feedback(reward, v_ref, 0.9, 1.0, reset, delay, backend="torch")
        g = kernels.lif_feedback(reward, v, 0.9, 1.0, reset, delay, backend="native")
        assert _same(g, g_ref)
        for backend in ("torch", "native"):  # the sum over time, by the scan or after it
            gs = kernels.lif_feedback(reward, v, 0.9, 1.0, reset, delay, backend=backend, summed=True)
            assert gs.shape == (B, N) and torch.allclose(gs, g_ref.sum(0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="summed=True.*out"):
        kernels.lif_feedback(reward, v, 0.9, 1.0, "zero", False, out=reward, backend="native", summed=True)
    with pytest.raises(ValueError, match="summed=True.*out"):
        native_scan.lif_feedback_scan(reward, v, 0.9, 1.0, out=reward, summed=True)


@pytest.mark.parametrize("backend", ["torch", "native"])
def test_constant_current_feedback_through_kernels_module(backend):
    """lif_feedback_constant is lif_forward then lif_feedback, on every backend and in channels-last (the
    fused native scan reads the current in its memory order)."""
    T = 6
    current = _current(2, 5, 6, 7, seed=40).contiguous(memory_format=torch.channels_last)
    beta, thr = _params(True, shape=(5, 1, 1), seed=41)
    reward = torch.randn(T, 2, 5, 6, 7, generator=_gen(42))
    for reset, delay in (("zero", False), ("subtract", True)):
        v = kernels.lif_forward(current, beta, thr, reset, delay, None, T, backend="torch")[1]
        for summed in (False, True):
            g_ref = kernels.lif_feedback(reward, v, beta, thr, reset, delay, backend=backend, summed=summed)
            g = kernels.lif_feedback_constant(
                reward, current, beta, thr, reset, delay, backend=backend, summed=summed
            )
            assert _same(g.contiguous(), g_ref.contiguous())
        s, none = kernels.lif_forward(
            current, beta, thr, reset, delay, None, T, backend=backend, potential=False
        )
        assert none is None and torch.equal(
            s, kernels.lif_forward(current, beta, thr, reset, delay, None, T)[0]
        )
    with pytest.raises(ValueError, match="potential=False.*out"):
        kernels.lif_forward(
            current, 0.9, 1.0, "zero", False, None, T, backend=backend, out=v, potential=False
        )
    with pytest.raises(ValueError, match="summed=True.*out"):
        kernels.lif_feedback_constant(reward, current, 0.9, 1.0, "zero", False, out=reward, summed=True)
    with pytest.raises(
        ValueError, match=r"the reward has shape \[6, 2, 5, 6, 7\]; expected \[T, 2, 5, 7, 6\]"
    ):
        native_scan.lif_feedback_constant_scan(reward, current.transpose(2, 3), 0.9, 1.0)


# --------------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------------


def test_bad_arguments_raise():
    current = _current(2, 3, 4, seed=30)
    with pytest.raises(TypeError, match=r"torch.float32 or torch.float64, got torch.float16"):
        native_scan.lif_forward_scan(current.half(), 0.9, 1.0)
    with pytest.raises(TypeError, match="bfloat16"):
        native_scan.lif_feedback_scan(current.bfloat16(), current.bfloat16(), 0.9, 1.0)
    with pytest.raises(TypeError, match="int32"):
        native_scan.lif_forward_scan(current.to(torch.int32), 0.9, 1.0)
    with pytest.raises(TypeError, match="float16"):  # through the dispatch, no fallback to torch
        kernels.lif_forward(current.half(), 0.9, 1.0, "subtract", True, backend="native")
    with pytest.raises(ValueError, match="on the CPU, but the current is on meta"):
        native_scan.lif_forward_scan(current.to("meta"), 0.9, 1.0)
    with pytest.raises(ValueError, match="reset must be one of"):
        native_scan.lif_forward_scan(current, 0.9, 1.0, reset="hard")
    with pytest.raises(ValueError, match="beta of shape"):
        native_scan.lif_forward_scan(current, torch.full((5,), 0.9), 1.0)
    with pytest.raises(ValueError, match="would broadcast"):
        native_scan.lif_forward_scan(current, torch.full((2, 3, 4), 0.9), 1.0)
    with pytest.raises(TypeError, match="spike_dtype"):
        native_scan.lif_forward_scan(current, 0.9, 1.0, spike_dtype=torch.int64)
    with pytest.raises(ValueError, match="out is a"):
        native_scan.lif_forward_scan(current, 0.9, 1.0, out=torch.empty(3, 3, 4))
    with pytest.raises(ValueError, match="the reward has shape"):
        native_scan.lif_feedback_scan(current[:1], current, 0.9, 1.0)


def test_unknown_backend_and_other_devices():
    with pytest.raises(
        ValueError, match=r"unknown backend 'cuda'; expected one of \('auto', 'torch', 'native'"
    ):
        kernels.check_backend("cuda")
    with pytest.raises(ValueError, match="unknown backend"):
        lfp_snn.LIF(0.9, 1.0, backend="c")
    assert lfp_snn.LIF(0.9, 1.0, backend="native").backend == "native"
    kernels.check_backend("native", torch.device("cpu"))
    kernels.check_backend("native")
    with pytest.raises(ValueError, match=r"runs on the CPU only, not on cuda.*backend='triton' or 'torch'"):
        kernels.check_backend("native", torch.device("cuda"))


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """An empty cache directory and no library loaded in this process (restored afterwards)."""
    monkeypatch.setenv("LFP_SNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(native_scan, "_LIB", None)
    return tmp_path


def _script(path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


@pytest.mark.skipif(sys.platform == "win32", reason="shell scripts as fake compilers")
def test_compile_failures_raise(monkeypatch, fresh_build):
    missing = str(fresh_build / "no-such-cc")
    monkeypatch.setenv("CC", missing)
    with pytest.raises(RuntimeError, match=r"\$CC=.*no-such-cc.*not found"):
        kernels.check_backend("native", "cpu")
    with pytest.raises(RuntimeError, match="no-such-cc"):  # no silent fallback to torch
        kernels.lif_forward(torch.zeros(2, 3, 4), 0.9, 1.0, "subtract", True, backend="native")
    bad = _script(fresh_build / "bad-cc", 'echo "bad-cc: error: this compiler always fails" >&2\nexit 3\n')
    monkeypatch.setenv("CC", bad)
    with pytest.raises(RuntimeError, match=r"(?s)could not compile.*bad-cc.*this compiler always fails"):
        native_scan.check_available()
    assert native_scan._LIB is None
    assert not list((fresh_build / "cache" / "native").glob("*.so"))  # nothing half-written left behind
    monkeypatch.delenv("CC")
    monkeypatch.setattr(native_scan, "COMPILERS", ("no-such-cc-1", "no-such-cc-2"))
    with pytest.raises(RuntimeError, match="needs a C compiler"):
        native_scan.check_available()


@pytest.mark.skipif(sys.platform == "win32", reason="shell scripts as fake compilers")
def test_build_without_march_native_and_cache(monkeypatch, fresh_build):
    """A compiler that rejects -march=native: built without it; a later process loads it from the cache."""
    cc = native_scan.find_compiler()[0]
    log = fresh_build / "calls.log"
    wrapper = _script(
        fresh_build / "picky-cc",
        f'echo "$@" >> "{log}"\n'
        'for a in "$@"; do [ "$a" = "-march=native" ] && { echo "unknown flag -march=native" >&2; exit 1; }; done\n'
        f'exec "{cc}" "$@"\n',
    )
    monkeypatch.setenv("CC", wrapper)
    native_scan.check_available()
    assert native_scan._LIB is not None
    assert len(log.read_text().splitlines()) == 2  # with -march=native (refused), then without
    assert len(list((fresh_build / "cache" / "native").glob("*.so"))) == 1
    _check(_current(5, B, N, seed=31), 0.9, 1.0, "zero", True)
    monkeypatch.setattr(native_scan, "_LIB", None)  # as in a new process: the cached library is loaded
    native_scan.load()
    assert native_scan._LIB is not None and len(log.read_text().splitlines()) == 2  # no compiler run


# --------------------------------------------------------------------------------------------------------
# end to end: LFP feedback through a spiking network
# --------------------------------------------------------------------------------------------------------


def _set_backend(model: nn.Module, backend: str) -> None:
    for m in model.modules():
        if isinstance(m, lfp_snn.LIF):
            m.backend = backend


@pytest.mark.parametrize("rule", ["epsilon", "zplus-zminus"])
@pytest.mark.parametrize(("reset", "reset_delay"), [("subtract", True), ("zero", False)])
def test_feedback_mlp_native_equals_torch(rule, reset, reset_delay):
    torch.manual_seed(0)
    model = lfp_snn.SpikingSequential(
        nn.Flatten(),
        nn.Linear(20, 33),
        lfp_snn.LIF(torch.linspace(0.7, 0.95, 33), 1.0, reset, reset_delay, backend="torch"),
        nn.Linear(33, 10),
        lfp_snn.LIF(0.9, 0.8, reset, reset_delay, backend="torch"),
    )
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear):
                m.weight.mul_(3.0)
    x_seq = torch.rand(6, 8, 4, 5, generator=_gen(1))
    labels = torch.arange(8) % 10
    out_ref = model(x_seq)
    res_ref = lfp_snn.feedback_result(model, x_seq, labels, reward="sequence", rule=rule)
    _set_backend(model, "native")
    out = model(x_seq)
    res = lfp_snn.feedback_result(model, x_seq, labels, reward="sequence", rule=rule)
    assert _same(out, out_ref)
    for name, count in res_ref.spike_counts.items():
        assert torch.equal(res.spike_counts[name], count), name
        assert res_ref.spike_rate[name] > 0, f"{name} does not spike: the comparison would be vacuous"
    assert res.feedback.keys() == res_ref.feedback.keys()
    assert max(float(f.abs().max()) for f in res_ref.feedback.values()) > 0
    for name, f_ref in res_ref.feedback.items():
        assert _same(res.feedback[name], f_ref), name


def test_constant_input_feedback_makes_the_potential_inside_the_scan(monkeypatch):
    """An image shown at every step: the first LIF layer's current is constant, its forward writes no
    potential and its feedback scan makes it again inside (native), bit for bit the torch backend's result."""
    calls = []
    fused = native_scan.lif_feedback_constant_scan
    monkeypatch.setattr(
        native_scan, "lif_feedback_constant_scan", lambda *a, **k: calls.append(1) or fused(*a, **k)
    )
    torch.manual_seed(0)
    model = lfp_snn.SpikingSequential(
        nn.Flatten(),
        nn.Linear(20, 33),
        lfp_snn.LIF(torch.linspace(0.7, 0.95, 33), 1.0, backend="torch"),
        nn.Linear(33, 10),
        lfp_snn.LIF(0.9, 0.8, backend="torch"),
    )
    with torch.no_grad():
        model[1].weight.mul_(3.0)
    x_seq = torch.rand(8, 4, 5, generator=_gen(2)).unsqueeze(0).expand(6, 8, 4, 5)
    labels = torch.arange(8) % 10
    res_ref = lfp_snn.feedback_result(model, x_seq, labels, reward="sequence", rule="epsilon")
    assert not calls
    _set_backend(model, "native")
    res = lfp_snn.feedback_result(model, x_seq, labels, reward="sequence", rule="epsilon")
    assert calls == [1], "the first layer's feedback should run from its constant current"
    assert res_ref.spike_rate["2"] > 0
    for name, f_ref in res_ref.feedback.items():
        assert f_ref.abs().max() > 0 and _same(res.feedback[name], f_ref), name


# ------------------------------------------------------------------------------------------------------
# backend="auto"
# ------------------------------------------------------------------------------------------------------


def test_auto_picks_native_on_the_cpu_for_float32_and_float64_and_torch_otherwise(monkeypatch):
    import lfp_snn.kernels as kernels

    monkeypatch.setattr(kernels, "_WORKS", {})
    assert kernels.resolve_backend("auto", "cpu", torch.float32) == "native"
    assert kernels.resolve_backend("auto", None, torch.float64) == "native"
    assert kernels.resolve_backend("auto", "cpu", torch.bfloat16) == "torch"
    assert kernels.resolve_backend("auto", "meta", torch.float32) == "torch"
    assert kernels.resolve_backend("torch", "cpu") == "torch"  # explicit choices are kept
    kernels.check_backend("auto", "cpu")  # always runs


def test_auto_falls_back_to_torch_when_the_native_build_fails(monkeypatch):
    import lfp_snn.kernels as kernels

    monkeypatch.setattr(kernels, "_WORKS", {})

    def broken(backend, device=None):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(kernels, "check_backend", broken)
    with pytest.warns(RuntimeWarning, match=r"the native scans cannot run on cpu here \(no compiler\)"):
        assert kernels.resolve_backend("auto", "cpu", torch.float32) == "torch"


def test_auto_gives_the_reference_results():
    torch.manual_seed(0)

    def net(backend):
        return lfp_snn.SpikingSequential(
            nn.Linear(12, 16), lfp_snn.LIF(0.9, 0.5, backend=backend), nn.Linear(16, 4), lfp_snn.LIF(0.9, 0.5)
        )

    m = net("auto")
    m2 = net("torch")
    m2.load_state_dict(m.state_dict())
    x, y = torch.rand(7, 3, 12) * 2, torch.tensor([0, 1, 3])
    a, b = lfp_snn.feedback_result(m, x, y, "sequence"), lfp_snn.feedback_result(m2, x, y, "sequence")
    assert torch.equal(a.output, b.output)
    for k in a.feedback:
        assert torch.equal(a.feedback[k], b.feedback[k]), k
