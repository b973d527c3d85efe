"""lfp_snn.distributed: data-parallel training over 2 gloo processes matches one process on the whole batch."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from lfp_snn.data import load_dataset
from lfp_snn.distributed import DistributedTrainer, shard_bounds
from lfp_snn.models import ModelConfig
from lfp_snn.training import TrainConfig, Trainer

ROOT = Path(__file__).resolve().parents[1]

LOOPBACK = {"GLOO_SOCKET_IFNAME": "lo", "MASTER_ADDR": "127.0.0.1"}

# name -> (model config kwargs, train config kwargs). 100 samples in batches of 33: shards of 17/16, and a last
# batch of one sample, where rank 1's shard is empty.
CASES = {
    "snn-lfp-adam": (
        {"arch": "spiking-small", "hidden": (32,)},
        {"method": "lfp", "rule": "epsilon", "optimizer": "adam", "lr": 1e-2, "steps": 4},
    ),
    "snn-zplus-rate-sgd": (
        {"arch": "spiking-small", "hidden": (32,)},
        {
            "method": "lfp",
            "rule": "zplus-zminus",
            "optimizer": "sgd",
            "lr": 0.05,
            "steps": 4,
            "encoder": "rate",
        },
    ),
    "ann-lfp": ({"arch": "mlp", "hidden": (32, 16)}, {"method": "lfp", "rule": "epsilon", "lr": 1e-2}),
    "ann-gradient-sgd": (
        {"arch": "mlp", "hidden": (32, 16)},
        {"method": "gradient", "optimizer": "sgd", "lr": 0.1},
    ),
}
if importlib.util.find_spec("snntorch") is not None:
    CASES["snn-bptt-snntorch"] = (
        {"arch": "spiking-small", "hidden": (32,)},
        {"method": "bptt-snntorch", "optimizer": "sgd", "lr": 0.5, "steps": 4},
    )


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _data():
    train, test = load_dataset("digits")
    return train.subset(100, seed=0), test.subset(60, seed=0)


def _configs(name: str):
    mkw, tkw = CASES[name]
    mc = ModelConfig(input_shape=(1, 8, 8), **mkw)
    tc = TrainConfig(epochs=2, batch_size=33, eval_batch_size=25, seed=3, progress=False, **tkw)
    return mc, tc


def _worker(rank: int, world: int, init: str, out: str) -> None:
    os.environ.update(LOOPBACK)
    torch.set_num_threads(1)
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        train, test = _data()
        for name in CASES:
            mc, tc = _configs(name)
            trainer = DistributedTrainer(mc, tc)
            history = trainer.fit(train, test)
            state = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            torch.save({"state": state, "history": history}, Path(out) / f"{name}-rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    init = f"file://{out / 'store'}"
    mp.spawn(_worker, args=(2, init, str(out)), nprocs=2, join=True)
    return out


def test_shard_bounds_partition_the_batch():
    for n in range(0, 12):
        for world in (1, 2, 3, 5):
            bounds = [shard_bounds(n, world, r) for r in range(world)]
            assert sum(s for _, s in bounds) == n
            assert [a for a, _ in bounds] == [sum(s for _, s in bounds[:r]) for r in range(world)]
            assert max(s for _, s in bounds) - min(s for _, s in bounds) <= 1
            sizes = [len(c) for c in torch.tensor_split(torch.arange(n), world)]
            assert [s for _, s in bounds] == sizes


def test_one_process_is_a_plain_trainer():
    train, test = _data()
    mc, tc = _configs("snn-lfp-adam")
    a = Trainer(mc, tc)
    ha = a.fit(train, test)
    b = DistributedTrainer(mc, tc)
    hb = b.fit(train, test)
    assert b.world_size == 1
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])
    assert [h["test_accuracy"] for h in ha] == [h["test_accuracy"] for h in hb]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_two_gloo_processes_match_one_process(two_ranks, name):
    """Same weights (1e-5) after 2 epochs of 4 steps each (uneven shards, one empty), same metrics."""
    train, test = _data()
    mc, tc = _configs(name)
    single = Trainer(mc, tc)
    history = single.fit(train, test)
    r0 = torch.load(two_ranks / f"{name}-rank0.pt")
    r1 = torch.load(two_ranks / f"{name}-rank1.pt")
    for k, v in single.model.state_dict().items():
        assert torch.equal(r0["state"][k], r1["state"][k]), f"{name}: ranks disagree on {k}"
        torch.testing.assert_close(r0["state"][k], v, atol=1e-5, rtol=1e-5, msg=f"{name}: {k}")
    init = torch.load(two_ranks / f"{name}-rank0.pt")["state"]
    assert any(not torch.equal(init[k], v) for k, v in Trainer(mc, tc).model.state_dict().items()), (
        "no update"
    )
    for hs, hd in zip(history, r0["history"]):
        assert hd["train_accuracy"] == pytest.approx(hs["train_accuracy"], abs=1e-9)
        assert hd["test_accuracy"] == pytest.approx(hs["test_accuracy"], abs=1e-9)
        assert hd["objective"] == pytest.approx(hs["objective"], rel=1e-5, abs=1e-6)
        for k, v in hs.items():
            if k.startswith(("spike_rate/", "silent/")):
                assert hd[k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    assert r0["history"][-1]["test_accuracy"] == r1["history"][-1]["test_accuracy"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_torchrun_cli_matches_single_process(tmp_path):
    """`torchrun -m lfp_snn.distributed train` on 2 CPU processes: rank 0 writes the checkpoint, whose weights
    match the same command run as one process."""
    args = [
        "train",
        "--data",
        "digits",
        "--subset",
        "120",
        "--test-subset",
        "60",
        "--arch",
        "spiking-small",
        "--hidden",
        "32",
        "-T",
        "4",
        "--epochs",
        "1",
        "--batch-size",
        "30",
        "--lr",
        "1e-2",
        "--threads",
        "1",
        "--no-progress",
    ]
    env = {**os.environ, **LOOPBACK, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}  # this checkout
    torchrun = [sys.executable, "-m", "torch.distributed.run"]
    launch = ["--nnodes", "1", "--nproc-per-node", "2", "--master-addr", "127.0.0.1"]
    launch += ["--master-port", str(_free_port())]
    cmd = [*torchrun, *launch, "-m", "lfp_snn.distributed", *args, "--out", str(tmp_path / "ddp")]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "2 process(es) (gloo" in p.stdout and p.stdout.count("result test accuracy") == 1
    single = [sys.executable, "-m", "lfp_snn.distributed", *args, "--out", str(tmp_path / "one")]
    p1 = subprocess.run(single, env=env, capture_output=True, text=True, timeout=300)
    assert p1.returncode == 0, p1.stdout + p1.stderr
    assert "not launched by torchrun" in p1.stderr
    a = torch.load(tmp_path / "ddp" / "model.pt")
    b = torch.load(tmp_path / "one" / "model.pt")
    for k in b:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)
    assert (tmp_path / "ddp" / "metrics.jsonl").read_text().count("\n") == 1
    assert '"world_size": 2' in (tmp_path / "ddp" / "config.json").read_text()
