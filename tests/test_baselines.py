"""The surrogate-gradient baselines (bptt-snntorch, bptt-norse): forward equivalence with lfp-snn's engine,
surrogates, shared parameters, registration, learning on digits, and errors."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

import lfp_snn
from lfp_snn import baselines
from lfp_snn.data import load_dataset
from lfp_snn.encoders import constant_encode, rate_encode
from lfp_snn.engine import forward_trace
from lfp_snn.models import ModelConfig, build_model
from lfp_snn.training import METHODS, TrainConfig, Trainer
from lfp_snn.training.methods import norse_method, snntorch_method

snn = pytest.importorskip("snntorch")
pytest.importorskip("norse")

from lfp_snn.baselines.norse_bptt import NorseLIF, NorseNetwork  # noqa: E402
from lfp_snn.baselines.snntorch_bptt import SnnTorchNetwork, make_leaky  # noqa: E402

RESETS = [("subtract", True), ("zero", True), ("zero", False), ("subtract", False)]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: these small networks gain nothing from more, and on a busy machine OpenMP threads
    that wait for each other make every op a hundred times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _model(arch: str, reset: str, delay: bool, seed: int = 1) -> nn.Module:
    # weight_scale 3 gives busy layers (15-30% spikes), so the resets matter
    return build_model(ModelConfig(arch=arch, reset=reset, reset_delay=delay, weight_scale=3.0), seed=seed)


def _inputs(encoder: str, seed: int = 0, batch: int = 32, steps: int = 8) -> torch.Tensor:
    x = torch.rand(batch, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    if encoder == "constant":
        return constant_encode(x, steps)
    return rate_encode(x, steps, generator=torch.Generator().manual_seed(seed))


def _lfp_spikes(model: nn.Module, xs: torch.Tensor) -> tuple[torch.Tensor, dict]:
    trace = forward_trace(model, xs, keep=False)
    return trace.output, trace.spike_counts


# ----------------------------------------------------------------------------------------------------------
# forward equivalence (surrogates play no part in the forward pass)
# ----------------------------------------------------------------------------------------------------------


CASES = [("spiking-small", "constant"), ("spiking-small", "rate"), ("spiking-lenet", "rate")]


@pytest.mark.parametrize("arch,encoder", CASES)
@pytest.mark.parametrize("reset,delay", RESETS[:3])
def test_snntorch_spikes_equal_lfp_engine(arch, reset, delay, encoder):
    """subtract+delay (the reference), zero+delay and zero without delay: spike for spike, every layer."""
    model = _model(arch, reset, delay)
    xs = _inputs(encoder)
    ref, ref_counts = _lfp_spikes(model, xs)
    net = SnnTorchNetwork(model)
    with torch.no_grad():
        out = net(xs)
    assert ref.float().mean() > 0.05  # not a silent network
    assert torch.equal(out, ref.to(out.dtype))
    assert net.spike_counts.keys() == ref_counts.keys()
    for k in ref_counts:
        assert torch.equal(net.spike_counts[k], ref_counts[k].to(net.spike_counts[k].dtype)), k


def _scan_both(current: torch.Tensor, reset: str, delay: bool, beta=0.9, thr=1.0):
    lif = lfp_snn.LIF(beta, thr, reset, delay)
    ref = lif(current)
    leaky = make_leaky(lif)
    mem = leaky.init_leaky()
    out = []
    for t in range(current.shape[0]):
        spk, mem = leaky(current[t], mem)
        out.append(spk)
    return ref, torch.stack(out)


def test_snntorch_subtract_without_delay_agrees_while_membrane_stays_below_two_thresholds():
    """snntorch's reset_delay=False subtract decides S_t on U - θ reset_t with reset_t = H(U_{t-1} - θ) of the
    already-reset membrane; with I <= (2 - β) θ the membrane never exceeds 2θ and both agree."""
    g = torch.Generator().manual_seed(0)
    current = torch.rand(30, 64, 50, generator=g) * 1.6 - 0.5  # in [-0.5, 1.1] <= (2 - 0.9) θ
    ref, out = _scan_both(current, "subtract", False)
    assert ref.mean() > 0.1
    assert torch.equal(ref, out)


def test_snntorch_subtract_without_delay_differs_after_a_large_current():
    """I = (2.5, 0, 0)θ: after the first spike U = 1.5θ > θ. lfp-snn decides S_2 on Ũ_2 = 1.35θ (spike);
    snntorch subtracts θ·H(U_1 - θ) first, decides on 0.35θ (no spike), then adds θ back."""
    current = torch.tensor([2.5, 0.0, 0.0]).reshape(3, 1, 1)
    ref, out = _scan_both(current, "subtract", False)
    assert ref.flatten().tolist() == [1.0, 1.0, 0.0]
    assert out.flatten().tolist() == [1.0, 0.0, 0.0]


@pytest.mark.parametrize("arch,encoder", CASES)
@pytest.mark.parametrize("reset,delay", RESETS)
def test_norse_spikes_match_lfp_engine(arch, reset, delay, encoder):
    """norse (LIFBoxCell, immediate reset, rescaled input) reproduces all four reset variants; float32
    rounding (v + a (i - v) vs β U + I) may flip a rare near-threshold spike, so allow 0.1%."""
    model = _model(arch, reset, delay)
    xs = _inputs(encoder)
    ref, ref_counts = _lfp_spikes(model, xs)
    net = NorseNetwork(model)
    with torch.no_grad():
        out = net(xs)
    assert ref.float().mean() > 0.05
    assert (out != ref.to(out.dtype)).float().mean() <= 1e-3
    for k in ref_counts:
        total = ref_counts[k].sum()
        assert abs(float(net.spike_counts[k].sum() - total)) <= 1e-3 * float(total) + 1, k


def test_norse_single_layer_exact_for_every_reset():
    g = torch.Generator().manual_seed(3)
    current = torch.rand(25, 16, 40, generator=g) * 3 - 0.8
    for reset, delay in RESETS:
        lif = lfp_snn.LIF(0.8, 1.0, reset, delay)
        cell = NorseLIF(lif)
        state, out = None, []
        for t in range(current.shape[0]):
            z, state = cell(current[t], state)
            out.append(z)
        assert torch.equal(torch.stack(out), lif(current)), (reset, delay)


# ----------------------------------------------------------------------------------------------------------
# surrogates and loss
# ----------------------------------------------------------------------------------------------------------


def _first_step_grad(net_cls, current: torch.Tensor, **kw) -> torch.Tensor:
    """dS_1/dI_1 for a lone LIF layer at t = 1 (U_1 = I_1): the surrogate at U - θ."""
    model = lfp_snn.SpikingSequential(lfp_snn.LIF(0.9, 1.0))
    i = current.clone().requires_grad_(True)
    net_cls(model, **kw)(i.unsqueeze(0)).sum().backward()
    return i.grad


def test_surrogate_shapes():
    current = torch.linspace(-1, 3, 41).unsqueeze(0)
    x = (current - 1.0).abs()
    g = _first_step_grad(SnnTorchNetwork, current)
    assert torch.allclose(g, 1 / (1 + 25 * x) ** 2, rtol=1e-5, atol=1e-7)  # d/dx x / (1 + 25|x|)
    g = _first_step_grad(NorseNetwork, current)  # norse's SuperSpike as shipped: 1 / (1 + |x|)^2
    assert torch.allclose(g, 1 / (1 + x) ** 2, rtol=1e-4, atol=1e-7)
    g = _first_step_grad(NorseNetwork, current, slope=25.0)  # membrane in units of 1/25: 25 / (1 + 25|x|)^2
    assert torch.allclose(g, 25 / (1 + 25 * x) ** 2, rtol=1e-4, atol=1e-6)


def test_count_loss_matches_snntorch():
    import snntorch.functional as sf

    spikes = (torch.rand(7, 5, 10, generator=torch.Generator().manual_seed(0)) > 0.6).float()
    y = torch.tensor([0, 3, 9, 2, 2])
    assert torch.allclose(baselines.ce_count_loss(spikes, y), sf.ce_count_loss()(spikes, y))


# ----------------------------------------------------------------------------------------------------------
# registration, shared parameters, learning
# ----------------------------------------------------------------------------------------------------------


def test_registered_in_methods():
    assert {"bptt-snntorch", "bptt-norse"} <= set(METHODS)
    TrainConfig(method="bptt-snntorch").validate()
    assert METHODS["bptt-norse"] is norse_method and METHODS["bptt-snntorch"] is snntorch_method


@pytest.mark.parametrize("method", ["bptt-snntorch", "bptt-norse"])
def test_step_updates_the_trainers_model(method, digits):
    train, _ = digits
    trainer = Trainer(ModelConfig(), TrainConfig(method=method, steps=5, lr=1e-2, progress=False))
    net = trainer.step_fn.network
    model_params = {id(p) for p in trainer.model.parameters()}
    assert {id(p) for p in net.parameters()} == model_params  # shared, not copied
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    x, y = next(iter(train.batches(32, shuffle=False)))
    out = trainer.step_fn(trainer.encode(x), y)
    assert out.output.shape == (5, 32, 10) and out.objective > 0
    assert set(out.spike_counts) == {"2", "4"}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.model.parameters())
    trainer.optimizer.step()
    for n, p in trainer.model.named_parameters():
        assert not torch.equal(p, before[n]), n
    # and the lfp-snn engine sees the new weights: its spikes equal the baseline network's
    xs = trainer.encode(x)
    with torch.no_grad():
        bl = net(xs)
    same = (bl == lfp_snn.run(trainer.model, xs)).float().mean()
    assert same == 1.0 if method == "bptt-snntorch" else same > 0.999


@pytest.mark.parametrize("method", ["bptt-snntorch", "bptt-norse"])
def test_baselines_learn_digits(method, digits):
    """spiking-small, T=5, 300 samples, 3 epochs: well above chance (10%)."""
    train, test = digits
    cfg = TrainConfig(method=method, steps=5, epochs=3, batch_size=32, lr=3e-3, progress=False)
    trainer = Trainer(ModelConfig(), cfg)
    history = trainer.fit(train.subset(300, seed=0), test)
    assert history[-1]["test_accuracy"] > 0.45
    assert history[-1]["test_accuracy"] > history[0]["test_accuracy"] - 0.05
    assert 0 < history[-1]["spike_rate/2"] < 1


# ----------------------------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------------------------


def test_ann_arch_rejected():
    with pytest.raises(ValueError, match="trains spiking models"):
        Trainer(ModelConfig(arch="mlp"), TrainConfig(method="bptt-snntorch", progress=False))


def test_norse_beta_one_rejected():
    model = lfp_snn.SpikingSequential(nn.Flatten(), nn.Linear(64, 10), lfp_snn.LIF(1.0))
    with pytest.raises(ValueError, match="beta = 1"):
        NorseNetwork(model)


def test_unsupported_layer_and_ann_model():
    model = lfp_snn.SpikingSequential(nn.Flatten(), nn.Linear(64, 10), nn.BatchNorm1d(10), lfp_snn.LIF())
    with pytest.raises(TypeError, match="BatchNorm1d"):
        SnnTorchNetwork(model)
    with pytest.raises(ValueError, match="no LIF|none"):
        SnnTorchNetwork(nn.Sequential(nn.Flatten(), nn.Linear(64, 10)))


def test_bad_slope_rejected():
    with pytest.raises(ValueError, match="surrogate_slope"):
        Trainer(
            ModelConfig(), TrainConfig(method="bptt-snntorch", progress=False, extra={"surrogate_slope": 0})
        )


def test_missing_library_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "snntorch", None)  # makes `import snntorch` raise ImportError
    with pytest.raises(ImportError, match="bptt-snntorch baseline needs the 'snntorch' package"):
        baselines.require("snntorch", "bptt-snntorch")
    with pytest.raises(ImportError, match="pip install"):
        SnnTorchNetwork(build_model(ModelConfig(), seed=0))


# snntorch's Synaptic/RLeaky zero reset with delay differs from lfp-snn's: refused (tested below)
_OTHER = [
    (k, r, d)
    for k in ("cuba", "recurrent", "adaptive")
    for r, d in (("subtract", True), ("zero", True), ("zero", False))
    if k == "adaptive" or not (r == "zero" and d)
]


@pytest.mark.parametrize("kind, reset, delay", _OTHER)
def test_snntorch_spikes_equal_lfp_engine_for_the_other_neurons(kind, reset, delay):
    from lfp_snn.baselines.snntorch_bptt import SnnTorchNetwork

    torch.manual_seed(0)
    neuron = {
        "cuba": lambda: lfp_snn.CubaLIF(0.5, 0.8, 0.7, reset, delay),
        "recurrent": lambda: lfp_snn.RecurrentLIF(
            16, 0.8, 0.7, reset, delay, recurrent_mask=1 - torch.eye(16)
        ),
        "adaptive": lambda: lfp_snn.AdaptiveLIF(0.8, 0.7, 0.8, 0.3, reset, delay),
    }[kind]
    model = lfp_snn.SpikingSequential(nn.Linear(12, 16), neuron(), nn.Linear(16, 5), lfp_snn.LIF(0.8, 0.7))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    xs = torch.rand(10, 4, 12, generator=torch.Generator().manual_seed(1))
    want = lfp_snn.run(model, xs)
    net = SnnTorchNetwork(model)
    got = net(xs)
    assert torch.equal(got.detach(), want)
    assert 0 < float(want.mean()) < 1
    # the parameters are shared: BPTT's gradient reaches the lfp-snn model's own weights (V included)
    baselines.ce_count_loss(got, torch.tensor([0, 1, 2, 3])).backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]


def test_norse_refuses_the_neurons_it_has_no_cell_for():
    from lfp_snn.baselines.norse_bptt import NorseNetwork

    model = lfp_snn.SpikingSequential(nn.Linear(4, 3), lfp_snn.CubaLIF(0.5), nn.Linear(3, 2), lfp_snn.LIF())
    with pytest.raises(TypeError, match=r"layer '1' \(CubaLIF\) is not supported by the BPTT baselines"):
        NorseNetwork(model)


@pytest.mark.parametrize(
    "neuron", [lambda: lfp_snn.CubaLIF(0.5, reset="zero"), lambda: lfp_snn.RecurrentLIF(3, reset="zero")]
)
def test_snntorch_zero_reset_of_synaptic_and_rleaky_is_refused(neuron):
    from lfp_snn.baselines.snntorch_bptt import SnnTorchNetwork

    model = lfp_snn.SpikingSequential(nn.Linear(4, 3), neuron(), nn.Linear(3, 2), lfp_snn.LIF())
    with pytest.raises(ValueError, match=r"resets to zero by removing the whole new membrane"):
        SnnTorchNetwork(model)


# ------------------------------------------------------------------------------------------------------
# graphs that are not a chain: residual merges and BatchNorm, run layer by layer over all T
# ------------------------------------------------------------------------------------------------------


class _Residual(nn.Module):
    """fc1 → LIF → (fc2 → LIF) merged with itself by max and by sum → fc3 → LIF."""

    def __init__(self, reset="subtract", delay=True):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)
        self.lif1, self.lif2, self.lif3 = (lfp_snn.LIF(b, 1.0, reset, delay) for b in (0.9, 0.8, 0.7))

    def forward(self, x):
        a = self.lif1(self.fc1(x))
        b = self.lif2(self.fc2(a))
        return self.lif3(self.fc3(torch.max(a, b) + 0.5 * a))


def _residual(reset="subtract", delay=True):
    torch.manual_seed(4)
    m = _Residual(reset, delay)  # float32: snntorch's spikes are float32 whatever the model's dtype
    with torch.no_grad():
        for p in m.parameters():
            p.mul_(2.5)
    return m


def _step_reference(m, x, slope):
    """The same network written as a loop over t with snntorch cells, as the tutorials write it."""
    from lfp_snn.baselines.snntorch_bptt import make_step

    cells = [make_step(lif, slope) for lif in (m.lif1, m.lif2, m.lif3)]
    states = [c.init_state() for c in cells]
    out = []
    for t in range(x.shape[0]):
        a, states[0] = cells[0](m.fc1(x[t]), states[0])
        b, states[1] = cells[1](m.fc2(a), states[1])
        y, states[2] = cells[2](m.fc3(torch.max(a, b) + 0.5 * a), states[2])
        out.append(y)
    return torch.stack(out)


@pytest.mark.parametrize("reset, delay", [("subtract", True), ("zero", False)])
def test_layerwise_network_is_bptt_of_the_step_loop(reset, delay):
    """On a residual graph the layer-wise network gives the step loop's spikes and, through the surrogate,
    its gradients (to float32 rounding: the same operations, summed in another order), and its spikes are
    lfp-snn's engine's."""
    from lfp_snn.baselines.graph import LayerwiseNetwork
    from lfp_snn.baselines.snntorch_bptt import snntorch_network

    m = _residual(reset, delay)
    x = torch.bernoulli(torch.full((7, 4, 6), 0.5), generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 1])
    net = snntorch_network(m, slope=25.0)
    assert isinstance(net, LayerwiseNetwork) and net.library == "snntorch"
    out = net(x)
    assert torch.equal(out.detach(), lfp_snn.run(m, x)) and 0 < float(out.detach().mean()) < 1
    loss = baselines.ce_count_loss(out, y)
    got = torch.autograd.grad(loss, list(m.parameters()))
    ref = _step_reference(m, x, 25.0)
    assert torch.equal(ref, out)
    want = torch.autograd.grad(baselines.ce_count_loss(ref, y), list(m.parameters()))
    assert any(float(g.abs().max()) > 0 for g in want)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-7)
    assert set(net.spike_counts) == {"lif1", "lif2", "lif3"}


def test_layerwise_networks_train_the_deep_models():
    """resnet-snn (max merge) and vgg-snn (BatchNorm, normalised over T·B as lfp-snn does) train with both
    BPTT baselines; in eval mode their spikes are lfp-snn's engine's."""
    from lfp_snn.baselines.graph import is_chain

    g = torch.Generator().manual_seed(0)
    x, yb = torch.rand(8, 1, 28, 28, generator=g), torch.arange(8) % 10
    for arch in ("resnet-snn", "vgg-snn"):
        mc = ModelConfig(arch=arch, input_shape=(1, 28, 28), weight_scale=3.0)
        for method in ("bptt-snntorch", "bptt-norse"):
            tr = Trainer(mc, TrainConfig(method=method, steps=4, epochs=1, progress=False))
            assert not is_chain(tr.model)
            before = [p.detach().clone() for p in tr.model.parameters()]
            xs = tr.encode(x, False)
            out = tr.step_fn(xs, yb)
            tr.optimizer.step()
            assert any(not torch.equal(b, p) for b, p in zip(before, tr.model.parameters())), (arch, method)
            tr.model.eval()
            net = tr.step_fn.network
            with torch.no_grad():
                assert torch.equal(net(xs), lfp_snn.run(tr.model, xs)), (arch, method)
            assert out.output.shape == (4, 8, 10)


def test_layerwise_network_refuses_what_it_cannot_run():
    from lfp_snn.baselines.graph import LayerwiseNetwork

    m = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4), lfp_snn.LIF(0.9))
    with pytest.raises((ValueError, TypeError), match="LayerNorm"):
        LayerwiseNetwork(m, lambda lif: lif)
    with pytest.raises(ValueError, match="spiking models"):
        LayerwiseNetwork(nn.Sequential(nn.Linear(4, 4), nn.ReLU()), lambda lif: lif)
