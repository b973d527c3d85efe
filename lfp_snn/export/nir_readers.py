"""Run an exported NIR graph in each target's own reader and compare its output spikes with lfp-snn's.

:func:`run_in_reader` loads a graph the way that reader's users do and runs a time-first spike input
``[T, B, ...]`` through it; :func:`cross_check` exports a model for a target, runs it there and counts the
output spikes that differ from the model's. ``settings="exact"`` applies the documented post-import settings
under which the reader runs lfp-snn's neuron (sinabs: ``SingleSpike``; rockpool: ``max_spikes_per_dt = 1``;
norse: float64), ``settings="defaults"`` runs the reader as it comes. Readers that are not installed raise
:class:`ReaderUnavailable` (an ``ImportError``) naming the package.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import io
import logging
import tempfile
import warnings
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import torch

from .nir_targets import get_target

PACKAGES = {
    "generic": "nir",
    "snntorch": "snntorch",
    "norse": "norse",
    "spyx": "spyx",
    "sinabs": "sinabs",
    "rockpool": "rockpool",
    "xylo": "rockpool",
}
SETTINGS = ("exact", "defaults")


class ReaderUnavailable(ImportError):
    """The target's reader package is not installed (or fails to import)."""


def reader_version(target: str) -> str | None:
    """The installed version of the target's reader package, or None."""
    try:
        return importlib.metadata.version(PACKAGES[get_target(target).name])
    except importlib.metadata.PackageNotFoundError:
        return None


def _need(module: str, target: str):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return importlib.import_module(module)
    except Exception as e:  # an import error, or a package that fails on import (wrong torch, ...)
        raise ReaderUnavailable(f"target {target!r} needs {module} ({type(e).__name__}: {e})") from None


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def _stepwise(net, x: torch.Tensor, with_state: bool) -> torch.Tensor:
    outs, state = [], None
    with torch.no_grad():
        for t in range(x.shape[0]):
            if with_state:
                o, state = net(x[t], state)
            else:
                o = _first(net(x[t]))
            outs.append(o)
    return torch.stack(outs)


def _spiking_layers(graph) -> int:
    import nir

    return sum(isinstance(n, (nir.LIF, nir.IF, nir.CubaLIF)) for n in graph.nodes.values())


def _spikes(graph, module_name: str) -> tuple[bool, int | None]:
    """(whether graph node ``module_name`` is a multi-spike neuron, its cap) from its metadata."""
    node = graph.nodes.get(module_name.split(".")[-1])
    meta = dict(getattr(node, "metadata", None) or {})
    spikes = meta.get("spikes", "single")
    spikes = spikes.decode() if isinstance(spikes, bytes) else str(spikes)
    cap = meta.get("max_spikes")
    return spikes == "multi", None if cap is None else int(cap)


def run_in_reader(target: str, graph, x: torch.Tensor, *, settings: str = "exact") -> torch.Tensor:
    """The output of ``graph`` (a ``nir.NIRGraph`` or a file) run by ``target``'s reader on ``x`` [T, B, ...],
    time-first [T, B, ...] like lfp-snn's (spyx's: realigned, see :func:`cross_check`). The readers'
    deprecation warnings (nirtorch's, torch.jit's) are silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return _run(target, graph, x, settings)


def _run(target: str, graph, x: torch.Tensor, settings: str) -> torch.Tensor:
    import nir

    spec = get_target(target)
    if settings not in SETTINGS:
        raise ValueError(f"settings must be one of {SETTINGS}, got {settings!r}")
    if not isinstance(graph, nir.NIRGraph):
        graph = nir.read(str(graph))
    dt = float(graph.metadata.get("dt", spec.dt))
    shape = tuple(int(v) for v in np.asarray(graph.nodes["input"].input_type["input"]).reshape(-1))
    T, B = x.shape[:2]
    x = x.reshape(T, B, *shape)
    name = spec.name
    if name == "generic":
        from .nir_export import import_nir

        with torch.no_grad():
            return import_nir(graph)(x)
    if name == "snntorch":
        mod = _need("snntorch.import_nir", name)
        with redirect_stdout(io.StringIO()):
            net = mod.import_from_nir(graph)
            return _stepwise(net, x.float(), with_state=False)
    if name == "norse":
        nt = _need("norse.torch", name)
        logging.getLogger().setLevel(max(logging.getLogger().level, logging.ERROR))
        net = nt.from_nir(graph, dt=dt)
        if settings == "exact":
            return _stepwise(net.double(), x.double(), with_state=True)
        return _stepwise(net, x.float(), with_state=True)
    if name == "spyx":
        spyx_nir = _need("spyx.nir", name)
        jnp = _need("jax.numpy", name)
        lag = _spiking_layers(graph)
        padded = torch.cat(
            [x.float(), x.new_zeros(lag, *x.shape[1:]).float()]
        )  # spyx fires a step late per layer
        _, out = spyx_nir.from_nir(graph, jnp.asarray(padded.numpy()), dt=dt)
        return torch.from_numpy(np.array(out)).to(x.dtype)[lag:]
    if name == "sinabs":
        sinabs = _need("sinabs", name)
        act = _need("sinabs.activation", name)
        net = sinabs.from_nir(graph, batch_size=B)
        if settings == "exact":  # one spike per step for a LIF, a cap for a capped MultiSpikeLIF
            for node_name, m in net.named_modules():
                if hasattr(m, "spike_fn"):
                    multi, cap = _spikes(graph, node_name)
                    if not multi:
                        m.spike_fn = act.SingleSpike
                    elif cap is not None:
                        m.spike_fn = act.MaxSpike(cap)
        with torch.no_grad():
            out = _first(
                net(x.float().transpose(0, 1).reshape(B * T, *shape))
            )  # sinabs: (B*T, ...) batch-major
        return out.reshape(B, T, *out.shape[1:]).transpose(0, 1)
    # rockpool, xylo
    rp = _need("rockpool.nn.modules.torch.nir", name)
    net = rp.from_nir(graph)
    if settings == "exact":  # one spike per step for a LIF, the cap of a capped MultiSpikeLIF
        for node_name, m in net.named_modules():
            if hasattr(m, "max_spikes_per_dt"):
                multi, cap = _spikes(graph, node_name)
                if not multi:
                    m.max_spikes_per_dt = torch.tensor(1.0)
                elif cap is not None:
                    m.max_spikes_per_dt = torch.tensor(float(cap))
    with torch.no_grad():
        out = _first(net(x.float().transpose(0, 1)))  # rockpool: [B, T, N]
    return out.transpose(0, 1)


def cross_check(
    model, target: str, x: torch.Tensor, *, settings: str = "exact", dt: float | None = None, **export_kw
) -> dict:
    """Export ``model`` for ``target`` (through a file), run it in the target's reader on ``x`` [T, B, ...] and
    compare the output spikes with ``model(x)``.

    Returns ``{"target", "reader", "version", "settings", "mismatches", "total", "spikes", "warnings",
    "shape"}``: ``mismatches`` output values (spike bits, or counts for multi-spike readers) that differ,
    ``warnings`` the export's warnings. spyx's output is realigned by its delay of one step per spiking layer
    (the input is padded with that many zero steps)."""
    from .nir_export import export_nir, load_model

    spec = get_target(target)
    model, cfg = load_model(model)
    if cfg is not None and export_kw.get("input_shape") is None:
        export_kw["input_shape"] = tuple(cfg["model"]["input_shape"])  # a checkpoint folder knows its shape
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.nir"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            export_nir(model, path, dt, target=target, **export_kw)
        got = run_in_reader(target, path, x, settings=settings)
    if spec.name == "norse" and settings == "exact":
        ref = _double(model)(x.double())
    else:
        with torch.no_grad():
            ref = model(x)
    got = got.to(ref.dtype).reshape(ref.shape)
    return {
        "target": spec.name,
        "reader": spec.reader,
        "version": reader_version(spec.name),
        "settings": settings,
        "mismatches": int((got != ref).sum()),
        "total": int(ref.numel()),
        "spikes": float(ref.sum()),
        "warnings": [str(w.message) for w in caught if issubclass(w.category, UserWarning)],
        "shape": list(ref.shape),
    }


def _double(model):
    import copy

    return copy.deepcopy(model).double()


def installed(target: str) -> bool:
    """Whether ``target``'s reader imports here."""
    name = get_target(target).name
    module = {
        "generic": "nir",
        "snntorch": "snntorch.import_nir",
        "norse": "norse.torch",
        "spyx": "spyx.nir",
        "sinabs": "sinabs",
        "rockpool": "rockpool.nn.modules.torch.nir",
        "xylo": "rockpool.nn.modules.torch.nir",
    }[name]
    try:
        _need(module, name)
    except ReaderUnavailable:
        return False
    return True
