"""Event readers/writers, folder data sets, the tonic adapter and the time-padding collate."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from lfp_snn.events import (
    DVSGESTURE_SENSOR_SIZE,
    EVENT_DTYPE,
    NMNIST_SENSOR_SIZE,
    SHD_SENSOR_SIZE,
    DVSGestureFolder,
    NMNISTFolder,
    SHDFile,
    as_events,
    from_tonic,
    make_events,
    pad_time,
    pad_time_collate,
    read_dvsgesture_npy,
    read_nmnist_bin,
    read_shd,
    write_dvsgesture_npy,
    write_nmnist_bin,
    write_shd,
)

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "nmnist-sample" / "sample.bin"
needs_sample = pytest.mark.skipif(
    not SAMPLE.is_file(), reason=f"real N-MNIST recording not found at {SAMPLE} (../shared is not mounted)"
)
P23 = 1 << 23


def random_events(rng, n, t_max, sensor=(34, 34, 2), sort=True):
    t = rng.integers(0, t_max + 1, n)
    if sort:
        t = np.sort(t)
    return make_events(
        rng.integers(0, sensor[0], n), rng.integers(0, sensor[1], n), t, rng.integers(0, sensor[2], n)
    )


# ---------------------------------------------------------------------------------------------- N-MNIST .bin


@pytest.mark.realdata
@needs_sample
def test_read_real_nmnist_sample():
    ev = read_nmnist_bin(SAMPLE)
    assert ev.dtype == EVENT_DTYPE
    assert len(ev) == 4325
    assert ev["x"].min() >= 0 and ev["x"].max() <= 33
    assert ev["y"].min() >= 0 and ev["y"].max() <= 33
    assert ev["t"].min() == 654 and ev["t"].max() == 311_175
    assert 0.4 < ev["p"].mean() < 0.6  # "about half ON"
    assert set(np.unique(ev["p"])) == {0, 1}


@pytest.mark.realdata
@needs_sample
def test_real_sample_matches_tonic_reader_and_round_trips(tmp_path):
    tonic_io = pytest.importorskip("tonic.io", reason="tonic (optional extra) is not installed")
    ours = read_nmnist_bin(SAMPLE)
    theirs = tonic_io.read_mnist_file(str(SAMPLE), dtype=np.dtype([(n, np.int64) for n in "xytp"]))
    for f in "xytp":
        np.testing.assert_array_equal(ours[f], theirs[f])
    out = tmp_path / "copy.bin"
    write_nmnist_bin(out, ours)
    assert out.read_bytes() == SAMPLE.read_bytes()


def test_nmnist_byte_layout(tmp_path):
    # x=5, y=7, ON, t=0x12345 -> 05 07 81 23 45; x=33, y=0, OFF, t=0x3FFFFF -> 21 00 3F FF FF
    path = tmp_path / "a.bin"
    path.write_bytes(bytes([5, 7, 0x81, 0x23, 0x45, 33, 0, 0x3F, 0xFF, 0xFF]))
    ev = read_nmnist_bin(path)
    assert ev.tolist() == [(5, 7, 0x12345, 1), (33, 0, 0x3FFFFF, 0)]
    write_nmnist_bin(tmp_path / "b.bin", ev)
    assert (tmp_path / "b.bin").read_bytes() == path.read_bytes()


def test_nmnist_round_trip_past_2_23_us(tmp_path):
    rng = np.random.default_rng(1)
    # 3 wraps: steps up to 2^22 - 1 µs apart (the documented limit), plus a few small backward steps
    steps = rng.integers(0, 1 << 20, 2000)
    steps[::97] = (1 << 22) - 1
    steps[5::101] = -rng.integers(1, 1000, len(steps[5::101]))
    t = 100 + np.cumsum(steps)
    assert t.max() > 3 * P23 and (np.diff(t) < 0).any()
    ev = make_events(rng.integers(0, 34, len(t)), rng.integers(0, 34, len(t)), t, rng.integers(0, 2, len(t)))
    path = tmp_path / "long.bin"
    write_nmnist_bin(path, ev)
    assert path.stat().st_size == 5 * len(ev)
    back = read_nmnist_bin(path)
    assert back.dtype == ev.dtype
    np.testing.assert_array_equal(back, ev)


def test_nmnist_backward_step_across_a_wrap_is_kept(tmp_path):
    t = np.array([P23 - 10, P23 + 5, P23 - 3, P23 + 4_000_000])  # slightly unsorted around the wrap
    ev = make_events([1, 2, 3, 4], [1, 1, 1, 1], t, [0, 1, 0, 1])
    write_nmnist_bin(tmp_path / "w.bin", ev)
    np.testing.assert_array_equal(read_nmnist_bin(tmp_path / "w.bin")["t"], t)


def test_nmnist_raw_wrap_is_unwrapped(tmp_path):
    # raw timestamps as a recorder would store them: 8_388_000, then wrap to 500 -> 2^23 + 500
    rec = []
    for x, ts in ((1, 8_388_000), (2, 500), (3, 600)):
        rec += [x, 0, ts >> 16, (ts >> 8) & 255, ts & 255]
    (tmp_path / "r.bin").write_bytes(bytes(rec))
    assert read_nmnist_bin(tmp_path / "r.bin")["t"].tolist() == [8_388_000, P23 + 500, P23 + 600]


def test_nmnist_overflow_marker_records(tmp_path):
    # reference readers: a record with y == 240 is no event and adds 2^13 µs to all later events
    rec = [1, 2, 0, 0, 10, 0, 240, 0, 0, 0, 3, 4, 0, 0, 20]
    (tmp_path / "m.bin").write_bytes(bytes(rec))
    ev = read_nmnist_bin(tmp_path / "m.bin")
    assert ev[["x", "y", "t"]].tolist() == [(1, 2, 10), (3, 4, 20 + 8192)]
    raw = read_nmnist_bin(tmp_path / "m.bin", overflow_markers=False)
    assert raw["y"].tolist() == [2, 240, 4] and raw["t"].tolist() == [10, 0, 20]


def test_nmnist_truncated_file_names_path_and_size(tmp_path):
    path = tmp_path / "cut.bin"
    path.write_bytes(bytes(12))
    with pytest.raises(ValueError, match=r"cut\.bin.*12 bytes.*multiple of 5"):
        read_nmnist_bin(path)


def test_nmnist_empty_file(tmp_path):
    (tmp_path / "e.bin").write_bytes(b"")
    ev = read_nmnist_bin(tmp_path / "e.bin")
    assert ev.dtype == EVENT_DTYPE and len(ev) == 0


@pytest.mark.parametrize(
    "x, y, t, p, match",
    [
        ([256], [0], [0], [0], "x=256"),
        ([0], [240], [0], [0], "y=240"),
        ([0], [0], [0], [2], "p=2"),
        ([0], [0], [-1], [0], "t=-1"),
        ([0], [0], [P23], [0], "first event"),
        ([0, 0], [0, 0], [0, 1 << 22], [0, 0], "4194304 µs apart"),
    ],
)
def test_write_nmnist_rejects_unstorable_events(tmp_path, x, y, t, p, match):
    with pytest.raises(ValueError, match=match):
        write_nmnist_bin(tmp_path / "x.bin", make_events(x, y, t, p))


def test_as_events_converts_tonic_style_arrays():
    src = np.zeros(3, dtype=[("t", float), ("x", int), ("p", bool)])
    src["t"] = [0.4, 1.6, 2.5]
    src["x"] = [1, 2, 699]
    src["p"] = [False, True, False]
    ev = as_events(src)
    assert ev.dtype == EVENT_DTYPE
    assert ev.tolist() == [(1, 0, 0, 0), (2, 0, 2, 1), (699, 0, 2, 0)]
    with pytest.raises(ValueError, match=r"missing \['p'\]"):
        as_events(np.zeros(2, dtype=[("x", int), ("t", int)]))


# ---------------------------------------------------------------------------------------------- SHD .h5


def write_shd_like_published(path, times, units, labels, extra=True):
    """Write the SHD layout exactly as the published files have it (vlen float / vlen uint16)."""
    with h5py.File(path, "w") as f:
        st = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.dtype("float32")))
        su = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.dtype("uint16")))
        for i, (t, u) in enumerate(zip(times, units)):
            st[i] = np.asarray(t, np.float32)
            su[i] = np.asarray(u, np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, np.uint16))
        if extra:
            f.create_dataset("extra/speaker", data=np.arange(len(labels), dtype=np.uint16))
            f.create_dataset("extra/keys", data=np.array([b"zero", b"one", b"two"]))


def test_read_shd_published_layout(tmp_path):
    times = [[0.0, 0.0105, 0.5], [0.25], []]
    units = [[0, 699, 3], [42], []]
    write_shd_like_published(tmp_path / "s.h5", times, units, [2, 0, 1])
    events, labels = read_shd(tmp_path / "s.h5")
    assert labels.tolist() == [2, 0, 1] and labels.dtype == np.int64
    assert [len(e) for e in events] == [3, 1, 0]
    assert events[0].dtype == EVENT_DTYPE
    assert events[0]["t"].tolist() == [0, 10_500, 500_000]  # s -> µs, rounded
    assert events[0]["x"].tolist() == [0, 699, 3]
    assert (events[0]["y"] == 0).all() and (events[0]["p"] == 0).all()
    assert events[1].tolist() == [(42, 0, 250_000, 0)]


def test_read_shd_missing_dataset_lists_expected_and_found(tmp_path):
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f.create_dataset("spikes/times", data=np.zeros(2))
        f.create_dataset("targets", data=np.zeros(2))
    with pytest.raises(ValueError, match=r"missing \['spikes/units', 'labels'\].*holds.*targets"):
        read_shd(tmp_path / "bad.h5")


def test_write_shd_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    evs = [random_events(rng, n, 1_000_000, SHD_SENSOR_SIZE) for n in (5, 0, 300)]
    write_shd(tmp_path / "w.h5", evs, [3, 1, 19], keys=[f"k{i}" for i in range(20)])
    back, labels = read_shd(tmp_path / "w.h5")
    assert labels.tolist() == [3, 1, 19]
    for a, b in zip(evs, back):
        np.testing.assert_array_equal(a["x"], b["x"])
        np.testing.assert_array_equal(a["t"], b["t"])  # float32 seconds keep whole µs below ~1 s


def test_shd_file_dataset(tmp_path):
    write_shd_like_published(tmp_path / "s.h5", [[0.1, 0.2], [0.3]], [[1, 2], [3]], [1, 2])
    ds = SHDFile(tmp_path / "s.h5", transform=len)
    assert len(ds) == 2 and ds.sensor_size == (700, 1, 1) == SHD_SENSOR_SIZE
    assert ds.classes == ["zero", "one", "two"]
    assert ds[0] == (2, 1) and ds[1] == (1, 2)
    clone = pickle.loads(pickle.dumps(ds))  # after a read: the open h5 handle must not be pickled
    assert clone[1] == (1, 2)
    write_shd_like_published(tmp_path / "n.h5", [[0.1]], [[1]], [4], extra=False)
    assert SHDFile(tmp_path / "n.h5").classes == ["0", "1", "2", "3", "4"]


def test_shd_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="shd_train.h5"):
        SHDFile(tmp_path / "shd_train.h5")
    with h5py.File(tmp_path / "empty.h5", "w"):
        pass
    with pytest.raises(ValueError, match=r"spikes/times.*holds nothing"):
        SHDFile(tmp_path / "empty.h5")


# ---------------------------------------------------------------------------------------------- DVS Gesture


def test_dvsgesture_npy_reader(tmp_path):
    arr = np.array([[10, 20, 1, 0], [127, 0, 0, 5], [0, 127, 1, 1234]], dtype=np.int64)  # x, y, p, t (ms)
    np.save(tmp_path / "3.npy", arr)
    ev = read_dvsgesture_npy(tmp_path / "3.npy")
    assert ev.tolist() == [(10, 20, 0, 1), (127, 0, 5000, 0), (0, 127, 1_234_000, 1)]
    np.save(tmp_path / "f.npy", arr.astype(np.float64))
    np.testing.assert_array_equal(read_dvsgesture_npy(tmp_path / "f.npy"), ev)
    write_dvsgesture_npy(tmp_path / "w.npy", ev)
    np.testing.assert_array_equal(np.load(tmp_path / "w.npy"), arr)
    np.save(tmp_path / "bad.npy", np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"\[N, 4\].*\(4, 3\)"):
        read_dvsgesture_npy(tmp_path / "bad.npy")
    with pytest.raises(ValueError, match="t=1500"):
        write_dvsgesture_npy(tmp_path / "x.npy", make_events([0], [0], [1500], [0]))


def make_gesture_tree(base: Path, users=(1, 2), labels=range(11), n=20):
    rng = np.random.default_rng(3)
    for u in users:
        d = base / f"user{u:02d}_fluorescent_led"
        d.mkdir(parents=True)
        for lab in labels:
            ev = random_events(rng, n, 50_000, DVSGESTURE_SENSOR_SIZE)
            ev["t"] = ev["t"] // 1000 * 1000
            write_dvsgesture_npy(d / f"{lab}.npy", ev)


def test_dvsgesture_folder(tmp_path):
    make_gesture_tree(tmp_path / "ibmGestureTest", users=(24, 25))
    ds = DVSGestureFolder(tmp_path, split="test")
    assert len(ds) == 22 and ds.sensor_size == (128, 128, 2) and len(ds.classes) == 11
    assert ds.targets == list(range(11)) * 2  # numeric order: 0, 1, ..., 10
    assert ds.users == [24] * 11 + [25] * 11 and ds.lighting[0] == "fluorescent_led"
    ev, label = ds[12]
    assert label == 1 and ev.dtype == EVENT_DTYPE and len(ev) == 20
    with pytest.raises(
        FileNotFoundError, match=r"ibmGestureTrain/user<NN>_<lighting>/<0-10>\.npy.*ibmGestureTest"
    ):
        DVSGestureFolder(tmp_path, split="train")


def test_dvsgesture_folder_matches_tonic(tmp_path):
    tonic = pytest.importorskip("tonic", reason="tonic (optional extra) is not installed")
    base = tmp_path / "DVSGesture"
    make_gesture_tree(base / "ibmGestureTrain", users=tuple(range(1, 11)))  # tonic wants >= 100 files
    (base / "ibmGestureTrain.tar.gz").write_bytes(b"")  # tonic checks the archive exists; nothing downloads
    theirs = tonic.datasets.DVSGesture(str(tmp_path), train=True)
    ours = DVSGestureFolder(tmp_path, split="train")
    assert len(ours) == len(theirs) == 110
    key = {str(Path(p)): i for i, p in enumerate(theirs.data)}
    adapted = from_tonic(theirs)
    assert adapted.sensor_size == ours.sensor_size and len(adapted.classes) == 11
    for i in (0, 57, 109):
        j = key[str(ours.files[i])]
        ev, label = adapted[j]
        assert label == ours.targets[i]
        np.testing.assert_array_equal(ev, ours[i][0])


# ---------------------------------------------------------------------------------------------- N-MNIST folder


def make_nmnist_tree(base: Path, per_class=2):
    rng = np.random.default_rng(4)
    for split in ("Train", "Test"):
        for digit in range(10):
            d = base / split / str(digit)
            d.mkdir(parents=True)
            for k in range(per_class):
                write_nmnist_bin(d / f"{k:05d}.bin", random_events(rng, 10 + digit, 300_000))


def test_nmnist_folder(tmp_path):
    make_nmnist_tree(tmp_path)
    ds = NMNISTFolder(tmp_path, split="train")
    assert (
        len(ds) == 20 and ds.sensor_size == NMNIST_SENSOR_SIZE and ds.classes == [str(i) for i in range(10)]
    )
    ev, label = ds[7]
    assert label == 3 and len(ev) == 13 and ev.dtype == EVENT_DTYPE
    ds = NMNISTFolder(tmp_path, split="test", transform=lambda e: int(e["t"].max() <= 300_000))
    assert ds[19] == (1, 9)


def test_nmnist_folder_accepts_tonic_save_to(tmp_path):
    make_nmnist_tree(tmp_path / "NMNIST", per_class=1)
    assert len(NMNISTFolder(tmp_path, split="test")) == 10


def test_nmnist_folder_wrong_layout(tmp_path):
    (tmp_path / "train" / "3").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"Train/<digit 0-9>/\*\.bin.*holds \[train/\]"):
        NMNISTFolder(tmp_path)
    with pytest.raises(ValueError, match=r"split='val'.*'train' or 'test'"):
        NMNISTFolder(tmp_path, split="val")


# ---------------------------------------------------------------------------------------------- tonic adapter


def test_from_tonic_without_tonic_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "tonic", None)  # makes `import tonic` raise ImportError
    with pytest.raises(ImportError, match=r"pip install .*tonic"):
        from_tonic(object())


def test_from_tonic_converts_events():
    pytest.importorskip("tonic", reason="tonic (optional extra) is not installed")

    class Fake:  # anything shaped like a tonic data set (SHD-like: float t, no y)
        sensor_size = (700, 1, 1)
        classes = ["a", "b"]

        def __len__(self):
            return 1

        def __getitem__(self, i):
            ev = np.zeros(2, dtype=[("t", float), ("x", int), ("p", int)])
            ev["t"], ev["x"] = [1.4, 2.6], [3, 699]
            return ev, 1

    ds = from_tonic(Fake(), transform=lambda e: e["t"].tolist())
    assert len(ds) == 1 and ds.sensor_size == (700, 1, 1) and ds.classes == ["a", "b"]
    assert ds[0] == ([1, 3], 1)


# ---------------------------------------------------------------------------------------------- collate


def test_pad_time_and_collate():
    a = torch.ones(3, 2, 4)
    b = torch.full((5, 2, 4), 2.0)
    padded, lengths = pad_time([a, b])
    assert padded.shape == (5, 2, 2, 4) and lengths.tolist() == [3, 5]
    assert torch.equal(padded[:3, 0], a) and (padded[3:, 0] == 0).all() and torch.equal(padded[:, 1], b)
    x, y, lengths = pad_time_collate([(a, 4), (b, 7)])
    assert x.shape == (5, 2, 2, 4) and y.tolist() == [4, 7] and y.dtype == torch.int64
    with pytest.raises(ValueError, match=r"item 1 has shape \(5, 3\)"):
        pad_time([torch.zeros(2, 4), torch.zeros(5, 3)])


def test_collate_in_a_dataloader(tmp_path):
    from lfp_snn.encoders.events import ToFrames

    make_nmnist_tree(tmp_path, per_class=1)
    ds = NMNISTFolder(tmp_path, transform=ToFrames(NMNIST_SENSOR_SIZE, time_window=50_000))
    loader = torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=pad_time_collate)
    x, y, lengths = next(iter(loader))
    assert x.shape[1:] == (4, 2, 34, 34) and x.shape[0] == int(lengths.max())
    for i in range(4):
        assert x[:, i].sum().item() == 10 + y[i].item()  # every event counted once
        assert (x[lengths[i] :, i] == 0).all()
