"""Models beyond nn.Sequential: plain modules with their own forward, residual sums, forks, concatenation,
reshapes; and the errors for what the engine cannot run.

The sum node (docs/engine.md): z = a + b, R_a = a ⊙ R / stabilize(z), R_b = b ⊙ R / stabilize(z); a tensor
read by two nodes gets the sum of both rewards. Checked against a literal step-by-step implementation of a
residual SNN and by conservation (Σ R_in = Σ R_out as ε → 0) in a residual ANN without biases.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_snn_literal import _lif_step
from torch import nn

import lfp_snn
from lfp_snn import LIF, SpikingSequential
from lfp_snn.engine import GraphError, build_graph

DT = torch.float64
EPS = 1e-6


pytestmark = pytest.mark.usefixtures("one_thread")


def _stab(z, eps):
    return z + eps * torch.where(z >= 0, 1.0, -1.0).to(z.dtype)


def _scaled(m, by=3.0, seed=0):
    torch.manual_seed(seed)
    m = m().to(DT) if callable(m) and not isinstance(m, nn.Module) else m.to(DT)
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(by)
    return m


# ------------------------------------------------------------------------------------------------------
# a plain module gives its Sequential twin's feedback, bit for bit
# ------------------------------------------------------------------------------------------------------


class ConvNet(nn.Module):
    """The layers of a spiking LeNet-like Sequential, with its own forward (functions for the flatten)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.lif1 = LIF(0.8, 1.0)
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Sequential(nn.Linear(36, 16), LIF(0.8, 1.0))
        self.out = nn.Linear(16, 5)
        self.lif2 = LIF(0.8, 1.0)

    def forward(self, x):
        h = self.pool(self.lif1(self.conv(x)))
        h = torch.flatten(h, 1)
        return self.lif2(self.out(self.head(h)))


def _twin(net: ConvNet) -> SpikingSequential:
    return SpikingSequential(net.conv, net.lif1, net.pool, nn.Flatten(), *net.head, net.out, net.lif2)


def _keys_as_twin(fb: dict) -> dict:
    names = {"conv": "0", "head.0": "4", "out": "6"}
    return {names[k.rsplit(".", 1)[0]] + "." + k.rsplit(".", 1)[1]: v for k, v in fb.items()}


@pytest.mark.parametrize("rule", ["epsilon", "zplus-zminus", "alpha2-beta1"])
@pytest.mark.parametrize("kw", [{}, {"recompute": True}, {"time_chunk": 2}, {"micro_batch": 2}])
def test_plain_spiking_module_gives_the_feedback_of_its_sequential_twin(rule, kw):
    net = _scaled(ConvNet)
    twin = _twin(net)
    x = torch.rand(5, 3, 1, 8, 8, dtype=DT, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 3, 1])
    a = lfp_snn.feedback_result(net, x, y, "sequence", rule, input_reward=True, **kw)
    b = lfp_snn.feedback_result(twin, x, y, "sequence", rule, input_reward=True, **kw)
    assert build_graph(net).traced and not build_graph(twin).traced
    fa = _keys_as_twin(a.feedback)
    assert fa.keys() == b.feedback.keys()
    for k in fa:
        assert torch.equal(fa[k], b.feedback[k]), k
    assert torch.equal(a.output, b.output) and torch.equal(a.input_reward, b.input_reward)
    assert any(v.abs().max() > 0 for v in fa.values())


class AnnNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(10, 12), nn.Linear(12, 8), nn.Linear(8, 3)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = x.view(x.size(0), -1)
        return self.fc3(torch.tanh(self.fc2(x)))


def test_plain_ann_module_gives_the_feedback_of_its_sequential_twin():
    net = _scaled(AnnNet, 1.0)
    twin = nn.Sequential(net.fc1, nn.ReLU(), net.fc2, nn.Tanh(), net.fc3)
    x = torch.rand(4, 10, dtype=DT)
    y = torch.tensor([0, 1, 2, 0])
    for rule in ("epsilon", "alpha2-beta1"):
        a = lfp_snn.feedback(net, x, y, "sigmoid", rule)
        b = lfp_snn.feedback(twin, x, y, "sigmoid", rule)
        names = {"fc1": "0", "fc2": "2", "fc3": "4"}
        for k, v in a.items():
            assert torch.equal(v, b[names[k.split(".")[0]] + "." + k.split(".")[1]]), k


# ------------------------------------------------------------------------------------------------------
# the sum node: conservation, and a literal residual SNN
# ------------------------------------------------------------------------------------------------------


class ResidualAnn(nn.Module):
    """x -> fc1 -> relu = h;  h -> fc2 -> relu -> fc3 (+ h, a fork) -> relu -> fc4 (+ fc5(h)) -> out."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8, bias=False)
        self.fc2 = nn.Linear(8, 8, bias=False)
        self.fc3 = nn.Linear(8, 8, bias=False)
        self.fc4 = nn.Linear(8, 3, bias=False)
        self.fc5 = nn.Linear(8, 3, bias=False)

    def forward(self, x):
        h = torch.relu(self.fc1(x))
        r = torch.relu(self.fc3(torch.relu(self.fc2(h))) + h)
        return self.fc4(r) + self.fc5(h)


@pytest.mark.parametrize("eps", [1e-9, 1e-12])
def test_residual_sums_conserve_the_reward(eps):
    net = _scaled(ResidualAnn, 1.0, seed=2)
    x = torch.rand(5, 6, dtype=DT, generator=torch.Generator().manual_seed(3)) + 0.1
    R = torch.randn(5, 3, dtype=DT, generator=torch.Generator().manual_seed(4))
    res = lfp_snn.feedback_result(
        net, x, torch.zeros(5, dtype=torch.long), lambda o, y: R, "epsilon", eps=eps, input_reward=True
    )
    # every layer conserves without biases; so must the two sums and the fork that joins them
    assert res.input_reward.sum().item() == pytest.approx(R.sum().item(), rel=1e-6)
    per_sample = res.input_reward.sum(1)
    torch.testing.assert_close(per_sample, R.sum(1), rtol=1e-6, atol=1e-9)


def test_a_sum_that_drops_a_branch_does_not_conserve():
    """The check above can fail: a sum rule that gave only a's share would lose b's reward."""
    net = _scaled(ResidualAnn, 1.0, seed=2)
    x = torch.rand(5, 6, dtype=DT, generator=torch.Generator().manual_seed(3)) + 0.1
    R = torch.randn(5, 3, dtype=DT, generator=torch.Generator().manual_seed(4))
    from lfp_snn.engine.handlers import merge

    real = merge.AddHandler.reverse

    def half(self, node, rec, msg, ctx):
        back = real(self, node, rec, msg, ctx)
        return type(back)((back.inputs[0], None) + back.inputs[2:], back.feedback)

    merge.AddHandler.reverse = half
    try:
        res = lfp_snn.feedback_result(
            net, x, torch.zeros(5, dtype=torch.long), lambda o, y: R, eps=1e-12, input_reward=True
        )
    finally:
        merge.AddHandler.reverse = real
    assert abs(res.input_reward.sum().item() - R.sum().item()) > 1e-3 * R.abs().sum().item()


class SewBlock(nn.Module):
    """x -> fc1 -> LIF = s1;  s1 -> fc2 -> LIF = s2;  z = s1 + s2 (spikes summed, SEW-style);  z -> fc3 -> LIF."""

    def __init__(self, reset="subtract", delay=True) -> None:
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(6, 10), LIF(0.8, 0.6, reset, delay)
        self.fc2, self.lif2 = nn.Linear(10, 10), LIF(0.7, 0.5, reset, delay)
        self.fc3, self.lif3 = nn.Linear(10, 4), LIF(0.9, 0.8, reset, delay)

    def forward(self, x):
        s1 = self.lif1(self.fc1(x))
        s2 = self.lif2(self.fc2(s1))
        return self.lif3(self.fc3(s1 + s2))


def literal_sew(net: SewBlock, xs, reward_fn, eps=EPS):
    """Step by step: for t, the three layers in order; back for t = T..1, last node first, the sum node's
    shares and the fork's two rewards written out. Returns (output, feedback, input reward)."""
    T = xs.shape[0]
    lifs = [net.lif1, net.lif2, net.lif3]
    fcs = [net.fc1, net.fc2, net.fc3]
    u = [None, None, None]
    rec = {k: [] for k in ("x", "s1", "s2", "z", "p", "pre")}
    outs = []
    for t in range(T):
        x = xs[t]
        ps, pres = [], []
        a = x
        spikes = []
        for k in range(3):
            if k == 2:
                a = spikes[0] + spikes[1]
            elif k == 1:
                a = spikes[0]
            i_t = F.linear(a, fcs[k].weight, fcs[k].bias)
            u_prev = torch.zeros_like(i_t) if u[k] is None else u[k]
            m = lifs[k]
            s, u[k], p, pre = _lif_step(
                u_prev, i_t, m.beta.to(DT), m.threshold.to(DT), m.reset, m.reset_delay
            )
            spikes.append(s)
            ps.append(p)
            pres.append(pre)
        rec["x"].append(x)
        rec["s1"].append(spikes[0])
        rec["s2"].append(spikes[1])
        rec["z"].append(spikes[0] + spikes[1])
        rec["p"].append(ps)
        rec["pre"].append(pres)
        outs.append(spikes[2])
    out = torch.stack(outs)
    reward = reward_fn(out)
    fb = {
        f"fc{k + 1}.{n}": torch.zeros_like(getattr(fcs[k], n)) for k in range(3) for n in ("weight", "bias")
    }
    carry = [0.0, 0.0, 0.0]
    rin = []

    def lif_back(k, R, t):
        p, pre = rec["p"][t][k], rec["pre"][t][k]
        g = (R + carry[k]) / (p.abs() + (pre - p).abs() + eps)
        carry[k] = lifs[k].beta.to(DT) * p * g
        return g

    def eps_back(k, a, g):
        w, b = fcs[k].weight, fcs[k].bias
        fb[f"fc{k + 1}.weight"] += w.abs() * (g.T @ a)
        fb[f"fc{k + 1}.bias"] += b.abs() * g.sum(0)
        return a * (g @ w)

    for t in range(T - 1, -1, -1):
        g3 = lif_back(2, reward[t], t)
        r_z = eps_back(2, rec["z"][t], g3)
        share = r_z / _stab(rec["z"][t], eps)  # the sum node
        r_s1_skip, r_s2 = rec["s1"][t] * share, rec["s2"][t] * share
        g2 = lif_back(1, r_s2, t)
        r_s1 = eps_back(1, rec["s1"][t], g2) + r_s1_skip  # the fork: both branches' rewards
        g1 = lif_back(0, r_s1, t)
        rin.append(eps_back(0, rec["x"][t], g1))
    return out, fb, torch.stack(rin[::-1])


@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("delay", [True, False])
@pytest.mark.parametrize("kw", [{}, {"time_chunk": 3}, {"recompute": True}])
def test_residual_snn_matches_the_literal_step_by_step_implementation(reset, delay, kw):
    net = _scaled(lambda: SewBlock(reset, delay), 2.0, seed=5)
    xs = torch.rand(7, 3, 6, dtype=DT, generator=torch.Generator().manual_seed(6))
    R = torch.randn(7, 3, 4, dtype=DT, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        out, fb, rin = literal_sew(net, xs, lambda o: R)
    res = lfp_snn.feedback_result(
        net, xs, torch.zeros(3, dtype=torch.long), lambda o, y: R, input_reward=True, **kw
    )
    assert torch.equal(res.output, out)
    assert float(out.sum()) > 0 and float(torch.stack([r.sum() for r in [res.output]]).sum()) > 0
    for k, want in fb.items():
        torch.testing.assert_close(res.feedback[k], want, rtol=1e-10, atol=1e-12, msg=k)
    torch.testing.assert_close(res.input_reward, rin, rtol=1e-10, atol=1e-12)
    assert fb["fc1.weight"].abs().max() > 0 and fb["fc2.weight"].abs().max() > 0


# ------------------------------------------------------------------------------------------------------
# concatenation
# ------------------------------------------------------------------------------------------------------


class CatNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.out = nn.Linear(5, 3), nn.Linear(5, 4), nn.Linear(7, 2)

    def forward(self, x):
        return self.out(torch.cat([torch.relu(self.a(x)), self.b(x)], dim=1))


def test_concatenation_splits_the_reward_back():
    net = _scaled(CatNet, 1.0)
    x = torch.rand(3, 5, dtype=DT)
    R = torch.randn(3, 2, dtype=DT)
    res = lfp_snn.feedback_result(net, x, torch.zeros(3, dtype=torch.long), lambda o, y: R, input_reward=True)
    # by hand: ε at out, then the reward of cat's output split into the two branches
    with torch.no_grad():
        ha, hb = torch.relu(net.a(x)), net.b(x)
        h = torch.cat([ha, hb], 1)
        g = R / _stab(net.out(h), EPS)
        r_h = h * (g @ net.out.weight)
        ga = r_h[:, :3] / _stab(net.a(x), EPS)
        gb = r_h[:, 3:] / _stab(hb, EPS)
        rin = x * (ga @ net.a.weight) + x * (gb @ net.b.weight)
    torch.testing.assert_close(res.feedback["a.weight"], net.a.weight.abs() * (ga.T @ x))
    torch.testing.assert_close(res.feedback["b.weight"], net.b.weight.abs() * (gb.T @ x))
    torch.testing.assert_close(res.input_reward, rin)


# ------------------------------------------------------------------------------------------------------
# errors
# ------------------------------------------------------------------------------------------------------


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if x.sum() > 0:  # control flow on a tensor value
            return self.fc(x)
        return -self.fc(x)


class Outer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first = nn.Linear(4, 4)
        self.inner = Untraceable()

    def forward(self, x):
        return self.inner(self.first(x))


def test_an_untraceable_model_names_the_module():
    with pytest.raises(GraphError, match=r"cannot trace module 'inner' \(Untraceable\).*control flow"):
        lfp_snn.feedback(Outer(), torch.rand(2, 4), torch.tensor([0, 1]))


def test_an_unsupported_function_names_the_node_and_lists_what_is_supported():
    class Softmaxed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return torch.softmax(self.fc(x), dim=1)

    with pytest.raises(
        GraphError, match=r"function torch.softmax \(node 'softmax'\) is not supported.*torch\.cat"
    ):
        lfp_snn.feedback(Softmaxed(), torch.rand(2, 4), torch.tensor([0, 1]))


def test_an_unsupported_layer_inside_a_plain_module_is_named_by_its_path():
    class WithNorm(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(self.block(x))

    with pytest.raises(GraphError, match=r"layer 'block.1' of type LayerNorm is not supported"):
        lfp_snn.feedback(WithNorm(), torch.rand(2, 4), torch.tensor([0, 1]))


def test_slicing_an_activation_is_refused_with_the_node():
    class Sliced(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x):
            return self.fc(x)[:, :2]

    with pytest.raises(ValueError, match=r"indexes a tensor"):
        lfp_snn.feedback(Sliced(), torch.rand(2, 4), torch.tensor([0, 1]))


def test_a_reshape_of_the_batch_axis_is_refused():
    class Folded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.out = nn.Linear(4, 4), nn.Linear(8, 3)

        def forward(self, x):
            return self.out(self.fc(x).reshape(-1, 8))

    with pytest.raises(ValueError, match=r"changes the first axis"):
        lfp_snn.feedback(Folded(), torch.rand(2, 4), torch.tensor([0, 1]))


def test_sum_of_different_shapes_and_of_a_constant_are_refused():
    class Broadcast(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 1)

        def forward(self, x):
            return self.a(x) + self.b(x)

    with pytest.raises(ValueError, match=r"adds tensors of shapes \[2, 3\] and \[2, 1\]"):
        lfp_snn.feedback(Broadcast(), torch.rand(2, 4), torch.tensor([0, 1]))

    class Shifted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(4, 3)

        def forward(self, x):
            return self.a(x) + 1.0

    with pytest.raises(ValueError, match=r"sum of two tensors"):
        lfp_snn.feedback(Shifted(), torch.rand(2, 4), torch.tensor([0, 1]))


def test_a_layer_called_twice_gets_both_calls_feedback():
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.out = nn.Linear(4, 4), nn.Linear(4, 3)

        def forward(self, x):
            return self.out(self.fc(torch.relu(self.fc(x))))

    net = _scaled(Shared, 1.0)
    g = build_graph(net)
    assert [n.name for n in g.nodes[1:]] == ["fc", "relu", "fc#2", "out"]
    fb = lfp_snn.feedback(net, torch.rand(3, 4, dtype=DT), torch.tensor([0, 1, 2]), "sigmoid")
    assert fb["fc.weight"].shape == (4, 4) and fb["fc.weight"].abs().max() > 0


class MaxMerge(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.out = nn.Linear(5, 4), nn.Linear(5, 4), nn.Linear(4, 3)

    def forward(self, x):
        return self.out(torch.max(self.a(x), self.b(x)))


def test_the_maximum_of_two_branches_routes_the_reward_to_the_larger():
    net = _scaled(MaxMerge, 1.0)
    x = torch.rand(6, 5, dtype=DT)
    R = torch.randn(6, 3, dtype=DT)
    res = lfp_snn.feedback_result(net, x, torch.zeros(6, dtype=torch.long), lambda o, y: R, input_reward=True)
    with torch.no_grad():
        za, zb = net.a(x), net.b(x)
        h = torch.maximum(za, zb)
        r_h = h * ((R / _stab(net.out(h), EPS)) @ net.out.weight)
        wins = za >= zb  # ties: the first argument, as max pooling's first maximum
        ga, gb = r_h * wins / _stab(za, EPS), r_h * ~wins / _stab(zb, EPS)
    assert wins.any() and (~wins).any()
    torch.testing.assert_close(res.feedback["a.weight"], net.a.weight.abs() * (ga.T @ x))
    torch.testing.assert_close(res.feedback["b.weight"], net.b.weight.abs() * (gb.T @ x))
    torch.testing.assert_close(res.input_reward, x * (ga @ net.a.weight) + x * (gb @ net.b.weight))
