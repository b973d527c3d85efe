"""CIFAR-10 and CIFAR-100 from the standard "python version" batch folder, and an explicit download.

The folder is what ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` unpack to:

- CIFAR-10 (``cifar-10-batches-py``): ``data_batch_1`` ... ``data_batch_5`` and ``test_batch``, each a pickled
  dict with ``b"data"`` (uint8 [10000, 3072], the red, green and blue planes of 32x32 images, row-major) and
  ``b"labels"`` (10 classes);
- CIFAR-100 (``cifar-100-python``): ``train`` (50,000 images) and ``test`` (10,000), with ``b"fine_labels"``
  (100 classes) and ``b"coarse_labels"`` (20 superclasses).

The files are pickles: they are read with an unpickler that builds nothing but dicts, lists, strings, bytes,
numbers and numpy arrays (a file that asks for anything else is refused), so a crafted file cannot run code.
A missing, truncated or malformed file is an error that names it and says what is expected. Nothing is
downloaded unless asked (:func:`download_cifar`, ``--download``).
"""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import torch

from .arrays import ArrayDataset
from .mnist import DownloadError, _fetch, _md5_of

CIFAR_URLS = {
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
}
CIFAR_MD5 = {"cifar10": "c58f30108f718f92721af3b95e74349a", "cifar100": "eb9058c3a382ffc7106e4002c42a8d85"}
"""The published MD5 digests of the two archives."""
FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}
_FILES = {
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]),
    "cifar100": (["train"], ["test"]),
}
_IMAGE_BYTES = 3 * 32 * 32


class CifarFormatError(ValueError):
    """A CIFAR batch file that is missing, truncated or not what the format says."""


class _SafeUnpickler(pickle.Unpickler):
    """Builds numpy arrays and plain containers only (what the CIFAR batches hold)."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            f"refusing to load {module}.{name}: a CIFAR batch holds arrays and lists only"
        )


def read_batch(path: str | os.PathLike[str], label_key: str = "labels") -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [N, 3, 32, 32], labels int64 [N]) from one CIFAR batch file."""
    path = Path(path)
    if not path.is_file():
        raise CifarFormatError(
            f"{path}: no such CIFAR batch file; expected a file of the python version's batches"
        )
    try:
        with path.open("rb") as fh:
            d = _SafeUnpickler(io.BufferedReader(fh), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as e:
        raise CifarFormatError(
            f"{path}: not a readable CIFAR batch ({type(e).__name__}: {e}); the file may be truncated or not "
            "from the python version of CIFAR (a pickled dict with b'data' and b'labels')"
        ) from e
    if not isinstance(d, dict):
        raise CifarFormatError(
            f"{path}: expected a pickled dict with b'data' and b'{label_key}', got {type(d).__name__}"
        )
    key = label_key.encode()
    if b"data" not in d or key not in d:
        raise CifarFormatError(f"{path}: expected the keys b'data' and b'{label_key}', found {sorted(d)}")
    data = np.asarray(d[b"data"])
    labels = np.asarray(d[key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _IMAGE_BYTES:
        raise CifarFormatError(
            f"{path}: b'data' is {data.dtype} {list(data.shape)}; expected uint8 [N, {_IMAGE_BYTES}] (32x32 RGB)"
        )
    if labels.shape != (data.shape[0],):
        raise CifarFormatError(
            f"{path}: {data.shape[0]} images but {labels.shape} labels; the counts must match"
        )
    return data.reshape(-1, 3, 32, 32), labels


def load_cifar_folder(
    root: str | os.PathLike[str], name: str = "cifar10", labels: str = "fine"
) -> tuple[ArrayDataset, ArrayDataset]:
    """(train, test) from a CIFAR python-version folder (the unpacked archive, or the folder holding it).

    ``labels`` (CIFAR-100): ``"fine"`` (100 classes) or ``"coarse"`` (20).
    """
    if name not in FOLDERS:
        raise ValueError(f"unknown CIFAR set {name!r}; expected one of {sorted(FOLDERS)}")
    if labels not in ("fine", "coarse"):
        raise ValueError(f"labels must be 'fine' or 'coarse', got {labels!r}")
    root = Path(root).expanduser()
    if (root / FOLDERS[name]).is_dir():
        root = root / FOLDERS[name]
    if not root.is_dir():
        raise CifarFormatError(
            f"{root}: no such folder; expected the unpacked {FOLDERS[name]} folder (files "
            f"{', '.join(sum(_FILES[name], []))})"
        )
    key = "labels" if name == "cifar10" else f"{labels}_labels"
    classes = 10 if name == "cifar10" else (100 if labels == "fine" else 20)
    sets = []
    for split, files in zip(("train", "test"), _FILES[name]):
        parts = [read_batch(root / f, key) for f in files]
        x = torch.from_numpy(np.concatenate([p[0] for p in parts])).float().div_(255.0)
        y = torch.from_numpy(np.concatenate([p[1] for p in parts]))
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= classes):
            raise CifarFormatError(f"{root}: labels outside [0, {classes}) in the {split} files")
        sets.append(ArrayDataset(x, y, classes, f"{name}-{split}"))
    return sets[0], sets[1]


def download_cifar(
    root: str | os.PathLike[str],
    name: str = "cifar10",
    *,
    url: str | None = None,
    md5: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download and unpack a CIFAR archive into ``root`` (checked against its MD5; an archive member that
    would land outside ``root`` is refused) and return the unpacked folder. A folder already there is kept."""
    if name not in FOLDERS:
        raise ValueError(f"unknown CIFAR set {name!r}; expected one of {sorted(FOLDERS)}")
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    folder = root / FOLDERS[name]
    if folder.is_dir():
        return folder
    archive = root / Path(CIFAR_URLS[name]).name
    digest = (md5 or CIFAR_MD5[name]).lower()
    if not (archive.is_file() and _md5_of(archive) == digest):
        try:
            _fetch(url or CIFAR_URLS[name], archive, digest, timeout)
        except (OSError, ValueError) as e:
            raise DownloadError(f"could not download {url or CIFAR_URLS[name]} into {root}: {e}") from e
    with tarfile.open(archive, "r:gz") as tar:
        base = root.resolve()
        for member in tar.getmembers():
            target = (root / member.name).resolve()
            if not (member.isfile() or member.isdir()) or base not in (target, *target.parents):
                raise DownloadError(
                    f"{archive}: refusing the archive member {member.name!r} (outside {root})"
                )
        tar.extractall(root, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(root)
    if not folder.is_dir():
        raise DownloadError(f"{archive} did not unpack into {folder}")
    return folder


def write_cifar_batch(
    path: str | os.PathLike[str], images: np.ndarray, labels, label_key: str = "labels"
) -> Path:
    """Write a CIFAR batch file (uint8 [N, 3, 32, 32] images): for tests and for small custom sets."""
    images = np.asarray(images, dtype=np.uint8).reshape(len(labels), _IMAGE_BYTES)
    path = Path(path)
    with path.open("wb") as fh:
        pickle.dump({b"data": images, label_key.encode(): list(map(int, labels))}, fh)
    return path
