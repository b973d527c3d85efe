"""The deep spiking conv nets (lfp_snn.deep): the reference's layer shapes, one LFP step each, and a SEW block
giving the feedback of the same layers written out by hand."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_graph import _scaled
from test_snn_literal import _lif_step
from torch import nn

import lfp_snn
from lfp_snn.deep import ResNetSNN, SEWBlock, deeper_snn, sew_resnet, vgg_snn

pytestmark = pytest.mark.usefixtures("one_thread")


def _lif():
    return lfp_snn.LIF(0.9, 0.5)


@pytest.mark.parametrize("shape, deeper, resnet", [((3, 32, 32), 2500, 1800), ((1, 28, 28), 1600, 1800)])
def test_the_reference_models_have_the_reference_shapes(shape, deeper, resnet):
    d = deeper_snn(shape, 10, _lif)
    convs = [m for m in d if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [30, 150, 250, 200, 100]
    assert [c.padding for c in convs] == [(2, 2), (1, 1), (1, 1), (2, 2), (2, 2)]
    assert all(c.bias is None and c.kernel_size == (3, 3) for c in convs)
    assert d[-2].in_features == deeper and d[-2].bias is None
    r = ResNetSNN(shape, 10, _lif)
    assert r.fc.in_features == resnet and r.skip.kernel_size == (1, 1) and r.conv1.kernel_size == (5, 5)


@pytest.mark.parametrize("build", [deeper_snn, ResNetSNN, vgg_snn, sew_resnet])
def test_every_deep_model_takes_an_lfp_step(build):
    torch.manual_seed(0)
    m = build((1, 16, 16), 4, _lif)
    x = torch.rand(3, 2, 1, 16, 16)
    res = lfp_snn.feedback_result(m, x, torch.tensor([0, 3]))
    assert res.output.shape == (3, 2, 4)
    names = {n for n, _ in m.named_parameters()}
    assert set(res.feedback) <= names and all(torch.isfinite(v).all() for v in res.feedback.values())


class _SewByHand(nn.Module):
    """The SEW block's layers, the residual sum written out."""

    def __init__(self, block: SEWBlock) -> None:
        super().__init__()
        self.first = nn.Sequential(block.conv1, block.bn1, block.sn1)
        self.second = nn.Sequential(block.conv2, block.bn2, block.sn2)

    def forward(self, x):
        y = self.second(self.first(x))
        return y + x


def test_a_sew_block_is_its_layers_plus_the_identity():
    torch.manual_seed(1)
    block = SEWBlock(4, _lif).double()
    head = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), _lif())
    net = lfp_snn.SpikingSequential(*head, block, nn.Flatten(), nn.Linear(4 * 36, 3), _lif()).double()
    hand = lfp_snn.SpikingSequential(*head, _SewByHand(block), nn.Flatten(), net[4], net[5]).double()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2)
    x = torch.rand(4, 2, 1, 6, 6, dtype=torch.float64)
    y = torch.tensor([0, 2])
    a = lfp_snn.feedback_result(net, x, y, input_reward=True)
    b = lfp_snn.feedback_result(hand, x, y, input_reward=True)
    assert torch.equal(a.output, b.output)
    rename = {"2.conv1": "2.first.0", "2.bn1": "2.first.1", "2.conv2": "2.second.0", "2.bn2": "2.second.1"}
    for k, v in a.feedback.items():
        mod, p = k.rsplit(".", 1)
        assert torch.equal(v, b.feedback[f"{rename.get(mod, mod)}.{p}"]), k
    with pytest.raises(ValueError, match="channels must be an integer >= 1"):
        SEWBlock(0, _lif)


# ------------------------------------------------------------------------------------------------------
# the ResNet-like SNN against a literal step-by-step implementation (float64)
# ------------------------------------------------------------------------------------------------------

DT = torch.float64
EPS = 1e-6
SCALE = 3.0  # larger initial weights, so that every layer fires in four steps


def _literal_resnet(net: ResNetSNN, xs, R, eps=EPS):
    """The reference's ResNet-like SNN written out: a loop over t, then the layers, straight from the equations.

    Forward per step: each conv (no bias) feeds a LIF step (``_lif_step``, the documented LIF); max pooling of
    spikes keeps each window's first maximum; the residual merge is z = max(s3, s_skip) (the OR of spikes).
    Reverse, t = T..1, the ε rule: at a LIF, g = (R + C) / (|P| + |Ũ − P| + ε) and C = β P g; at the conv
    that feeds it, F_W += |W| ⊙ (g ⋆ x) (the weight-gradient form with g in place of the output gradient)
    and R_x = x ⊙ (Wᵀ ⋆ g); a pool routes R to the window's first maximum; the merge gives R to the larger
    branch (to conv3's on ties); the fork at p2 adds the rewards of conv3 and the skip."""
    convs = {"conv1": net.conv1, "conv2": net.conv2, "conv3": net.conv3, "skip": net.skip, "conv4": net.conv4}
    lifs = {
        "conv1": net.lif1,
        "conv2": net.lif2,
        "conv3": net.lif3,
        "skip": net.lif_skip,
        "conv4": net.lif4,
        "fc": net.lif_out,
    }
    state = dict.fromkeys(lifs)
    carry = dict.fromkeys(lifs, 0.0)
    rec = []
    outs = []

    def step(name, i_t, r):
        m = lifs[name]
        s, state[name], p, pre = _lif_step(
            torch.zeros_like(i_t) if state[name] is None else state[name],
            i_t,
            m.beta.to(DT),
            m.threshold.to(DT),
            m.reset,
            m.reset_delay,
        )
        r[name] = (p, pre)
        return s

    def pool(s, k):
        return F.max_pool2d(s, k, return_indices=True)

    def conv(name, x):
        return F.conv2d(x, convs[name].weight, padding=convs[name].padding)

    for t in range(xs.shape[0]):
        r = {"x": xs[t]}
        s1 = step("conv1", conv("conv1", xs[t]), r)
        r["p1"], r["i1"] = pool(s1, 2)
        r["s1"] = s1
        s2 = step("conv2", conv("conv2", r["p1"]), r)
        r["p2"], r["i2"] = pool(s2, 2)
        r["s2"] = s2
        s3 = step("conv3", conv("conv3", r["p2"]), r)
        sk = step("skip", conv("skip", r["p2"]), r)
        r["wins"], z = s3 >= sk, torch.maximum(s3, sk)
        r["p3"], r["i3"] = pool(z, 3)
        r["z"] = z
        s4 = step("conv4", conv("conv4", r["p3"]), r)
        r["s4"], r["f"] = s4, torch.flatten(s4, 1)
        outs.append(step("fc", F.linear(r["f"], net.fc.weight), r))
        rec.append(r)
    fb = {f"{n}.weight": torch.zeros_like(c.weight) for n, c in convs.items()}
    fb["fc.weight"] = torch.zeros_like(net.fc.weight)
    rin = []

    def lif_back(name, R_s, r):
        p, pre = r[name]
        g = (R_s + carry[name]) / (p.abs() + (pre - p).abs() + eps)
        carry[name] = lifs[name].beta.to(DT) * p * g
        return g

    def conv_back(name, x, g):
        w, pad = convs[name].weight, convs[name].padding
        fb[f"{name}.weight"] += w.abs() * torch.nn.grad.conv2d_weight(x, w.shape, g, padding=pad)
        return x * torch.nn.grad.conv2d_input(x.shape, w, g, padding=pad)

    for t in range(xs.shape[0] - 1, -1, -1):
        r = rec[t]
        g = lif_back("fc", R[t], r)
        fb["fc.weight"] += net.fc.weight.abs() * (g.T @ r["f"])
        R_s4 = (r["f"] * (g @ net.fc.weight)).view(r["s4"].shape)
        R_p3 = conv_back("conv4", r["p3"], lif_back("conv4", R_s4, r))
        R_z = F.max_unpool2d(R_p3, r["i3"], 3, output_size=r["z"].shape[-2:])
        R_p2 = conv_back("conv3", r["p2"], lif_back("conv3", R_z * r["wins"], r))
        R_p2 = R_p2 + conv_back("skip", r["p2"], lif_back("skip", R_z * ~r["wins"], r))
        R_s2 = F.max_unpool2d(R_p2, r["i2"], 2, output_size=r["s2"].shape[-2:])
        R_p1 = conv_back("conv2", r["p1"], lif_back("conv2", R_s2, r))
        R_s1 = F.max_unpool2d(R_p1, r["i1"], 2, output_size=r["s1"].shape[-2:])
        rin.append(conv_back("conv1", r["x"], lif_back("conv1", R_s1, r)))
    return torch.stack(outs), fb, torch.stack(rin[::-1]), rec


@pytest.mark.parametrize("reset, delay", [("subtract", True), ("zero", False)])
@pytest.mark.parametrize("kw", [{}, {"recompute": True}])
def test_resnet_snn_matches_the_literal_step_by_step_implementation(reset, delay, kw):

    def lif():
        return lfp_snn.LIF(0.9, 0.5, reset=reset, reset_delay=delay)

    net = _scaled(lambda: ResNetSNN((1, 16, 16), 4, lif), SCALE, seed=3)
    g = torch.Generator().manual_seed(4)
    xs = torch.rand(4, 2, 1, 16, 16, dtype=DT, generator=g)
    R = torch.randn(4, 2, 4, dtype=DT, generator=g)
    with torch.no_grad():
        out, fb, rin, rec = _literal_resnet(net, xs, R)
    # every layer fires, and both branches of the merge win somewhere (else a path is not checked)
    for key in ("s1", "s2", "z", "s4"):
        assert any(float(r[key].sum()) > 0 for r in rec), key
    assert float(out.sum()) > 0
    wins = torch.stack([r["wins"] & (r["z"] > 0) for r in rec])
    loses = torch.stack([~r["wins"] for r in rec])
    assert wins.any() and loses.any()
    res = lfp_snn.feedback_result(
        net, xs, torch.zeros(2, dtype=torch.long), lambda o, y: R, input_reward=True, **kw
    )
    assert torch.equal(res.output, out)
    for k, want in fb.items():
        assert want.abs().max() > 0, k
        torch.testing.assert_close(res.feedback[k], want, rtol=1e-10, atol=1e-12, msg=k)
    torch.testing.assert_close(res.input_reward, rin, rtol=1e-10, atol=1e-12)
