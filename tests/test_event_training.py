"""Event data for training: FrameDataset, load_event_dataset specs, and `lfp-snn train` on event data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from lfp_snn.data import FASHION_MNIST_DIR
from lfp_snn.encoders.events import ToFrames
from lfp_snn.events import make_events, write_dvsgesture_npy, write_nmnist_bin, write_shd
from lfp_snn.events.training_data import (
    EVENT_SPECS,
    LIMIT_ENV,
    FrameDataset,
    default_emulation_cache,
    is_event_spec,
    load_event_dataset,
    parse_limit,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _no_env_limit(monkeypatch):
    monkeypatch.delenv(LIMIT_ENV, raising=False)


def random_events(
    rng: np.random.Generator, n: int, size=(34, 34), p: int = 2, t_max: int = 300_000
) -> np.ndarray:
    t = np.sort(rng.integers(0, t_max, n))
    return make_events(rng.integers(0, size[0], n), rng.integers(0, size[1], n), t, rng.integers(0, p, n))


# --------------------------------------------------------------------------------------------------------------
# specs
# --------------------------------------------------------------------------------------------------------------


def test_is_event_spec():
    for spec in (
        "nmnist:/x",
        "shd:/a/shd_train.h5",
        "dvsgesture:d",
        "emulated-digits",
        "emulated-fashion-mnist",
    ):
        assert is_event_spec(spec)
    assert is_event_spec("emulated-mnist:/data/mnist")
    assert is_event_spec("emulated-cifar")  # mistyped emulated specs get this module's error
    for spec in ("digits", "mnist", "fashion-mnist:/f", "idx:/f", ""):
        assert not is_event_spec(spec)
    assert set(EVENT_SPECS) == {
        "nmnist",
        "shd",
        "dvsgesture",
        "emulated-digits",
        "emulated-fashion-mnist",
        "emulated-mnist",
    }


@pytest.mark.parametrize(
    "spec, match",
    [
        ("emulated-cifar", "unknown event data spec.*nmnist:<folder>.*emulated-digits"),
        ("nmnist", "needs a path"),
        ("shd:", "without a path"),
        ("emulated-digits:/somewhere", "takes no path"),
    ],
)
def test_bad_specs(spec, match):
    with pytest.raises(ValueError, match=match):
        load_event_dataset(spec, steps=5)


@pytest.mark.parametrize("steps", [0, -1, 2.5, True])
def test_bad_steps(steps):
    with pytest.raises(ValueError, match="steps"):
        load_event_dataset("emulated-digits", steps=steps)


def test_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="N-MNIST"):
        load_event_dataset(f"nmnist:{tmp_path / 'nope'}", steps=5)
    with pytest.raises(FileNotFoundError, match="SHD"):
        load_event_dataset(f"shd:{tmp_path / 'shd_train.h5'}", steps=5)
    with pytest.raises(FileNotFoundError, match="DVS Gesture"):
        load_event_dataset(f"dvsgesture:{tmp_path}", steps=5)


def test_parse_limit():
    assert parse_limit(None) is None
    assert parse_limit(100) == (100, 100)
    assert parse_limit("all") == (None, None)
    assert parse_limit("500") == (500, 500)
    assert parse_limit("6000, 1000") == (6000, 1000)
    assert parse_limit("all,200") == (None, 200)
    assert parse_limit((10, None)) == (10, None)
    for bad in (0, -3, "x", "1,2,3", (1,), True, 2.5):
        with pytest.raises(ValueError, match="limit"):
            parse_limit(bad)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("LFP_SNN_DATA", str(tmp_path))
    assert default_emulation_cache() == tmp_path / "emulated"
    monkeypatch.delenv("LFP_SNN_DATA")
    assert default_emulation_cache() == Path.home() / ".cache" / "lfp-snn" / "emulated"


# --------------------------------------------------------------------------------------------------------------
# FrameDataset
# --------------------------------------------------------------------------------------------------------------


def make_frames(n: int = 40, classes: int = 4, seed: int = 0) -> FrameDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 5, (n, 6, 2, 5, 5), generator=g, dtype=torch.uint8)
    y = torch.arange(n) % classes
    return FrameDataset(x, y, classes, "toy", (5, 5, 2))


def test_frame_dataset_contract():
    ds = make_frames()
    assert FrameDataset.temporal is True and ds.temporal
    assert len(ds) == 40 and ds.steps == 6 and ds.input_shape == (2, 5, 5) and ds.sensor_size == (5, 5, 2)
    xi, yi = ds[3]
    assert xi.dtype == torch.float32 and xi.shape == (6, 2, 5, 5) and int(yi) == 3
    batches = list(ds.batches(16, shuffle=False))
    assert [len(b[1]) for b in batches] == [16, 16, 8]
    x0, y0 = batches[0]
    # uint8 counts stay uint8 (the engine's sparse path takes them as they are)
    assert x0.dtype == torch.uint8 and x0.shape == (16, 6, 2, 5, 5) and y0.dtype == torch.int64
    assert torch.equal(x0, ds.x[:16])
    assert [len(b[1]) for b in ds.batches(16, shuffle=False, drop_last=True)] == [16, 16]
    with pytest.raises(ValueError, match="batch_size"):
        ds.batches(0, shuffle=False)


def test_frame_dataset_seeded_batches():
    ds = make_frames()

    def order(seed):
        return torch.cat([y for _, y in ds.batches(8, True, torch.Generator().manual_seed(seed))])

    a, b, c = order(1), order(1), order(2)
    assert torch.equal(a, b) and not torch.equal(a, c)
    xs = torch.cat([x for x, _ in ds.batches(8, True, torch.Generator().manual_seed(1))])
    assert sorted(torch.unique(xs.sum((1, 2, 3, 4))).tolist()) == sorted(
        torch.unique(ds.x.float().sum((1, 2, 3, 4))).tolist()
    )


def test_frame_dataset_subset_is_stratified_and_seeded():
    x = torch.zeros(100, 3, 4, dtype=torch.uint8)
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    x[:, 0, 0] = torch.arange(100, dtype=torch.uint8)  # sample id
    ds = FrameDataset(x, y, 3, "toy", (4, 1, 1))
    sub = ds.subset(10, seed=3)
    assert len(sub) == 10 and sub.name == "toy[10]" and sub.sensor_size == (4, 1, 1)
    assert torch.bincount(sub.y, minlength=3).tolist() == [5, 3, 2]
    ids = sub.x[:, 0, 0].long()
    assert torch.equal(ids, torch.sort(ids).values)  # original order kept
    assert torch.equal(y[ids], sub.y)
    assert torch.equal(ds.subset(10, seed=3).x, sub.x) and not torch.equal(ds.subset(10, seed=4).x, sub.x)
    for bad in (0, 101, 2.0):
        with pytest.raises(ValueError, match="subset"):
            ds.subset(bad)


def test_frame_dataset_validation():
    x = torch.zeros(4, 3, 7, dtype=torch.uint8)
    with pytest.raises(ValueError, match="labels must lie"):
        FrameDataset(x, torch.tensor([0, 1, 2, 5]), 3, "t", (7, 1, 1))
    with pytest.raises(ValueError, match="counts must match"):
        FrameDataset(x, torch.tensor([0, 1, 2]), 3, "t", (7, 1, 1))
    with pytest.raises(ValueError, match="uint8, float16 or float32"):
        FrameDataset(x.long(), torch.tensor([0, 1, 2, 0]), 3, "t", (7, 1, 1))
    with pytest.raises(ValueError, match="int64"):
        FrameDataset(x, torch.tensor([0, 1, 2, 0], dtype=torch.int32), 3, "t", (7, 1, 1))
    with pytest.raises(ValueError, match="3 dims"):
        FrameDataset(torch.zeros(4, 3, dtype=torch.uint8), torch.tensor([0, 1, 2, 0]), 3, "t", (7, 1, 1))


def test_from_events_storage():
    rng = np.random.default_rng(0)
    dense = make_events(np.zeros(600, int), 0, np.zeros(600, int), 0)  # 600 events on one pixel, one bin
    events = [random_events(rng, 50, (3, 1), p=1), dense]
    enc = ToFrames((3, 1, 1), n_time_bins=2)
    auto = FrameDataset.from_events(events, [0, 1], enc)
    assert auto.x.dtype == torch.float16 and float(auto.x[1].sum()) == 600 and auto.classes == 2
    small = FrameDataset.from_events(events[:1], [0], enc, classes=3)
    assert small.x.dtype == torch.uint8 and int(small.x.sum()) == 50 and small.classes == 3
    clipped = FrameDataset.from_events(events, [0, 1], enc, storage="uint8")
    assert clipped.x.dtype == torch.uint8 and int(clipped.x[1].max()) == 255
    with pytest.raises(ValueError, match="storage"):
        FrameDataset.from_events(events, [0, 1], enc, storage="int4")
    with pytest.raises(ValueError, match="n_time_bins"):
        FrameDataset.from_events(events, [0, 1], ToFrames((3, 1, 1), time_window=1000.0))


# --------------------------------------------------------------------------------------------------------------
# specs on files written here
# --------------------------------------------------------------------------------------------------------------


def write_nmnist_folder(
    root: Path, per_class: dict[str, int], seed: int = 0
) -> dict[str, list[tuple[int, int]]]:
    """Random recordings ``root/<Split>/<digit>/<k>.bin``; returns split -> [(label, n_events)] in file order."""
    rng = np.random.default_rng(seed)
    written: dict[str, list[tuple[int, int]]] = {}
    for split, k in per_class.items():
        written[split] = []
        for digit in range(10):
            d = root / split / str(digit)
            d.mkdir(parents=True)
            for j in range(k):
                n = int(rng.integers(20, 300))
                write_nmnist_bin(d / f"{j:05d}.bin", random_events(rng, n))
                written[split].append((digit, n))
    return written


def test_nmnist_folder(tmp_path):
    written = write_nmnist_folder(tmp_path, {"Train": 3, "Test": 1})
    train, test = load_event_dataset(f"nmnist:{tmp_path}", steps=7)
    assert train.x.shape == (30, 7, 2, 34, 34) and test.x.shape == (10, 7, 2, 34, 34)
    assert train.x.dtype == torch.uint8 and train.classes == 10 and train.name == "nmnist-train"
    assert train.sensor_size == (34, 34, 2) and train.class_names == tuple(str(i) for i in range(10))
    for ds, split in ((train, "Train"), (test, "Test")):
        labels, counts = zip(*written[split])
        assert ds.y.tolist() == list(labels)
        assert ds.x.long().sum((1, 2, 3, 4)).tolist() == list(counts)  # no event lost at bin edges
    small, small_test = load_event_dataset(f"nmnist:{tmp_path}", steps=3, limit=(10, None), downsample=2)
    assert small.x.shape == (10, 3, 2, 17, 17) and sorted(small.y.tolist()) == list(range(10))
    assert len(small_test) == 10


def test_dvsgesture_folder_is_pooled_to_32(tmp_path):
    rng = np.random.default_rng(3)
    counts = {}
    for split, users in (("ibmGestureTrain", (1, 2)), ("ibmGestureTest", (3,))):
        counts[split] = []
        for u in users:
            d = tmp_path / split / f"user{u:02d}_led"
            d.mkdir(parents=True)
            for label in (0, 4, 10):
                n = int(rng.integers(50, 400))
                ev = random_events(rng, n, (128, 128))
                ev["t"] = ev["t"] // 1000 * 1000  # the format stores whole ms
                write_dvsgesture_npy(d / f"{label}.npy", ev)
                counts[split].append((label, n))
    train, test = load_event_dataset(f"dvsgesture:{tmp_path}", steps=5)
    assert train.x.shape == (6, 5, 2, 32, 32) and test.x.shape == (3, 5, 2, 32, 32)
    assert (
        train.classes == 11 and train.sensor_size == (128, 128, 2) and train.class_names[0] == "hand clapping"
    )
    for ds, split in ((train, "ibmGestureTrain"), (test, "ibmGestureTest")):
        labels, n = zip(*counts[split])
        assert ds.y.tolist() == list(labels) and ds.x.long().sum((1, 2, 3, 4)).tolist() == list(n)
    full, _ = load_event_dataset(f"dvsgesture:{tmp_path}", steps=2, downsample=1)
    assert full.x.shape == (6, 2, 2, 128, 128)


def test_shd_with_test_file_and_split(tmp_path):
    rng = np.random.default_rng(1)

    def samples(n):
        ev = [random_events(rng, int(rng.integers(5, 200)), (700, 1), p=1, t_max=900_000) for _ in range(n)]
        return ev, [i % 5 for i in range(n)]

    tr_ev, tr_y = samples(25)
    te_ev, te_y = samples(10)
    keys = [f"word{i}" for i in range(5)]
    write_shd(tmp_path / "shd_train.h5", tr_ev, tr_y, keys=keys)
    write_shd(tmp_path / "shd_test.h5", te_ev, te_y, keys=keys)
    train, test = load_event_dataset(f"shd:{tmp_path / 'shd_train.h5'}", steps=9)
    assert train.x.shape == (25, 9, 700) and test.x.shape == (10, 9, 700)
    assert train.input_shape == (700,) and train.classes == 5 and train.class_names == tuple(keys)
    assert train.x.long().sum((1, 2)).tolist() == [len(e) for e in tr_ev]
    assert test.x.long().sum((1, 2)).tolist() == [len(e) for e in te_ev]
    assert train.y.tolist() == tr_y and test.y.tolist() == te_y

    write_shd(tmp_path / "words.h5", tr_ev, tr_y)  # no partner file: seeded stratified 80/20 split
    a, b = load_event_dataset(f"shd:{tmp_path / 'words.h5'}", steps=4)
    assert (len(a), len(b)) == (20, 5) and sorted(b.y.tolist()) == list(range(5))
    counts = sorted(a.x.long().sum((1, 2)).tolist() + b.x.long().sum((1, 2)).tolist())
    assert counts == sorted(len(e) for e in tr_ev)
    a2, b2 = load_event_dataset(f"shd:{tmp_path / 'words.h5'}", steps=4)
    assert torch.equal(a.x, a2.x) and torch.equal(b.y, b2.y)


def test_emulated_digits_cache_and_reload(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    train, test = load_event_dataset("emulated-digits", steps=6, limit=100, cache_dir=cache)
    assert train.x.shape == (100, 6, 2, 12, 12) and test.x.shape == (100, 6, 2, 12, 12)
    assert train.sensor_size == (12, 12, 2) and train.classes == 10 and train.name == "emulated-digits-train"
    assert torch.bincount(train.y, minlength=10).min() >= 9  # stratified cap
    folders = sorted(cache.glob("saccades-*"))
    assert len(folders) == 2
    offsets = [np.load(f / "offsets.npy") for f in folders]
    sums = sorted(int(v) for ds in (train, test) for v in ds.x.long().sum((1, 2, 3, 4)))
    assert sums == sorted(int(v) for o in offsets for v in np.diff(o))  # the window keeps every event
    stamp = [f.stat().st_mtime_ns for f in folders]
    train2, test2 = load_event_dataset("emulated-digits", steps=6, limit=100, cache_dir=cache)
    assert [f.stat().st_mtime_ns for f in folders] == stamp and len(list(cache.glob("saccades-*"))) == 2
    assert torch.equal(train.x, train2.x) and torch.equal(test.y, test2.y)
    monkeypatch.setenv(LIMIT_ENV, "50,20")
    a, b = load_event_dataset("emulated-digits", steps=6, cache_dir=False)
    assert (len(a), len(b)) == (50, 20)


@pytest.mark.realdata
@pytest.mark.skipif(
    not FASHION_MNIST_DIR.is_dir(), reason="Fashion-MNIST (Debian dataset-fashion-mnist) absent"
)
def test_emulated_fashion_mnist_limit(tmp_path):
    train, test = load_event_dataset("emulated-fashion-mnist", steps=5, limit=(40, 20), cache_dir=tmp_path)
    assert train.x.shape == (40, 5, 2, 34, 34) and test.x.shape == (20, 5, 2, 34, 34)
    assert torch.bincount(train.y, minlength=10).tolist() == [4] * 10
    assert float(train.x.float().sum((1, 2, 3, 4)).min()) > 100


# --------------------------------------------------------------------------------------------------------------
# lfp-snn train on event data
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_home(tmp_path_factory):
    return tmp_path_factory.mktemp("lfp_snn_data")


def run_cli(argv, capsys) -> dict:
    from lfp_snn import cli

    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    line = [s for s in out.splitlines() if s.startswith("result ")][-1]
    return json.loads(line[len("result ") :])


@pytest.mark.parametrize("method", ["lfp-epsilon", "bptt-snntorch"])
def test_cli_train_emulated_digits(method, data_home, monkeypatch, capsys):
    if method == "bptt-snntorch":
        pytest.importorskip("snntorch")
    monkeypatch.setenv("LFP_SNN_DATA", str(data_home))
    monkeypatch.setenv(LIMIT_ENV, "200,100")
    argv = ["train", "--data", "emulated-digits", "--arch", "spiking-lenet", "-T", "5", "--epochs", "1"]
    result = run_cli([*argv, "--subset", "100", "--method", method, "--no-progress"], capsys)
    assert 0.0 <= result["test_accuracy"] <= 1.0
    assert (data_home / "emulated").is_dir()


def test_cli_train_shd_mlp(tmp_path, capsys):
    rng = np.random.default_rng(2)
    ev = [random_events(rng, int(rng.integers(20, 200)), (700, 1), p=1, t_max=500_000) for _ in range(30)]
    write_shd(tmp_path / "shd_train.h5", ev, [i % 3 for i in range(30)])
    argv = ["train", "--data", f"shd:{tmp_path / 'shd_train.h5'}", "--arch", "spiking-small", "-T", "4"]
    result = run_cli([*argv, "--epochs", "1", "--hidden", "16", "--no-progress"], capsys)
    assert 0.0 <= result["test_accuracy"] <= 1.0


def test_training_on_sparse_event_frames_reaches_the_sparse_input_path(monkeypatch):
    """Event frames reach the engine as uint8 counts, and a sparse enough first layer input is kept as index
    lists (the path the benchmark's B figure comes from; that it gives the feedback of the same frames as
    floats is tests/test_engine_modes.py's)."""
    from lfp_snn.models import ModelConfig
    from lfp_snn.ops import values
    from lfp_snn.training import TrainConfig, Trainer

    g = torch.Generator().manual_seed(0)
    x = ((torch.rand(32, 6, 2, 5, 5, generator=g) < 0.05) * torch.randint(1, 3, (32, 6, 2, 5, 5), generator=g))
    ds = FrameDataset(x.to(torch.uint8), torch.arange(32) % 4, 4, "toy", (5, 5, 2))
    made = []
    real = values.SparseRows.__init__

    def spy(self, source):
        made.append(source.dtype)
        real(self, source)

    monkeypatch.setattr(values.SparseRows, "__init__", spy)
    mc = ModelConfig(arch="spiking-mlp", input_shape=(2, 5, 5), classes=4, hidden=(16,))
    cfg = TrainConfig(epochs=1, batch_size=16, steps=6, progress=False)
    Trainer(mc, cfg).fit(ds)
    assert made and all(d == torch.uint8 for d in made)


def test_shd_input_size_and_classes_come_from_the_file_and_the_option(tmp_path):
    """An SHD-layout file with 40 units and 3 classes builds 40 inputs and 3 outputs (not 700 and 20);
    classes= sets more outputs, fewer than the labels need is an error naming the files."""
    from lfp_snn.events.training_data import load_event_dataset

    rng = np.random.default_rng(0)
    events = []
    for _ in range(12):
        n = 30
        units = rng.integers(0, 40, n)
        units[0] = 39  # the highest unit fires somewhere
        events.append(make_events(units, 0, np.sort(rng.integers(0, 100_000, n)), 0))
    path = tmp_path / "toy_train.h5"
    write_shd(path, events, [i % 3 for i in range(12)], keys=["a", "b", "c"])
    train, test = load_event_dataset(f"shd:{path}", steps=5)
    assert train.input_shape == (40,) and train.classes == 3 and train.class_names == ("a", "b", "c")
    more, _ = load_event_dataset(f"shd:{path}", steps=5, classes=5)
    assert more.classes == 5 and more.class_names == ("a", "b", "c", "3", "4")
    with pytest.raises(ValueError, match=r"classes=2 is fewer than the labels need: .* up to 2; give at least 3"):
        load_event_dataset(f"shd:{path}", steps=5, classes=2)


def test_classes_on_static_images_is_refused(tmp_path, capsys):
    from lfp_snn.cli import main

    assert main(["train", "--classes", "12", "--out", str(tmp_path / "r")]) == 2
    assert "--classes does not apply" in capsys.readouterr().err
