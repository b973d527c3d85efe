"""Static image data sets by spec: ``digits``, ``mnist``, ``fashion-mnist``, ``idx:<folder>``.

Every loader returns a ``(train, test)`` pair of :class:`~lfp_snn.data.arrays.ArrayDataset`, whose images are
float32 in ``[0, 1]`` with shape ``[N, C, H, W]`` and whose labels are int64 with shape ``[N]``.

Accepted specs for :func:`load_dataset` (see :data:`DATASETS`):

* ``"digits"``: scikit-learn's bundled 8x8 handwritten digits (1797 images, no download).
* ``"mnist"``: MNIST IDX files under ``$LFP_SNN_DATA/mnist`` or ``~/.cache/lfp-snn/mnist``;
  ``download=True`` fetches them first (:func:`~lfp_snn.data.mnist.download_mnist`).
* ``"fashion-mnist"``: Fashion-MNIST from ``/usr/share/datasets/fashion-mnist`` (Debian package
  ``dataset-fashion-mnist``).
* ``"idx:<folder>"``, ``"mnist:<folder>"``, ``"fashion-mnist:<folder>"``: any folder holding the four
  MNIST-style IDX files (see :data:`~lfp_snn.data.idx.IDX_FILES`), gzipped or not.
* ``"cifar10[:<folder>]"``, ``"cifar100[:<folder>]"``, ``"cifar100-coarse[:<folder>]"``: the python-version
  batch folder (:mod:`~lfp_snn.data.cifar`), under ``$LFP_SNN_DATA/<name>`` or ``~/.cache/lfp-snn/<name>`` when
  no folder is given; ``download=True`` fetches and unpacks the archive first.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import mnist
from .arrays import ArrayDataset
from .digits import load_digits
from .idx import load_idx_folder

DATASETS: tuple[str, ...] = (
    "digits",
    "mnist",
    "fashion-mnist",
    "idx",
    "cifar10",
    "cifar100",
    "cifar100-coarse",
)
"""Data set names accepted by :func:`load_dataset`; all but ``digits`` also take ``<name>:<folder>``,
and ``idx`` needs the folder."""

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package ``dataset-fashion-mnist`` installs the four gzipped IDX files."""

_SPECS_HELP = (
    "'digits', 'mnist', 'fashion-mnist', 'idx:<folder>', 'mnist:<folder>', 'fashion-mnist:<folder>', "
    "'cifar10[:<folder>]', 'cifar100[:<folder>]', 'cifar100-coarse[:<folder>]'"
)
DOWNLOADS = ("mnist", "cifar10", "cifar100", "cifar100-coarse")  # what download=True applies to


def _parse_spec(spec: str) -> tuple[str, Path | None]:
    """Split ``"name[:folder]"`` into the name and the folder, or raise ValueError."""
    if not isinstance(spec, str):
        raise ValueError(f"dataset spec must be a str, got {spec!r}; accepted: {_SPECS_HELP}")
    name, sep, folder = spec.partition(":")
    if name not in DATASETS or (sep and not folder) or (name == "digits" and sep):
        raise ValueError(f"unknown dataset spec {spec!r}; accepted: {_SPECS_HELP}")
    if name == "idx" and not sep:
        raise ValueError(f"dataset spec 'idx' needs a folder, as in 'idx:<folder>'; accepted: {_SPECS_HELP}")
    return name, Path(folder) if sep else None


def _load_mnist(folder: Path, download: bool) -> tuple[ArrayDataset, ArrayDataset]:
    if download:
        mnist.download_mnist(folder)
    try:
        return load_idx_folder(folder, "mnist")
    except FileNotFoundError as err:
        if download:
            raise
        raise FileNotFoundError(
            f"MNIST not found: {err}\nPass download=True (or --download on the command line) to fetch "
            f"the four .gz files from {', '.join(mnist.MNIST_MIRRORS)} into {folder}, set LFP_SNN_DATA to a "
            "folder holding mnist/, or put the IDX files there yourself."
        ) from err


def _load_fashion(folder: Path) -> tuple[ArrayDataset, ArrayDataset]:
    try:
        return load_idx_folder(folder, "fashion-mnist")
    except FileNotFoundError as err:
        raise FileNotFoundError(
            f"Fashion-MNIST not found: {err}\nInstall the Debian package dataset-fashion-mnist "
            f"(apt install dataset-fashion-mnist, which fills {FASHION_MNIST_DIR}) or use "
            "'fashion-mnist:<folder>' with a folder holding the IDX files. lfp-snn does not download it."
        ) from err


def _load_cifar(name: str, folder: Path, download: bool) -> tuple[ArrayDataset, ArrayDataset]:
    from . import cifar

    base = name.split("-")[0]
    if download:
        cifar.download_cifar(folder, base)
    elif not folder.is_dir():
        raise FileNotFoundError(
            f"{base.upper()} not found at {folder}: pass download=True (--download) to fetch "
            f"{cifar.CIFAR_URLS[base]} there, or give '{name}:<folder>' with the unpacked python-version batches"
        )
    return cifar.load_cifar_folder(folder, base, "coarse" if name.endswith("coarse") else "fine")


def load_dataset(
    spec: str, root: str | os.PathLike[str] | None = None, download: bool = False
) -> tuple[ArrayDataset, ArrayDataset]:
    """Load a data set by spec and return ``(train, test)``.

    Args:
        spec: one of ``"digits"``, ``"mnist"``, ``"fashion-mnist"``, ``"idx:<folder>"``,
            ``"mnist:<folder>"``, ``"fashion-mnist:<folder>"``.
        root: folder for ``mnist``/``fashion-mnist`` when the spec names none (defaults:
            :func:`~lfp_snn.data.mnist.default_mnist_root` and :data:`FASHION_MNIST_DIR`); not allowed with
            ``<name>:<folder>``, ``idx`` or ``digits`` (a ValueError says so).
        download: for MNIST, download missing files first (:func:`~lfp_snn.data.mnist.download_mnist`); a
            ValueError for the other data sets, which lfp-snn never downloads.

    Raises:
        ValueError: unknown spec (the message lists the accepted ones), or both a folder and ``root``.
        FileNotFoundError: the files are absent (the message says how to get them).
    """
    name, folder = _parse_spec(spec)
    if folder is not None and root is not None:
        raise ValueError(f"dataset spec {spec!r} names a folder, so root={str(root)!r} must be None")
    if root is not None and name in ("digits", "idx"):
        raise ValueError(
            f"root does not apply to dataset spec {spec!r}: only mnist and fashion-mnist take it"
        )
    if download and name not in DOWNLOADS:
        raise ValueError(
            f"download does not apply to dataset spec {spec!r}: lfp-snn downloads {', '.join(DOWNLOADS)} only"
        )
    if name == "digits":
        return load_digits()
    if folder is None and root is not None:
        folder = Path(root)
    if name == "mnist":
        return _load_mnist(folder or mnist.default_mnist_root(), download)
    if name == "fashion-mnist":
        return _load_fashion(folder or FASHION_MNIST_DIR)
    if name.startswith("cifar"):
        return _load_cifar(name, folder or mnist.default_mnist_root().parent / name.split("-")[0], download)
    assert folder is not None  # idx always carries a folder, checked in _parse_spec
    return load_idx_folder(folder, "idx")
