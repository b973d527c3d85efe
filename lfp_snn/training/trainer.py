"""The training loop: encoding, one method's steps, update clipping, the optimiser, evaluation, metrics per
epoch (JSON lines or CSV), checkpoints and a progress bar."""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from ..checkpoint import (
    TRAIN_STATE,
    load_checkpoint,
    load_config,
    load_train_state,
    save_checkpoint,
    save_train_state,
)
from ..data import sample_shape
from ..encoders import get_encoder
from ..engine import FeedbackPlan, build_graph, run
from ..engine.fixed import fixed_network
from ..models import ModelConfig, build_model, is_spiking_arch
from ..neurons import LIF
from ..rewards import get_reward
from .config import TrainConfig, check_run
from .methods import METHODS
from .schedules import lr_scheduler, noise_scale
from .step import predictions
from .updates import clip_updates, make_optimizer

RUN_FILES = ("config.json", "model.pt", TRAIN_STATE, "metrics.jsonl", "metrics.csv")
"""The files a Trainer writes into its output folder."""


class Trainer:
    """Train ``model`` (built from ``model_config``) with ``config`` on array data sets.

    ``fit`` returns the metrics history (one dict per epoch) and, when ``out_dir`` is given, writes
    ``metrics.jsonl`` (or ``.csv``), ``config.json``, ``model.pt`` and ``train_state.pt`` there after every
    epoch. An ``out_dir`` that already holds a run is refused unless ``overwrite=True`` (its run files are
    replaced; other files stay) or ``resume=True`` (the run continues from its last epoch, up to
    ``config.epochs``, exactly as if it had not stopped). The folder is checked here, before any training,
    and created when the first epoch is written.
    """

    def __init__(
        self,
        model_config: ModelConfig,
        config: TrainConfig,
        out_dir: str | os.PathLike | None = None,
        model: nn.Module | None = None,
        device: str | torch.device = "cpu",
        *,
        overwrite: bool = False,
        resume: bool = False,
    ) -> None:
        check_run(model_config, config)
        if overwrite and resume:
            raise ValueError("overwrite and resume exclude each other: replace the run, or continue it")
        if (overwrite or resume) and out_dir is None:
            raise ValueError(f"{'overwrite' if overwrite else 'resume'} needs an out_dir")
        self.model_config = model_config
        self.config = config
        self.device = torch.device(device)
        if self.device.type == "meta":
            raise ValueError("device 'meta' holds no data; train on cpu or cuda")
        self.spiking = is_spiking_arch(model_config.arch)
        if model is not None:
            _check_model(model)
        self.model = (model if model is not None else build_model(model_config, seed=config.seed)).to(
            self.device
        )
        self.dtype = next(self.model.parameters()).dtype
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.written: list[Path] = []  # files this Trainer has written, in order
        self.saved_epoch = 0  # the last epoch whose checkpoint is in out_dir
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.encoder = get_encoder(config.encoder, config.steps) if self.spiking else None
        self.reward = get_reward(
            ("sequence" if self.spiking else "sigmoid") if config.reward == "auto" else config.reward
        )
        self.optimizer = make_optimizer(
            self.model.parameters(), config.optimizer, config.lr, config.momentum, config.weight_decay
        )
        self.scheduler = None
        self.epoch = 0
        self.step_fn = METHODS[config.method](self)
        fixed = config.fixed_point()
        # the forward that evaluation runs: the integer network for integer-in-the-loop training
        self.eval_plan = FeedbackPlan(fixed_point=fixed) if fixed is not None else None
        if fixed is not None:  # refuse a model the integer network cannot hold before any step, and say once
            fixed_network(build_graph(self.model), fixed, warn=True)  # what its formats approximate
        self._noise_scale = 1.0
        self.homeostasis = config.homeostasis_rule() if self.spiking else None
        self._initial: dict[str, Tensor] | None = None
        self._resume_state: dict | None = None
        self._replace: list[str] = []  # run files of an old run, removed when this run writes its first epoch
        if self.out_dir is not None:
            self._prepare_out_dir(overwrite, resume)

    def _prepare_out_dir(self, overwrite: bool, resume: bool) -> None:
        """Refuse an output folder that cannot be written or holds a run (unless overwrite / resume)."""
        d = self.out_dir
        check_writable_folder(d)
        existing = [n for n in RUN_FILES if (d / n).exists()] if d.is_dir() else []
        if resume:
            self._resume_from(d)
            return
        if existing and not overwrite:
            raise FileExistsError(
                f"{d} holds a run already ({', '.join(existing)}); pass overwrite=True (--overwrite) to replace "
                "it, resume=True (--resume) to continue it, or choose another folder"
            )
        self._replace = existing

    def _resume_from(self, d: Path) -> None:
        cfg = load_config(d)
        stored_model = ModelConfig.from_dict(cfg["model"])
        if stored_model != self.model_config:
            raise ValueError(
                f"--resume: {d}/config.json describes another model ({_differences(stored_model, self.model_config)})"
            )
        stored = dict(cfg["train"])
        done = stored.pop("epochs_done", None)
        now = asdict(self.config)
        fixed = {k: v for k, v in stored.items() if k not in ("epochs", *RESUMABLE) and now.get(k) != v}
        if fixed:
            diff = ", ".join(f"{k}: {stored[k]!r} -> {now.get(k)!r}" for k in sorted(fixed))
            raise ValueError(f"--resume: the run in {d} was trained with other options ({diff})")
        if stored.get("epochs") != self.config.epochs and (
            self.config.schedule != "none" or self.config.noise_schedule != "constant"
        ):
            raise ValueError(
                f"--resume: the run in {d} planned {stored.get('epochs')} epochs and its schedules depend on "
                f"that number; resume it with --epochs {stored.get('epochs')}"
            )
        state = load_train_state(d)
        if state["epoch"] != done:
            raise ValueError(
                f"--resume: {d}/{TRAIN_STATE} is at epoch {state['epoch']} but config.json says {done} epochs "
                "are done; the folder was changed by something else"
            )
        if done > self.config.epochs:
            raise ValueError(
                f"--resume: the run in {d} has {done} epochs already, more than --epochs {self.config.epochs}"
            )
        model, _ = load_checkpoint(d)
        self.model.load_state_dict(model.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        if self.homeostasis is not None:
            self.homeostasis.running = dict(state.get("homeostasis_running", {}))
            self.homeostasis.initial = dict(state.get("homeostasis_initial", {}))
        self._initial = {k: v.to(self.device) for k, v in state["initial"].items()}
        self._resume_state = state
        self.epoch = self.saved_epoch = done
        self._replace = []

    def noise_std(self) -> float:
        """The std of the input noise in the current epoch (``input_noise`` times its schedule's factor)."""
        return self.config.input_noise * self._noise_scale

    def encode(self, x: Tensor, temporal: bool = False) -> Tensor:
        """A batch from a data set -> model input. Static images go through the encoder; samples that are
        already sequences (event frames, ``data.temporal``: [B, T, ...]) become time-first [T, B, ...]. Event
        counts stay uint8 for LFP (the engine takes sparse ones as index lists) and become floats for the
        other methods."""
        x = x.to(self.device)
        if temporal:
            if not self.spiking:
                raise ValueError("sequence data (events) needs a spiking model; got an ANN architecture")
            x = x.transpose(0, 1)
            if x.dtype == torch.uint8 and self.config.method == "lfp":
                return x  # event counts stay uint8: the engine takes sparse ones as index lists
            return x.to(self.dtype)
        x = x.to(self.dtype)  # the data are float32; a float64 model gets float64 inputs
        return self.encoder(x, self.generator) if self.encoder is not None else x

    def lif_layers(self) -> dict[str, LIF]:
        """The model's LIF layers by module path."""
        return {n: m for n, m in self.model.named_modules() if isinstance(m, LIF)}

    def evaluate(self, data, batch_size: int | None = None) -> dict:
        """Accuracy on an :class:`lfp_snn.data.ArrayDataset` (or an event :class:`FrameDataset`)."""
        self.model.eval()
        correct, n = 0, 0
        temporal = getattr(data, "temporal", False)
        for x, y in data.batches(batch_size or self.config.eval_batch_size, shuffle=False):
            out = (
                run(self.model, self.encode(x, temporal), plan=self.eval_plan)
                if self.spiking
                else self._ann_forward(x)
            )
            correct += int((predictions(out, self.spiking).cpu() == y).sum())
            n += len(y)
        self.model.train()
        return {"accuracy": correct / max(n, 1)}

    def _ann_forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.model(x.to(self.device))

    def fit(self, train, test=None, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
        """Train for ``config.epochs`` epochs (those not done yet when resuming); return one metrics dict per
        epoch trained here (``on_epoch`` sees each)."""
        c = self.config
        temporal = getattr(train, "temporal", False)
        check_run(self.model_config, c, temporal)
        self._check_data(train, "train")
        if test is not None:
            self._check_data(test, "test")
        per_epoch = math.ceil(len(train) / c.batch_size)
        self.scheduler = lr_scheduler(self.optimizer, c.schedule, c.lr, per_epoch, c.epochs)
        if self._resume_state is not None and self.scheduler is not None:
            self.scheduler.load_state_dict(self._resume_state["scheduler"])
        if self._initial is None:
            self._initial = {
                n: p.detach().clone() for n, p in self.model.named_parameters() if n.endswith("weight")
            }
        history = []
        for _ in range(self.epoch, c.epochs):
            record = self._epoch(train)
            record.update(
                {f"test_{k}": v for k, v in (self.evaluate(test).items() if test is not None else [])}
            )
            record["sign_changed"] = sign_changed(self.model, self._initial)
            history.append(record)
            if self.out_dir is not None:
                self._write(record)
            if on_epoch is not None:
                on_epoch(record)
        return history

    def _check_data(self, data, split: str) -> None:
        """A clear error when ``data`` does not fit the model config (sample shape, classes) or is empty."""
        name = getattr(data, "name", split)
        if len(data) == 0:
            raise ValueError(f"{split} data {name!r} holds no samples")
        shape = sample_shape(data)
        if tuple(shape) != tuple(self.model_config.input_shape):
            raise ValueError(
                f"{split} data {name!r} has samples of shape {list(shape)}, but the model config was made for "
                f"input_shape {list(self.model_config.input_shape)}"
            )
        if data.classes > self.model_config.classes:
            raise ValueError(
                f"{split} data {name!r} has {data.classes} classes, but the model has "
                f"{self.model_config.classes} outputs"
            )

    def _write(self, record: dict) -> None:
        """Write the epoch's metrics, the checkpoint and the training state into ``out_dir``."""
        d = self.out_dir
        d.mkdir(parents=True, exist_ok=True)
        for name in self._replace:  # overwrite=True: the old run's files go when the new run's first arrive
            (d / name).unlink(missing_ok=True)
        self._replace = []
        self._write_metrics(record)
        save_checkpoint(d, self.model, self.model_config, self._run_config())
        save_train_state(d, self._train_state())
        self.saved_epoch = self.epoch
        for p in (
            d / f"metrics.{self.config.metrics_format}",
            d / "config.json",
            d / "model.pt",
            d / TRAIN_STATE,
        ):
            if p not in self.written:
                self.written.append(p)

    def _train_state(self) -> dict:
        h = self.homeostasis
        return {
            "epoch": self.epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "generator": self.generator.get_state(),
            "initial": {k: v.detach().cpu() for k, v in self._initial.items()},
            "homeostasis_running": {k: v.cpu() for k, v in h.running.items()} if h is not None else {},
            "homeostasis_initial": {k: v.cpu() for k, v in h.initial.items()} if h is not None else {},
        }

    def _run_config(self) -> dict:
        return {**asdict(self.config), "epochs_done": self.epoch}

    def _epoch(self, train) -> dict:
        c = self.config
        self.model.train()
        self._noise_scale = noise_scale(c.noise_schedule, self.epoch, c.epochs)
        batches = train.batches(c.batch_size, shuffle=True, generator=self.generator)
        total = math.ceil(len(train) / c.batch_size)
        bar = None
        if c.progress and _is_terminal(sys.stderr):  # in a log file, the per-epoch lines are the record
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


RESUMABLE = ("progress",)
"""TrainConfig fields a resumed run may change (besides ``epochs``)."""


def check_writable_folder(d: Path) -> None:
    """Raise ValueError unless ``d`` is a folder (or can be made one) that this process can write into."""
    if d.exists() and not d.is_dir():
        raise ValueError(f"the output folder {d} is a file; give a folder")
    probe = d
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ValueError(f"the output folder {d} cannot be made: {probe} is a file")
    try:  # a real file, not os.access: that says yes to root on a read-only file system
        fd, name = tempfile.mkstemp(prefix=".lfp-snn-write-test-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise ValueError(f"the output folder {d} cannot be written: {probe}: {e.strerror}") from None


def _check_model(model: nn.Module) -> None:
    params = list(model.parameters())
    if not params:
        raise ValueError("the model has no parameters: there is nothing to train")
    meta = [n for n, p in model.named_parameters() if p.is_meta]
    if meta:
        raise ValueError(
            f"the model's parameters are on the meta device (no data), e.g. {meta[0]!r}; materialise them first "
            "(model.to_empty(device='cpu') and load weights, or build the model on a real device)"
        )
    dtypes = sorted({str(p.dtype) for p in params})
    if len(dtypes) > 1:
        raise ValueError(
            f"the model mixes parameter dtypes {dtypes}; use one (model.float() or model.double())"
        )


def _differences(a: ModelConfig, b: ModelConfig) -> str:
    da, db = a.to_dict(), b.to_dict()
    return ", ".join(f"{k}: {da[k]!r} -> {db[k]!r}" for k in da if da[k] != db[k])


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


def sign_changed(model: nn.Module, initial: dict[str, Tensor]) -> float:
    """Share of the weights in ``initial`` (name -> the weights at the start) whose sign has changed."""
    changed = total = 0
    for n, p in model.named_parameters():
        if n in initial:
            changed += int((torch.sign(p.detach()) != torch.sign(initial[n])).sum())
            total += p.numel()
    return changed / max(total, 1)
