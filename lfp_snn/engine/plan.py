"""One frozen plan for a feedback pass, validated against the model and its input before any compute.

:class:`FeedbackPlan` holds every option of the engine; :meth:`FeedbackPlan.validate` builds the model's
graph, checks the input, refuses every combination that is not implemented (naming both options) and makes
the per-node choices (:class:`CompiledPlan`) that the forward and reverse passes then follow.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch
from torch import Tensor, nn

from ..checks import check_finite
from ..kernels import CHOICES as BACKENDS
from ..kernels import check_backend
from ..quantization import FixedPoint
from ..rules import Composite, Epsilon, MembraneShare, Rule, as_membrane_share, get_composite
from .fixed import FixedNetwork, fixed_network
from .graph import Graph, Node, build_graph
from .handlers.lif import LIFHandler
from .handlers.merge import AddHandler
from .handlers.parametric import AffineHandler
from .handlers.pooling import AvgPoolHandler

STORAGES = ("keep", "recompute")
SPARSE_INPUT = ("auto", "off")
REWARD_NORMS = (None, "maxabs")
GEMM_DTYPES = {None: None, "float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEFAULT_EPS = 1e-6


@dataclass(frozen=True)
class FeedbackPlan:
    """How the engine computes LFP feedback. Every field has one meaning for every model; a field that does
    not apply to the model at hand is an error at :meth:`validate`, not silently ignored.

    Attributes:
        rule: the rules of the parametric layers: a preset name (``"epsilon"``, ``"zplus-zminus"``, ...), a
            :class:`~lfp_snn.rules.Rule` for every layer, or a :class:`~lfp_snn.rules.Composite`.
        eps: ε of the neurons' reverse scans, the sum nodes and average pooling; None: the rule's ε (a
            preset name is built with it too: ``FeedbackPlan("zplus-zminus", eps=1e-4)``).
        storage: ``"keep"`` what the feedback needs, or ``"recompute"`` (spiking models): keep spikes only
            and make each LIF layer's current and potential again in the feedback (one more GEMM).
        micro_batch: run the batch in slices of this many samples and sum their feedback (less memory).
        time_chunk: spiking models: forward and feedback in stretches of this many steps (activation memory
            independent of T; one more forward pass).
        gemm_dtype: precision of every feedback GEMM of every rule and layer (``torch.bfloat16``); the forward
            and the spikes stay in the model's precision.
        backend: the neurons' scan backend for this pass (``auto``, ``torch``, ``native``, ``triton``);
            None: each neuron's own.
        membrane_share: the membrane-aware ε rule (:class:`~lfp_snn.rules.MembraneShare` or λ); None: off.
        input_noise: std of Gaussian noise added to the input of every parametric layer (training only).
        input_reward: also return the reward that arrives at the model's input.
        reward_norm: ``"maxabs"``: at every LIF layer and step, the reward at the membrane (the reward from
            above plus the membrane's share from the next step) is divided by its largest absolute value over
            the batch and the layer's neurons, where that exceeds 1e-10 (the reference's "backward pass
            normalised by the maximum absolute value"); None: off. Spiking models with LIF layers, torch
            scans, no ``micro_batch``.
        sparse_input: ``"auto"``: a uint8 model input read by a Linear layer with at most 10% non-zero
            entries is kept as index lists; ``"off"``: always dense.
        device: where the pass runs; None: the model's device (its parameters must be on one device, and the
            input there too).
        fixed_point: a :class:`~lfp_snn.quantization.FixedPoint`: the forward pass runs in the FPGA bundle's
            integer arithmetic with those number formats (the weights quantised afresh at every call, the
            integer LIF dynamics; :mod:`lfp_snn.engine.fixed`), and the reverse pass applies the LFP-ε rule to
            what that integer network computed: its membranes in real units and its quantised weights
            (integer-in-the-loop training, docs/export.md). Spiking chains of Linear/Conv2d -> LIF, pooling
            and Flatten; binary input spikes; the ε rule. None: the float forward.
    """

    rule: Composite | Rule | str = "epsilon"
    eps: float | None = None
    storage: str = "keep"
    micro_batch: int | None = None
    time_chunk: int | None = None
    gemm_dtype: torch.dtype | None = None
    backend: str | None = None
    membrane_share: MembraneShare | float | None = None
    input_noise: float = 0.0
    input_reward: bool = False
    reward_norm: str | None = None
    sparse_input: str = "auto"
    device: torch.device | str | None = None
    fixed_point: FixedPoint | None = None
    composite: Composite = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.eps is not None and not (isinstance(self.eps, (int, float)) and self.eps >= 0):
            raise ValueError(f"eps must be a number >= 0 or None, got {self.eps!r}")
        comp = get_composite(self.rule, DEFAULT_EPS if self.eps is None else float(self.eps))
        object.__setattr__(self, "composite", comp)
        if self.storage not in STORAGES:
            raise ValueError(f"storage must be one of {STORAGES}, got {self.storage!r}")
        for name in ("micro_batch", "time_chunk"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{name} must be an integer >= 1, got {v!r} (None: off)")
        g = self.gemm_dtype
        if isinstance(g, str):
            if g not in GEMM_DTYPES:
                raise ValueError(
                    f"gemm_dtype must be one of {sorted(k for k in GEMM_DTYPES if k)}, got {g!r}"
                )
            object.__setattr__(self, "gemm_dtype", GEMM_DTYPES[g])
        elif g is not None and g not in (torch.bfloat16, torch.float16, torch.float32, torch.float64):
            raise ValueError(f"gemm_dtype must be torch.bfloat16, torch.float16 or None, got {g!r}")
        if self.backend is not None and self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS} or None, got {self.backend!r}")
        object.__setattr__(self, "membrane_share", as_membrane_share(self.membrane_share))
        if not (isinstance(self.input_noise, (int, float)) and 0 <= self.input_noise < float("inf")):
            raise ValueError(f"input_noise must be a finite number >= 0, got {self.input_noise!r}")
        if not isinstance(self.input_reward, bool):
            raise ValueError(f"input_reward must be True or False, got {self.input_reward!r}")
        if self.reward_norm not in REWARD_NORMS:
            raise ValueError(f"reward_norm must be one of {REWARD_NORMS}, got {self.reward_norm!r}")
        if self.sparse_input not in SPARSE_INPUT:
            raise ValueError(f"sparse_input must be one of {SPARSE_INPUT}, got {self.sparse_input!r}")
        if self.device is not None:
            object.__setattr__(self, "device", torch.device(self.device))
        if self.fixed_point is not None and not isinstance(self.fixed_point, FixedPoint):
            raise ValueError(
                f"fixed_point must be an lfp_snn.quantization.FixedPoint or None, got {self.fixed_point!r}"
            )

    def replace(self, **changes) -> FeedbackPlan:
        """A copy with some fields changed."""
        kw = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        kw["rule"] = self.composite
        kw.update(changes)
        return FeedbackPlan(**kw)

    def options_in_use(self) -> dict[str, object]:
        """The fields that differ from their defaults (for messages)."""
        base = FeedbackPlan()
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.init and f.name != "rule" and getattr(self, f.name) != getattr(base, f.name)
        }

    def validate(self, model: nn.Module, inputs: Tensor, steps: int | None = None) -> CompiledPlan:
        """Check the plan against ``model`` and ``inputs`` (and ``steps`` for a static input to a spiking
        model) and make the per-node choices; raises before any compute where something does not fit."""
        return CompiledPlan(self, model, inputs, steps)


def _rule_eps(c: Composite) -> set[float]:
    rules = [*c.by_type.values(), *c.by_name.values(), *([c.default] if c.default is not None else [])]
    return {float(r.eps) for r in rules}


class CompiledPlan:
    """A plan applied to one model and input shape: the graph, per-node setups, and which inputs want a
    reward back. Handlers read it through ``setup(node)`` and the helper methods below."""

    def __init__(self, plan: FeedbackPlan, model: nn.Module, inputs: Tensor, steps: int | None) -> None:
        self.plan = plan
        self.model = model
        self.graph: Graph = build_graph(model)
        self.spiking = self.graph.spiking
        self.steps_arg = steps
        self.device, self.dtype = _device_and_dtype(plan, model, inputs)
        self._check_options(model, inputs, steps)
        self.eps = self._scan_eps()
        nodes = self.graph.nodes
        learns = [False] * len(nodes)
        learns[0] = plan.input_reward
        for n in nodes[1:]:
            learns[n.index] = (
                (n.handler.learns and any(True for _ in n.module.parameters()))
                or any(learns[i] for i in n.inputs)
                if n.kind == "module"
                else any(learns[i] for i in n.inputs)
            )
        self.wants = [tuple(learns[i] for i in n.inputs) for n in nodes]
        # a Linear/Conv output read only by a LIF: the LIF hands it g (the reference's fused pair)
        self.fused_above: dict[int, int] = {}
        self.fused_below: dict[int, int] = {}
        for n in nodes[1:]:
            if n.handler.takes_normalized and len(n.users) == 1:
                u = nodes[n.users[0]]
                if u.handler.emits_normalized and u.inputs == (n.index,):
                    self.fused_above[n.index] = u.index
                    self.fused_below[u.index] = n.index
        self.setups = [None] * len(nodes)
        for n in nodes[1:]:
            self.setups[n.index] = n.handler.setup(n, self)
        self.fixed: FixedNetwork | None = None
        if plan.fixed_point is not None:
            self.fixed = self._fixed_network()
        if plan.membrane_share is not None and not any(
            getattr(s, "lif_below", None) is not None for s in self.setups
        ):
            raise ValueError(
                "membrane_share applies to Linear/Conv layers that read a LIF layer's spikes; this model has "
                "none: turn membrane_share off"
            )

    def _fixed_network(self) -> FixedNetwork:
        """The integer network of the model's current weights (plan.fixed_point), after refusing the rules
        and dtypes it cannot run with."""
        fmt = self.plan.fixed_point
        for n in self.graph.nodes[1:]:
            if isinstance(n.handler, AffineHandler) and not isinstance(self.rule_for(n), Epsilon):
                raise ValueError(
                    f"fixed_point: the reverse pass on the integer network is the LFP-ε rule; {n.describe()} "
                    f"uses rule {self.rule_for(n).name!r}: use rule 'epsilon' with fixed_point"
                )
        if self.dtype == torch.float32 and fmt.mem_bits > 24:
            raise ValueError(
                f"fixed_point with mem_bits={fmt.mem_bits}: the reverse pass holds the integer membranes in the "
                "model's float32, exact up to 24 bits; use mem_bits <= 24 or a float64 model"
            )
        return fixed_network(self.graph, fmt, fused=True, warn=False)

    # ------------------------------------------------------------------ used by the handlers' setup
    def rule_for(self, node: Node) -> Rule:
        return self.plan.composite.rule_for(node.module_path or node.name, node.module)

    def backend_for(self, neuron: nn.Module) -> str:
        backend = self.plan.backend if self.plan.backend is not None else getattr(neuron, "backend", "torch")
        check_backend(backend, self.device)
        return backend

    def reads_model_input(self, node: Node) -> bool:
        """Whether ``node`` reads the model's input, directly or through shape-only nodes."""
        i = node.inputs[0]
        while i != 0:
            src = self.graph.nodes[i]
            if not src.handler.shape_only:
                return False
            i = src.inputs[0]
        return True

    def membrane_source(self, node: Node, rule: Rule) -> int | None:
        """The LIF node whose spikes ``node`` reads (through shape-only nodes), where the membrane-aware ε
        rule applies; None where it does not (or the plan has it off)."""
        if self.plan.membrane_share is None:
            return None
        nodes = self.graph.nodes
        i = node.inputs[0]
        while i != 0 and nodes[i].handler.shape_only:
            i = nodes[i].inputs[0]
        if i == 0 or not self._has_neuron_upstream(i):
            return None
        if not isinstance(nodes[i].handler, LIFHandler):
            raise ValueError(
                f"membrane_share: {node.describe()} reads {nodes[i].describe()}, not a LIF layer directly (only "
                "Flatten/Unflatten/Identity/reshapes may sit between them); turn membrane_share off for this "
                "model"
            )
        if not isinstance(rule, Epsilon):
            raise ValueError(
                f"membrane_share is a variant of the ε rule; {node.describe()} uses rule {rule.name!r}"
            )
        return i

    def _has_neuron_upstream(self, i: int) -> bool:
        nodes, seen, todo = self.graph.nodes, set(), [i]
        while todo:
            k = todo.pop()
            if k in seen or k == 0:
                continue
            seen.add(k)
            if nodes[k].handler.temporal:
                return True
            todo.extend(nodes[k].inputs)
        return False

    # ------------------------------------------------------------------ checks
    def _check_options(self, model: nn.Module, inputs: Tensor, steps: int | None) -> None:
        p = self.plan
        if not self.spiking:
            ann_only = {
                "time_chunk": p.time_chunk,
                "storage='recompute'": p.storage == "recompute" or None,
                "membrane_share": p.membrane_share,
                "reward_norm": p.reward_norm,
                "backend": p.backend,
                "fixed_point": p.fixed_point,
                "steps=": steps,
            }
            used = [k for k, v in ann_only.items() if v is not None]
            if used:
                raise ValueError(
                    f"{', '.join(used)} {'is' if len(used) == 1 else 'are'} for spiking models (with neurons "
                    "such as LIF); this model has none"
                )
        if p.time_chunk is not None:
            if p.input_noise > 0:
                raise ValueError(
                    f"time_chunk={p.time_chunk} cannot be combined with input_noise={p.input_noise} (each "
                    "stretch would draw other noise on its second forward pass); use micro_batch to save memory"
                )
            for n in self.graph.nodes:
                m = n.target
                if isinstance(m, nn.Dropout) and m.training and m.p > 0:
                    raise ValueError(
                        f"time_chunk={p.time_chunk} cannot be combined with active dropout ({n.describe()}, "
                        f"p={m.p}): the second forward pass would draw other masks; call model.eval() or use "
                        "micro_batch instead"
                    )
        if p.fixed_point is not None:
            clash = {
                "time_chunk": p.time_chunk,
                "storage='recompute'": p.storage == "recompute" or None,
                "input_noise": p.input_noise or None,
                "membrane_share": p.membrane_share,
            }
            used = [k for k, v in clash.items() if v is not None]
            if used:
                raise ValueError(
                    f"fixed_point cannot be combined with {', '.join(used)}: the integer forward runs the whole "
                    "sequence at once on binary spikes with the reference ε rule"
                )
        if p.reward_norm is not None and p.micro_batch is not None:
            raise ValueError(
                f"reward_norm={p.reward_norm!r} divides by a maximum over the whole batch; micro_batch="
                f"{p.micro_batch} would take it per slice: turn one of them off"
            )
        if p.storage == "recompute" and self.spiking:
            if not any(
                isinstance(n.handler, LIFHandler)
                and isinstance(self.graph.nodes[n.inputs[0]].handler, AffineHandler)
                for n in self.graph.nodes[1:]
            ):
                raise ValueError(
                    "storage='recompute' recomputes the current of LIF layers that read a Linear/Conv layer; "
                    "this model has none: use storage='keep'"
                )
        _check_input(self, inputs, steps)

    def _scan_eps(self) -> float:
        if self.plan.eps is not None:
            return float(self.plan.eps)
        found = _rule_eps(self.plan.composite)
        if len(found) == 1:
            return found.pop()
        needs = [n.describe() for n in self.graph.nodes[1:] if _uses_eps(n)]
        if not needs:
            return DEFAULT_EPS
        raise ValueError(
            f"the composite's rules use different ε ({sorted(found)}); {needs[0]} needs one: set "
            "FeedbackPlan(eps=...) (the ε of neuron scans, sum nodes and average pooling)"
        )

    def setup(self, node: Node):
        return self.setups[node.index]


def _uses_eps(n: Node) -> bool:
    """Whether node n uses the plan's ε (neuron scans, sum nodes, average pooling)."""
    return isinstance(n.handler, (AddHandler, AvgPoolHandler)) or n.handler.temporal


def _device_and_dtype(
    plan: FeedbackPlan, model: nn.Module, inputs: Tensor
) -> tuple[torch.device, torch.dtype]:
    if not isinstance(inputs, Tensor):
        raise TypeError(f"inputs must be a tensor, got {type(inputs).__name__}")
    params = [p for p in model.parameters()] + [b for b in model.buffers() if b.is_floating_point()]
    devices = {p.device for p in params}
    if any(d.type == "meta" for d in devices) or inputs.device.type == "meta":
        raise ValueError(
            "the model (or the input) is on the meta device and holds no values: load its weights first "
            "(e.g. model.to_empty(device='cpu') then load_state_dict)"
        )
    if len(devices) > 1:
        raise ValueError(
            f"the model's parameters lie on several devices {sorted(map(str, devices))}; "
            "move the model to one device"
        )
    device = devices.pop() if devices else inputs.device
    if plan.device is not None and plan.device != device:
        raise ValueError(
            f"the plan asks for device {plan.device}, but the model is on {device}; move the model"
        )
    if inputs.device != device:
        raise ValueError(f"the input is on {inputs.device} but the model is on {device}; move one of them")
    floats = {p.dtype for p in model.parameters() if p.is_floating_point()}
    if len(floats) > 1:
        raise ValueError(
            f"the model's parameters have several dtypes {sorted(map(str, floats))}; convert the model "
            "to one (model.float() or model.double())"
        )
    dtype = (
        floats.pop()
        if floats
        else (inputs.dtype if inputs.is_floating_point() else torch.get_default_dtype())
    )
    if inputs.is_floating_point() and inputs.dtype != dtype:
        raise ValueError(
            f"the input is {inputs.dtype} but the model's parameters are {dtype}; convert one of them "
            "(x.to(dtype) or model.to(dtype)): the engine computes in the parameters' dtype"
        )
    if not (
        inputs.is_floating_point()
        or inputs.dtype in (torch.uint8, torch.bool, torch.int8, torch.int16, torch.int32, torch.int64)
    ):
        raise ValueError(
            f"inputs of dtype {inputs.dtype} are not supported; give floats or uint8 spikes/counts"
        )
    return device, dtype


_SAMPLE_DIMS = {nn.Conv1d: ("C", "L"), nn.Conv2d: ("C", "H", "W")}


def _check_input(cp: CompiledPlan, x: Tensor, steps: int | None) -> None:
    spiking = cp.spiking
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    time_axis = spiking and steps is None
    if time_axis and x.dim() < 3:
        raise ValueError(
            f"expected input of shape [T, B, ...] for a spiking model (it contains neurons), got "
            f"{list(x.shape)}: axis 0 is the time step T, axis 1 the batch; pass steps=T to feed a static "
            "[B, ...] input at every step"
        )
    if time_axis and x.shape[0] == 0:
        raise ValueError("expected at least one time step, got T = 0 (axis 0 of the input is T)")
    first = _first_layer(cp)
    if first is not None and type(first.module) in _SAMPLE_DIMS:
        dims = _SAMPLE_DIMS[type(first.module)]
        want = len(dims) + 1 + (1 if time_axis else 0)
        if x.dim() != want:
            shape = ("[T, B, " if time_axis else "[B, ") + ", ".join(dims) + "]"
            hint = (
                "; axis 0 is the time step T: for a static image add it (lfp_snn.encoders.constant_encode(x, T)) "
                "or pass steps=T"
                if time_axis and x.dim() == want - 1
                else ""
            )
            raise ValueError(
                f"expected input of shape {shape} for {first.describe()}, got {list(x.shape)}{hint}"
            )
    if x.is_floating_point():
        check_finite(x, "the input")


def _first_layer(cp: CompiledPlan) -> Node | None:
    nodes = cp.graph.nodes
    for u in nodes[0].users:
        n = nodes[u]
        while n.handler.shape_only and n.users:
            n = nodes[n.users[0]]
        if isinstance(n.handler, AffineHandler):
            return n
    return None
