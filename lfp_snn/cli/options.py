"""The ``lfp-snn train`` options, shared by ``train``, ``compare``, ``sweep`` and ``python -m lfp_snn.distributed``,
and the configs they make.

Every option that sets a :class:`~lfp_snn.models.ModelConfig` or :class:`~lfp_snn.training.TrainConfig` field
has the parser default None ("not given"), and its help shows the field's own default: the configs hold the
only copy of each default, and :func:`configs_from_args` fills in what the command line leaves out.
"""

from __future__ import annotations

import argparse

import torch

from ..data import is_event_spec, load_data, sample_shape
from ..data.images import DOWNLOADS
from ..data.sequential import PREFIX as SEQUENTIAL
from ..data.sequential import is_sequential_spec
from ..encoders import ENCODERS
from ..homeostasis import MODES as HOMEOSTASIS_MODES
from ..kernels import CHOICES as BACKENDS
from ..models import ACTIVATIONS, ARCHS, NEURONS, RESETS, ModelConfig, is_spiking_arch
from ..models import unused_fields as unused_model_fields
from ..quantization import DECAYS, SCALES
from ..rewards import REWARDS
from ..rules import ACTIVITIES, presets
from ..training import TrainConfig, known_methods, resolve_method
from ..training.config import METRICS_FORMATS
from ..training.config import unused_fields as unused_train_fields
from ..training.methods import PRECISIONS, REWARD_NORMS, trained_by
from ..training.recipes import RECIPES, recipe_fields
from ..training.recipes import describe as describe_recipe
from ..training.schedules import NOISE_SCHEDULES, SCHEDULES
from ..training.updates import CLIPS, OPTIMIZERS

MODEL_DEFAULTS = ModelConfig()
TRAIN_DEFAULTS = TrainConfig()

MODEL_OPTIONS = (
    "arch",
    "hidden",
    "activation",
    "weight_scale",
    "beta",
    "threshold",
    "reset",
    "reset_delay",
    "backend",
    "neuron",
    "alpha",
    "rho",
    "adaptation",
)
"""Option destinations that are ModelConfig fields of the same name."""

TRAIN_OPTIONS = (
    "reward",
    "optimizer",
    "lr",
    "momentum",
    "weight_decay",
    "schedule",
    "clip",
    "clip_value",
    "input_noise",
    "noise_schedule",
    "reward_norm",
    "feedback_precision",
    "micro_batch",
    "recompute",
    "time_chunk",
    "epochs",
    "batch_size",
    "seed",
    "steps",
    "encoder",
    "membrane_share",
    "membrane_share_weight",
    "membrane_activity",
    "membrane_power",
    "membrane_tau",
    "homeostasis",
    "homeostasis_target",
    "homeostasis_mode",
    "homeostasis_min_threshold",
    "weight_bits",
    "mem_bits",
    "beta_bits",
    "decay",
    "scale",
    "metrics_format",
)
"""Option destinations that are TrainConfig fields of the same name."""

DATA_HELP = (
    "digits (embedded default, scikit-learn's 8x8 digits) | mnist[:FOLDER] | fashion-mnist[:FOLDER] | "
    "idx:FOLDER (any MNIST-format IDX folder) | event data binned into -T frames: nmnist:FOLDER | shd:FILE | "
    "dvsgesture:FOLDER | emulated-digits | emulated-fashion-mnist[:FOLDER] | emulated-mnist[:FOLDER] "
    "(N-MNIST-like recordings emulated from the images by saccades; see --limit)"
)


def default(dest: str):
    """The default of the config field behind option ``dest`` (``method``: the command line's name)."""
    if dest == "method":
        return f"lfp-{TRAIN_DEFAULTS.rule}" if TRAIN_DEFAULTS.method == "lfp" else TRAIN_DEFAULTS.method
    if dest in MODEL_OPTIONS:
        return getattr(MODEL_DEFAULTS, dest)
    return getattr(TRAIN_DEFAULTS, dest)


def _d(dest: str) -> str:
    """``(default: X)`` for a help text, X read from the config."""
    v = default(dest)
    if isinstance(v, bool):
        v = "on" if v else "off"
    elif v is None:
        v = "none"
    return f"(default: {v})"


def value(a: argparse.Namespace, dest: str):
    """Option ``dest`` as given, or its config default when it was not given."""
    v = getattr(a, dest, None)
    return default(dest) if v is None else v


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Add the ``train`` options (data, model, neurons, training, small-β aids, run) to ``p``."""
    g = p.add_argument_group("data and model")
    g.add_argument("--data", default="digits", help=f"data set: {DATA_HELP} (default: digits)")
    g.add_argument(
        "--download", action="store_true", help="download MNIST if it is not on disk (needs a network)"
    )
    g.add_argument(
        "--limit",
        default=None,
        help="event data: cap the splits before loading: N, N_TRAIN,N_TEST or all (default 6000,1000 "
        "for the emulated 28x28 sets, else all; also $LFP_SNN_EVENT_LIMIT)",
    )
    g.add_argument(
        "--classes",
        type=int,
        default=None,
        help="event data: the number of output classes (default: the data set's own, e.g. what an SHD file "
        "names); at least as many as the labels need",
    )
    g.add_argument("--subset", type=int, default=None, help="train on a stratified subset of N samples")
    g.add_argument(
        "--test-subset", type=int, default=None, help="evaluate on a stratified subset of N samples"
    )
    g.add_argument(
        "--arch",
        default=None,
        choices=ARCHS,
        help="spiking-small (fast), spiking-mlp (paper: 1000-1000), spiking-lenet, deeper-snn and resnet-snn (the "
        f"paper's deeper conv nets), vgg-snn (with BatchNorm), mlp, lenet {_d('arch')}",
    )
    g.add_argument(
        "--hidden",
        type=int,
        nargs="+",
        default=None,
        help="hidden layer widths of the MLPs (default: 256 for spiking-small, 1000 1000 for spiking-mlp, "
        "256 128 for mlp)",
    )
    g.add_argument(
        "--activation",
        default=None,
        choices=sorted(ACTIVATIONS),
        help=f"ANN activation {_d('activation')}",
    )
    g.add_argument(
        "--weight-scale", type=float, default=None, help=f"multiply the initial weights {_d('weight_scale')}"
    )
    g = p.add_argument_group("neurons and encoding (spiking models)")
    g.add_argument("--beta", type=float, default=None, help=f"membrane decay β in (0, 1] {_d('beta')}")
    g.add_argument("--threshold", type=float, default=None, help=f"firing threshold θ > 0 {_d('threshold')}")
    g.add_argument("--reset", default=None, choices=RESETS, help=f"reset mechanism {_d('reset')}")
    g.add_argument(
        "--reset-delay",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"reset one step after the spike, as the reference does {_d('reset_delay')}",
    )
    g.add_argument(
        "--neuron",
        default=None,
        choices=NEURONS,
        help="the hidden layers' neuron: lif, cuba (current-based, CubaLIF), adaptive (adaptive threshold, "
        f"AdaptiveLIF) or recurrent (RecurrentLIF, dense layers); the read-out is a LIF (docs/neurons.md) {_d('neuron')}",
    )
    g.add_argument(
        "--alpha", type=float, default=None, help=f"cuba: synaptic decay α in [0, 1) {_d('alpha')}"
    )
    g.add_argument(
        "--rho", type=float, default=None, help=f"adaptive: decay ρ of the adaptation in [0, 1) {_d('rho')}"
    )
    g.add_argument(
        "--adaptation",
        type=float,
        default=None,
        help=f"adaptive: the threshold's rise κ >= 0 after a spike {_d('adaptation')}",
    )
    g.add_argument("-T", "--steps", type=int, default=None, help=f"time steps per sample {_d('steps')}")
    g.add_argument(
        "--encoder",
        default=None,
        choices=sorted(ENCODERS),
        help=f"static input -> spikes over time; constant is the paper's {_d('encoder')}",
    )
    g = p.add_argument_group("training")
    g.add_argument(
        "--recipe",
        default=None,
        choices=tuple(RECIPES),
        help="a paper's training setup, for every option not given here: paper-snn = "
        f"{describe_recipe('paper-snn')}",
    )
    g.add_argument(
        "--method",
        default=None,
        help=f"lfp-<rule or composite> ({', '.join(known_methods())}); gradient is ANN backprop, bptt-* the "
        f"surrogate-gradient baselines, rstdp the gradient-free reward-modulated STDP {_d('method')}",
    )
    g.add_argument("--rule", default=None, help="LFP rule/composite, the same as --method lfp-<rule>")
    g.add_argument(
        "--reward",
        default=None,
        choices=("auto", *REWARDS),
        help=f"LFP reward: auto is sequence for SNNs, sigmoid for ANNs {_d('reward')}",
    )
    g.add_argument("--optimizer", default=None, choices=OPTIMIZERS, help=f"torch optimiser {_d('optimizer')}")
    g.add_argument("--lr", type=float, default=None, help=f"learning rate {_d('lr')}")
    g.add_argument("--momentum", type=float, default=None, help=f"SGD momentum {_d('momentum')}")
    g.add_argument("--weight-decay", type=float, default=None, help=f"weight decay {_d('weight_decay')}")
    g.add_argument(
        "--schedule", default=None, choices=SCHEDULES, help=f"learning-rate schedule {_d('schedule')}"
    )
    g.add_argument(
        "--clip",
        default=None,
        choices=CLIPS,
        help=f"update clipping: global norm, or adaptive (AGC, Brock et al. 2021) {_d('clip')}",
    )
    g.add_argument(
        "--clip-value", type=float, default=None, help=f"max norm (norm) or ratio λ (agc) {_d('clip_value')}"
    )
    g.add_argument(
        "--input-noise",
        type=float,
        default=None,
        help=f"std of Gaussian noise on layer inputs while training {_d('input_noise')}",
    )
    g.add_argument(
        "--noise-schedule",
        default=None,
        choices=NOISE_SCHEDULES,
        help=f"scale of --input-noise over the epochs: constant, or linear/cosine decay to zero "
        f"{_d('noise_schedule')}",
    )
    g.add_argument(
        "--reward-norm",
        default=None,
        choices=tuple(REWARD_NORMS),
        help="LFP, spiking: maxabs divides the reward at every LIF membrane, at every step, by its largest "
        f"absolute value over the batch (the paper's normalised backward pass) {_d('reward_norm')}",
    )
    g.add_argument(
        "--feedback-precision",
        default=None,
        choices=tuple(PRECISIONS),
        help="precision of the LFP feedback GEMMs; bfloat16 is faster on CPUs with AMX and on GPUs "
        f"{_d('feedback_precision')}",
    )
    g.add_argument(
        "--micro-batch",
        type=int,
        default=None,
        help="LFP: process each batch in slices of N samples and sum the feedback (same update, less memory) "
        f"{_d('micro_batch')}",
    )
    g.add_argument(
        "--recompute",
        action="store_true",
        default=None,
        help=f"LFP: keep only spikes between forward and feedback; recompute currents (less memory) {_d('recompute')}",
    )
    g.add_argument(
        "--time-chunk",
        type=int,
        default=None,
        metavar="K",
        help="LFP, SNN: run forward and feedback in stretches of K steps, keeping only the membranes at their "
        f"boundaries (least memory for long sequences; one more forward pass) {_d('time_chunk')}",
    )
    g.add_argument("--epochs", type=int, default=None, help=f"epochs {_d('epochs')}")
    g.add_argument("--batch-size", type=int, default=None, help=f"batch size {_d('batch_size')}")
    g.add_argument(
        "--seed", type=int, default=None, help=f"seed for initialisation, shuffling and encoders {_d('seed')}"
    )
    g = p.add_argument_group(
        "silent neurons (small β, short T; docs/small_beta.md)",
        "all off by default: the reference LFP rule",
    )
    g.add_argument(
        "--membrane-share",
        type=float,
        default=None,
        help="LFP-ε: λ, reward share of silent steps near the threshold, R_in = (S + λ a) ⊙ (g W) "
        f"{_d('membrane_share')}",
    )
    g.add_argument(
        "--membrane-share-weight",
        type=float,
        default=None,
        help="LFP-ε: λ_W, the same in the weight feedback, F_W = |W| ⊙ (gᵀ (S + λ_W a)) "
        f"{_d('membrane_share_weight')}",
    )
    g.add_argument(
        "--membrane-activity",
        default=None,
        choices=ACTIVITIES,
        help="a = (1 - S) clamp(V/θ, 0, 1)^k (power) or (1 - S) σ((V - θ)/(τθ)) (sigmoid) "
        f"{_d('membrane_activity')}",
    )
    g.add_argument(
        "--membrane-power",
        type=float,
        default=None,
        help=f"k of --membrane-activity power {_d('membrane_power')}",
    )
    g.add_argument(
        "--membrane-tau",
        type=float,
        default=None,
        help=f"τ of --membrane-activity sigmoid {_d('membrane_tau')}",
    )
    g.add_argument(
        "--homeostasis",
        type=float,
        default=None,
        help="η: after each step, lower θ (or raise the bias) of neurons firing below --homeostasis-target "
        f"{_d('homeostasis')}",
    )
    g.add_argument(
        "--homeostasis-target",
        type=float,
        default=None,
        help=f"r*: target spikes per neuron per step {_d('homeostasis_target')}",
    )
    g.add_argument(
        "--homeostasis-mode",
        default=None,
        choices=HOMEOSTASIS_MODES,
        help="adapt the LIF threshold θ (LFP only) or the bias of the layer feeding the LIF "
        f"{_d('homeostasis_mode')}",
    )
    g.add_argument(
        "--homeostasis-min-threshold",
        type=float,
        default=None,
        help=f"θ never drops below this fraction of its initial value {_d('homeostasis_min_threshold')}",
    )
    g = p.add_argument_group(
        "integer-in-the-loop training (docs/export.md)",
        "LFP on the FPGA bundle's integer network: the forward pass in its fixed point, the feedback from that "
        "forward, float weights updated and quantised again at every step; the same option names as "
        "`lfp-snn export fpga`",
    )
    g.add_argument(
        "--weight-bits",
        type=int,
        default=None,
        help=f"bits of the quantised weights; turns integer-in-the-loop training on {_d('weight_bits')}",
    )
    g.add_argument(
        "--mem-bits",
        type=int,
        default=None,
        help=f"bits of the membrane, bias and threshold {_d('mem_bits')}",
    )
    g.add_argument("--beta-bits", type=int, default=None, help=f"fraction bits of β_q {_d('beta_bits')}")
    g.add_argument(
        "--decay",
        default=None,
        choices=DECAYS,
        help=f"membrane decay by a fixed-point multiply, or a right shift (β ≈ 1 - 2^-k) {_d('decay')}",
    )
    g.add_argument(
        "--scale",
        default=None,
        choices=SCALES,
        help=f"each layer's LSB: pow2, the power of two at which max|w| fits; real, max|w| / (2^(W-1) - 1); mse, the power of two with the least squared error (saturating the largest weights) {_d('scale')}",
    )
    g = p.add_argument_group("run")
    g.add_argument("--out", default=None, help="output folder: metrics, config.json, model.pt")
    g.add_argument(
        "--metrics-format", default=None, choices=METRICS_FORMATS, help=f"metrics file {_d('metrics_format')}"
    )
    g.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    g.add_argument(
        "--backend",
        default=None,
        choices=BACKENDS,
        help="LIF scan kernels: auto (native on the CPU, triton on CUDA, torch where those cannot "
        "run), torch (reference), native (C loops for the CPU, compiled with the system C compiler on first "
        f"use), triton (CUDA); native and triton follow the reference's arithmetic {_d('backend')}",
    )
    g.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    g.add_argument(
        "--allocator",
        default="retain",
        choices=("retain", "default"),
        help="retain (default): keep freed memory for the next step's buffers instead of faulting it in again "
        "(glibc; resident memory stays at the peak); default: the C library's own behaviour",
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def flag(dest: str) -> str:
    """The command-line spelling of option ``dest``."""
    return {"steps": "-T/--steps", "reset_delay": "--reset-delay/--no-reset-delay"}.get(
        dest, "--" + dest.replace("_", "-")
    )


def method_and_rule(a: argparse.Namespace) -> tuple[str, str]:
    """``(TrainConfig.method, TrainConfig.rule)`` from ``--method`` and ``--rule``; a rule with a method
    that has none, two different rules, or an unknown rule is a ValueError naming the options."""
    if a.method is None and a.rule is not None:  # the default method is LFP: --rule picks its rule
        name = "lfp"
    else:
        name = a.method if a.method is not None else default("method")
    method, rule = resolve_method(name)
    if a.rule is None:
        return method, rule
    if method != "lfp":
        raise ValueError(
            f"--rule does not apply: it is the rule of LFP; --method {name} {trained_by(method)}"
        )
    if name.startswith("lfp-") and name[4:] != a.rule:
        raise ValueError(f"--method {name} and --rule {a.rule} name two rules; give one of them")
    if a.rule not in presets():
        raise ValueError(f"unknown --rule {a.rule!r}; expected one of {', '.join(presets())}")
    return method, a.rule


def unused_options(model: ModelConfig, train: TrainConfig, temporal: bool = False) -> dict[str, str]:
    """The option destinations that do not apply to a run with these configs (``temporal``: on event data)
    -> why: the configs' own rules (:func:`lfp_snn.models.unused_fields`,
    :func:`lfp_snn.training.config.unused_fields`) and the options that only tune another option that is off."""
    out = {**unused_model_fields(model), **unused_train_fields(train, model, temporal)}
    if train.method != "lfp":
        for dest in ("micro_batch", "recompute", "time_chunk", "input_noise", *_MEMBRANE):
            out.setdefault(
                dest, f"it is an option of LFP; method {train.method!r} {trained_by(train.method)}"
            )
    spiking = is_spiking_arch(model.arch)
    if not spiking:
        for dest in (*_MEMBRANE, *_HOMEOSTASIS):
            out.setdefault(dest, f"it applies to spiking models; arch {model.arch!r} is an ANN")
    if train.input_noise == 0:
        out.setdefault("noise_schedule", "it schedules --input-noise, which is 0 (off)")
    if train.membrane() is None:
        for dest in _MEMBRANE[2:]:
            out.setdefault(dest, "it shapes --membrane-share / --membrane-share-weight, which are 0 (off)")
    if train.membrane_activity != "power":
        out.setdefault("membrane_power", "it is the k of --membrane-activity power")
    if train.membrane_activity != "sigmoid":
        out.setdefault("membrane_tau", "it is the τ of --membrane-activity sigmoid")
    if train.homeostasis == 0:
        for dest in _HOMEOSTASIS[1:]:
            out.setdefault(dest, "it tunes --homeostasis, which is 0 (off)")
    if train.homeostasis_mode != "threshold":
        out.setdefault("homeostasis_min_threshold", "it bounds θ in --homeostasis-mode threshold")
    return out


_MEMBRANE = ("membrane_share", "membrane_share_weight", "membrane_activity", "membrane_power", "membrane_tau")
_HOMEOSTASIS = ("homeostasis", "homeostasis_target", "homeostasis_mode", "homeostasis_min_threshold")


def refuse_unused_options(
    a: argparse.Namespace, model: ModelConfig, train: TrainConfig, temporal: bool
) -> None:
    """ValueError naming the first option given in ``a`` that does not apply to this run (see
    :func:`unused_options`): nothing on the command line is silently ignored."""
    unused = unused_options(model, train, temporal)
    for dest in (*MODEL_OPTIONS, *TRAIN_OPTIONS):
        if getattr(a, dest, None) is not None and dest in unused:
            raise ValueError(f"{flag(dest)} does not apply: {unused[dest]}")


def set_threads(n: int | None, option: str = "--threads") -> None:
    """Set torch's CPU threads to ``n`` (None: leave torch's choice); ValueError for n < 1."""
    if n is None:
        return
    if n < 1:
        raise ValueError(f"{option} must be >= 1, got {n}")
    torch.set_num_threads(n)


def apply_recipe(a: argparse.Namespace) -> None:
    """Fill in the options of ``--recipe`` that the command line leaves out (they then count as given), and
    say once what the recipe set and which of its settings the command line replaced. The recipe's
    LFP-only settings wait in ``a.recipe_lfp`` for :func:`build_configs` (they apply per method)."""
    a.recipe_lfp, a.recipe_set = {}, set()
    if getattr(a, "recipe", None) is None:
        return
    arch = value(a, "arch")
    if not is_spiking_arch(arch):
        raise ValueError(f"--recipe {a.recipe} trains spiking models; --arch {arch} is an ANN")
    given = {d for d in (*MODEL_OPTIONS, *TRAIN_OPTIONS) if getattr(a, d, None) is not None}
    skipped = []
    if is_sequential_spec(a.data):
        given.add("steps")  # T is the number of rows
        skipped.append("steps (one step per row of --data)")
    common, _ = recipe_fields(a.recipe, "other", given)
    lfp, overridden = recipe_fields(a.recipe, "lfp", given)
    for dest, v in common.items():
        setattr(a, dest, v)
    a.recipe_set = set(common)
    a.recipe_lfp = {k: v for k, v in lfp.items() if k not in common}
    shown = ", ".join(f"{k}={v}" for k, v in common.items())
    shown += "".join(f", {k}={v} (LFP methods)" for k, v in a.recipe_lfp.items())
    notes = [
        f"the command line replaces {o}" for o in overridden if not o.startswith("steps=") or not skipped
    ]
    notes += [f"not {s}" for s in skipped]
    print(f"recipe {a.recipe}: {shown}" + (f"; {'; '.join(notes)}" if notes else ""), flush=True)


def build_configs(a: argparse.Namespace, train, **fields) -> tuple[ModelConfig, TrainConfig]:
    """The model and train configs of the options in ``a`` for the data ``train`` (its sample shape and
    classes), with ``fields`` (config field -> value) set on top: compare and sweep set the method, rule,
    seed, β, T, lr of each run this way."""
    model = {k: getattr(a, k) for k in MODEL_OPTIONS if getattr(a, k, None) is not None}
    if model.get("hidden") is not None:
        model["hidden"] = tuple(model["hidden"])
    trainf = {k: getattr(a, k) for k in TRAIN_OPTIONS if getattr(a, k, None) is not None}
    if fields.get("method", TRAIN_DEFAULTS.method) == "lfp":
        for k, v in getattr(a, "recipe_lfp", {}).items():
            trainf.setdefault(k, v)
    if getattr(a, "no_progress", False):
        trainf["progress"] = False
    for k, v in fields.items():
        (model if k in ModelConfig.__dataclass_fields__ else trainf)[k] = v
    model_cfg = ModelConfig(input_shape=sample_shape(train), classes=train.classes, **model)
    train_cfg = TrainConfig(**trainf)
    return model_cfg, train_cfg


def configs_from_args(a: argparse.Namespace, train) -> tuple[ModelConfig, TrainConfig]:
    """The model and train configs of one ``lfp-snn train`` run: the options given, the configs' defaults
    for the rest, the sample shape and classes of the data ``train``."""
    method, rule = method_and_rule(a)
    return build_configs(a, train, method=method, rule=rule)


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``auto`` -> a device; ``cuda`` without a GPU is an error that says so."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            "error: --device cuda was asked for, but torch sees no CUDA GPU here "
            f"(torch {torch.__version__}, cuda build: {torch.version.cuda}); use --device cpu or auto"
        )
    if name not in ("cpu", "cuda"):
        raise SystemExit(f"error: --device must be cpu, cuda or auto, got {name!r}")
    return torch.device(name)


def check_backend_runs(backend: str, device: torch.device) -> None:
    """SystemExit naming ``--backend`` when that backend cannot run on ``device`` here."""
    if backend in ("torch", "auto"):
        return
    from ..kernels import check_backend

    try:
        check_backend(backend, device)
    except (RuntimeError, ValueError) as e:
        raise SystemExit(f"error: --backend {backend}: {e}") from None


def check_data_options(a: argparse.Namespace) -> None:
    """Refuse ``--limit`` for static images, ``-T`` for images read row by row (one step per row) and
    ``--download`` for anything lfp-snn does not download (MNIST and CIFAR only)."""
    event = is_event_spec(a.data)
    if a.limit is not None and not event:
        raise ValueError(
            f"--limit does not apply: it caps event data (nmnist:, shd:, dvsgesture:, emulated-*); "
            f"--data {a.data} is a static image set"
        )
    if getattr(a, "classes", None) is not None and not event:
        raise ValueError(
            f"--classes does not apply: it sets the outputs of event data (nmnist:, shd:, dvsgesture:, emulated-*); "
            f"--data {a.data} has its own classes"
        )
    sequential = is_sequential_spec(a.data)
    if sequential and a.steps is not None:
        raise ValueError(
            f"-T/--steps does not apply: --data {a.data} reads each image row by row, one time step per row"
        )
    base = a.data[len(SEQUENTIAL) :] if sequential else a.data
    if a.download and base.partition(":")[0] not in DOWNLOADS:
        raise ValueError(
            f"--download does not apply: it fetches {', '.join(DOWNLOADS)}; --data {a.data} is none of them"
        )


def load_run_data(a: argparse.Namespace, seed: int):
    """``(train, test)`` of ``--data`` (event data binned into ``-T`` frames), cut to ``--subset`` and
    ``--test-subset`` by a draw seeded with ``seed``; the data options that do not apply are refused."""
    check_data_options(a)
    train, test = load_data(a.data, value(a, "steps"), a.download, a.limit, getattr(a, "classes", None))
    if a.subset is not None:
        train = train.subset(a.subset, seed=seed)
    if a.test_subset is not None:
        test = test.subset(a.test_subset, seed=seed)
    return train, test
