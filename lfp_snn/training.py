"""Training: LFP steps (feedback -> ``p.grad = -F`` -> any torch optimiser) and the gradient baseline for ANNs.

The :class:`Trainer` owns the loop: encoding, steps, update clipping, evaluation, metrics per epoch (JSON lines
or CSV), checkpoints and a progress bar. Other training methods (the surrogate-gradient baselines) plug in
through :data:`METHODS`: a factory ``(trainer) -> step`` where ``step(x, y) -> StepOutput``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from .checkpoint import save_checkpoint
from .encoders import get_encoder
from .engine import feedback_result, run, write_gradients
from .homeostasis import MODES as HOMEOSTASIS_MODES
from .homeostasis import Homeostasis
from .models import ModelConfig, build_model, is_spiking_arch
from .neurons import LIF
from .rewards import get_reward
from .rules import ACTIVITIES, MembraneShare, get_composite

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("none", "onecycle")
CLIPS = ("none", "norm", "agc")
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16}
NOISE_SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class TrainConfig:
    """Everything a run needs besides the model and the data; a run is reproducible from it."""

    method: str = "lfp"  # lfp | gradient | a registered baseline such as bptt-snntorch
    rule: str = "epsilon"  # LFP rule or composite preset
    reward: str = "auto"  # auto: sequence reward for SNNs, sigmoid reward (Eq. 7) for ANNs
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "none"
    epochs: int = 10
    batch_size: int = 64
    eval_batch_size: int = 512
    seed: int = 0
    steps: int = 25  # T for spiking models
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
    feedback_precision: str = "float32"  # float32 | bfloat16: precision of the LFP feedback GEMMs
    micro_batch: int | None = None  # LFP: run each batch in slices of this many samples (less memory)
    recompute: bool = False  # LFP: keep spikes only, recompute currents and membranes in the feedback
    time_chunk: int | None = None  # LFP, SNN: feedback in stretches of this many steps (least memory)
    progress: bool = True
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

    def validate(self) -> None:
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
                self.metrics_format in ("jsonl", "csv"),
                f"metrics_format must be jsonl or csv, got {self.metrics_format!r}",
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
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(msg)
        lfp_only = {
            "micro_batch": self.micro_batch,
            "recompute": self.recompute or None,
            "time_chunk": self.time_chunk,
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
            if self.homeostasis_mode == "threshold" and self.method != "lfp":
                raise ValueError(
                    f"homeostasis_mode 'threshold' changes lfp-snn's LIF thresholds, which method "
                    f"{self.method!r} copies once into its own neurons; use homeostasis_mode 'bias'"
                )

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


@dataclass
class StepOutput:
    output: Tensor  # ANN logits [B, C]; SNN output spikes [T, B, C]
    objective: float  # mean reward (LFP) or loss (gradient methods)
    spike_counts: dict[str, Tensor] = field(default_factory=dict)


def predictions(output: Tensor, spiking: bool) -> Tensor:
    """Class per sample: most output spikes (SNN [T, B, C]) or largest logit (ANN [B, C])."""
    return output.sum(0).argmax(-1) if spiking else output.argmax(-1)


def clip_updates(model: nn.Module, mode: str, value: float, eps: float = 1e-3) -> None:
    """Clip the update in ``p.grad``: global norm, or adaptive (AGC, Brock et al. 2021: per output unit,
    ||g|| <= λ max(||w||, eps))."""
    params = [p for p in model.parameters() if p.grad is not None]
    if mode == "none" or not params:
        return
    if mode == "norm":
        torch.nn.utils.clip_grad_norm_(params, value)
        return
    for p in params:
        dims = tuple(range(1, p.dim())) if p.dim() > 1 else None
        w_norm = torch.linalg.vector_norm(p.detach(), dim=dims, keepdim=True) if dims else p.detach().abs()
        g_norm = torch.linalg.vector_norm(p.grad, dim=dims, keepdim=True) if dims else p.grad.abs()
        limit = value * w_norm.clamp(min=eps)
        p.grad.mul_(torch.where(g_norm > limit, limit / g_norm.clamp(min=1e-12), torch.ones_like(g_norm)))


def lfp_method(trainer: Trainer) -> Callable[[Tensor, Tensor], StepOutput]:
    cfg = trainer.config
    composite = get_composite(cfg.rule, cfg.eps)
    reward = trainer.reward
    membrane = cfg.membrane()

    def step(x: Tensor, y: Tensor) -> StepOutput:
        trainer.optimizer.zero_grad(set_to_none=True)  # the old gradients go before the feedback's buffers
        res = feedback_result(
            trainer.model,
            x,
            y,
            reward,
            composite,
            eps=cfg.eps,
            input_noise=trainer.noise_std(),
            generator=trainer.generator,
            membrane_share=membrane,
            matmul_dtype=PRECISIONS[cfg.feedback_precision],
            micro_batch=cfg.micro_batch,
            recompute=cfg.recompute,
            time_chunk=cfg.time_chunk,
        )
        write_gradients(trainer.model, res.feedback, consume=True)
        return StepOutput(res.output, float(res.reward.mean()), res.spike_counts)

    return step


def gradient_method(trainer: Trainer) -> Callable[[Tensor, Tensor], StepOutput]:
    """Backpropagation with cross-entropy (the ANN gradient baseline)."""
    if trainer.spiking:
        raise ValueError(
            "method 'gradient' trains ANNs; for spiking models use a surrogate-gradient baseline "
            "(bptt-snntorch, bptt-norse) or LFP"
        )
    loss_fn = nn.CrossEntropyLoss()

    def step(x: Tensor, y: Tensor) -> StepOutput:
        trainer.optimizer.zero_grad()
        out = trainer.model(x)
        loss = loss_fn(out, y)
        loss.backward()
        return StepOutput(out.detach(), float(loss.detach()))

    return step


METHODS: dict[str, Callable[[Trainer], Callable[[Tensor, Tensor], StepOutput]]] = {
    "lfp": lfp_method,
    "gradient": gradient_method,
}


class Trainer:
    """Train ``model`` (built from ``model_config``) with ``config`` on array data sets.

    ``fit`` returns the metrics history (one dict per epoch) and, when ``out_dir`` is given, writes
    ``metrics.jsonl`` (or ``.csv``), ``config.json`` and ``model.pt`` there.
    """

    def __init__(
        self,
        model_config: ModelConfig,
        config: TrainConfig,
        out_dir: str | os.PathLike | None = None,
        model: nn.Module | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        config.validate()
        self.model_config = model_config
        self.config = config
        self.device = torch.device(device)
        self.spiking = is_spiking_arch(model_config.arch)
        self.model = (model if model is not None else build_model(model_config, seed=config.seed)).to(
            self.device
        )
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.encoder = get_encoder(config.encoder, config.steps) if self.spiking else None
        self.reward = get_reward(
            ("sequence" if self.spiking else "sigmoid") if config.reward == "auto" else config.reward
        )
        self.optimizer = self._optimizer()
        self.scheduler = None
        self.epoch = 0
        self.step_fn = METHODS[config.method](self)
        self._noise_scale = 1.0
        self.homeostasis = config.homeostasis_rule() if self.spiking else None

    def _optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "adam":
            return torch.optim.Adam(self.model.parameters(), lr=c.lr, weight_decay=c.weight_decay)
        return torch.optim.SGD(
            self.model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay
        )

    def noise_std(self) -> float:
        return self.config.input_noise * self._noise_scale

    def encode(self, x: Tensor, temporal: bool = False) -> Tensor:
        """A batch from a data set -> model input. Static images go through the encoder; samples that are
        already sequences (event frames, ``data.temporal``: [B, T, ...]) become time-first [T, B, ...]."""
        x = x.to(self.device)
        if temporal:
            if not self.spiking:
                raise ValueError("sequence data (events) needs a spiking model; got an ANN architecture")
            return x.transpose(0, 1).to(torch.get_default_dtype())
        return self.encoder(x, self.generator) if self.encoder is not None else x

    def lif_layers(self) -> dict[str, LIF]:
        return {n: m for n, m in self.model.named_modules() if isinstance(m, LIF)}

    def evaluate(self, data, batch_size: int | None = None) -> dict:
        """Accuracy (and spike statistics for SNNs) on an :class:`lfp_snn.data.ArrayDataset`."""
        self.model.eval()
        correct, n = 0, 0
        temporal = getattr(data, "temporal", False)
        for x, y in data.batches(batch_size or self.config.eval_batch_size, shuffle=False):
            out = run(self.model, self.encode(x, temporal)) if self.spiking else self._ann_forward(x)
            correct += int((predictions(out, self.spiking).cpu() == y).sum())
            n += len(y)
        self.model.train()
        return {"accuracy": correct / max(n, 1)}

    def _ann_forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.model(x.to(self.device))

    def fit(self, train, test=None, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
        c = self.config
        if c.schedule == "onecycle" and c.epochs > 0:
            per_epoch = math.ceil(len(train) / c.batch_size)
            self.scheduler = torch.optim.lr_scheduler.OneCycleLR(
                self.optimizer, max_lr=c.lr, total_steps=max(per_epoch * c.epochs, 1)
            )
        initial = {n: p.detach().clone() for n, p in self.model.named_parameters() if n.endswith("weight")}
        history = []
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(c.epochs):
            record = self._epoch(train)
            record.update(
                {f"test_{k}": v for k, v in (self.evaluate(test).items() if test is not None else [])}
            )
            record["sign_changed"] = _sign_changed(self.model, initial)
            history.append(record)
            if self.out_dir is not None:
                self._write_metrics(record)
                save_checkpoint(self.out_dir, self.model, self.model_config, self._run_config())
            if on_epoch is not None:
                on_epoch(record)
        return history

    def _run_config(self) -> dict:
        return {**asdict(self.config), "epochs_done": self.epoch}

    def _epoch(self, train) -> dict:
        c = self.config
        self.model.train()
        self._noise_scale = _noise_schedule(c.noise_schedule, self.epoch, c.epochs)
        batches = train.batches(c.batch_size, shuffle=True, generator=self.generator)
        total = math.ceil(len(train) / c.batch_size)
        bar = None
        if c.progress:
            from tqdm.auto import tqdm

            bar = tqdm(batches, total=total, desc=f"epoch {self.epoch + 1}/{c.epochs}", leave=False)
            batches = bar
        t0 = time.perf_counter()
        correct = n = 0
        objective = 0.0
        counts: dict[str, Tensor] = {}
        temporal = getattr(train, "temporal", False)
        for x, y in batches:
            x, y = self.encode(x, temporal), y.to(self.device)
            out = self.step_fn(x, y)
            clip_updates(self.model, c.clip, c.clip_value)
            self.optimizer.step()
            if self.scheduler is not None:
                self.scheduler.step()
            if self.homeostasis is not None:
                self.homeostasis.update(self.model, out.spike_counts, len(y), x.shape[0])
            correct += int((predictions(out.output, self.spiking) == y).sum())
            n += len(y)
            objective += out.objective * len(y)
            for k, v in out.spike_counts.items():
                counts[k] = counts[k] + v if k in counts else v.clone()
            if bar is not None:
                bar.set_postfix(acc=f"{correct / n:.3f}")
        self.epoch += 1
        record = {
            "epoch": self.epoch,
            "train_accuracy": correct / max(n, 1),
            "objective": objective / max(n, 1),
            "time_s": time.perf_counter() - t0,
            "lr": self.optimizer.param_groups[0]["lr"],
        }
        steps = (train.x.shape[1] if temporal else c.steps) if self.spiking else 1
        for k, v in counts.items():
            record[f"spike_rate/{k}"] = float(v.sum()) / (v.numel() * n * steps)
            record[f"silent/{k}"] = float((v == 0).float().mean())
        return record

    def _write_metrics(self, record: dict) -> None:
        if self.config.metrics_format == "jsonl":
            with open(self.out_dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            return
        path = self.out_dir / "metrics.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(record))
            if new:
                w.writeheader()
            w.writerow(record)


def _noise_schedule(name: str, epoch: int, epochs: int) -> float:
    """Scale of the input noise at ``epoch``: constant, or linear/cosine decay to zero."""
    if name == "constant":
        return 1.0
    frac = epoch / max(epochs, 1)
    if name == "linear":
        return 1.0 - frac
    if name == "cosine":
        return 0.5 * (1 + math.cos(math.pi * frac))
    raise ValueError(f"unknown noise schedule {name!r}; expected constant, linear or cosine")


def _sign_changed(model: nn.Module, initial: dict[str, Tensor]) -> float:
    changed = total = 0
    for n, p in model.named_parameters():
        if n in initial:
            changed += int((torch.sign(p.detach()) != torch.sign(initial[n])).sum())
            total += p.numel()
    return changed / max(total, 1)


from . import baselines as _baselines  # noqa: E402,F401  (registers bptt-snntorch and bptt-norse in METHODS)
