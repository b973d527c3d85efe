"""BatchNorm in the engine: statistics over T·B rows (training), the affine map (eval), its ε rule against a
literal layer-by-layer, step-by-step implementation in float64, and the fold for export (spikes unchanged).

Rule (docs/engine.md): z = γ x̂ + β with x̂ = (x - μ) / √(σ² + ε_bn); g = R / stabilize(z) (or the LIF's g);
F_γ = |γ| ⊙ Σ x̂ ⊙ g; F_β = |β| ⊙ Σ g; R_in = x ⊙ (γ / √(σ² + ε_bn)) ⊙ g.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import lfp_snn
from lfp_snn import LIF, SpikingSequential
from lfp_snn.encoders import constant_encode
from lfp_snn.export.fold import fold_batchnorm

DT = torch.float64
EPS = 1e-6


pytestmark = pytest.mark.usefixtures("one_thread")


def _stab(z):
    return z + EPS * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def _net(seed=0):
    torch.manual_seed(seed)
    net = SpikingSequential(
        nn.Conv2d(1, 4, 3, bias=False),
        nn.BatchNorm2d(4),
        LIF(0.8, 0.6),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(36, 8, bias=False),
        nn.BatchNorm1d(8),
        LIF(0.8, 0.6),
        nn.Linear(8, 5),
        LIF(0.8, 0.6),
    ).to(DT)
    with torch.no_grad():
        for m in net:
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.4)
        net[8].weight.mul_(3)
    return net


def _lif_fwd(m, currents):
    """Literal LIF (subtract, delay) over a list of per-step currents: (spikes, P, Ũ) per step."""
    u = torch.zeros_like(currents[0])
    out = []
    thr, beta = m.threshold.to(DT), m.beta.to(DT)
    for i_t in currents:
        fired = (u > thr).to(DT)
        pre = beta * u + i_t
        p = u
        u = pre - thr * fired
        out.append(((u > thr).to(DT), p, pre))
    return out


def literal(net, xs, R):
    """Layers in order, each over t = 1..T (BatchNorm needs every step's rows for its statistics); back for
    t = T..1, last layer first."""
    T = xs.shape[0]
    conv, bn2, lif1, _, _, fc, bn1, lif2, out_fc, lif3 = list(net)
    a1 = [F.conv2d(xs[t], conv.weight) for t in range(T)]
    allr = torch.cat(a1)  # [T·B, 4, 6, 6]: the statistics are over T·B rows and positions
    mu2, var2 = allr.mean((0, 2, 3)), allr.var((0, 2, 3), unbiased=False)
    inv2 = (var2 + bn2.eps).rsqrt()
    xh2 = [(a - mu2.view(1, -1, 1, 1)) * inv2.view(1, -1, 1, 1) for a in a1]
    z2 = [bn2.weight.view(1, -1, 1, 1) * h + bn2.bias.view(1, -1, 1, 1) for h in xh2]
    l1 = _lif_fwd(lif1, z2)
    pooled = [F.max_pool2d(s, 2, return_indices=True) for s, _, _ in l1]
    flat = [p.reshape(p.shape[0], -1) for p, _ in pooled]
    a2 = [F.linear(f, fc.weight) for f in flat]
    allr = torch.cat(a2)
    mu1, var1 = allr.mean(0), allr.var(0, unbiased=False)
    inv1 = (var1 + bn1.eps).rsqrt()
    xh1 = [(a - mu1) * inv1 for a in a2]
    z1 = [bn1.weight * h + bn1.bias for h in xh1]
    l2 = _lif_fwd(lif2, z1)
    a3 = [F.linear(s, out_fc.weight, out_fc.bias) for s, _, _ in l2]
    l3 = _lif_fwd(lif3, a3)
    out = torch.stack([s for s, _, _ in l3])
    fb = {k: torch.zeros_like(v) for k, v in net.named_parameters()}
    C = [0.0, 0.0, 0.0]
    rin = []

    def lif_back(k, m, rec, r):
        _, p, pre = rec
        g = (r + C[k]) / (p.abs() + (pre - p).abs() + EPS)
        C[k] = m.beta.to(DT) * p * g
        return g

    for t in range(T - 1, -1, -1):
        g3 = lif_back(2, lif3, l3[t], R[t])
        fb["8.weight"] += out_fc.weight.abs() * (g3.T @ l2[t][0])
        fb["8.bias"] += out_fc.bias.abs() * g3.sum(0)
        r = l2[t][0] * (g3 @ out_fc.weight)
        g2 = lif_back(1, lif2, l2[t], r)  # the LIF's g reaches the BatchNorm below it
        fb["6.weight"] += bn1.weight.abs() * (xh1[t] * g2).sum(0)
        fb["6.bias"] += bn1.bias.abs() * g2.sum(0)
        r = a2[t] * (bn1.weight * inv1) * g2  # R_in = x ⊙ (γ/σ) ⊙ g
        g_fc = r / _stab(a2[t])  # the Linear gets a reward: its own ε step
        fb["5.weight"] += fc.weight.abs() * (g_fc.T @ flat[t])
        r = flat[t] * (g_fc @ fc.weight)
        p, idx = pooled[t]
        full = torch.zeros(p.shape[0], 4, 36, dtype=DT)
        full.scatter_add_(2, idx.flatten(2), r.reshape(p.shape).flatten(2))
        r = full.reshape(p.shape[0], 4, 6, 6)
        g1 = lif_back(0, lif1, l1[t], r)
        fb["1.weight"] += bn2.weight.abs() * (xh2[t] * g1).sum((0, 2, 3))
        fb["1.bias"] += bn2.bias.abs() * g1.sum((0, 2, 3))
        r = a1[t] * (bn2.weight * inv2).view(1, -1, 1, 1) * g1
        g_c = r / _stab(a1[t])
        fb["0.weight"] += (
            conv.weight.abs()
            * torch.ops.aten.convolution_backward(
                g_c, xs[t], conv.weight, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [False, True, False]
            )[1]
        )
        rin.append(xs[t] * torch.nn.grad.conv2d_input(xs[t].shape, conv.weight, g_c))
    return out, fb, torch.stack(rin[::-1]), (mu2, var2, mu1, var1)


def test_batchnorm_net_matches_the_literal_implementation():
    net = _net()
    xs = torch.rand(5, 3, 1, 8, 8, dtype=DT, generator=torch.Generator().manual_seed(1))
    R = torch.randn(5, 3, 5, dtype=DT, generator=torch.Generator().manual_seed(2))
    before = copy.deepcopy(net)
    with torch.no_grad():
        out, fb, rin, stats = literal(before, xs, R)
    res = lfp_snn.feedback_result(
        net, xs, torch.zeros(3, dtype=torch.long), lambda o, y: R, input_reward=True
    )
    assert torch.equal(res.output, out) and 0 < float(out.mean()) < 1
    for k, want in fb.items():
        torch.testing.assert_close(res.feedback[k], want, rtol=1e-10, atol=1e-12, msg=k)
        assert want.abs().max() > 0, k
    torch.testing.assert_close(res.input_reward, rin, rtol=1e-10, atol=1e-12)
    # the running statistics moved as torch's BatchNorm moves them on the same T·B rows
    mu2, var2, mu1, var1 = stats
    n2 = 5 * 3 * 36
    torch.testing.assert_close(net[1].running_mean, 0.9 * before[1].running_mean + 0.1 * mu2)
    torch.testing.assert_close(net[1].running_var, 0.9 * before[1].running_var + 0.1 * var2 * n2 / (n2 - 1))
    torch.testing.assert_close(net[6].running_mean, 0.9 * before[6].running_mean + 0.1 * mu1)
    assert int(net[1].num_batches_tracked) == 1


def test_batchnorm_statistics_are_those_of_torch_on_the_t_b_rows():
    net = _net()
    xs = torch.rand(4, 3, 1, 8, 8, dtype=DT)
    ref = copy.deepcopy(net[:2])
    with torch.no_grad():
        want = ref(xs.reshape(-1, 1, 8, 8))  # torch's BatchNorm2d over T·B rows
    trace = lfp_snn.forward_trace(net, xs)
    torch.testing.assert_close(net[1].running_var, ref[1].running_var)
    torch.testing.assert_close(net[1].running_mean, ref[1].running_mean)
    assert trace.output.shape == (4, 3, 5)
    del want


def test_eval_mode_is_the_affine_map_and_constant_input_is_the_expanded_one():
    net = _net()
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.1, 0.1)
        net[1].running_var.uniform_(0.5, 2.0)
    net.eval()
    x = torch.rand(3, 1, 8, 8, dtype=DT)
    y = torch.tensor([0, 1, 2])
    a = lfp_snn.feedback(net, constant_encode(x, 5), y)
    b = lfp_snn.feedback(net, constant_encode(x, 5).contiguous(), y)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-10, atol=1e-12)
    # training mode: the same rows repeated T times give the same statistics as B rows
    net.train()
    c = lfp_snn.feedback(copy.deepcopy(net), constant_encode(x, 5), y)
    d = lfp_snn.feedback(copy.deepcopy(net), constant_encode(x, 5).contiguous(), y)
    for k in c:
        torch.testing.assert_close(c[k], d[k], rtol=1e-9, atol=1e-12)


def test_fold_for_export_leaves_the_spikes_unchanged():
    net = _net()
    with torch.no_grad():
        for m in (net[1], net[6]):
            m.running_mean.uniform_(-0.3, 0.3)
            m.running_var.uniform_(0.3, 2.0)
    net.eval()
    folded = fold_batchnorm(net)
    assert not any(isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) for m in folded.modules())
    xs = torch.rand(10, 16, 1, 8, 8, dtype=DT, generator=torch.Generator().manual_seed(3))
    a, b = lfp_snn.forward_trace(net, xs, keep=False), lfp_snn.forward_trace(folded, xs, keep=False)
    assert torch.equal(a.output, b.output)
    for k in a.spike_counts:
        assert torch.equal(a.spike_counts[k], b.spike_counts[k]), k
    assert 0 < a.spike_rate["2"] < 1
    with pytest.raises(ValueError, match=r"layer '1' \(BatchNorm2d\) is in training mode"):
        fold_batchnorm(net.train())
    with pytest.raises(ValueError, match=r"follows LIF; only a BatchNorm right after a Linear/Conv"):
        fold_batchnorm(nn.Sequential(nn.Linear(3, 3), LIF(), nn.BatchNorm1d(3)).eval())


def test_batchnorm_errors_name_the_layer_and_the_option():
    net = _net()
    xs = torch.rand(4, 3, 1, 8, 8, dtype=DT)
    y = torch.tensor([0, 1, 2])
    with pytest.raises(
        ValueError, match=r"time_chunk=2 cannot be combined with layer '1' \(BatchNorm2d\) in train"
    ):
        lfp_snn.feedback_result(net, xs, y, time_chunk=2)
    with pytest.raises(ValueError, match=r"micro_batch=2 cannot be combined with layer '1' \(BatchNorm2d\)"):
        lfp_snn.feedback_result(net, xs, y, micro_batch=2)
    lfp_snn.feedback_result(net.eval(), xs, y, time_chunk=2)  # eval mode: fine
    bad = lfp_snn.Composite(by_type={nn.BatchNorm2d: lfp_snn.ZPlusZMinus()}, default=lfp_snn.Epsilon())
    with pytest.raises(ValueError, match=r"layer '1' \(BatchNorm2d\) gets rule 'zplus-zminus'"):
        lfp_snn.feedback_result(net, xs, y, rule=bad)
    lfp_snn.feedback_result(net, xs, y, rule="zplus-zminus")  # the preset maps BatchNorm to ε
    with pytest.raises(ValueError, match=r"normalises 4 channels; expected rows of shape \[N, 4, ...\]"):
        lfp_snn.feedback(
            nn.Sequential(nn.Linear(3, 5), nn.BatchNorm1d(4)).double(),
            torch.rand(2, 3, dtype=DT),
            torch.tensor([0, 1]),
        )


def test_nir_export_folds_batchnorm_and_the_graph_spikes_like_the_model(tmp_path):
    import warnings

    from lfp_snn.export import export_nir, import_nir

    torch.manual_seed(2)
    net = SpikingSequential(
        nn.Flatten(),
        nn.Linear(20, 12),
        nn.BatchNorm1d(12),
        LIF(0.8, 0.6, "zero", False),
        nn.Linear(12, 4),
        LIF(0.8, 0.6, "zero", False),
    ).to(torch.float32)
    with torch.no_grad():
        net[2].running_mean.uniform_(-0.2, 0.2)
        net[2].running_var.uniform_(0.5, 1.5)
        net[2].weight.uniform_(1.0, 2.0)
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = export_nir(net, tmp_path / "m.nir", input_shape=(20,))
    assert not any("Batch" in type(n).__name__ for n in graph.nodes.values())
    xs = (torch.rand(12, 8, 20, generator=torch.Generator().manual_seed(1)) < 0.3).float()
    want = lfp_snn.run(net, xs)
    assert 0 < float(want.mean()) < 1 and torch.equal(lfp_snn.run(import_nir(tmp_path / "m.nir"), xs), want)


def test_the_fpga_bundle_of_a_batchnorm_mlp_is_its_folded_network(tmp_path):
    from lfp_snn.export.fixed_point import quantize

    torch.manual_seed(3)
    net = SpikingSequential(
        nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), LIF(0.75, 1.0), nn.Linear(8, 3), LIF()
    )
    with torch.no_grad():
        net[2].running_var.uniform_(0.5, 1.5)
    net.eval()
    q = quantize(net, input_shape=(16,))
    folded = fold_batchnorm(net)
    assert [layer.name for layer in q.layers] == ["1", "4"]
    for layer, lin in zip(q.layers, (folded[1], folded[4])):  # the integers are the folded weights
        w = lin.weight.detach().double().numpy()
        assert abs(layer.weight * layer.scale - w).max() <= layer.scale / 2 + 1e-12
        b = lin.bias.detach().double().numpy()
        assert abs(layer.bias * layer.scale - b).max() <= layer.scale / 2 + 1e-12
