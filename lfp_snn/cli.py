"""The ``lfp-snn`` command: ``train`` here; other subcommands register from their own modules."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time

import torch

from .allocator import retain_freed_memory
from .data import load_dataset
from .models import ARCHS, ModelConfig, is_spiking_arch
from .training import METHODS, TrainConfig, Trainer

# modules that add subcommands: each has ``add_commands(subparsers)``
COMMAND_MODULES: list[str] = ["lfp_snn.compare", "lfp_snn.sweeps", "lfp_snn.export.commands"]

DATA_HELP = (
    "digits (embedded default, scikit-learn's 8x8 digits) | mnist[:FOLDER] | fashion-mnist[:FOLDER] | "
    "idx:FOLDER (any MNIST-format IDX folder) | event data binned into -T frames: nmnist:FOLDER | shd:FILE | "
    "dvsgesture:FOLDER | emulated-digits | emulated-fashion-mnist[:FOLDER] | emulated-mnist[:FOLDER] "
    "(N-MNIST-like recordings emulated from the images by saccades; see --limit)"
)


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


def parse_method(method: str, rule: str | None) -> tuple[str, str]:
    """``lfp-<rule>`` -> ("lfp", rule); other names pass through."""
    if method.startswith("lfp-"):
        return "lfp", method[4:]
    return method, rule or "epsilon"


def add_train_arguments(p: argparse.ArgumentParser) -> None:
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
    g.add_argument("--subset", type=int, default=None, help="train on a stratified subset of N samples")
    g.add_argument(
        "--test-subset", type=int, default=None, help="evaluate on a stratified subset of N samples"
    )
    g.add_argument(
        "--arch",
        default="spiking-small",
        choices=ARCHS,
        help="spiking-small (default, fast), spiking-mlp (paper: 1000-1000), spiking-lenet, mlp, lenet",
    )
    g.add_argument("--hidden", type=int, nargs="+", default=None, help="hidden layer widths of the MLPs")
    g.add_argument(
        "--activation", default="relu", help="ANN activation: relu, heaviside, tanh, sigmoid, silu, elu"
    )
    g.add_argument("--weight-scale", type=float, default=1.0, help="multiply the initial weights (default 1)")
    g = p.add_argument_group("neurons and encoding (spiking models)")
    g.add_argument("--beta", type=float, default=0.9, help="membrane decay β in (0, 1] (default 0.9)")
    g.add_argument("--threshold", type=float, default=1.0, help="firing threshold θ > 0 (default 1)")
    g.add_argument("--reset", default="subtract", choices=("subtract", "zero"), help="reset mechanism")
    g.add_argument(
        "--reset-delay",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reset one step after the spike, as the reference does (default: on)",
    )
    g.add_argument("-T", "--steps", type=int, default=10, help="time steps per sample (default 10)")
    g.add_argument(
        "--encoder",
        default="constant",
        choices=("constant", "rate", "latency"),
        help="static input -> spikes over time (default: constant, the paper's)",
    )
    g = p.add_argument_group("training")
    g.add_argument(
        "--method",
        default="lfp-epsilon",
        help="lfp-epsilon (default), lfp-zplus-zminus, lfp-<composite>, gradient (ANN backprop), or a "
        f"baseline; registered: {sorted(METHODS)}",
    )
    g.add_argument("--rule", default=None, help="LFP rule/composite when --method lfp")
    g.add_argument(
        "--reward",
        default="auto",
        help="auto (sequence for SNNs, sigmoid for ANNs), sigmoid, softmax, "
        "correct-class, sequence, sequence-scaled, spike-count-softmax",
    )
    g.add_argument(
        "--optimizer", default="adam", choices=("adam", "sgd"), help="torch optimiser (default adam)"
    )
    g.add_argument("--lr", type=float, default=3e-3, help="learning rate (default 3e-3)")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default 0.9)")
    g.add_argument("--schedule", default="none", choices=("none", "onecycle"), help="learning-rate schedule")
    g.add_argument(
        "--clip",
        default="none",
        choices=("none", "norm", "agc"),
        help="update clipping: global norm, or adaptive (AGC, Brock et al. 2021)",
    )
    g.add_argument("--clip-value", type=float, default=1.0, help="max norm (norm) or ratio λ (agc)")
    g.add_argument(
        "--input-noise", type=float, default=0.0, help="std of Gaussian noise on layer inputs while training"
    )
    g.add_argument(
        "--noise-schedule",
        default="constant",
        choices=("constant", "linear", "cosine"),
        help="scale of --input-noise over the epochs: constant (default), or linear/cosine decay to zero",
    )
    g.add_argument(
        "--feedback-precision",
        default="float32",
        choices=("float32", "bfloat16"),
        help="precision of the LFP feedback GEMMs; bfloat16 is faster on CPUs with AMX and on GPUs",
    )
    g.add_argument(
        "--micro-batch",
        type=int,
        default=None,
        help="LFP: process each batch in slices of N samples and sum the feedback (same update, less memory)",
    )
    g.add_argument(
        "--recompute",
        action="store_true",
        help="LFP: keep only spikes between forward and feedback; recompute currents (less memory)",
    )
    g.add_argument(
        "--time-chunk",
        type=int,
        default=None,
        metavar="K",
        help="LFP, SNN: run forward and feedback in stretches of K steps, keeping only the membranes at their "
        "boundaries (least memory for long sequences; one more forward pass)",
    )
    g.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    g.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
    g.add_argument("--seed", type=int, default=0, help="seed for initialisation, shuffling and encoders")
    g = p.add_argument_group(
        "silent neurons (small β, short T; docs/small_beta.md)",
        "all off by default: the reference LFP rule",
    )
    g.add_argument(
        "--membrane-share",
        type=float,
        default=0.0,
        help="LFP-ε: λ, reward share of silent steps near the threshold, R_in = (S + λ a) ⊙ (g W) (0: off)",
    )
    g.add_argument(
        "--membrane-share-weight",
        type=float,
        default=0.0,
        help="LFP-ε: λ_W, the same in the weight feedback, F_W = |W| ⊙ (gᵀ (S + λ_W a)) (0: off)",
    )
    g.add_argument(
        "--membrane-activity",
        default="power",
        choices=("power", "sigmoid"),
        help="a = (1 - S) clamp(V/θ, 0, 1)^k (power, default) or (1 - S) σ((V - θ)/(τθ)) (sigmoid)",
    )
    g.add_argument(
        "--membrane-power", type=float, default=1.0, help="k of --membrane-activity power (default 1)"
    )
    g.add_argument(
        "--membrane-tau", type=float, default=0.25, help="τ of --membrane-activity sigmoid (default 0.25)"
    )
    g.add_argument(
        "--homeostasis",
        type=float,
        default=0.0,
        help="η: after each step, lower θ (or raise the bias) of neurons firing below --homeostasis-target (0: off)",
    )
    g.add_argument(
        "--homeostasis-target",
        type=float,
        default=0.005,
        help="r*: target spikes per neuron per step (default 0.005)",
    )
    g.add_argument(
        "--homeostasis-mode",
        default="threshold",
        choices=("threshold", "bias"),
        help="adapt the LIF threshold θ (default; LFP only) or the bias of the layer feeding the LIF",
    )
    g.add_argument(
        "--homeostasis-min-threshold",
        type=float,
        default=0.1,
        help="θ never drops below this fraction of its initial value (default 0.1)",
    )
    g = p.add_argument_group("run")
    g.add_argument("--out", default=None, help="output folder: metrics, config.json, model.pt")
    g.add_argument("--metrics-format", default="jsonl", choices=("jsonl", "csv"))
    g.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto")
    g.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "torch", "native", "triton"),
        help="LIF scan kernels: auto (default: native on the CPU, triton on CUDA, torch where those cannot "
        "run), torch (reference), native (C loops for the CPU, compiled with the system C compiler on first "
        "use), triton (CUDA); native and triton follow the reference's arithmetic",
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


def configs_from_args(a: argparse.Namespace, train) -> tuple[ModelConfig, TrainConfig]:
    method, rule = parse_method(a.method, a.rule)
    model_cfg = ModelConfig(
        arch=a.arch,
        input_shape=sample_shape(train),
        classes=train.classes,
        hidden=tuple(a.hidden) if a.hidden else None,
        beta=a.beta,
        threshold=a.threshold,
        reset=a.reset,
        reset_delay=a.reset_delay,
        activation=a.activation,
        backend=a.backend,
        weight_scale=a.weight_scale,
    )
    train_cfg = TrainConfig(
        method=method,
        rule=rule,
        reward=a.reward,
        optimizer=a.optimizer,
        lr=a.lr,
        momentum=a.momentum,
        schedule=a.schedule,
        epochs=a.epochs,
        batch_size=a.batch_size,
        seed=a.seed,
        steps=a.steps,
        encoder=a.encoder,
        clip=a.clip,
        clip_value=a.clip_value,
        input_noise=a.input_noise,
        feedback_precision=a.feedback_precision,
        micro_batch=a.micro_batch,
        recompute=a.recompute,
        time_chunk=a.time_chunk,
        noise_schedule=a.noise_schedule,
        membrane_share=a.membrane_share,
        membrane_share_weight=a.membrane_share_weight,
        membrane_activity=a.membrane_activity,
        membrane_power=a.membrane_power,
        membrane_tau=a.membrane_tau,
        homeostasis=a.homeostasis,
        homeostasis_target=a.homeostasis_target,
        homeostasis_mode=a.homeostasis_mode,
        homeostasis_min_threshold=a.homeostasis_min_threshold,
        progress=not a.no_progress,
        metrics_format=a.metrics_format,
    )
    return model_cfg, train_cfg


def load_any(spec: str, steps: int, download: bool = False, limit=None):
    """Static image data sets (lfp_snn.data) or event data sets binned into ``steps`` frames."""
    from .events.training_data import is_event_spec, load_event_dataset

    if is_event_spec(spec):
        return load_event_dataset(spec, steps=steps, limit=limit)
    return load_dataset(spec, download=download)


def sample_shape(data) -> tuple[int, ...]:
    """One sample's shape without the time axis (event frames are stored [N, T, ...])."""
    return tuple(data.x.shape[2:] if getattr(data, "temporal", False) else data.x.shape[1:])


def cmd_train(a: argparse.Namespace) -> int:
    if a.threads:
        torch.set_num_threads(a.threads)
    device = resolve_device(a.device)
    if a.backend not in ("torch", "auto"):
        from .kernels import check_backend

        try:
            check_backend(a.backend, device)
        except (RuntimeError, ValueError) as e:
            raise SystemExit(f"error: --backend {a.backend}: {e}") from None
    train, test = load_any(a.data, a.steps, a.download, a.limit)
    if a.subset:
        train = train.subset(a.subset, seed=a.seed)
    if a.test_subset:
        test = test.subset(a.test_subset, seed=a.seed)
    model_cfg, train_cfg = configs_from_args(a, train)
    trainer = Trainer(model_cfg, train_cfg, out_dir=a.out, device=device)
    spiking = is_spiking_arch(a.arch)
    what = f"{a.arch} ({'T=' + str(a.steps) + ', β=' + str(a.beta) if spiking else 'ANN'})"
    print(
        f"training {what} on {a.data}: {len(train)} train / {len(test)} test samples, method {a.method}, "
        f"{a.epochs} epochs",
        flush=True,
    )
    t0 = time.perf_counter()

    def report(r: dict) -> None:
        spikes = "  ".join(
            f"rate[{k.split('/')[1]}]={v:.3f}" for k, v in r.items() if k.startswith("spike_rate/")
        )
        silent = "  ".join(
            f"silent[{k.split('/')[1]}]={v:.2f}" for k, v in r.items() if k.startswith("silent/")
        )
        print(
            f"epoch {r['epoch']:3d}  train acc {r['train_accuracy']:.4f}  test acc {r.get('test_accuracy', float('nan')):.4f}"
            f"  {r['time_s']:.1f}s  {spikes}  {silent}".rstrip(),
            flush=True,
        )

    history = trainer.fit(train, test, on_epoch=report)
    final = history[-1] if history else {"test_accuracy": trainer.evaluate(test)["accuracy"]}
    summary = {"test_accuracy": final.get("test_accuracy"), "wall_s": round(time.perf_counter() - t0, 2)}
    summary.update({k: v for k, v in final.items() if k.startswith(("spike_rate/", "silent/"))})
    print("result " + json.dumps(summary))
    if a.out:
        print(f"wrote {a.out}/config.json, {a.out}/model.pt and metrics")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="lfp-snn",
        description="Train spiking neural networks without surrogate "
        "gradients, by Layer-wise Feedback Propagation, and export them to hardware.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser(
        "train",
        help="train a model (LFP by default) and report test accuracy and spike statistics",
        description="Train an SNN (or ANN) with LFP or a baseline, print per-epoch metrics.",
    )
    add_train_arguments(t)
    t.set_defaults(func=cmd_train)
    for mod in COMMAND_MODULES:
        importlib.import_module(mod).add_commands(sub)
    return p


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; bad input is one line on stderr and exit code 2."""
    args = parser.parse_args(argv)
    if getattr(args, "allocator", None) == "retain":
        retain_freed_memory()
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
