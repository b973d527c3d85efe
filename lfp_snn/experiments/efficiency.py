"""NeuroBench's efficiency metrics for every model lfp-snn trains: activation sparsity, synaptic operations
(effective ACs and MACs, dense), connection sparsity and footprint (docs/efficiency.md).

Three entry points, each on the input :func:`lfp_snn.experiments.metrics.evaluate` sees (same batches, same
encoder, the same generator seeded with ``seed``):

- :func:`efficiency`: the metrics by their published definition, spiking models through lfp-snn's engine
  (its ``observe`` hook sees every parametric layer's input), ANNs through ``model(x)`` with forward hooks;
- :func:`neurobench_efficiency`: the same through the ``neurobench`` package itself; spiking models run as their
  snntorch twin (:class:`lfp_snn.baselines.snntorch_bptt.SnnTorchNetwork`, spike for spike lfp-snn's
  network), ANNs in the package's ``TorchModel``. Where the package cannot run a model it raises
  :class:`NeuroBenchUnavailable`, saying why;
- :func:`efficiency_report`: the package's figures where it can run, the definition's otherwise; ``"source"``
  says which, and why.

Every result is a dict with ``activation_sparsity``, ``synops_effective_acs``, ``synops_effective_macs``,
``synops_dense`` (per sample), ``connection_sparsity`` (rounded to 4 decimals, as the package reports it),
``footprint_bytes``, ``samples`` and ``source``. The definition also counts the recurrent synapses of
``RecurrentLIF`` layers (V S_{t-1}); its result then has ``synops_recurrent``, the part of the effective
ACs they make.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor, nn

from ..engine import ELEMENTWISE, Act, forward_trace, leaves
from ..engine.handlers import module_handler
from ..neurons import LIF, AdaptiveLIF, CubaLIF, MultiSpikeLIF, RecurrentLIF
from ..ops import PARAMETRIC, Dense, affine_op
from .metrics import model_input

ACTIVATION_MODULES = tuple(m for m in ELEMENTWISE if m is not nn.Identity)
"""Element-wise activation modules whose outputs count as activations (with the neurons' spikes); the
package path adds them to NeuroBench's own list (ReLU, Sigmoid) so that both count the same layers."""

_COUNT_DTYPE = torch.float32  # 0/1 products and per-output sums (<= fan-in) are exact in float32
_BLOCK = 1 << 24  # entries of binarised input converted at a time


class NeuroBenchUnavailable(RuntimeError):
    """The neurobench package cannot measure this model (or is missing); ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"neurobench cannot run {reason}")
        self.reason = reason


# ----------------------------------------------------------------------------------------------------------
# the definition
# ----------------------------------------------------------------------------------------------------------


class SynapseCount:
    """Synaptic operations summed over layer calls, by NeuroBench's definition: for each call of a Linear/Conv
    layer (one time step of one batch), Σ layer_binary(binary(x)) with x ≠ 0 → 1, the weights ≠ 0 → 1 and no
    bias; a call whose input lies in {-1, 0, 1} makes ACs, any other MACs. ``dense``: the same with all-ones
    inputs and weights."""

    def __init__(self) -> None:
        self.acs = 0
        self.macs = 0
        self.dense = 0
        self.recurrent = 0
        self._dense_row: dict = {}

    def layer(self, module: nn.Module, x: Tensor, calls: int, repeat: int = 1) -> None:
        """``module`` called ``calls`` times on the row blocks of ``x`` ([calls · B, ...]), each call made
        ``repeat`` times (an input that is the same at every step: ``calls`` = 1, ``repeat`` = T)."""
        if x.shape[0] == 0:
            return
        op = affine_op(module)
        w = (module.weight.detach() != 0).to(_COUNT_DTYPE)
        xs = x.detach().reshape(calls, -1, *x.shape[1:])
        per_call = max(xs[0].numel(), 1)
        step = max(1, _BLOCK // per_call)
        for a in range(0, calls, step):
            xc = xs[a : a + step]
            k = xc.shape[0]
            if xc.dtype in (torch.uint8, torch.bool):  # non-negative: a spike is 0 or 1
                spike = (xc <= 1).reshape(k, -1).all(1)
            else:
                spike = ((xc == 0) | (xc == 1) | (xc == -1)).reshape(k, -1).all(1)
            z = op.forward(Dense((xc != 0).to(_COUNT_DTYPE).reshape(-1, *x.shape[1:])), w, None)
            ops = z.reshape(k, -1).sum(1, dtype=torch.float64)
            self.acs += int(ops[spike].sum()) * repeat
            self.macs += int(ops[~spike].sum()) * repeat
        self.dense += self._dense_per_row(module, op, tuple(x.shape[1:])) * x.shape[0] * repeat

    def _dense_per_row(self, module: nn.Module, op, shape: tuple) -> int:
        key = (id(module), shape)
        if key not in self._dense_row:
            w = module.weight
            ones = torch.ones((1, *shape), dtype=_COUNT_DTYPE, device=w.device)
            z = op.forward(Dense(ones), torch.ones(w.shape, dtype=_COUNT_DTYPE, device=w.device), None)
            self._dense_row[key] = int(z.sum(dtype=torch.float64))
        return self._dense_row[key]

    def recurrent_loop(self, module: RecurrentLIF, spikes: Tensor, steps: int) -> None:
        """The recurrent synapses X_t += V S_{t-1} of a RecurrentLIF layer, as NeuroBench counts a Linear(V)
        fed the last step's spikes: Σ_{t=2..T} Σ_{b,j} S_{t-1,b,j} · (non-zero weights in column j of
        V ⊙ mask) ACs (S_0 = 0 makes none at the first step); dense: N² per sample and step."""
        s = spikes.detach().reshape(steps, -1, module.features)
        fan_out = (module.effective_weight().detach() != 0).sum(0).to(torch.float64)
        ops = int((s[:-1].sum(dim=(0, 1), dtype=torch.float64) * fan_out).sum()) if steps > 1 else 0
        self.acs += ops
        self.recurrent += ops
        self.dense += steps * s.shape[1] * module.features**2


def _batches(model: nn.Module, data, encoder, spiking: bool, batch_size: int, seed: int) -> Iterator:
    """(input, labels) per batch as :func:`~lfp_snn.experiments.metrics.evaluate` makes them: a spiking
    model's [T, B, ...] (one generator seeded with ``seed`` for all batches), an ANN's [B, ...]."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    for x, y in data.batches(batch_size, shuffle=False):
        x = x.to(device)
        yield (model_input(model, x, data, encoder, gen) if spiking else x), y


def _spiking_batch(model: nn.Module, xs: Tensor, syn: SynapseCount) -> tuple[int, int]:
    """One batch through lfp-snn's engine: the synapses into ``syn``; (non-zero activations, activations)."""
    steps = xs.shape[0]
    act = [0, 0]
    counted: set[str] = set()  # neuron layers counted here, not from their spike counts

    def observe(node, inputs, out) -> None:
        if node.kind != "module":
            return
        m = node.module
        if isinstance(m, MultiSpikeLIF):  # several spikes per step: count the non-zero outputs
            counted.add(node.name)
            act[0] += int(torch.count_nonzero(out.value))
            act[1] += out.value.numel()
        elif isinstance(m, PARAMETRIC):
            a = inputs[0]
            syn.layer(m, a.value, 1 if a.constant else steps, steps if a.constant else 1)
        elif isinstance(m, ACTIVATION_MODULES) and isinstance(out, Act):
            times = steps if out.constant else 1
            act[0] += int(torch.count_nonzero(out.value)) * times
            act[1] += out.value.numel() * times
        elif isinstance(m, RecurrentLIF):
            syn.recurrent_loop(m, out.value, steps)

    trace = forward_trace(model, xs, keep=False, observe=observe)
    for name, c in trace.spike_counts.items():  # Σ over steps and batch per neuron; spikes are 0 or 1
        if name in counted:
            continue
        act[0] += int(c.sum(dtype=torch.float64))
        act[1] += c.numel() * steps * trace.batch
    return act[0], act[1]


def _ann_batch(model: nn.Module, x: Tensor, syn: SynapseCount) -> tuple[int, int]:
    """One batch through ``model(x)`` with forward hooks: the synapses into ``syn``; (non-zero activations,
    activations) of the activation modules."""
    act = [0, 0]

    def on_layer(m, args) -> None:
        syn.layer(m, args[0], 1)

    def on_activation(m, args, out) -> None:
        act[0] += int(torch.count_nonzero(out))
        act[1] += out.numel()

    handles = []
    for m in model.modules():
        if isinstance(m, PARAMETRIC):
            handles.append(m.register_forward_pre_hook(on_layer))
        elif isinstance(m, ACTIVATION_MODULES):
            handles.append(m.register_forward_hook(on_activation))
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return act[0], act[1]


def _sparsity(nonzero: int, total: int) -> float:
    """1 − non-zero / all, as NeuroBench computes it (0.0 where nothing was counted)."""
    return (total - nonzero) / total if total else 0.0


def connection_sparsity(model: nn.Module) -> float:
    """Zero weights / all weights of the Linear/Conv layers (and the recurrent V ⊙ mask of RecurrentLIF
    layers), rounded to 4 decimals in float32 as NeuroBench's ConnectionSparsity reports it."""
    zeros = total = 0
    for m in model.modules():
        if isinstance(m, PARAMETRIC):
            w = m.weight
        elif isinstance(m, RecurrentLIF):
            w = m.effective_weight()
        else:
            continue
        zeros += int((w == 0).sum())
        total += w.numel()
    if not total:
        return 0.0
    return round((torch.tensor(zeros) / total).item(), 4)


def footprint(model: nn.Module) -> int:
    """Bytes of the model's parameters and buffers."""
    tensors = [*model.parameters(), *model.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def _result(sparsity: float, acs: int, macs: int, dense: int, n: int, model: nn.Module, source: str) -> dict:
    per = (lambda v: v / n) if n else (lambda v: 0.0)
    return {
        "activation_sparsity": sparsity,
        "synops_effective_acs": per(acs),
        "synops_effective_macs": per(macs),
        "synops_dense": per(dense),
        "connection_sparsity": connection_sparsity(model),
        "footprint_bytes": footprint(model),
        "samples": n,
        "source": source,
    }


def efficiency(model: nn.Module, data, encoder, spiking: bool, batch_size: int = 512, seed: int = 0) -> dict:
    """NeuroBench's efficiency metrics of ``model`` on ``data`` by their definition (docs/efficiency.md).

    Spiking models run through lfp-snn's engine (the input ``evaluate`` makes: ``encoder`` with a generator
    seeded with ``seed``, or event frames), ANNs through ``model(x)``. Activation sparsity counts the
    neurons' spikes and the outputs of element-wise activation modules, over all layers, steps and samples;
    each batch's ratio is weighted by its size, as NeuroBench's Benchmark adds batches up. Synaptic
    operations are per sample (:class:`SynapseCount`), recurrent ones of RecurrentLIF layers included (in
    ``synops_recurrent``).
    """
    was_training = model.training
    model.eval()
    syn = SynapseCount()
    total = len(data)
    sparsity, n = 0.0, 0
    try:
        with torch.no_grad():
            for x, y in _batches(model, data, encoder, spiking, batch_size, seed):
                nonzero, slots = (_spiking_batch if spiking else _ann_batch)(model, x, syn)
                sparsity += (_sparsity(nonzero, slots) * len(y)) / total
                n += len(y)
    finally:
        model.train(was_training)
    out = _result(sparsity, syn.acs, syn.macs, syn.dense, n, model, "definition")
    if any(isinstance(m, RecurrentLIF) for m in model.modules()):
        out["synops_recurrent"] = syn.recurrent / n if n else 0.0
    return out


# ----------------------------------------------------------------------------------------------------------
# the neurobench package
# ----------------------------------------------------------------------------------------------------------


def _neurobench():
    """The package's pieces, or NeuroBenchUnavailable naming what failed to import."""
    try:
        import neurobench
        from neurobench.metrics.static import ConnectionSparsity, Footprint
        from neurobench.metrics.workload import ActivationSparsity, SynapticOperations
        from neurobench.models import NeuroBenchModel, TorchModel
    except ImportError as e:
        raise NeuroBenchUnavailable(
            f"without the neurobench package and its snntorch ({e}); install them next to your torch with "
            "`pip install --no-deps neurobench==2.3.0 snntorch`"
        ) from e
    return {
        "version": getattr(neurobench, "__version__", "?"),
        "Footprint": Footprint,
        "ConnectionSparsity": ConnectionSparsity,
        "ActivationSparsity": ActivationSparsity,
        "SynapticOperations": SynapticOperations,
        "NeuroBenchModel": NeuroBenchModel,
        "TorchModel": TorchModel,
    }


_OTHER_NEURONS = {
    CubaLIF: "lfp-snn runs the package on snntorch twins of LIF-only models (snn.Leaky); models with other "
    "neurons are measured by the definition",
    AdaptiveLIF: "snntorch has no adaptive neuron: the twin's stand-in is not an snntorch SpikingNeuron, so "
    "the package's hooks would not see its spikes",
    RecurrentLIF: "the twin's snn.RLeaky computes the recurrent synapses V S_{t-1} as a function, not an "
    "nn.Linear the package hooks, so they would go uncounted",
}


def check_twin(model: nn.Module) -> None:
    """Raise NeuroBenchUnavailable unless the package can measure the spiking ``model`` through its snntorch
    twin: a chain of layers (nested ``nn.Sequential``) of Linear/Conv, pooling, shape, dropout, element-wise
    and LIF layers whose snn.Leaky spikes as lfp-snn's LIF does."""
    from ..baselines import STEP_LAYERS

    if not isinstance(model, nn.Sequential):
        raise NeuroBenchUnavailable(
            f"a model that is not an nn.Sequential ({type(model).__name__}): lfp-snn's engine runs its graph "
            "(residual sums, forks), while the snntorch twin steps layers one after another"
        )
    layers = leaves(model, check=False)
    for name, m in layers:
        if module_handler(m) is None:
            raise NeuroBenchUnavailable(
                f"layer {name!r} ({type(m).__name__}), a module with its own forward (a residual block or "
                "another graph): lfp-snn's engine runs its graph, while the snntorch twin steps layers one "
                "after another"
            )
    for name, m in layers:
        for kind, why in _OTHER_NEURONS.items():
            if isinstance(m, kind):
                raise NeuroBenchUnavailable(f"layer {name!r} ({kind.__name__}): {why}")
        if isinstance(m, LIF):
            if m.reset == "subtract" and not m.reset_delay:
                raise NeuroBenchUnavailable(
                    f"layer {name!r} (LIF with reset='subtract', reset_delay=False): snntorch's Leaky then "
                    "decides a spike differently once a membrane exceeds 2θ, so the package would measure "
                    "other spikes"
                )
        elif not isinstance(m, STEP_LAYERS):
            raise NeuroBenchUnavailable(
                f"layer {name!r} ({type(m).__name__}): the snntorch twin steps only Linear/Conv, pooling, "
                "flatten/reshape, dropout, element-wise activations and LIF layers"
            )


def _snntorch_twin(model: nn.Module) -> nn.Module:
    check_twin(model)
    try:
        from ..baselines.snntorch_bptt import SnnTorchNetwork

        return SnnTorchNetwork(model)
    except ImportError as e:
        raise NeuroBenchUnavailable(f"without snntorch ({e})") from e


def _models(nb: dict):
    """Two small NeuroBenchModel subclasses: the snntorch twin stepped over [B, T, ...], and the lfp-snn
    model for the static metrics."""
    import snntorch

    class TwinModel(nb["NeuroBenchModel"]):
        """The snntorch twin as the package runs a model: ``__call__`` takes [B, T, ...] (NeuroBench's
        layout) and returns the output spikes [B, T, C]; ``__net__`` is the twin, so the package's hooks
        find its nn.Linear/Conv layers (lfp-snn's own, shared) and its snn.Leaky neurons."""

        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net.eval()
            self.add_activation_module(snntorch.SpikingNeuron)
            for a in ACTIVATION_MODULES:
                self.add_activation_module(a)

        def __call__(self, batch: Tensor) -> Tensor:
            return self.net(batch.transpose(0, 1)).transpose(0, 1)

        def __net__(self) -> nn.Module:
            return self.net

    class StaticModel(nb["NeuroBenchModel"]):
        """The lfp-snn model itself, for the static metrics (footprint, connection sparsity)."""

        def __init__(self, net: nn.Module) -> None:
            super().__init__()
            self.net = net

        def __call__(self, batch):
            raise TypeError("StaticModel is only for the static metrics")

        def __net__(self) -> nn.Module:
            return self.net

    return TwinModel, StaticModel


def neurobench_efficiency(
    model: nn.Module, data, encoder, spiking: bool, batch_size: int = 512, seed: int = 0
) -> dict:
    """The metrics of :func:`efficiency`, computed by the neurobench package's own metric classes.

    Spiking models run as their snntorch twin (sharing the model's parameters; spike for spike lfp-snn's
    network) in a NeuroBenchModel that steps it over the [B, T, ...] input; ANNs in the package's
    ``TorchModel``; the static metrics on the lfp-snn model itself. The input is the one ``evaluate`` makes.
    The metrics are called batch by batch as ``Benchmark.run`` calls them (activation sparsity weighted by
    batch size, synaptic operations accumulated), but directly, so that an error in a metric is raised
    instead of being printed and reported as 0.

    Raises:
        NeuroBenchUnavailable: neurobench or snntorch is missing, or the package cannot measure this model
            (neurons other than LIF, a residual or other non-sequential graph, layers the twin cannot step).
    """
    nb = _neurobench()
    if spiking:
        twin = _snntorch_twin(model)
        TwinModel, StaticModel = _models(nb)
        wrapped = TwinModel(twin)
    else:
        _, StaticModel = _models(nb)
        wrapped = nb["TorchModel"](model)
        for a in ACTIVATION_MODULES:
            wrapped.add_activation_module(a)
    was_training = model.training
    model.eval()
    static = StaticModel(model)
    footprint_bytes = nb["Footprint"]()(static)
    conn = nb["ConnectionSparsity"]()(static)
    act, syn = nb["ActivationSparsity"](), nb["SynapticOperations"]()
    syn.reset()
    total = len(data)
    sparsity, n = 0.0, 0
    ops = syn.compute()
    wrapped.register_hooks()
    try:
        with torch.no_grad():
            for x, y in _batches(model, data, encoder, spiking, batch_size, seed):
                inputs = x.transpose(0, 1) if spiking else x  # NeuroBench's layout: [B, T, ...]
                batch = (inputs, y)
                preds = wrapped(inputs)
                sparsity += (act(wrapped, preds, batch) * len(y)) / total
                ops = syn(wrapped, preds, batch)
                wrapped.reset_hooks()
                n += len(y)
    finally:
        wrapped.cleanup_hooks()
        model.train(was_training)
    return {
        "activation_sparsity": sparsity,
        "synops_effective_acs": ops["Effective_ACs"],
        "synops_effective_macs": ops["Effective_MACs"],
        "synops_dense": ops["Dense"],
        "connection_sparsity": conn,
        "footprint_bytes": footprint_bytes,
        "samples": n,
        "source": f"neurobench {nb['version']}",
    }


def efficiency_report(
    model: nn.Module, data, encoder, spiking: bool, batch_size: int = 512, seed: int = 0
) -> dict:
    """The neurobench package's figures where it can run the model, the definition's otherwise; ``source``
    is ``"neurobench <version>"``, or ``"definition (neurobench cannot run <reason>)"``."""
    try:
        return neurobench_efficiency(model, data, encoder, spiking, batch_size, seed)
    except NeuroBenchUnavailable as e:
        out = efficiency(model, data, encoder, spiking, batch_size, seed)
        out["source"] = f"definition ({e})"
        return out


__all__ = [
    "ACTIVATION_MODULES",
    "NeuroBenchUnavailable",
    "SynapseCount",
    "check_twin",
    "connection_sparsity",
    "efficiency",
    "efficiency_report",
    "footprint",
    "neurobench_efficiency",
]
