"""Channels-last convolutions on the CPU (lfp_snn.kernels.layout, lfp_snn.ops.affine.ConvOp): the layout is
an implementation detail, so every result must equal the contiguous computation's.

Checked here: the layout test itself; the LIF scans on channels-last tensors against the same values laid out
contiguously (bit for bit, every backend here, per-neuron β and θ, a start membrane, in place); the spike
pooling kernels and the spike count in both layouts against torch; the row-blockwise product; and whole
models (conv - LIF - pool, the max merge, BatchNorm, SEW sums, a module that calls ``x.view``) with the switch on and off in
float64, in every storage and schedule, with the layout reaching the scans unconverted.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lfp_snn
from lfp_snn.engine.handlers.lif import spike_counts
from lfp_snn.engine.handlers.pooling import MaxPoolHandler, _binary_windows, _windows
from lfp_snn.kernels import layout, lif_feedback, lif_forward, native_scan
from lfp_snn.ops import affine
from lfp_snn.ops.values import multiply_by_blocks_

CL = torch.channels_last
DT = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


def _cl(t: torch.Tensor) -> torch.Tensor:
    """t [..., C, H, W] with the same values, memory ordered [..., H, W, C]."""
    return layout.channels_back(layout.channels_innermost(t).contiguous())


def _backends():
    out = ["torch"]
    try:
        native_scan.check_available()
        out.append("native")
    except RuntimeError:
        pass
    return out


# ------------------------------------------------------------------------------------------------------
# the layout test
# ------------------------------------------------------------------------------------------------------


def test_channels_last_is_told_apart_from_contiguous_and_from_the_layouts_that_coincide():
    x = torch.randn(2, 3, 4, 5)
    assert not layout.channels_last(x)
    assert layout.channels_last(x.contiguous(memory_format=CL))
    assert not layout.channels_last(
        torch.randn(2, 1, 4, 5).contiguous(memory_format=CL)
    )  # C = 1: both at once
    assert not layout.channels_last(x.transpose(2, 3))  # some other strided view
    seq = _cl(torch.randn(6, 2, 3, 4, 5))
    assert layout.channels_last(seq) and layout.channels_last(seq.reshape(12, 3, 4, 5))
    expanded = x.contiguous(memory_format=CL).unsqueeze(0).expand(7, *x.shape)
    assert layout.channels_last(expanded)  # a constant step repeated over time
    assert not layout.channels_last(torch.randn(3, 4, 5))


def test_rows_view_is_a_view_in_memory_order_and_rows_like_matches_its_entries():
    x = _cl(torch.randn(4, 3, 2, 5))
    v = layout.rows_view(x)
    assert v.data_ptr() == x.data_ptr() and v.shape == (4, 30)
    y = torch.randn(4, 3, 2, 5)  # contiguous: its entries reordered to x's memory order
    assert torch.equal(layout.rows_like(y, x), layout.channels_innermost(y).reshape(4, -1))
    with pytest.raises(RuntimeError):
        layout.rows_view(torch.randn(4, 3, 2, 5).transpose(2, 3))  # not a view: callers write through it


# ------------------------------------------------------------------------------------------------------
# scans
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", _backends())
@pytest.mark.parametrize(
    "reset,delay", [("subtract", False), ("zero", False), ("subtract", True), ("zero", True)]
)
@pytest.mark.parametrize("params", ["scalar", "per_channel", "per_neuron"])
def test_lif_scans_on_channels_last_tensors_equal_the_contiguous_ones(backend, reset, delay, params):
    g = torch.Generator().manual_seed(1)
    T, B, C, H, W = 6, 3, 5, 4, 3
    cur = 1.5 * torch.rand(T, B, C, H, W, generator=g, dtype=DT)
    beta = {
        "scalar": 0.8,
        "per_channel": torch.linspace(0.5, 0.95, C, dtype=DT).reshape(C, 1, 1),
        "per_neuron": 0.5 + 0.4 * torch.rand(C, H, W, generator=g, dtype=DT),
    }[params]
    thr = {
        "scalar": 1.0,
        "per_channel": torch.linspace(0.7, 1.3, C, dtype=DT).reshape(C, 1, 1),
        "per_neuron": 0.8 + 0.4 * torch.rand(C, H, W, generator=g, dtype=DT),
    }[params]
    mem0 = torch.rand(B, C, H, W, generator=g, dtype=DT)
    s0, v0 = lif_forward(cur, beta, thr, reset, delay, mem0, backend=backend)
    s1, v1 = lif_forward(_cl(cur), beta, thr, reset, delay, mem0, backend=backend)
    assert s0.sum() > 0 and torch.equal(s0, s1) and torch.equal(v0, v1)
    assert layout.channels_last(v1) and layout.channels_last(s1)  # handed back in the input's layout
    # in place over a channels-last current: the potential is written into its buffer
    buf = _cl(cur)
    _, v2 = lif_forward(buf, beta, thr, reset, delay, mem0, backend=backend, out=buf)
    assert v2.data_ptr() == buf.data_ptr() and torch.equal(v2, v0)
    # a constant current (one step, T given)
    c0 = cur[0]
    assert torch.equal(
        lif_forward(c0, beta, thr, reset, delay, None, T, backend=backend)[1],
        lif_forward(_cl(c0), beta, thr, reset, delay, None, T, backend=backend)[1],
    )
    r = torch.randn(T, B, C, H, W, generator=g, dtype=DT)
    g0 = lif_feedback(r, v0, beta, thr, reset, delay, mem0, 1e-6, backend=backend)
    g1 = lif_feedback(_cl(r), v1, beta, thr, reset, delay, mem0, 1e-6, backend=backend)
    assert torch.equal(g0, g1) and layout.channels_last(g1)
    sum0 = lif_feedback(r, v0, beta, thr, reset, delay, mem0, 1e-6, backend=backend, summed=True)
    sum1 = lif_feedback(_cl(r), v1, beta, thr, reset, delay, mem0, 1e-6, backend=backend, summed=True)
    # the native scan sums in its loop over t (the same order in both layouts); torch's sum may reorder
    assert layout.channels_last(sum1) and torch.allclose(sum0, sum1, rtol=1e-14, atol=1e-15)
    assert backend != "native" or torch.equal(sum0, sum1)
    assert torch.allclose(sum0, g0.sum(0), rtol=1e-12, atol=1e-15)


# ------------------------------------------------------------------------------------------------------
# pooling, counting, products
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize(
    "C,k,extra", [(3, 2, 0), (12, 2, 0), (64, 2, 0), (5, 3, 0), (12, 2, 1), (5, 3, 2), (2, 2, 1), (30, 2, 0)]
)
def test_spike_pooling_of_channels_last_spikes_equals_torchs_max_pool(C, k, extra, dtype):
    """extra > 0: rows and columns past the last whole window, which floor-mode pooling drops (reward 0).
    2 x 2 windows run loops with C a compile-time constant for small counts (2, 12, 30 here; 3 and 64 take
    the same loops with C at run time)."""
    if "native" not in _backends():
        pytest.skip("no C compiler")
    g = torch.Generator().manual_seed(C)
    x = (torch.rand(4, C, 6 * k + extra, 3 * k + extra, generator=g) < 0.2).to(torch.uint8)
    if extra:
        x[..., -extra:, :] = 1  # spikes where no window reaches: they must get nothing
        x[..., :, -extra:] = 1
    x[0, 0] = 0  # a plane without spikes: every window routes to its first position
    y_ref, idx = F.max_pool2d(x.double(), k, return_indices=True)
    r = torch.randn(y_ref.shape, generator=g, dtype=dtype)
    ref = torch.zeros(x.shape, dtype=dtype).flatten(2).scatter_(2, idx.flatten(2), r.flatten(2)).reshape(x.shape)
    xc = _cl(x)
    y = native_scan.spike_pool_forward(xc, k)
    assert torch.equal(y.double(), y_ref) and layout.channels_last(y)
    for rr in (r, _cl(r)):  # the reward in either layout
        for xs in (xc, x):  # the spikes in either layout
            out = native_scan.spike_pool_backward(rr, xs, k)
            assert torch.equal(out, ref) and layout.channels_last(out) == layout.channels_last(xs)
            assert torch.equal(MaxPoolHandler._route_to_first_spike(rr, xs, k), ref)  # the torch path
    assert torch.equal(native_scan.spike_pool_forward(x, k).double(), y_ref)
    assert torch.equal(torch.amax(_windows(x, k), dim=(3, 5)).double(), y_ref)


def test_the_spike_path_of_max_pooling_takes_floor_mode_remainders_but_not_ceil_mode():
    x = torch.zeros(2, 3, 7, 6, dtype=torch.uint8)
    assert _binary_windows(torch.nn.MaxPool2d(2), x) == 2
    assert _binary_windows(torch.nn.MaxPool2d(2, ceil_mode=True), x) is None  # a partial window: torch's path
    assert _binary_windows(torch.nn.MaxPool2d(2, ceil_mode=True), x[:, :, :6]) == 2
    assert _binary_windows(torch.nn.MaxPool2d(2, stride=1), x) is None


def test_spike_count_equals_torchs_sum_in_both_layouts():
    if "native" not in _backends():
        pytest.skip("no C compiler")
    g = torch.Generator().manual_seed(0)
    s = (torch.rand(7, 9, 12, 10, 6, generator=g) < 0.3).to(torch.uint8)
    ref = s.sum(dim=(0, 1))
    for x in (s, _cl(s), s[:, :, :1]):
        r = x.sum(dim=(0, 1))
        assert torch.equal(native_scan.spike_count(x), r) and torch.equal(spike_counts(x), r)
    assert torch.equal(native_scan.spike_count(_cl(s)), ref)
    torch.set_num_threads(2)  # split over columns
    big = (torch.rand(40, 64, 8, 9, 9, generator=g) < 0.1).to(torch.uint8)
    assert torch.equal(native_scan.spike_count(_cl(big)), big.sum(dim=(0, 1)))
    with pytest.raises(TypeError, match="uint8 CPU spikes"):
        native_scan.spike_count(s.float())


def test_sum_over_time_keeps_the_layout_and_the_value():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(5, 4, 6, 3, 7, generator=g, dtype=DT)
    for x in (t, _cl(t), t[:, :, :1]):
        s = layout.sum_leading(x)
        assert torch.allclose(s, t.sum(0) if x.shape == t.shape else t[:, :, :1].sum(0), rtol=1e-14)
        assert layout.channels_last(s) == layout.channels_last(x[0])


def test_max_in_memory_order_is_the_max_of_every_entry_in_both_layouts():
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(3, 5, 6, 7, generator=g) < 0.3).to(torch.uint8)
    x[2, 4, 5, 6] = 7  # a count in the last entry of the last channel
    for v in (x, _cl(x), _cl(x)[:, :3]):  # contiguous, channels-last, and a strided slice of it
        assert int(layout.max_in_memory_order(v)) == int(v.max())
    assert int(layout.max_in_memory_order(_cl(x)[:, :4])) == 1  # the slice without the count


def test_multiply_by_blocks_with_channels_last_rewards_and_spikes_in_either_layout():
    g = torch.Generator().manual_seed(0)
    r = torch.randn(5, 6, 4, 3, generator=g, dtype=DT)
    x = (torch.rand(5, 6, 4, 3, generator=g) < 0.5).to(torch.uint8)
    for rr in (r.clone(), _cl(r)):
        for xx in (x, _cl(x)):
            out = multiply_by_blocks_(rr.clone() if rr.is_contiguous() else _cl(rr), xx)
            assert torch.equal(out, r * x)


# ------------------------------------------------------------------------------------------------------
# whole models: the switch changes nothing but the speed
# ------------------------------------------------------------------------------------------------------


class _ViewNet(nn.Module):
    """conv - LIF - pool - conv - LIF - x.view - linear - LIF, as users write it."""

    def __init__(self):
        super().__init__()
        self.c1, self.l1, self.p = nn.Conv2d(2, 6, 3), lfp_snn.LIF(0.9, 1.0), nn.MaxPool2d(2)
        self.c2, self.l2 = nn.Conv2d(6, 8, 3, padding=1), lfp_snn.LIF(0.8, 1.0, reset="zero")
        self.fc, self.l3 = nn.Linear(8 * 4 * 4, 4), lfp_snn.LIF(0.9, 1.0)

    def forward(self, x):
        h = self.l2(self.c2(self.p(self.l1(self.c1(x)))))
        return self.l3(self.fc(h.view(h.size(0), -1)))


def _models():
    from lfp_snn.deep import ResNetSNN, deeper_snn, sew_resnet, vgg_snn

    lif = lambda: lfp_snn.LIF(0.9, 1.0)  # noqa: E731
    return {
        "view": lambda: _ViewNet(),
        "deeper-snn": lambda: deeper_snn((2, 10, 10), 4, lif),
        "resnet-snn": lambda: ResNetSNN((2, 12, 12), 4, lif),
        "vgg-snn": lambda: vgg_snn((2, 8, 8), 4, lif),
        "sew-resnet": lambda: sew_resnet((2, 8, 8), 4, lif, channels=6),
    }


_SHAPES = {"view": (2, 10, 10), "deeper-snn": (2, 10, 10), "resnet-snn": (2, 12, 12)}


def _feedback(make, x, y, on, **opts):
    affine.CHANNELS_LAST_ON_CPU = on
    try:
        torch.manual_seed(0)
        model = make().to(DT)
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(3.0)
        res = lfp_snn.feedback_result(model, x, y, "sequence", "epsilon", input_reward=True, **opts)
    finally:
        affine.CHANNELS_LAST_ON_CPU = True
    return res


_CASES = [("view", {}), ("view", {"recompute": True}), ("view", {"time_chunk": 2})] + [
    (name, {}) for name in ("deeper-snn", "resnet-snn", "vgg-snn", "sew-resnet")
]


@pytest.mark.parametrize("name,opts", _CASES, ids=[f"{n}-{'-'.join(o) or 'keep'}" for n, o in _CASES])
def test_models_give_the_same_feedback_with_channels_last_convolutions(name, opts):
    make = _models()[name]
    shape = _SHAPES.get(name, (2, 8, 8))
    g = torch.Generator().manual_seed(3)
    x = torch.rand(5, 3, *shape, generator=g, dtype=DT)
    y = torch.tensor([0, 2, 3])
    a = _feedback(make, x, y, False, **opts)
    b = _feedback(make, x, y, True, **opts)
    assert a.feedback.keys() == b.feedback.keys()
    for k in a.feedback:
        assert k.endswith("bias") or a.feedback[k].abs().max() > 0, k  # F_b = |b| Σ g: zero for b = 0
        torch.testing.assert_close(b.feedback[k], a.feedback[k], rtol=1e-10, atol=1e-12, msg=k)
        assert b.feedback[k].is_contiguous()  # the optimiser's gradients keep the parameters' layout
    torch.testing.assert_close(b.input_reward, a.input_reward, rtol=1e-10, atol=1e-12)
    for k in a.spike_counts:
        assert torch.equal(a.spike_counts[k], b.spike_counts[k])


@pytest.mark.parametrize("on", [True, False])
def test_the_switch_decides_the_layout_the_conv_layers_scans_get(monkeypatch, on):
    """Not a no-op: with the switch on, the LIF after a CPU convolution scans a channels-last current (which
    the dispatcher hands to the backend as a contiguous [..., H, W, C] view); off, a contiguous one."""
    import lfp_snn.engine.handlers.lif as lif_handler

    seen = []

    def spy(current, *a, **k):
        if current.dim() >= 4:
            seen.append(layout.channels_last(current))
        return lif_forward(current, *a, **k)

    monkeypatch.setattr(lif_handler, "lif_forward", spy)
    x = torch.rand(4, 3, 2, 10, 10, dtype=DT)
    _feedback(_models()["view"], x, torch.tensor([0, 1, 2]), on)
    assert len(seen) >= 2 and all(v == on for v in seen)
