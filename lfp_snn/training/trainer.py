"""The training loop: encoding, one method's steps, update clipping, the optimiser, evaluation, metrics per
epoch (JSON lines or CSV), checkpoints and a progress bar."""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor, nn

from ..checkpoint import save_checkpoint
from ..encoders import get_encoder
from ..engine import run
from ..models import ModelConfig, build_model, is_spiking_arch
from ..neurons import LIF
from ..rewards import get_reward
from .config import TrainConfig
from .methods import METHODS
from .schedules import lr_scheduler, noise_scale
from .step import predictions
from .updates import clip_updates, make_optimizer


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
        self.optimizer = make_optimizer(
            self.model.parameters(), config.optimizer, config.lr, config.momentum, config.weight_decay
        )
        self.scheduler = None
        self.epoch = 0
        self.step_fn = METHODS[config.method](self)
        self._noise_scale = 1.0
        self.homeostasis = config.homeostasis_rule() if self.spiking else None

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
                return x
            return x.to(torch.get_default_dtype())
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
            out = run(self.model, self.encode(x, temporal)) if self.spiking else self._ann_forward(x)
            correct += int((predictions(out, self.spiking).cpu() == y).sum())
            n += len(y)
        self.model.train()
        return {"accuracy": correct / max(n, 1)}

    def _ann_forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.model(x.to(self.device))

    def fit(self, train, test=None, on_epoch: Callable[[dict], None] | None = None) -> list[dict]:
        """Train for ``config.epochs`` epochs; return one metrics dict per epoch (``on_epoch`` sees each)."""
        c = self.config
        self.scheduler = lr_scheduler(
            self.optimizer, c.schedule, c.lr, math.ceil(len(train) / c.batch_size), c.epochs
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
            record["sign_changed"] = sign_changed(self.model, initial)
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
        self._noise_scale = noise_scale(c.noise_schedule, self.epoch, c.epochs)
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


def sign_changed(model: nn.Module, initial: dict[str, Tensor]) -> float:
    """Share of the weights in ``initial`` (name -> the weights at the start) whose sign has changed."""
    changed = total = 0
    for n, p in model.named_parameters():
        if n in initial:
            changed += int((torch.sign(p.detach()) != torch.sign(initial[n])).sum())
            total += p.numel()
    return changed / max(total, 1)
