"""The model as a graph of nodes the engine can run: an ``nn.Sequential`` read in order (the fast common
case), anything else traced by ``torch.fx``.

Nodes are kept in an order in which every node comes after the nodes it reads (node 0 is the model's
input). A node is a module with a registered handler (Linear, Conv, LIF, pooling, ...), a function or method
with one (``a + b``, ``torch.cat``, ``torch.flatten``, ``x.view(x.size(0), -1)``, ``F.relu``), or a shape
query (``x.size(0)``, ``x.shape``) whose value feeds a reshape. A module without a handler is traced
through (its ``forward`` becomes nodes); a torch.nn layer without one, an untraceable forward, or a function
without a handler is an error that names the node and lists what is supported.

Shape semantics: layers and functions see the rows of :mod:`lfp_snn.engine.activations` ([B, ...], or
[T·B, ...] in a spiking model), as one step's batch: write ``torch.flatten(x, 1)`` or
``x.view(x.size(0), -1)`` as for an ANN; only neurons see time.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .handlers import Handler, function_handler, module_handler, supported


@dataclass(frozen=True)
class Ref:
    """An argument that is the output of node ``index``."""

    index: int


@dataclass
class Node:
    """One step of the model.

    ``name``: unique in the graph (the module path for a module, ``<module path>.<fx name>`` for functions).
    ``module_path``: where the parameters of a module node live (``named_parameters`` prefix).
    ``inputs``: the nodes whose outputs it reads, in order; ``args``/``kwargs``: the call's arguments with
    :class:`Ref` in place of node outputs. ``users``: the nodes that read its output.
    """

    index: int
    name: str
    kind: str  # "input" | "module" | "function" | "method"
    target: Any
    inputs: tuple[int, ...]
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    handler: Handler | None = None
    module_path: str = ""
    users: list[int] = field(default_factory=list)

    @property
    def module(self) -> nn.Module:
        return self.target

    def describe(self) -> str:
        if self.kind == "module":
            return f"layer {self.name!r} ({type(self.target).__name__})"
        if self.kind == "input":
            return "the model's input"
        what = self.target if isinstance(self.target, str) else _fn_name(self.target)
        return f"{'method' if self.kind == 'method' else 'function'} {what} at {self.name!r}"

    def param_key(self, param: str) -> str:
        return f"{self.module_path}.{param}" if self.module_path else param


@dataclass
class Graph:
    """The nodes of a model in an order that respects their inputs; ``output`` is the node the model returns."""

    nodes: list[Node]
    output: int
    traced: bool  # built by torch.fx (False: a Sequential read in order)

    def __post_init__(self) -> None:
        for n in self.nodes:
            n.users.clear()
        for n in self.nodes:
            for i in n.inputs:
                self.nodes[i].users.append(n.index)

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r}; nodes: {[n.name for n in self.nodes]}")

    @property
    def spiking(self) -> bool:
        return any(n.handler is not None and n.handler.temporal for n in self.nodes)


def _fn_name(fn) -> str:
    mod = getattr(fn, "__module__", None) or ""
    name = getattr(fn, "__name__", repr(fn))
    if mod in ("_operator", "operator"):
        return f"operator.{name}"
    if mod.startswith("torch.nn.functional"):
        return f"F.{name}"
    if mod.startswith("torch"):
        return f"torch.{name}"
    return f"{mod}.{name}" if mod else name


class GraphError(TypeError):
    """The model cannot be run by the engine: an unsupported node or an untraceable forward."""


def _unsupported(what: str) -> GraphError:
    mods, fns = supported()
    return GraphError(
        f"{what} is not supported by LFP; supported layers: {', '.join(mods)}, and in a traced forward the "
        f"functions and methods {', '.join(fns)}; register a handler for your own layer with "
        "lfp_snn.register_handler (docs/handlers.md)"
    )


class _Tracer(torch.fx.Tracer):
    """Treats modules with a handler (and every Sequential, read in order by the builder) as single nodes,
    and remembers which module it was tracing when the trace fails."""

    def __init__(self) -> None:
        super().__init__()
        self.failed_in: str | None = None  # the innermost module whose forward raised

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, nn.Sequential) or module_handler(m) is not None:
            return True
        return super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = self.path_of_module(m)
            raise


class _Builder:
    def __init__(self) -> None:
        self.nodes: list[Node] = [Node(0, "<input>", "input", None, ())]
        self.traced = False

    def add(self, **kw) -> int:
        node = Node(index=len(self.nodes), **kw)
        self.nodes.append(node)
        return node.index

    def module(self, m: nn.Module, path: str, src: int) -> int:
        """Nodes for module ``m`` (at ``path``) reading node ``src``; returns the node of its output."""
        if isinstance(m, nn.Sequential):
            for name, child in m.named_children():
                src = self.module(child, f"{path}.{name}" if path else name, src)
            return src
        h = module_handler(m)
        if h is not None:
            return self.add(
                name=path or "<model>", kind="module", target=m, inputs=(src,), handler=h, module_path=path
            )
        if type(m).forward is nn.Module.forward or _is_torch_layer(m):
            raise _unsupported(f"layer {path or '<model>'!r} of type {type(m).__name__}")
        return self.trace(m, path, src)

    def trace(self, m: nn.Module, path: str, src: int) -> int:
        self.traced = True
        tracer = _Tracer()
        try:
            fx_graph = tracer.trace(m)
        except Exception as e:  # torch.fx raises many types: name where it happened and why
            inner = m.get_submodule(tracer.failed_in) if tracer.failed_in else m
            where = _join(path, tracer.failed_in) if tracer.failed_in else path or "<model>"
            raise GraphError(
                f"torch.fx cannot trace module {where!r} ({type(inner).__name__}): {type(e).__name__}: {e}. "
                "Make its forward traceable (no Python control flow on tensor values), or register a handler "
                "for it with lfp_snn.register_handler (docs/handlers.md)"
            ) from e
        local: dict[str, int] = {}
        placeholders: list[str] = []
        out = None
        for fxn in fx_graph.nodes:
            full = f"{path}.{fxn.name}" if path else fxn.name
            if fxn.op == "placeholder":
                if placeholders:
                    raise GraphError(
                        f"module {path or '<model>'!r} takes more than one input ({placeholders[0]!r}, "
                        f"{fxn.name!r}); the engine runs models with one input tensor"
                    )
                placeholders.append(fxn.name)
                local[fxn.name] = src
            elif fxn.op == "call_module":
                sub = m.get_submodule(fxn.target)
                args = [a for a in fxn.args]
                if (
                    len(args) != 1
                    or fxn.kwargs
                    or not isinstance(local.get(getattr(args[0], "name", None)), int)
                ):
                    raise GraphError(
                        f"layer {_join(path, fxn.target)!r} is called with arguments "
                        f"{fxn.args} {fxn.kwargs}; layers take one tensor"
                    )
                local[fxn.name] = self.module(sub, _join(path, fxn.target), local[args[0].name])
            elif fxn.op in ("call_function", "call_method"):
                kind = "function" if fxn.op == "call_function" else "method"
                h = function_handler(fxn.target)
                if h is None:
                    what = fxn.target if kind == "method" else _fn_name(fxn.target)
                    raise _unsupported(f"{kind} {what} (node {full!r})")
                inputs: list[int] = []

                def ref(a, inputs=inputs):
                    if isinstance(a, torch.fx.Node):
                        k = local[a.name]
                        if k not in inputs:
                            inputs.append(k)
                        return Ref(k)
                    return a

                args = torch.fx.node.map_aggregate(fxn.args, ref)
                kwargs = dict(torch.fx.node.map_aggregate(fxn.kwargs, ref))
                local[fxn.name] = self.add(
                    name=full,
                    kind=kind,
                    target=fxn.target,
                    inputs=tuple(inputs),
                    args=tuple(args),
                    kwargs=kwargs,
                    handler=h,
                )
            elif fxn.op == "get_attr":
                raise GraphError(
                    f"module {path or '<model>'!r} reads the tensor {fxn.target!r} directly in its forward; the "
                    "engine gives feedback to parameters of layers only: put it in a layer with a handler "
                    "(docs/handlers.md)"
                )
            elif fxn.op == "output":
                res = fxn.args[0]
                if not isinstance(res, torch.fx.Node):
                    raise GraphError(
                        f"module {path or '<model>'!r} returns {type(res).__name__}; the engine "
                        "needs one tensor as the output"
                    )
                out = local[res.name]
        return out


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _is_torch_layer(m: nn.Module) -> bool:
    return type(m).__module__.startswith(("torch.nn", "torch.ao.nn"))


_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def build_graph(model: nn.Module) -> Graph:
    """The graph of ``model`` (cached while the model's modules stay the same objects)."""
    sig = tuple((name, id(m)) for name, m in model.named_modules())
    hit = _CACHE.get(model)
    if hit is not None and hit[0] == sig:
        return hit[1]
    b = _Builder()
    out = b.module(model, "", 0)
    _check_names(b.nodes)
    graph = Graph(b.nodes, out, b.traced)
    if out == 0:
        raise GraphError("the model returns its input unchanged; there is nothing to give feedback to")
    try:
        _CACHE[model] = (sig, graph)
    except TypeError:  # not weak-referenceable: rebuild next time
        pass
    return graph


def _check_names(nodes: list[Node]) -> None:
    """A module called twice gets a node per call: later calls are named ``<path>#2``, ``#3``, ..."""
    seen: dict[str, int] = {}
    for n in nodes:
        if n.name in seen:
            seen[n.name] += 1
            n.name = f"{n.name}#{seen[n.name]}"
        else:
            seen[n.name] = 1


def leaves(model: nn.Module, prefix: str = "", check: bool = True) -> list[tuple[str, nn.Module]]:
    """The layers of a (nested) ``nn.Sequential`` in order, with the names ``named_modules`` gives them; with
    ``check``, a layer the engine has no handler for is an error that names it (for code that walks plain
    sequential models layer by layer, such as the baselines and the exporters)."""
    if isinstance(model, nn.Sequential):
        out = []
        for name, child in model.named_children():
            out += leaves(child, f"{prefix}{name}.", check)
        return out
    name = prefix[:-1]
    if check and module_handler(model) is None:
        raise _unsupported(f"layer {name or '<model>'!r} of type {type(model).__name__}")
    return [(name, model)]
