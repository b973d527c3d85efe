"""CIFAR-10/100 from python-version batch folders the tests write themselves, the download against a local
server, and the errors for missing, truncated, malformed and malicious files."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from lfp_snn.data.cifar import (
    CifarFormatError,
    DownloadError,
    download_cifar,
    load_cifar_folder,
    read_batch,
    write_cifar_batch,
)


def _images(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def _cifar10(folder: Path, n=6) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(1, 6):
        write_cifar_batch(folder / f"data_batch_{i}", _images(n, i), [(i + k) % 10 for k in range(n)])
    write_cifar_batch(folder / "test_batch", _images(n, 9), list(range(n)))
    return folder


def test_cifar10_folder_loads_as_images_in_0_1(tmp_path):
    folder = _cifar10(tmp_path / "cifar-10-batches-py")
    train, test = load_cifar_folder(tmp_path, "cifar10")  # the folder holding the unpacked one works too
    assert train.x.shape == (30, 3, 32, 32) and test.x.shape == (6, 3, 32, 32) and train.classes == 10
    assert float(train.x.min()) >= 0 and float(train.x.max()) <= 1
    first = _images(6, 1)[2]
    np.testing.assert_allclose(train.x[2].numpy(), first / 255.0, rtol=1e-6)
    assert train.y[:6].tolist() == [1, 2, 3, 4, 5, 6]
    assert load_cifar_folder(folder, "cifar10")[1].y.tolist() == list(range(6))


def test_cifar100_fine_and_coarse_labels(tmp_path):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    for split, n in (("train", 8), ("test", 4)):
        imgs = _images(n, n)
        with (folder / split).open("wb") as fh:
            pickle.dump(
                {
                    b"data": imgs.reshape(n, -1),
                    b"fine_labels": [99 - k for k in range(n)],
                    b"coarse_labels": [k % 20 for k in range(n)],
                },
                fh,
            )
    train, test = load_cifar_folder(tmp_path, "cifar100")
    assert train.classes == 100 and train.y[0] == 99 and len(test) == 4
    coarse, _ = load_cifar_folder(folder, "cifar100", labels="coarse")
    assert coarse.classes == 20 and coarse.y.tolist() == [k % 20 for k in range(8)]


def test_a_missing_or_truncated_batch_names_the_file(tmp_path):
    folder = _cifar10(tmp_path / "c")
    (folder / "data_batch_3").unlink()
    with pytest.raises(CifarFormatError, match=r"data_batch_3: no such CIFAR batch file"):
        load_cifar_folder(folder)
    _cifar10(folder)
    raw = (folder / "data_batch_2").read_bytes()
    (folder / "data_batch_2").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(CifarFormatError, match=r"data_batch_2: not a readable CIFAR batch .*truncated"):
        load_cifar_folder(folder)
    with pytest.raises(CifarFormatError, match=r"no such folder; expected the unpacked cifar-10-batches-py"):
        load_cifar_folder(tmp_path / "nowhere")


def test_a_malformed_batch_says_what_is_expected(tmp_path):
    p = tmp_path / "b"
    with p.open("wb") as fh:
        pickle.dump({b"data": np.zeros((4, 100), dtype=np.uint8), b"labels": [0, 1, 2, 3]}, fh)
    with pytest.raises(CifarFormatError, match=r"b'data' is uint8 \[4, 100\]; expected uint8 \[N, 3072\]"):
        read_batch(p)
    with p.open("wb") as fh:
        pickle.dump({b"images": 1}, fh)
    with pytest.raises(CifarFormatError, match=r"expected the keys b'data' and b'labels'"):
        read_batch(p)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_batch_that_would_run_code_is_refused(tmp_path, capsys):
    p = tmp_path / "evil"
    p.write_bytes(pickle.dumps({b"data": _Evil(), b"labels": []}))
    with pytest.raises(CifarFormatError, match=r"refusing to load builtins.print"):
        read_batch(p)
    assert "must never run" not in capsys.readouterr().out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


def _serve(folder: Path):
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder))
    )
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


def _archive(src: Path, out: Path, members=None) -> str:
    with tarfile.open(out, "w:gz") as tar:
        if members is None:
            tar.add(src, arcname="cifar-10-batches-py")
        else:
            for name, data in members:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return hashlib.md5(out.read_bytes()).hexdigest()


def test_download_unpacks_a_checked_archive_from_a_server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    md5 = _archive(_cifar10(tmp_path / "src"), served / "cifar-10-python.tar.gz")
    server = _serve(served)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz"
        folder = download_cifar(tmp_path / "data", "cifar10", url=url, md5=md5)
        assert load_cifar_folder(folder)[0].x.shape == (30, 3, 32, 32)
        with pytest.raises(DownloadError, match="MD5 mismatch"):
            download_cifar(tmp_path / "other", "cifar10", url=url, md5="0" * 32)
        assert not (tmp_path / "other" / "cifar-10-python.tar.gz").exists()  # nothing half-written is left
    finally:
        server.shutdown()
        server.server_close()


def test_download_refuses_an_archive_that_writes_outside_its_folder(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    md5 = _archive(None, served / "cifar-10-python.tar.gz", [("../escape.txt", b"x")])
    server = _serve(served)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz"
        with pytest.raises(DownloadError, match=r"refusing the archive member '../escape.txt'"):
            download_cifar(tmp_path / "data", "cifar10", url=url, md5=md5)
        assert not (tmp_path / "escape.txt").exists()
    finally:
        server.shutdown()
        server.server_close()


def test_cifar_specs_load_through_load_dataset(tmp_path):
    from lfp_snn.data import load_dataset

    _cifar10(tmp_path / "cifar-10-batches-py")
    train, test = load_dataset(f"cifar10:{tmp_path}")
    assert train.input_shape == (3, 32, 32) and len(test) == 6
