"""A slow, literal second opinion for the LFP rules (the paper's Eq. 2-13, as docs/engine.md states them).

Every parametric layer is unrolled into its connections i -> j (input index, output index, weight index):
Linear by its definition, Conv1d/Conv2d by walking every output position and kernel tap (stride, padding,
dilation, groups). The rules are then written per connection with Python loops over floats, no matmul and
no lfp_snn code, and compared in float64 with the fast engine (``lfp_snn.feedback_result``).

Rules, per output j with reward R_j (stab(z) = z + ε (sign(z) + [z = 0])):

- ε:    z_j = Σ_i w_ij x_i + b_j;  R_i += x_i w_ij R_j / stab(z_j);  F_w += |w_ij| x_i R_j / stab(z_j);
        F_b += |b_j| R_j / stab(z_j).  LFP-0 is ε = 0.
- z⁺z⁻: z±_j = Σ_i w±_ij x_i + b±_j;  D = |z⁺| + |z⁻| + ε;  g± = R (|z±| / D) / stab(z±);
        R_i += x_i (w⁺ g⁺ + w⁻ g⁻);  F_w += |w⁺| x g⁺ - |w⁻| x g⁻;  F_b += |b⁺| g⁺ - |b⁻| g⁻.
- αβ:   z⁺ = Σ x⁺w⁺ + x⁻w⁻ + b⁺,  z⁻ = Σ x⁺w⁻ + x⁻w⁺ + b⁻;  g± = R / stab(z±);
        R_i += α (x⁺w⁺ + x⁻w⁻) g⁺ - β (x⁺w⁻ + x⁻w⁺) g⁻;
        F_w += α (|w⁺| x⁺ + |w⁻| x⁻) g⁺ - β (|w⁻| x⁺ + |w⁺| x⁻) g⁻;  F_b += α |b⁺| Σ g⁺ - β |b⁻| Σ g⁻.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

import lfp_snn
from lfp_snn import AlphaBeta, Composite, Epsilon, Heaviside, ZPlusZMinus

DT = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------------
# literal layers: connection lists
# ------------------------------------------------------------------------------------------------------


def _flat(index, shape):
    out = 0
    for i, n in zip(index, shape):
        out = out * n + i
    return out


def connections(module: nn.Module, in_shape: tuple[int, ...]):
    """([(i_in, j_out, w_flat)], out_shape, bias index per output j) for one sample of shape ``in_shape``."""
    if isinstance(module, nn.Linear):
        n_out, n_in = module.weight.shape
        assert in_shape == (n_in,)
        conns = [(i, j, j * n_in + i) for j in range(n_out) for i in range(n_in)]
        return conns, (n_out,), list(range(n_out))
    assert isinstance(module, (nn.Conv1d, nn.Conv2d))
    nd = 1 if isinstance(module, nn.Conv1d) else 2
    c_in, spatial = in_shape[0], in_shape[1:]
    c_out = module.out_channels
    k, s, p, d, groups = module.kernel_size, module.stride, module.padding, module.dilation, module.groups
    out_spatial = tuple((spatial[a] + 2 * p[a] - d[a] * (k[a] - 1) - 1) // s[a] + 1 for a in range(nd))
    out_shape = (c_out, *out_spatial)
    wshape = tuple(module.weight.shape)  # (c_out, c_in / groups, *k)
    cin_g, cout_g = c_in // groups, c_out // groups
    conns, bias_of = [], []
    for oc in range(c_out):
        grp = oc // cout_g
        for opos in itertools.product(*(range(n) for n in out_spatial)):
            j = _flat((oc, *opos), out_shape)
            bias_of.append((j, oc))
            for icl in range(cin_g):
                ic = grp * cin_g + icl
                for tap in itertools.product(*(range(n) for n in k)):
                    ipos = tuple(opos[a] * s[a] - p[a] + tap[a] * d[a] for a in range(nd))
                    if all(0 <= ipos[a] < spatial[a] for a in range(nd)):
                        conns.append((_flat((ic, *ipos), in_shape), j, _flat((oc, icl, *tap), wshape)))
    bias = [0] * math.prod(out_shape)
    for j, oc in bias_of:
        bias[j] = oc
    return conns, out_shape, bias


def _stab(z: float, eps: float) -> float:
    return z + eps * (1.0 if z >= 0 else -1.0)


def _pos(v: float) -> float:
    return v if v > 0 else 0.0


def _neg(v: float) -> float:
    return v if v < 0 else 0.0


def literal_forward(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """z for a batch [B, *in] by summing connections."""
    conns, out_shape, bias_of = connections(module, tuple(x.shape[1:]))
    w = module.weight.detach().to(DT).flatten().tolist()
    b = None if module.bias is None else module.bias.detach().to(DT).tolist()
    out = []
    for xs in x.to(DT).reshape(x.shape[0], -1).tolist():
        z = [0.0 if b is None else b[bias_of[j]] for j in range(math.prod(out_shape))]
        for i, j, wi in conns:
            z[j] += w[wi] * xs[i]
        out.append(z)
    return torch.tensor(out, dtype=DT).reshape(x.shape[0], *out_shape)


def literal_rule(module: nn.Module, x: torch.Tensor, R: torch.Tensor, rule: tuple):
    """(R_in [B, *in], F_weight, F_bias or None) for one layer by the per-connection equations."""
    conns, out_shape, bias_of = connections(module, tuple(x.shape[1:]))
    n_out = math.prod(out_shape)
    assert tuple(R.shape[1:]) == out_shape
    wt = module.weight.detach().to(DT)
    w = wt.flatten().tolist()
    b = None if module.bias is None else module.bias.detach().to(DT).tolist()
    fw = [0.0] * len(w)
    fb = None if b is None else [0.0] * len(b)
    rins = []
    kind, eps = rule[0], rule[-1]
    for xs, rs in zip(x.to(DT).reshape(x.shape[0], -1).tolist(), R.to(DT).reshape(R.shape[0], -1).tolist()):
        rin = [0.0] * len(xs)

        def bias_j(j, part=lambda v: v):
            return 0.0 if b is None else part(b[bias_of[j]])

        if kind == "eps":
            z = [bias_j(j) for j in range(n_out)]
            for i, j, wi in conns:
                z[j] += w[wi] * xs[i]
            g = [rs[j] / _stab(z[j], eps) for j in range(n_out)]
            for i, j, wi in conns:
                rin[i] += xs[i] * w[wi] * g[j]  # R_{i<-j} = z_ij / z_j R_j
                fw[wi] += abs(w[wi]) * xs[i] * g[j]
            if b is not None:
                for j in range(n_out):
                    fb[bias_of[j]] += abs(b[bias_of[j]]) * g[j]
        elif kind == "zpzm":
            zp = [bias_j(j, _pos) for j in range(n_out)]
            zn = [bias_j(j, _neg) for j in range(n_out)]
            for i, j, wi in conns:
                zp[j] += _pos(w[wi]) * xs[i]
                zn[j] += _neg(w[wi]) * xs[i]
            gp, gn = [], []
            for j in range(n_out):
                dd = abs(zp[j]) + abs(zn[j]) + eps
                gp.append(rs[j] * (abs(zp[j]) / dd) / _stab(zp[j], eps))
                gn.append(rs[j] * (abs(zn[j]) / dd) / _stab(zn[j], eps))
            for i, j, wi in conns:
                rin[i] += xs[i] * (_pos(w[wi]) * gp[j] + _neg(w[wi]) * gn[j])
                fw[wi] += abs(_pos(w[wi])) * xs[i] * gp[j] - abs(_neg(w[wi])) * xs[i] * gn[j]
            if b is not None:
                for j in range(n_out):
                    bj = b[bias_of[j]]
                    fb[bias_of[j]] += abs(_pos(bj)) * gp[j] - abs(_neg(bj)) * gn[j]
        elif kind == "ab":
            alpha, beta = rule[1], rule[2]
            zp = [bias_j(j, _pos) for j in range(n_out)]
            zn = [bias_j(j, _neg) for j in range(n_out)]
            for i, j, wi in conns:
                xp, xn, wp, wn = _pos(xs[i]), _neg(xs[i]), _pos(w[wi]), _neg(w[wi])
                zp[j] += xp * wp + xn * wn
                zn[j] += xp * wn + xn * wp
            gp = [rs[j] / _stab(zp[j], eps) for j in range(n_out)]
            gn = [rs[j] / _stab(zn[j], eps) for j in range(n_out)]
            for i, j, wi in conns:
                xp, xn, wp, wn = _pos(xs[i]), _neg(xs[i]), _pos(w[wi]), _neg(w[wi])
                rin[i] += alpha * (xp * wp + xn * wn) * gp[j] - beta * (xp * wn + xn * wp) * gn[j]
                fw[wi] += alpha * (abs(wp) * xp + abs(wn) * xn) * gp[j]
                fw[wi] -= beta * (abs(wn) * xp + abs(wp) * xn) * gn[j]
            if b is not None:
                for j in range(n_out):
                    bj = b[bias_of[j]]
                    fb[bias_of[j]] += alpha * abs(_pos(bj)) * gp[j] - beta * abs(_neg(bj)) * gn[j]
        else:
            raise ValueError(kind)
        rins.append(rin)
    rin_t = torch.tensor(rins, dtype=DT).reshape(x.shape)
    fw_t = torch.tensor(fw, dtype=DT).reshape(wt.shape)
    fb_t = None if fb is None else torch.tensor(fb, dtype=DT)
    return rin_t, fw_t, fb_t


# ------------------------------------------------------------------------------------------------------
# literal networks
# ------------------------------------------------------------------------------------------------------


def _maxpool_literal(x: torch.Tensor, k: int):
    """Forward (first maximum of each window, as torch picks on ties) and the routing table."""
    B, C = x.shape[:2]
    spatial = x.shape[2:]
    out_sp = tuple(n // k for n in spatial)
    y = torch.empty(B, C, *out_sp, dtype=x.dtype)
    src = {}
    for b_, c in itertools.product(range(B), range(C)):
        for opos in itertools.product(*(range(n) for n in out_sp)):
            best, arg = None, None
            for tap in itertools.product(*(range(k) for _ in spatial)):
                ipos = tuple(o * k + t for o, t in zip(opos, tap))
                v = float(x[(b_, c, *ipos)])
                if best is None or v > best:
                    best, arg = v, ipos
            y[(b_, c, *opos)] = best
            src[(b_, c, *opos)] = (b_, c, *arg)
    return y, src


def _avgpool_literal(x: torch.Tensor, k: int, R: torch.Tensor | None, eps: float):
    """Forward of AvgPool (kernel = stride = k) and, given R at the output, the ε-rule reward at its input."""
    B, C = x.shape[:2]
    spatial = x.shape[2:]
    out_sp = tuple(n // k for n in spatial)
    y = torch.zeros(B, C, *out_sp, dtype=x.dtype)
    rin = torch.zeros_like(x)
    n = k ** len(spatial)
    for b_, c in itertools.product(range(B), range(C)):
        for opos in itertools.product(*(range(m) for m in out_sp)):
            taps = [
                (b_, c, *(o * k + t for o, t in zip(opos, tap)))
                for tap in itertools.product(*(range(k) for _ in spatial))
            ]
            z = sum(float(x[ip]) / n for ip in taps)
            y[(b_, c, *opos)] = z
            if R is not None:
                for ip in taps:
                    rin[ip] += float(x[ip]) / n * float(R[(b_, c, *opos)]) / _stab(z, eps)
    return y, rin


def _act(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    if isinstance(m, nn.ReLU):
        return torch.where(x > 0, x, torch.zeros_like(x))
    if isinstance(m, nn.LeakyReLU):
        return torch.where(x > 0, x, m.negative_slope * x)
    if isinstance(m, nn.Tanh):
        return torch.tanh(x)
    if isinstance(m, Heaviside):
        return (x > 0).to(x.dtype)
    raise TypeError(type(m))


def literal_network(
    model: nn.Sequential, x: torch.Tensor, reward_fn, rules: dict, eps_pool: float, masks=None
):
    """Forward and reverse pass through a flat Sequential, one literal layer at a time.

    ``rules``: layer name -> rule tuple; ``masks``: layer name -> (mask, scale) for Dropout in train mode.
    Returns (output, reward at the output, feedback dict, reward at the input)."""
    masks = masks or {}
    acts, saved = [x.to(DT)], []
    for name, m in model.named_children():
        a = acts[-1]
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            y = literal_forward(m, a)
            torch.testing.assert_close(y, m.to(DT)(a), rtol=1e-12, atol=1e-12)  # the unrolling is right
            saved.append(None)
        elif isinstance(m, nn.MaxPool2d):
            y, src = _maxpool_literal(a, m.kernel_size)
            saved.append(src)
        elif isinstance(m, nn.AvgPool2d):
            y, _ = _avgpool_literal(a, m.kernel_size, None, eps_pool)
            saved.append(None)
        elif isinstance(m, nn.Flatten):
            y = a.reshape(a.shape[0], -1)
            saved.append(None)
        elif isinstance(m, nn.Dropout):
            if name in masks:
                mask, scale = masks[name]
                y = a * mask.to(DT) * scale
            else:
                y = a
            saved.append(None)
        else:
            y = _act(m, a)
            saved.append(None)
        acts.append(y)
    out = acts[-1]
    R = reward_fn(out)
    r = R
    fb = {}
    children = list(model.named_children())
    for idx in range(len(children) - 1, -1, -1):
        name, m = children[idx]
        a = acts[idx]
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            r, fw, fbias = literal_rule(m, a, r, rules[name])
            fb[f"{name}.weight"] = fw
            if fbias is not None:
                fb[f"{name}.bias"] = fbias
        elif isinstance(m, nn.MaxPool2d):
            rin = torch.zeros_like(a)
            for opos, ipos in saved[idx].items():
                rin[ipos] += r[opos]
            r = rin
        elif isinstance(m, nn.AvgPool2d):
            _, r = _avgpool_literal(a, m.kernel_size, r, eps_pool)
        elif isinstance(m, nn.Flatten):
            r = r.reshape(a.shape)
        elif isinstance(m, nn.Dropout) and name in masks:
            mask, scale = masks[name]
            r = r * mask.to(DT) * scale
        # element-wise activations and eval-mode dropout pass the reward through
    return out, R, fb, r


def sigmoid_reward_literal(out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Eq. 7 written element by element: r_c = o_c (y_c - σ(o_c))."""
    r = torch.empty_like(out)
    for b_ in range(out.shape[0]):
        for c in range(out.shape[1]):
            o = float(out[b_, c])
            y = 1.0 if int(labels[b_]) == c else 0.0
            r[b_, c] = o * (y - 1.0 / (1.0 + math.exp(-o)))
    return r


# ------------------------------------------------------------------------------------------------------
# rules and comparisons
# ------------------------------------------------------------------------------------------------------

EPS = 1e-6
RULES = {
    # name: (lfp_snn rule object, literal tuple, eps for the pass)
    "epsilon": (Epsilon(EPS), ("eps", EPS), EPS),
    "zero": (Epsilon(0.0), ("eps", 0.0), 0.0),
    "zplus-zminus": (ZPlusZMinus(EPS), ("zpzm", EPS), EPS),
    "alpha2-beta1": (AlphaBeta(2.0, 1.0, EPS), ("ab", 2.0, 1.0, EPS), EPS),
    "alpha1.5-beta0.5": (AlphaBeta(1.5, 0.5, EPS), ("ab", 1.5, 0.5, EPS), EPS),
}


def assert_matches(got: torch.Tensor, want: torch.Tensor, what: str, rel: float = 1e-10) -> None:
    assert got.shape == want.shape, f"{what}: shape {tuple(got.shape)} != {tuple(want.shape)}"
    scale = max(float(want.abs().max()), 1e-12)
    err = float((got.to(DT) - want).abs().max())
    assert err <= rel * scale, f"{what}: max error {err:.3e} vs scale {scale:.3e}"


def compare_net(model, x, labels, rule_name, *, reward="random", seed=0, composite=None, rules=None):
    """Run lfp_snn and the literal network; compare feedback for every parameter and the input reward."""
    model = model.to(DT).eval()
    rule_obj, rule_lit, eps = RULES[rule_name] if rule_name else (None, None, EPS)
    params = [n for n, m in model.named_children() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    rules = rules or {n: rule_lit for n in params}
    if reward == "random":
        gen = torch.Generator().manual_seed(seed + 99)
        with torch.no_grad():
            n_out = model(x.to(DT)).shape
        fixed = torch.randn(n_out, generator=gen, dtype=DT)

        def reward_fn(out, lab=None):
            return fixed.clone()
    else:

        def reward_fn(out, lab=None):
            return sigmoid_reward_literal(out, labels)

    out, R, fb_lit, rin_lit = literal_network(model, x.to(DT), reward_fn, rules, eps)
    res = lfp_snn.feedback_result(
        model,
        x.to(DT),
        labels,
        lambda o, lab: reward_fn(o, lab),
        composite if composite is not None else rule_obj,
        eps=eps,
        input_reward=True,
    )
    assert_matches(res.output, out, "output", 1e-12)
    assert_matches(res.reward, R, "reward", 1e-12)
    assert set(res.feedback) == set(fb_lit) == {n for n, _ in model.named_parameters()}
    for name, want in fb_lit.items():
        assert_matches(res.feedback[name], want, f"feedback {name}")
        assert float(want.abs().max()) > 0, f"{name}: the literal feedback is all zero, the test is vacuous"
    assert_matches(res.input_reward, rin_lit, "input reward")
    return res, fb_lit, rin_lit


def _seeded(seed: int, builder):
    torch.manual_seed(seed)
    return builder().to(DT)


def _positive_z_ok(model, x, min_abs=1e-3):
    """LFP-0 precondition: no pre-activation near zero (checked, not assumed)."""
    a = x.to(DT)
    with torch.no_grad():
        for m in model:
            a = m(a)
            if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.AvgPool2d)):
                assert float(a.abs().min()) > min_abs, "choose another seed: a pre-activation is near zero"


# ------------------------------------------------------------------------------------------------------
# single layers
# ------------------------------------------------------------------------------------------------------

CONV2D_VARIANTS = {
    "plain": dict(in_channels=2, out_channels=3, kernel_size=3),
    "stride2-pad1": dict(in_channels=2, out_channels=3, kernel_size=3, stride=2, padding=1),
    "dilation2": dict(in_channels=2, out_channels=2, kernel_size=2, dilation=2),
    "groups2": dict(in_channels=4, out_channels=4, kernel_size=(2, 3), padding=(1, 0), groups=2),
    "rect-stride": dict(in_channels=1, out_channels=2, kernel_size=(3, 2), stride=(1, 2), bias=False),
}


def _layer_input(shape, seed, signed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=g, dtype=DT) + 0.05
    if signed:
        x = x * torch.where(torch.rand(shape, generator=g, dtype=DT) < 0.5, -1.0, 1.0)
    return x


@pytest.mark.parametrize("rule_name", list(RULES))
@pytest.mark.parametrize("signed", [False, True], ids=["x>=0", "signed-x"])
def test_linear_layer_matches_literal(rule_name, signed):
    model = _seeded(1, lambda: nn.Sequential(nn.Linear(5, 4)))
    x = _layer_input((3, 5), 2, signed)
    if rule_name == "zero":
        _positive_z_ok(model, x)
    compare_net(model, x, torch.tensor([0, 1, 3]), rule_name)


@pytest.mark.parametrize("variant", list(CONV2D_VARIANTS))
@pytest.mark.parametrize("rule_name", list(RULES))
def test_conv2d_layer_matches_literal(variant, rule_name):
    cfg = CONV2D_VARIANTS[variant]
    model = _seeded(3, lambda: nn.Sequential(nn.Conv2d(**cfg), nn.Flatten()))
    x = _layer_input((2, cfg["in_channels"], 5, 6), 4, signed=True)
    if rule_name == "zero":
        _positive_z_ok(model, x, 1e-4)
    compare_net(model, x, torch.tensor([0, 1]), rule_name)


@pytest.mark.parametrize("rule_name", ["epsilon", "zplus-zminus", "alpha2-beta1"])
def test_conv1d_layer_matches_literal(rule_name):
    model = _seeded(5, lambda: nn.Sequential(nn.Conv1d(2, 4, 3, stride=2, padding=1, groups=2), nn.Flatten()))
    x = _layer_input((2, 2, 9), 6, signed=True)
    compare_net(model, x, torch.tensor([0, 1]), rule_name)


def test_connection_unrolling_is_the_convolution():
    """The literal reference itself: summing connections reproduces F.conv2d for every variant."""
    for i, cfg in enumerate(CONV2D_VARIANTS.values()):
        m = _seeded(10 + i, lambda cfg=cfg: nn.Conv2d(**cfg))
        x = _layer_input((1, cfg["in_channels"], 5, 6), i, signed=True)
        torch.testing.assert_close(literal_forward(m, x), m(x), rtol=1e-12, atol=1e-12)


def test_alpha_beta_differs_from_epsilon_on_signed_inputs():
    """The comparison can tell the rules apart (signed inputs give αβ and ε different feedback)."""
    model = _seeded(1, lambda: nn.Sequential(nn.Linear(5, 4)))
    x = _layer_input((3, 5), 2, True)
    R = torch.randn(3, 4, dtype=DT)
    _, fe, _ = literal_rule(model[0], x, R, ("eps", EPS))
    _, fa, _ = literal_rule(model[0], x, R, ("ab", 2.0, 1.0, EPS))
    _, fz, _ = literal_rule(model[0], x, R, ("zpzm", EPS))
    assert float((fe - fa).abs().max()) > 1e-3
    assert float((fe - fz).abs().max()) > 1e-3


# ------------------------------------------------------------------------------------------------------
# small networks
# ------------------------------------------------------------------------------------------------------


def _mlp():
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3))


def _conv_max():
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 3))


def _conv_avg():
    return nn.Sequential(
        nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(27, 3)
    )


def _conv1d():
    return nn.Sequential(nn.Conv1d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(18, 3))


def _activations():
    return nn.Sequential(
        nn.Linear(6, 5),
        nn.LeakyReLU(0.1),
        nn.Linear(5, 4),
        nn.Tanh(),
        nn.Linear(4, 4),
        Heaviside(),
        nn.Linear(4, 3),
    )


NETS = {
    "linear-relu-linear": (_mlp, (3, 6)),
    "conv-relu-maxpool-flatten-linear": (_conv_max, (2, 1, 6, 6)),
    "conv-relu-avgpool-flatten-linear": (_conv_avg, (2, 1, 6, 6)),
    "conv1d-relu-flatten-linear": (_conv1d, (2, 2, 8)),
    "leakyrelu-tanh-heaviside": (_activations, (3, 6)),
}


@pytest.mark.parametrize("net", list(NETS))
@pytest.mark.parametrize("rule_name", list(RULES))
def test_network_matches_literal(net, rule_name):
    builder, shape = NETS[net]
    model = _seeded(7, builder)
    x = _layer_input(shape, 8, signed=False)
    labels = torch.arange(shape[0]) % 3
    if rule_name == "zero":
        if net == "conv-relu-avgpool-flatten-linear":  # LFP-0: keep every pooling window away from z = 0
            with torch.no_grad():
                model[0].bias.add_(1.0)
        _positive_z_ok(model, x, 1e-4)
    compare_net(model, x, labels, rule_name, reward="sigmoid" if net == "linear-relu-linear" else "random")


def test_heaviside_passes_reward_unchanged():
    """Heaviside / LeakyReLU / Tanh are pass-through: the reward at the activation's input equals the
    reward at its output (the fast engine's input reward of the layer above equals the literal one)."""
    model = _seeded(7, lambda: nn.Sequential(nn.Linear(4, 3), Heaviside()))
    x = _layer_input((2, 4), 1, False)
    R = torch.randn(2, 3, dtype=DT)
    res = lfp_snn.feedback_result(
        model, x, torch.tensor([0, 1]), lambda o, y: R, "epsilon", input_reward=True
    )
    rin, fw, _ = literal_rule(model[0], x, R, ("eps", EPS))  # Linear sees the Heaviside's reward as is
    assert_matches(res.input_reward, rin, "input reward")
    assert_matches(res.feedback["0.weight"], fw, "weight")


def _dropout_net():
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 3))


@pytest.mark.parametrize("rule_name", ["epsilon", "zplus-zminus"])
def test_dropout_eval_mode_is_identity(rule_name):
    model = _seeded(11, _dropout_net)
    compare_net(model, _layer_input((3, 6), 12, False), torch.tensor([0, 1, 2]), rule_name)


@pytest.mark.parametrize("rule_name", ["epsilon", "alpha2-beta1"])
def test_dropout_train_mode_applies_mask_and_scale(rule_name):
    model = _seeded(11, _dropout_net).train()
    x = _layer_input((3, 6), 12, False)
    R = torch.randn(3, 3, dtype=DT, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(123)
    plan = lfp_snn.FeedbackPlan(RULES[rule_name][0], eps=EPS, input_reward=True)
    trace = lfp_snn.forward_trace(model, x, plan=plan)
    saved = trace.record("2")
    mask, scale = saved.mask, saved.scale
    assert scale == pytest.approx(2.0)
    assert 0 < int(mask.sum()) < mask.numel(), "the mask should drop some units and keep others"
    fb, rin = lfp_snn.propagate(trace, R)

    rules = {"0": RULES[rule_name][1], "3": RULES[rule_name][1]}
    out, _, fb_lit, rin_lit = literal_network(model, x, lambda o: R, rules, EPS, masks={"2": (mask, scale)})
    assert_matches(trace.output, out, "output", 1e-12)
    # the forward used the mask: dropped units do not reach the output
    with torch.no_grad():
        manual = model[3](model[1](model[0](x)) * mask * 2.0)
    assert_matches(trace.output, manual, "manual dropout forward", 1e-12)
    for name, want in fb_lit.items():
        assert_matches(fb[name], want, f"feedback {name}")
    assert_matches(rin, rin_lit, "input reward")
    # units the mask dropped get no feedback on their incoming weights
    dropped_everywhere = (~mask).all(0)
    assert dropped_everywhere.any(), "need a unit dropped for every sample"
    assert float(fb["0.weight"][dropped_everywhere].abs().max()) == 0.0
    # and the eval-mode feedback is different
    fb_eval = lfp_snn.feedback(model.eval(), x, torch.tensor([0, 1, 2]), lambda o, y: R, RULES[rule_name][0])
    assert float((fb_eval["0.weight"] - fb["0.weight"]).abs().max()) > 1e-6


# ------------------------------------------------------------------------------------------------------
# composites
# ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "preset, conv_rule",
    [("epsilon-zplus-zminus", ("zpzm", EPS)), ("epsilon-alpha2-beta1", ("ab", 2.0, 1.0, EPS))],
)
def test_mixed_presets_use_epsilon_for_dense_and_their_rule_for_conv(preset, conv_rule):
    model = _seeded(13, _conv_max).eval()
    x = _layer_input((2, 1, 6, 6), 14, False)
    rules = {"0": conv_rule, "4": ("eps", EPS)}
    compare_net(model, x, torch.tensor([0, 2]), None, composite=preset, rules=rules)
    # and it is not the uniform rule: the conv feedback differs from plain ε
    fb_eps = lfp_snn.feedback(model, x.to(DT), torch.tensor([0, 2]), "sigmoid", "epsilon")
    fb_mix = lfp_snn.feedback(model, x.to(DT), torch.tensor([0, 2]), "sigmoid", preset)
    assert float((fb_eps["0.weight"] - fb_mix["0.weight"]).abs().max()) > 1e-8
    torch.testing.assert_close(fb_eps["4.weight"], fb_mix["4.weight"], rtol=1e-12, atol=1e-14)


def test_by_name_overrides_by_type():
    model = _seeded(
        15, lambda: nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    )
    composite = Composite(
        by_type={nn.Linear: Epsilon(EPS)},
        by_name={"2": ZPlusZMinus(EPS), "4": AlphaBeta(2.0, 1.0, EPS)},
    )
    rules = {"0": ("eps", EPS), "2": ("zpzm", EPS), "4": ("ab", 2.0, 1.0, EPS)}
    x = _layer_input((3, 6), 16, True)
    compare_net(model, x, torch.tensor([0, 1, 2]), None, composite=composite, rules=rules)
    assert composite.rule_for("2", model[2]) == ZPlusZMinus(EPS)
    assert composite.rule_for("0", model[0]) == Epsilon(EPS)


def test_by_name_uses_nested_names():
    inner = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    model = nn.Sequential(inner, nn.Linear(3, 2)).to(DT)
    names = {n for n, _ in model.named_parameters()}
    assert "0.0.weight" in names
    composite = Composite(default=Epsilon(EPS), by_name={"0.0": ZPlusZMinus(EPS)})
    x = _layer_input((2, 4), 3, True)
    R = torch.randn(2, 2, dtype=DT)
    fb = lfp_snn.feedback(model, x, torch.tensor([0, 1]), lambda o, y: R, composite)
    # reward reaching the inner Linear: ε through the outer Linear, then z⁺z⁻
    h = torch.relu(model[0][0](x))
    r_mid, fw1, _ = literal_rule(model[1], h, R, ("eps", EPS))
    _, fw0, _ = literal_rule(model[0][0], x, r_mid, ("zpzm", EPS))
    assert_matches(fb["1.weight"], fw1, "outer")
    assert_matches(fb["0.0.weight"], fw0, "inner (by name)")


def test_composite_without_a_rule_for_a_layer_names_it():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(8, 2))
    composite = Composite(by_type={nn.Linear: Epsilon()})
    with pytest.raises(ValueError, match=r"'0'.*Conv2d"):
        lfp_snn.feedback(model, torch.rand(1, 1, 4, 4), torch.tensor([0]), "sigmoid", composite)
