"""Data-parallel training over several processes with ``torch.distributed`` (launched by ``torchrun``).

    torchrun --standalone --nproc-per-node 2 -m lfp_snn.distributed train --data fashion-mnist --epochs 5 ...

takes the ``lfp-snn train`` arguments. Every rank builds the same model (same seed; rank 0's weights are
broadcast once anyway) and walks the same global batch order (the shared seed drives shuffling and the input
encoders, which see the *whole* batch on every rank, so random encoders stay in step). Each rank then takes
its shard of the batch (``--batch-size`` is the global batch; rank r gets the r-th of ``world_size`` nearly
equal slices), runs the method's step on it, and the updates in ``p.grad`` are all-reduced before the
optimiser step:

- LFP feedback is a *sum* over samples, so the shards' feedback is summed (all-reduce SUM): the update equals
  the one a single process computes on the whole batch, up to float summation order;
- gradient methods (``gradient``, ``bptt-snntorch``, ``bptt-norse``) minimise a *mean* loss, so each rank's
  gradient is weighted by its shard's share of the batch before the SUM; R-STDP's update (``rstdp``) is a
  mean over the samples too and is reduced the same way (its hidden-layer reward is centred on each rank's
  shard, so the result differs slightly from the single-process update).

All ranks then apply the same reduced update with the same optimiser state, so their weights stay identical.
Outputs (for the training accuracy), objectives and spike counts are gathered too, so the metrics are those of
the global batch; evaluation is sharded the same way and its counts summed. Only rank 0 prints and writes
``--out`` (metrics, config, checkpoint). Collectives: gloo on CPUs, NCCL on GPUs (``--device cuda``: rank r
uses ``cuda:LOCAL_RANK``). Input noise (``--input-noise``) is drawn per rank, so with noise a distributed run
is statistically, not bitwise, the same as a single-process one.

In code, :class:`DistributedTrainer` is a :class:`~lfp_snn.training.Trainer` that does this inside an
initialised process group (or as a plain Trainer when there is none).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor

from .training import StepOutput, Trainer, predictions

# how a method's update depends on the batch: "sum" over samples (LFP feedback) or "mean" (a mean loss)
REDUCTIONS = {
    "lfp": "sum",
    "gradient": "mean",
    "bptt-snntorch": "mean",
    "bptt-norse": "mean",
    "rstdp": "mean",
}


def shard_bounds(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """``(start, size)`` of rank ``rank``'s slice of ``n`` samples: the first ``n % world_size`` ranks get one
    more (``torch.tensor_split``'s split)."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, base + (1 if rank < extra else 0)


def default_backend(device: torch.device | str) -> str:
    """NCCL for CUDA devices, gloo otherwise."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


class DistributedTrainer(Trainer):
    """A Trainer whose steps run data-parallel over the ranks of the default process group.

    Same arguments as :class:`~lfp_snn.training.Trainer`; call it on every rank with the same configs and data.
    ``out_dir`` is used on rank 0 only (the other ranks write nothing), and so is the progress bar. Without an
    initialised process group (or with one rank) it is a plain Trainer.
    """

    def __init__(
        self, model_config, config, out_dir=None, model=None, device="cpu", *, overwrite: bool = False
    ) -> None:
        self.world_size = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
        self.rank = dist.get_rank() if self.world_size > 1 else 0
        if self.world_size > 1 and config.reward_norm != "none":
            raise ValueError(
                f"reward_norm={config.reward_norm!r} divides by a maximum over the whole batch; each of the "
                f"{self.world_size} processes holds only its shard: train it in one process"
            )
        if self.rank != 0:
            config = dataclasses.replace(config, progress=False)
            out_dir, overwrite = None, False
        super().__init__(
            model_config, config, out_dir=out_dir, model=model, device=device, overwrite=overwrite
        )
        self.reduction = REDUCTIONS.get(config.method, "mean")
        if self.world_size == 1:
            return
        self._local_step = self.step_fn
        self.step_fn = self._distributed_step
        # input noise is drawn per rank, from its own stream: the shared generator (shuffling, encoders) must
        # stay in step on all ranks
        self._rank_generator = torch.Generator(device=self.device).manual_seed(
            config.seed * 1_000_003 + self.rank + 1
        )
        self._shapes: tuple[tuple[int, ...], torch.dtype, dict] | None = None
        with torch.no_grad():
            for t in self.model.state_dict().values():
                dist.broadcast(t, src=0)

    # ---------------------------------------------------------------------------------------------------
    def _batch_dim(self) -> int:
        return 1 if self.spiking else 0

    def _distributed_step(self, x: Tensor, y: Tensor) -> StepOutput:
        bdim = self._batch_dim()
        n = y.shape[0]
        start, size = shard_bounds(n, self.world_size, self.rank)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if size > 0:
            shared = self.generator
            self.generator = self._rank_generator
            try:
                out = self._local_step(x.narrow(bdim, start, size), y.narrow(0, start, size))
            finally:
                self.generator = shared
            self._shapes = (
                tuple(out.output.shape),
                out.output.dtype,
                {k: (tuple(v.shape), v.dtype) for k, v in out.spike_counts.items()},
            )
        else:
            if self._shapes is None:
                raise ValueError(
                    f"rank {self.rank} got no sample of a batch of {n} on its first step; the batch size must "
                    f"be at least the number of processes ({self.world_size})"
                )
            shape, dtype, counts = self._shapes
            shape = list(shape)
            shape[bdim] = 0
            out = StepOutput(
                torch.zeros(shape, dtype=dtype, device=self.device),
                0.0,
                {k: torch.zeros(s, dtype=d, device=self.device) for k, (s, d) in counts.items()},
            )
            for p in params:
                p.grad = None
        self._all_reduce_updates(params, size / n)
        return self._gather(out, n, size)

    def _all_reduce_updates(self, params: list, share: float) -> None:
        """SUM the ranks' ``p.grad`` in one flat buffer (weighted by ``share`` for mean-loss methods)."""
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1).to(torch.float32) for g in grads])
        if self.reduction == "mean":
            flat.mul_(share)
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        offset = 0
        for p, g in zip(params, grads):
            k = g.numel()
            p.grad = flat[offset : offset + k].view_as(p).to(p.dtype)
            offset += k

    def _gather(self, out: StepOutput, n: int, size: int) -> StepOutput:
        """The global batch's output (all-gathered, shards padded to equal size), mean objective and
        summed spike counts."""
        bdim = self._batch_dim()
        largest = shard_bounds(n, self.world_size, 0)[1]
        local = out.output.to(torch.float32)
        if size < largest:
            pad = list(local.shape)
            pad[bdim] = largest - size
            local = torch.cat([local, local.new_zeros(pad)], bdim)
        pieces = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(pieces, local.contiguous())
        output = torch.cat(
            [p.narrow(bdim, 0, shard_bounds(n, self.world_size, r)[1]) for r, p in enumerate(pieces)], bdim
        ).to(out.output.dtype)
        objective = torch.tensor([out.objective * size], dtype=torch.float64, device=self.device)
        dist.all_reduce(objective)
        counts = {}
        for k in sorted(out.spike_counts):
            v = out.spike_counts[k]
            c = v.to(torch.float64)
            dist.all_reduce(c)
            counts[k] = c.to(v.dtype)
        return StepOutput(output, float(objective) / max(n, 1), counts)

    # ---------------------------------------------------------------------------------------------------
    def evaluate(self, data, batch_size: int | None = None) -> dict:
        """Accuracy over ``data``, each rank classifying its shard of every batch (inputs are encoded for the
        whole batch on every rank, so random encoders draw the same numbers as a single process)."""
        if self.world_size == 1:
            return super().evaluate(data, batch_size)
        from .engine import run

        self.model.eval()
        temporal = getattr(data, "temporal", False)
        counts = torch.zeros(2, dtype=torch.float64, device=self.device)
        bdim = self._batch_dim()
        for x, y in data.batches(batch_size or self.config.eval_batch_size, shuffle=False):
            start, size = shard_bounds(len(y), self.world_size, self.rank)
            if not self.spiking:
                x = x.narrow(0, start, size)
            xs = self.encode(x, temporal)
            if size == 0:
                continue
            if self.spiking:
                out = run(self.model, xs.narrow(bdim, start, size), plan=self.eval_plan)
            else:
                out = self._ann_forward(xs)
            counts[0] += int((predictions(out, self.spiking).cpu() == y.narrow(0, start, size)).sum())
            counts[1] += size
        dist.all_reduce(counts)
        self.model.train()
        return {"accuracy": float(counts[0] / counts[1].clamp(min=1))}

    def _run_config(self) -> dict:
        backend = dist.get_backend() if self.world_size > 1 else None
        return {**super()._run_config(), "distributed": {"world_size": self.world_size, "backend": backend}}


# --------------------------------------------------------------------------------------------------------
# command line: python -m lfp_snn.distributed train ... (under torchrun)
# --------------------------------------------------------------------------------------------------------


def _env_int(name: str) -> int | None:
    v = os.environ.get(name)
    return int(v) if v not in (None, "") else None


def cmd_train(a: argparse.Namespace) -> int:
    from .cli.options import configs_from_args, load_run_data, refuse_unused_options, set_threads, value
    from .models import is_spiking_arch
    from .training.trainer import RUN_FILES, check_writable_folder

    world = _env_int("WORLD_SIZE") or 1
    rank = _env_int("RANK") or 0
    local_rank = _env_int("LOCAL_RANK") or 0
    if a.device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"--device must be cpu, cuda or auto, got {a.device!r}")
    use_cuda = a.device == "cuda" or (a.device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda was asked for, but torch sees no CUDA GPU here")
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    set_threads(a.threads)
    # everything that can refuse the run is checked on every rank before the ranks connect: a rank that
    # stopped alone would leave the others waiting in a collective
    train, test = load_run_data(a, value(a, "seed"))
    model_cfg, train_cfg = configs_from_args(a, train)
    refuse_unused_options(a, model_cfg, train_cfg, getattr(train, "temporal", False))
    if train_cfg.batch_size < world:
        raise ValueError(f"--batch-size {train_cfg.batch_size} is smaller than the {world} processes")
    if a.out is not None:
        out = Path(a.out)
        check_writable_folder(out)
        existing = [n for n in RUN_FILES if (out / n).exists()] if out.is_dir() else []
        if existing and not a.overwrite:
            raise FileExistsError(
                f"{out} holds a run already ({', '.join(existing)}); pass --overwrite to replace it, or choose "
                "another folder"
            )
    backend = a.dist_backend if a.dist_backend != "auto" else default_backend(device)
    if world > 1:
        dist.init_process_group(backend, init_method="env://", world_size=world, rank=rank)
    elif "RANK" not in os.environ:
        print(
            "note: not launched by torchrun (no RANK/WORLD_SIZE); training in this one process. Launch with "
            "`torchrun --standalone --nproc-per-node N -m lfp_snn.distributed train ...` for N processes.",
            file=sys.stderr,
        )
    say = print if rank == 0 else (lambda *args, **kw: None)
    try:
        trainer = DistributedTrainer(
            model_cfg, train_cfg, out_dir=a.out, device=device, overwrite=a.overwrite
        )
        spiking = is_spiking_arch(model_cfg.arch)
        what = f"{model_cfg.arch} ({f'T={train_cfg.steps}, β={model_cfg.beta}' if spiking else 'ANN'})"
        method = f"lfp-{train_cfg.rule}" if train_cfg.method == "lfp" else train_cfg.method
        say(
            f"training {what} on {a.data}: {len(train)} train / {len(test)} test samples, method {method}, "
            f"{train_cfg.epochs} epochs, {world} process(es) ({backend if world > 1 else 'no collectives'}), "
            f"global batch {train_cfg.batch_size}",
            flush=True,
        )
        t0 = time.perf_counter()

        def report(r: dict) -> None:
            say(
                f"epoch {r['epoch']:3d}  train acc {r['train_accuracy']:.4f}  test acc "
                f"{r.get('test_accuracy', float('nan')):.4f}  {r['time_s']:.1f}s",
                flush=True,
            )

        history = trainer.fit(train, test, on_epoch=report)
        final = history[-1]["test_accuracy"] if history else trainer.evaluate(test)["accuracy"]
        say(f"result test accuracy {final:.4f}  wall {time.perf_counter() - t0:.1f}s  ({world} processes)")
        if trainer.written:
            say(f"wrote {', '.join(str(p) for p in trainer.written)} (rank 0)")
        elif rank == 0:
            say("nothing written: " + ("no --out given" if a.out is None else "no epoch was trained"))
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .cli.options import add_train_arguments

    p = argparse.ArgumentParser(
        prog="python -m lfp_snn.distributed",
        description="Data-parallel lfp-snn training over processes; launch with "
        "`torchrun --standalone --nproc-per-node N -m lfp_snn.distributed train ...`.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser(
        "train",
        help="train data-parallel (the lfp-snn train arguments; --batch-size is the global batch)",
        description="The lfp-snn train arguments; every rank takes its shard of each global batch and the "
        "updates are all-reduced before the optimiser step.",
    )
    add_train_arguments(t)
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run in --out (its config.json, model.pt, train_state.pt and metrics)",
    )
    t.add_argument(
        "--dist-backend",
        default="auto",
        choices=("auto", "gloo", "nccl"),
        help="torch.distributed backend (default: nccl with --device cuda, gloo otherwise)",
    )
    t.set_defaults(func=cmd_train)
    return p


def main(argv: list[str] | None = None) -> int:
    from .cli import run_command

    return run_command(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
