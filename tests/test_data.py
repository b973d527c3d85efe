"""Tests for lfp_snn.data: digits, IDX reading/writing, IDX folders, the MNIST downloader, load_dataset.

No test touches the network: the downloader is exercised against a local http.server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from lfp_snn import data
from lfp_snn.data import (
    DATASETS,
    IDX_FILES,
    ArrayDataset,
    DownloadError,
    IdxFormatError,
    download_mnist,
    load_dataset,
    load_digits,
    load_idx_folder,
    read_idx,
    write_idx,
)

# --------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------


def make_idx_folder(
    root: Path, n_train: int = 30, n_test: int = 12, gz: bool = True, dotted: bool = False, seed: int = 0
) -> dict[str, np.ndarray]:
    """Write a tiny MNIST-like folder (5x4 images, 3 classes) and return the arrays by file stem."""
    rng = np.random.default_rng(seed)
    arrays = {
        IDX_FILES[0]: rng.integers(0, 256, size=(n_train, 5, 4), dtype=np.uint8),
        IDX_FILES[1]: (np.arange(n_train) % 3).astype(np.uint8),
        IDX_FILES[2]: rng.integers(0, 256, size=(n_test, 5, 4), dtype=np.uint8),
        IDX_FILES[3]: (np.arange(n_test) % 3).astype(np.uint8),
    }
    root.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        name = stem.replace("-idx", ".idx") if dotted else stem
        write_idx(root / (name + (".gz" if gz else "")), array)
    return arrays


def toy_dataset(n: int = 40, classes: int = 4) -> ArrayDataset:
    """A dataset whose image i is filled with i / n, so samples can be identified from x alone."""
    x = (torch.arange(n, dtype=torch.float32) / n).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()
    y = torch.arange(n) % classes
    return ArrayDataset(x, y, classes, "toy")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.requests.append(self.path)
        super().do_GET()


@pytest.fixture()
def http_folder(tmp_path: Path) -> Iterator[tuple[Path, str, list[str]]]:
    """Serve tmp_path/'served' on 127.0.0.1; yields (served folder, base URL, list of requested paths)."""
    served = tmp_path / "served"
    served.mkdir()
    requests: list[str] = []
    handler = type("Handler", (_QuietHandler,), {"requests": requests})
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(served))
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}/", requests
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def md5_map(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.gz"))}


# --------------------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------------------


def test_digits_shapes_and_range() -> None:
    train, test = load_digits()
    assert len(train) + len(test) == 1797
    assert len(test) == pytest.approx(0.25 * 1797, abs=1)
    for ds in (train, test):
        assert ds.x.dtype == torch.float32 and ds.y.dtype == torch.int64
        assert ds.x.shape[1:] == (1, 8, 8)
        assert ds.input_shape == (1, 8, 8)
        assert ds.classes == 10
        assert float(ds.x.min()) == 0.0 and float(ds.x.max()) == 1.0
    assert train.name == "digits-train" and test.name == "digits-test"


def test_digits_split_is_deterministic_and_seed_dependent() -> None:
    a_train, a_test = load_digits(seed=3)
    b_train, b_test = load_digits(seed=3)
    c_train, _ = load_digits(seed=4)
    assert torch.equal(a_train.x, b_train.x) and torch.equal(a_test.y, b_test.y)
    assert not torch.equal(a_train.x, c_train.x)


def test_digits_split_is_stratified() -> None:
    train, test = load_digits(test_fraction=0.3)
    train_counts = torch.bincount(train.y, minlength=10).double()
    test_counts = torch.bincount(test.y, minlength=10).double()
    share = test_counts / (train_counts + test_counts)
    assert torch.all((share - 0.3).abs() < 0.02), share


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_digits_rejects_bad_test_fraction(bad: float) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(test_fraction=bad)


# --------------------------------------------------------------------------------------------------------
# ArrayDataset
# --------------------------------------------------------------------------------------------------------


def test_array_dataset_indexing() -> None:
    ds = toy_dataset(10, classes=2)
    x, y = ds[7]
    assert len(ds) == 10
    assert x.shape == (1, 2, 2) and float(x[0, 0, 0]) == pytest.approx(0.7)
    assert int(y) == 1


@pytest.mark.parametrize(
    ("x", "y", "classes", "match"),
    [
        (torch.zeros(3, 1, 2, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.int64), 2, "float32"),
        (torch.zeros(3, 2, 2), torch.zeros(3, dtype=torch.int64), 2, r"\[N, C, H, W\]"),
        (torch.full((3, 1, 2, 2), 2.0), torch.zeros(3, dtype=torch.int64), 2, r"\[0, 1\]"),
        (torch.zeros(3, 1, 2, 2), torch.zeros(3, dtype=torch.int32), 2, "int64"),
        (torch.zeros(3, 1, 2, 2), torch.tensor([0, 1, 2]), 2, r"\[0, 2\)"),
        (torch.zeros(3, 1, 2, 2), torch.zeros(4, dtype=torch.int64), 2, "3 images but 4 labels"),
        (torch.zeros(3, 1, 2, 2), torch.zeros(3, dtype=torch.int64), 0, "classes=0"),
    ],
)
def test_array_dataset_validates(x: torch.Tensor, y: torch.Tensor, classes: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ArrayDataset(x, y, classes, "bad")


def test_subset_is_stratified_and_deterministic() -> None:
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    ds = ArrayDataset(torch.rand(100, 1, 2, 2), y, 3, "skewed")
    sub = ds.subset(10, seed=1)
    assert len(sub) == 10
    assert torch.bincount(sub.y, minlength=3).tolist() == [5, 3, 2]
    again = ds.subset(10, seed=1)
    other = ds.subset(10, seed=2)
    assert torch.equal(sub.x, again.x)
    assert not torch.equal(sub.x, other.x)


def test_subset_rounding_keeps_the_requested_size() -> None:
    ds = toy_dataset(40, classes=3)  # class counts 14, 13, 13
    for n in (1, 7, 11, 39, 40):
        sub = ds.subset(n, seed=0)
        assert len(sub) == n
        assert len(set(sub.x[:, 0, 0, 0].tolist())) == n  # no sample drawn twice
        counts = torch.bincount(sub.y, minlength=3)
        assert int(counts.max() - counts.min()) <= 1


def test_subset_random_mode_and_bounds() -> None:
    ds = toy_dataset(40)
    sub = ds.subset(8, seed=5, stratified=False)
    assert len(sub) == 8
    assert torch.equal(sub.x, ds.subset(8, seed=5, stratified=False).x)
    for bad in (0, 41, -1):
        with pytest.raises(ValueError, match=rf"n={bad}.*\[1, 40\]"):
            ds.subset(bad)


def test_batches_without_shuffle_keep_order() -> None:
    ds = toy_dataset(10)
    batches = list(ds.batches(4, shuffle=False))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b[0] for b in batches]), ds.x)
    assert torch.equal(torch.cat([b[1] for b in batches]), ds.y)
    assert [len(b[1]) for b in ds.batches(4, shuffle=False, drop_last=True)] == [4, 4]


def test_batches_shuffle_is_seeded_and_covers_everything() -> None:
    ds = toy_dataset(23)
    first = list(ds.batches(5, shuffle=True, generator=torch.Generator().manual_seed(7)))
    second = list(ds.batches(5, shuffle=True, generator=torch.Generator().manual_seed(7)))
    third = list(ds.batches(5, shuffle=True, generator=torch.Generator().manual_seed(8)))
    xs = torch.cat([b[0] for b in first])
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, second))
    assert not torch.equal(xs, torch.cat([b[0] for b in third]))
    assert not torch.equal(xs, ds.x)
    assert sorted(xs[:, 0, 0, 0].tolist()) == sorted(ds.x[:, 0, 0, 0].tolist())
    # labels travel with their images
    ys = torch.cat([b[1] for b in first])
    assert torch.equal(ys, (xs[:, 0, 0, 0] * 23).round().long() % 4)


def test_batches_rejects_bad_batch_size() -> None:
    with pytest.raises(ValueError, match="batch_size=0"):
        toy_dataset().batches(0, shuffle=False)


# --------------------------------------------------------------------------------------------------------
# IDX reading and writing
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(7, dtype=np.uint8),
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-3, 0, 5], dtype=np.int8),
        np.arange(-6, 6, dtype=np.int16).reshape(3, 4),
        np.array([[1, -70000], [2**30, 0]], dtype=np.int32),
        np.linspace(-1, 1, 6, dtype=np.float32).reshape(1, 2, 3),
        np.array([np.pi, -np.e], dtype=np.float64),
    ],
    ids=["u8-1d", "u8-3d", "i8", "i16", "i32", "f32", "f64"],
)
def test_idx_round_trip(tmp_path: Path, array: np.ndarray, suffix: str) -> None:
    path = write_idx(tmp_path / f"a-idx{suffix}", array)
    back = read_idx(path)
    assert back.dtype == array.dtype and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    raw = path.read_bytes()
    assert raw.startswith(b"\x1f\x8b") == (suffix == ".gz")


def test_idx_header_layout(tmp_path: Path) -> None:
    path = write_idx(tmp_path / "labels", np.array([1, 2, 3], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 1, 2, 3])


def test_read_idx_gunzips_by_content_too(tmp_path: Path) -> None:
    write_idx(tmp_path / "x.gz", np.arange(5, dtype=np.uint8))
    (tmp_path / "x.gz").rename(tmp_path / "x-no-suffix")
    np.testing.assert_array_equal(read_idx(tmp_path / "x-no-suffix"), np.arange(5))


def test_write_idx_rejects_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="int64.*accepted dtypes"):
        write_idx(tmp_path / "bad", np.arange(3, dtype=np.int64))


@pytest.mark.parametrize(
    ("mangle", "match"),
    [
        (lambda b: b[:-5], r"truncated IDX data, expected 4\d+ bytes .* got 4\d+ bytes"),
        (lambda b: b + b"\0", "trailing bytes"),
        (lambda b: b"\x01" + b[1:], "magic number"),
        (lambda b: b[:2] + b"\x0a" + b[3:], "unknown IDX dtype code 0x0A"),
        (lambda b: b[:6], r"truncated header, expected 16 bytes"),
        (lambda b: b[:2], "expected at least a 4-byte IDX header, got 2 bytes"),
    ],
    ids=["truncated", "trailing", "magic", "dtype", "header", "tiny"],
)
def test_read_idx_corrupt_raw(tmp_path: Path, mangle, match: str) -> None:
    good = write_idx(tmp_path / "img-idx3-ubyte", np.zeros((2, 15, 15), dtype=np.uint8)).read_bytes()
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(mangle(good))
    with pytest.raises(IdxFormatError, match=match) as info:
        read_idx(bad)
    assert str(bad) in str(info.value)


def test_read_idx_truncated_gz(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    good = write_idx(tmp_path / "good.gz", rng.integers(0, 256, (50, 28, 28), dtype=np.uint8))
    bad = tmp_path / "bad.gz"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(IdxFormatError, match="corrupt or truncated gzip") as info:
        read_idx(bad)
    assert str(bad) in str(info.value)


def test_read_idx_valid_gzip_with_truncated_payload(tmp_path: Path) -> None:
    payload = b"\0\0\x08\x01\0\0\0\x0a" + bytes(4)  # header says 10 uint8 values, only 4 follow
    bad = tmp_path / "short.gz"
    bad.write_bytes(gzip.compress(payload))
    with pytest.raises(IdxFormatError, match=r"expected 18 bytes .* got 12 bytes") as info:
        read_idx(bad)
    assert str(bad) in str(info.value)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        read_idx(tmp_path / "nope")


# --------------------------------------------------------------------------------------------------------
# IDX folders
# --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("gz", "dotted"), [(True, False), (False, False), (True, True), (False, True)])
def test_load_idx_folder(tmp_path: Path, gz: bool, dotted: bool) -> None:
    arrays = make_idx_folder(tmp_path, gz=gz, dotted=dotted)
    train, test = load_idx_folder(tmp_path, name="toy")
    assert (len(train), len(test)) == (30, 12)
    assert train.x.shape == (30, 1, 5, 4) and test.x.shape == (12, 1, 5, 4)
    assert train.classes == test.classes == 3
    assert train.name == "toy-train" and test.name == "toy-test"
    expected = torch.from_numpy(arrays[IDX_FILES[0]]).float().unsqueeze(1) / 255
    assert torch.allclose(train.x, expected)
    assert train.y.tolist() == arrays[IDX_FILES[1]].tolist()


def test_load_idx_folder_missing_folder(tmp_path: Path) -> None:
    folder = tmp_path / "does-not-exist"
    with pytest.raises(FileNotFoundError) as info:
        load_idx_folder(folder)
    message = str(info.value)
    assert str(folder) in message and "does not exist" in message
    assert all(name in message for name in IDX_FILES)


def test_load_idx_folder_missing_one_file(tmp_path: Path) -> None:
    make_idx_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="lacks t10k-labels-idx1-ubyte") as info:
        load_idx_folder(tmp_path)
    assert all(name in str(info.value) for name in IDX_FILES)


def test_load_idx_folder_count_mismatch(tmp_path: Path) -> None:
    make_idx_folder(tmp_path, n_train=5)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="5 images in .* but 4 labels"):
        load_idx_folder(tmp_path)


def test_load_idx_folder_rejects_non_image_array(tmp_path: Path) -> None:
    make_idx_folder(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((30, 20), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"expected uint8 images \[N, H, W\]"):
        load_idx_folder(tmp_path)


# --------------------------------------------------------------------------------------------------------
# download_mnist (local HTTP server only)
# --------------------------------------------------------------------------------------------------------


def test_download_from_local_server(tmp_path: Path, http_folder) -> None:
    served, url, requests = http_folder
    make_idx_folder(served)
    dest = tmp_path / "dest"
    got = download_mnist(dest, urls=[url], md5=md5_map(served), timeout=5)
    assert got == dest
    for p in served.iterdir():
        assert (dest / p.name).read_bytes() == p.read_bytes()
    assert sorted(p.name for p in dest.iterdir()) == sorted(p.name for p in served.iterdir())
    train, test = load_idx_folder(dest)
    assert (len(train), len(test)) == (30, 12)
    assert len(requests) == 4
    download_mnist(dest, urls=[url], md5=md5_map(served), timeout=5)
    assert len(requests) == 4  # everything present and valid: no new request


def test_download_falls_back_to_next_mirror(tmp_path: Path, http_folder) -> None:
    served, url, requests = http_folder
    make_idx_folder(served)
    download_mnist(tmp_path / "d", urls=[url + "missing/", url], md5=md5_map(served), timeout=5)
    assert len(list((tmp_path / "d").iterdir())) == 4
    assert sum(r.startswith("/missing/") for r in requests) == 4


def test_download_replaces_an_invalid_existing_file(tmp_path: Path, http_folder) -> None:
    served, url, _ = http_folder
    make_idx_folder(served)
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "train-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    download_mnist(dest, urls=[url], md5=md5_map(served), timeout=5)
    assert (dest / "train-labels-idx1-ubyte.gz").read_bytes() == (
        served / "train-labels-idx1-ubyte.gz"
    ).read_bytes()


def test_download_md5_mismatch_raises_and_leaves_no_file(tmp_path: Path, http_folder) -> None:
    served, url, _ = http_folder
    make_idx_folder(served)
    md5 = md5_map(served)
    md5["t10k-images-idx3-ubyte.gz"] = "0" * 32
    dest = tmp_path / "d"
    with pytest.raises(DownloadError, match="MD5 mismatch") as info:
        download_mnist(dest, urls=[url], md5=md5, timeout=5)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value) and "0" * 32 in str(info.value)
    names = {p.name for p in dest.iterdir()}
    assert "t10k-images-idx3-ubyte.gz" not in names
    assert not any(name.endswith(".part") or name.startswith(".") for name in names)


def test_download_unreachable_mirror_raises(tmp_path: Path, http_folder) -> None:
    _, url, _ = http_folder  # nothing served: every request is a 404
    with pytest.raises(DownloadError, match="404") as info:
        download_mnist(tmp_path / "d", urls=[url], md5={"a.gz": "0" * 32}, timeout=5)
    assert url + "a.gz" in str(info.value)
    assert list((tmp_path / "d").iterdir()) == []


def test_default_mnist_md5s_are_well_formed() -> None:
    assert sorted(data.MNIST_MD5) == sorted(f"{stem}.gz" for stem in IDX_FILES)
    assert all(len(v) == 32 and int(v, 16) >= 0 for v in data.MNIST_MD5.values())


# --------------------------------------------------------------------------------------------------------
# load_dataset
# --------------------------------------------------------------------------------------------------------


def test_load_dataset_digits() -> None:
    train, test = load_dataset("digits")
    assert train.input_shape == (1, 8, 8) and len(train) + len(test) == 1797


@pytest.mark.parametrize("prefix", ["idx", "mnist", "fashion-mnist"])
def test_load_dataset_with_folder(tmp_path: Path, prefix: str) -> None:
    make_idx_folder(tmp_path)
    train, test = load_dataset(f"{prefix}:{tmp_path}")
    assert (len(train), len(test)) == (30, 12)
    assert train.name == f"{prefix}-train"


def test_load_dataset_root_argument(tmp_path: Path) -> None:
    make_idx_folder(tmp_path)
    train, _ = load_dataset("mnist", root=tmp_path)
    assert len(train) == 30
    with pytest.raises(ValueError, match="must be None"):
        load_dataset(f"mnist:{tmp_path}", root=tmp_path)


def test_load_dataset_mnist_uses_env_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LFP_SNN_DATA", str(tmp_path))
    assert data.default_mnist_root() == tmp_path / "mnist"
    make_idx_folder(tmp_path / "mnist", n_train=9)
    assert len(load_dataset("mnist")[0]) == 9


def test_load_dataset_mnist_absent_explains_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LFP_SNN_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        load_dataset("mnist")
    message = str(info.value)
    assert "download=True" in message and "--download" in message
    assert str(tmp_path / "mnist") in message and IDX_FILES[0] in message


def test_load_dataset_mnist_download(tmp_path: Path, http_folder, monkeypatch: pytest.MonkeyPatch) -> None:
    served, url, _ = http_folder
    make_idx_folder(served)
    monkeypatch.setattr(data.mnist, "MNIST_MIRRORS", (url,))
    monkeypatch.setattr(data.mnist, "MNIST_MD5", md5_map(served))
    train, test = load_dataset(f"mnist:{tmp_path / 'm'}", download=True)
    assert (len(train), len(test)) == (30, 12)


def test_load_dataset_fashion_absent_explains(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_dataset("fashion-mnist", root=tmp_path / "none")


@pytest.mark.parametrize("spec", ["cifar", "digits:/tmp", "idx", "mnist:", "MNIST", "cifar10:", ""])
def test_load_dataset_unknown_spec(spec: str) -> None:
    with pytest.raises(ValueError, match="accepted") as info:
        load_dataset(spec)
    assert "fashion-mnist:<folder>" in str(info.value) and "'digits'" in str(info.value)


def test_datasets_tuple() -> None:
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "idx", "cifar10", "cifar100", "cifar100-coarse")


def test_cifar_absent_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"CIFAR10 not found at .*none: pass download=True"):
        load_dataset(f"cifar10:{tmp_path / 'none'}")


# --------------------------------------------------------------------------------------------------------
# real data
# --------------------------------------------------------------------------------------------------------


@pytest.mark.realdata
def test_fashion_mnist_from_debian_package() -> None:
    if not data.FASHION_MNIST_DIR.is_dir():
        pytest.skip(
            f"{data.FASHION_MNIST_DIR} is absent; "
            "install the Debian package dataset-fashion-mnist to run this test"
        )
    train, test = load_dataset("fashion-mnist")
    assert (len(train), len(test)) == (60000, 10000)
    assert train.input_shape == (1, 28, 28) and test.input_shape == (1, 28, 28)
    assert train.classes == test.classes == 10
    assert torch.bincount(train.y, minlength=10).tolist() == [6000] * 10
    assert torch.bincount(test.y, minlength=10).tolist() == [1000] * 10
    assert float(train.x.min()) == 0.0 and float(train.x.max()) == 1.0
