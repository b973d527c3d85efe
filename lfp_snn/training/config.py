"""The training config: every option of a run besides the model and the data, with its default.

The defaults here are the only ones: the command line (``lfp-snn train``, ``compare``, ``sweep``) takes its
defaults from these fields, and the docs quote them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..homeostasis import MODES as HOMEOSTASIS_MODES
from ..homeostasis import Homeostasis
from ..models import ARCHS, ModelConfig, is_spiking_arch
from ..quantization import DECAYS, DEFAULT_FORMATS, SCALES, FixedPoint
from ..rules import ACTIVITIES, MembraneShare, get_composite
from .methods import METHODS, PRECISIONS, REWARD_NORMS, check_extra, trained_by
from .schedules import NOISE_SCHEDULES, SCHEDULES
from .updates import CLIPS, OPTIMIZERS

METRICS_FORMATS = ("jsonl", "csv")


@dataclass
class TrainConfig:
    """Everything a run needs besides the model and the data; a run is reproducible from it."""

    method: str = "lfp"  # lfp | gradient | bptt-snntorch | bptt-norse | rstdp (lfp_snn.training.METHODS)
    rule: str = "epsilon"  # LFP rule or composite preset
    reward: str = "auto"  # auto: sequence reward for SNNs, sigmoid reward (Eq. 7) for ANNs
    optimizer: str = "adam"
    lr: float = 3e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "none"
    epochs: int = 10
    batch_size: int = 32
    eval_batch_size: int = 512
    seed: int = 0
    steps: int = 10  # T for spiking models
    encoder: str = "constant"
    clip: str = "none"
    clip_value: float = 1.0  # max global norm (norm) or the ratio λ (agc)
    input_noise: float = 0.0  # std of Gaussian noise on the inputs of parametric layers while training
    noise_schedule: str = "constant"  # constant | linear | cosine: input_noise's scale over the epochs
    # LFP-ε, membrane-aware (lfp_snn.rules.membrane_share): silent steps near the threshold share the reward; 0 = off
    membrane_share: float = 0.0  # λ: share in the reward passed down, R_in = (S + λ a) ⊙ (g W)
    membrane_share_weight: float = 0.0  # λ_W: share in the weight feedback, F_W = |W| ⊙ (gᵀ (S + λ_W a))
    membrane_activity: str = "power"  # a = (1 - S) clamp(V/θ, 0, 1)^k (power) or (1 - S) σ((V - θ)/(τθ))
    membrane_power: float = 1.0  # k
    membrane_tau: float = 0.25  # τ (sigmoid), in units of θ
    # homeostasis (lfp_snn.homeostasis): after each step, excite neurons firing below a target rate; 0 = off
    homeostasis: float = 0.0  # η: largest relative threshold change (or bias step in units of θ) per step
    homeostasis_target: float = 0.005  # r*: target spikes per neuron per step
    homeostasis_mode: str = "threshold"  # threshold | bias
    homeostasis_min_threshold: float = 0.1  # θ never goes below this fraction of its initial value
    eps: float = 1e-6
    reward_norm: str = "none"  # none | maxabs: LFP, SNN: each LIF membrane's reward / its max |.| per step
    feedback_precision: str = "float32"  # float32 | bfloat16: precision of the LFP feedback GEMMs
    micro_batch: int | None = None  # LFP: run each batch in slices of this many samples (less memory)
    recompute: bool = False  # LFP: keep spikes only, recompute currents and membranes in the feedback
    time_chunk: int | None = None  # LFP, SNN: feedback in stretches of this many steps (least memory)
    # integer-in-the-loop LFP (docs/export.md): the forward in the FPGA bundle's fixed point; None = float
    weight_bits: int | None = None  # bits of the quantised weights; None: off
    mem_bits: int = DEFAULT_FORMATS.mem_bits  # membrane, bias and threshold bits
    beta_bits: int = DEFAULT_FORMATS.beta_bits  # fraction bits of β_q (decay multiply)
    decay: str = DEFAULT_FORMATS.decay  # multiply | shift
    scale: str = DEFAULT_FORMATS.scale  # pow2 | real: each layer's LSB
    progress: bool = True  # a progress bar per epoch (only where stderr is a terminal)
    metrics_format: str = "jsonl"
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        # older configs kept the noise schedule in extra["noise_schedule"]: move it to the field
        if "noise_schedule" in self.extra:
            extra = dict(self.extra)
            old = extra.pop("noise_schedule")
            if self.noise_schedule not in ("constant", old):
                raise ValueError(
                    f"noise_schedule={self.noise_schedule!r} and extra['noise_schedule']={old!r} disagree; "
                    "set the noise_schedule field only"
                )
            self.noise_schedule, self.extra = old, extra

    def membrane(self) -> MembraneShare | None:
        """The membrane-aware ε options, or None when off (the reference rule)."""
        share = MembraneShare(
            self.membrane_share,
            self.membrane_share_weight,
            self.membrane_activity,
            self.membrane_power,
            self.membrane_tau,
        )
        return share if share.active else None

    def fixed_point(self) -> FixedPoint | None:
        """The number formats of integer-in-the-loop training, or None when it is off (``weight_bits``)."""
        if self.weight_bits is None:
            return None
        return FixedPoint(self.weight_bits, self.mem_bits, self.beta_bits, self.decay, self.scale)

    def validate(self) -> None:
        """Raise ValueError naming the first bad value (or pair of values that do not go together)."""
        self._check_types()
        checks = [
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {SCHEDULES}, got {self.schedule!r}"),
            (self.clip in CLIPS, f"clip must be one of {CLIPS}, got {self.clip!r}"),
            (self.lr > 0 and math.isfinite(self.lr), f"lr must be > 0, got {self.lr}"),
            (self.epochs >= 0, f"epochs must be >= 0, got {self.epochs}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.steps >= 1, f"steps (T) must be >= 1, got {self.steps}"),
            (self.clip_value > 0, f"clip_value must be > 0, got {self.clip_value}"),
            (self.input_noise >= 0, f"input_noise must be >= 0, got {self.input_noise}"),
            (
                self.noise_schedule in NOISE_SCHEDULES,
                f"noise_schedule must be one of {NOISE_SCHEDULES}, got {self.noise_schedule!r}",
            ),
            (
                self.membrane_activity in ACTIVITIES,
                f"membrane_activity must be one of {ACTIVITIES}, got {self.membrane_activity!r}",
            ),
            (self.homeostasis >= 0, f"homeostasis (η) must be >= 0, got {self.homeostasis}"),
            (
                self.homeostasis_mode in HOMEOSTASIS_MODES,
                f"homeostasis_mode must be one of {HOMEOSTASIS_MODES}, got {self.homeostasis_mode!r}",
            ),
            (
                self.metrics_format in METRICS_FORMATS,
                f"metrics_format must be one of {METRICS_FORMATS}, got {self.metrics_format!r}",
            ),
            (
                self.reward_norm in REWARD_NORMS,
                f"reward_norm must be one of {REWARD_NORMS}, got {self.reward_norm!r}",
            ),
            (
                self.feedback_precision in PRECISIONS,
                f"feedback_precision must be one of {sorted(PRECISIONS)}, got {self.feedback_precision!r}",
            ),
            (self.method in METHODS, f"unknown method {self.method!r}; expected one of {sorted(METHODS)}"),
            (
                self.micro_batch is None or (isinstance(self.micro_batch, int) and self.micro_batch >= 1),
                f"micro_batch must be an integer >= 1 or None, got {self.micro_batch!r}",
            ),
            (
                self.time_chunk is None or (isinstance(self.time_chunk, int) and self.time_chunk >= 1),
                f"time_chunk must be an integer >= 1 or None, got {self.time_chunk!r}",
            ),
            (self.decay in DECAYS, f"decay must be one of {DECAYS}, got {self.decay!r}"),
            (self.scale in SCALES, f"scale must be one of {SCALES}, got {self.scale!r}"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        more = [
            (self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}"),
            (0 <= self.seed < 2**63, f"seed must lie in [0, 2^63), got {self.seed}"),
            (self.momentum >= 0, f"momentum must be >= 0, got {self.momentum}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (self.eps >= 0, f"eps must be >= 0, got {self.eps}"),
            (self.membrane_share >= 0, f"membrane_share (λ) must be >= 0, got {self.membrane_share}"),
            (
                self.membrane_share_weight >= 0,
                f"membrane_share_weight (λ_W) must be >= 0, got {self.membrane_share_weight}",
            ),
        ]
        for ok, msg in more:
            if not ok:
                raise ValueError(msg)
        lfp_only = {
            "micro_batch": self.micro_batch,
            "recompute": self.recompute or None,
            "time_chunk": self.time_chunk,
            "input_noise": self.input_noise or None,
        }
        used = [k for k, v in lfp_only.items() if v is not None]
        if used and self.method != "lfp":
            raise ValueError(
                f"{', '.join(used)}: options of the LFP engine; method {self.method!r} does not use them"
            )
        if self.time_chunk is not None and self.input_noise > 0:
            raise ValueError(
                f"time_chunk cannot be combined with input_noise={self.input_noise} (the second forward pass "
                "of each stretch would draw other noise); use micro_batch to save memory instead"
            )
        if self.membrane() is not None and self.method != "lfp":
            raise ValueError(f"membrane_share is an option of LFP-ε; method {self.method!r} does not use it")
        if self.homeostasis > 0:
            self.homeostasis_rule()  # checks its ranges
            # R-STDP runs the model's own LIF layers, so their thresholds are the ones homeostasis moves
            if self.homeostasis_mode == "threshold" and self.method not in ("lfp", "rstdp"):
                raise ValueError(
                    f"homeostasis_mode 'threshold' changes lfp-snn's LIF thresholds, which method "
                    f"{self.method!r} copies once into its own neurons; use homeostasis_mode 'bias'"
                )
        if self.method == "lfp":
            get_composite(self.rule, self.eps)  # an unknown rule: ValueError listing the presets
        check_extra(self.method, self.extra)  # another method's extra key; R-STDP's values
        if self.weight_bits is not None:
            self.fixed_point()  # the formats' ranges, with the values named
            clash = {
                "rule": self.rule if self.rule != "epsilon" else None,
                "time_chunk": self.time_chunk,
                "recompute": self.recompute or None,
                "input_noise": self.input_noise or None,
                "membrane_share": self.membrane_share or None,
                "membrane_share_weight": self.membrane_share_weight or None,
                "reward_norm": self.reward_norm if self.reward_norm != "none" else None,
            }
            used = [f"{k}={v!r}" for k, v in clash.items() if v is not None]
            if used and self.method == "lfp":
                raise ValueError(
                    f"weight_bits={self.weight_bits} (integer-in-the-loop LFP) cannot be combined with "
                    f"{', '.join(used)}: the integer forward runs the whole sequence at once on binary spikes, "
                    "and its reverse pass is the LFP-ε rule"
                )
        _refuse_unused(self, unused_fields(self))

    def _check_types(self) -> None:
        """Raise ValueError naming a field whose value has the wrong type (e.g. from a hand-edited JSON)."""
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            kind = type(getattr(_DEFAULTS, f.name))
            if f.name in ("micro_batch", "time_chunk", "weight_bits"):
                ok, what = v is None or _is_int(v), "an integer or None"
            elif kind is bool:
                ok, what = isinstance(v, bool), "true or false"
            elif kind is int:
                ok, what = _is_int(v), "an integer"
            elif kind is float:
                ok, what = _finite(v), "a finite number"
            elif kind is str:
                ok, what = isinstance(v, str), "a string"
            else:
                ok, what = isinstance(v, dict), "a dict"
            if not ok:
                raise ValueError(f"{f.name} must be {what}, got {v!r}")

    def homeostasis_rule(self) -> Homeostasis | None:
        """The homeostasis hook, or None when off."""
        if self.homeostasis == 0:
            return None
        return Homeostasis(
            self.homeostasis,
            self.homeostasis_target,
            min_threshold=self.homeostasis_min_threshold,
            mode=self.homeostasis_mode,
        )


def unused_fields(
    train: TrainConfig, model: ModelConfig | None = None, temporal: bool = False
) -> dict[str, str]:
    """The fields of ``train`` that do not apply to its method, optimiser and clipping, and with ``model``
    to that architecture (``temporal``: to event data, which arrive as frames) -> why."""
    out: dict[str, str] = {}
    if train.method != "lfp":
        why = f"it is an option of LFP; method {train.method!r} {trained_by(train.method)}"
        for name in LFP_FIELDS:
            out[name] = why
    if train.optimizer != "sgd":
        out["momentum"] = f"it is SGD's momentum; optimizer {train.optimizer!r} has none"
    if train.clip == "none":
        out["clip_value"] = "it is the bound of update clipping, and clip is 'none'"
    if train.weight_bits is None:
        for name in FORMAT_FIELDS:
            out[name] = (
                "it is a number format of integer-in-the-loop training, which weight_bits (--weight-bits) turns on, and that is off"
            )
    if model is not None and model.arch in ARCHS and not is_spiking_arch(model.arch):
        for name in SPIKING_FIELDS:
            out[name] = f"it applies to spiking models; arch {model.arch!r} is an ANN"
    if temporal:
        out["encoder"] = "event data arrive as frames; the encoder turns static images into spikes"
    return out


def check_run(model: ModelConfig, train: TrainConfig, temporal: bool = False) -> None:
    """Validate both configs and refuse a train field that does not apply to the model (or to event data,
    ``temporal``) but is set to another value than its default."""
    model.validate()
    train.validate()
    _refuse_unused(train, unused_fields(train, model, temporal))
    if train.weight_bits is not None and not temporal and train.encoder not in SPIKE_ENCODERS:
        raise ValueError(
            f"weight_bits={train.weight_bits} runs the integer network, which takes binary input spikes (as the "
            f"FPGA bundle does); encoder {train.encoder!r} gives analogue values: use encoder "
            f"{' or '.join(repr(e) for e in SPIKE_ENCODERS)}"
        )


def _refuse_unused(train: TrainConfig, unused: dict[str, str]) -> None:
    defaults = TrainConfig()
    for name, why in unused.items():
        value = getattr(train, name)
        if value != getattr(defaults, name):
            raise ValueError(f"{name}={value!r} does not apply: {why}")


_DEFAULTS = TrainConfig()

SPIKE_ENCODERS = ("rate", "latency")
"""The encoders that give binary spikes, which integer-in-the-loop training (and the FPGA bundle) takes."""

FORMAT_FIELDS = ("mem_bits", "beta_bits", "decay", "scale")
"""The number formats of integer-in-the-loop training besides weight_bits (which turns it on)."""

LFP_FIELDS = (
    "rule",
    "reward",
    "eps",
    "reward_norm",
    "feedback_precision",
    "membrane_share",
    "membrane_share_weight",
    "weight_bits",
)
"""TrainConfig fields of the LFP method only (the engine's memory options are refused above by name)."""
SPIKING_FIELDS = (
    "steps",
    "encoder",
    "time_chunk",
    "reward_norm",
    "membrane_share",
    "membrane_share_weight",
    "homeostasis",
    "weight_bits",
)
"""TrainConfig fields that apply to spiking models only."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
