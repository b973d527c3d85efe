"""Static image data sets: sklearn digits, MNIST-like IDX folders, and an MNIST downloader.

Every loader returns a ``(train, test)`` pair of :class:`ArrayDataset`, whose images are float32 in
``[0, 1]`` with shape ``[N, C, H, W]`` and whose labels are int64 with shape ``[N]``.  The data sets are
small enough to live in memory as whole tensors, so batching is plain tensor indexing
(:meth:`ArrayDataset.batches`) and needs no ``DataLoader``.

Accepted specs for :func:`load_dataset` (see :data:`DATASETS`):

* ``"digits"``: scikit-learn's bundled 8x8 handwritten digits (1797 images, no download).
* ``"mnist"``: MNIST IDX files under ``$LFP_SNN_DATA/mnist`` or ``~/.cache/lfp-snn/mnist``;
  ``download=True`` fetches them first (:func:`download_mnist`).
* ``"fashion-mnist"``: Fashion-MNIST from ``/usr/share/datasets/fashion-mnist`` (Debian package
  ``dataset-fashion-mnist``).
* ``"idx:<folder>"``, ``"mnist:<folder>"``, ``"fashion-mnist:<folder>"``: any folder holding the four
  MNIST-style IDX files (see :data:`IDX_FILES`), gzipped or not.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "DATASETS",
    "FASHION_MNIST_DIR",
    "IDX_FILES",
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "ArrayDataset",
    "DownloadError",
    "IdxFormatError",
    "default_mnist_root",
    "download_mnist",
    "load_dataset",
    "load_digits",
    "load_idx_folder",
    "read_idx",
    "write_idx",
]

log = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "idx")
"""Data set names accepted by :func:`load_dataset`; all but ``digits`` also take ``<name>:<folder>``,
and ``idx`` needs the folder."""

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package ``dataset-fashion-mnist`` installs the four gzipped IDX files."""

IDX_FILES: tuple[str, str, str, str] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""The four file names of an MNIST-style folder (each may end in ``.gz``; ``-idx`` may be ``.idx``)."""

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
"""Base URLs tried in order by :func:`download_mnist`."""

MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
"""Published MD5 digests of the four gzipped MNIST files."""


class IdxFormatError(ValueError):
    """An IDX file is corrupt, truncated or not an IDX file at all."""


class DownloadError(OSError):
    """No mirror delivered a file with the expected checksum."""


# --------------------------------------------------------------------------------------------------------
# ArrayDataset
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """An in-memory labelled image data set.

    Attributes:
        x: images, float32 ``[N, C, H, W]`` with values in ``[0, 1]``.
        y: labels, int64 ``[N]`` with values in ``[0, classes)``.
        classes: number of classes.
        name: a human-readable name such as ``"mnist-train"``.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: int
    name: str

    def __post_init__(self) -> None:
        _check_images(self.x, self.name)
        _check_labels(self.y, self.classes, self.name)
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"{self.name}: {self.x.shape[0]} images but {self.y.shape[0]} labels; the counts must match"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x_i, y_i)``: an image ``[C, H, W]`` and a 0-d int64 label."""
        return self.x[i], self.y[i]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape ``(C, H, W)`` of one image."""
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, n: int, seed: int = 0, stratified: bool = True) -> ArrayDataset:
        """Return ``n`` samples drawn without replacement, reproducibly for a given ``seed``.

        With ``stratified=True`` each class keeps its share of the samples (largest-remainder rounding),
        otherwise the ``n`` samples are a uniform random choice.  The chosen samples keep their original
        order.

        Args:
            n: number of samples, ``1 <= n <= len(self)``.
            seed: seed of the ``torch.Generator`` that picks the samples.
            stratified: keep class proportions.

        Returns:
            A new :class:`ArrayDataset` with ``x`` ``[n, C, H, W]`` and ``y`` ``[n]``.
        """
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(self):
            raise ValueError(f"subset size n={n!r} must be an int in [1, {len(self)}] for {self.name}")
        gen = torch.Generator().manual_seed(seed)
        if stratified:
            index = _stratified_choice(self.y, self.classes, n, gen)
        else:
            index = torch.randperm(len(self), generator=gen)[:n]
        index, _ = torch.sort(index)
        return ArrayDataset(self.x[index], self.y[index], self.classes, f"{self.name}[{n}]")

    def batches(
        self,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate over ``(x, y)`` mini-batches: ``x`` ``[B, C, H, W]`` float32, ``y`` ``[B]`` int64.

        Args:
            batch_size: ``B``, at least 1; the last batch may be smaller unless ``drop_last``.
            shuffle: visit the samples in a random order (drawn once, when this is called).
            generator: random source for the order; ``None`` uses torch's global generator.  The
                same seeded generator gives the same batches.
            drop_last: leave out a final batch smaller than ``batch_size``.
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        return self._iter_batches(order, batch_size, stop)

    def _iter_batches(
        self, order: torch.Tensor, batch_size: int, stop: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, stop, batch_size):
            index = order[start : min(start + batch_size, stop)]
            yield self.x[index], self.y[index]


def _check_images(x: torch.Tensor, name: str) -> None:
    """Raise unless ``x`` is a float32 ``[N, C, H, W]`` tensor with values in ``[0, 1]``."""
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.dim() != 4:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name}: images must be a float32 tensor [N, C, H, W], got {got}")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ValueError(f"{name}: image values must lie in [0, 1], got [{float(x.min())}, {float(x.max())}]")


def _check_labels(y: torch.Tensor, classes: int, name: str) -> None:
    """Raise unless ``y`` is an int64 ``[N]`` tensor with values in ``[0, classes)``."""
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise ValueError(f"{name}: classes={classes!r} must be an int >= 1")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
        got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{name}: labels must be an int64 tensor [N], got {got}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError(f"{name}: labels must lie in [0, {classes}), got [{int(y.min())}, {int(y.max())}]")


def _stratified_choice(y: torch.Tensor, classes: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """Pick ``n`` indices of ``y`` [N] so that each class gets its proportional share."""
    counts = torch.bincount(y, minlength=classes)
    quota = counts.double() * n / len(y)
    take = torch.floor(quota).long()
    short = n - int(take.sum())
    if short:
        # Largest fractional parts first, lower class index on ties; never exceeds a class's count.
        frac = quota - take.double()
        order = sorted(range(classes), key=lambda c: (-float(frac[c]), c))
        take[order[:short]] += 1
    picks = []
    for c in range(classes):
        members = torch.nonzero(y == c).flatten()
        picks.append(members[torch.randperm(len(members), generator=gen)[: int(take[c])]])
    return torch.cat(picks)


# --------------------------------------------------------------------------------------------------------
# sklearn digits
# --------------------------------------------------------------------------------------------------------


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """Load scikit-learn's 8x8 digits (1797 images, 10 classes), split into train and test.

    Pixel values 0..16 are scaled by 1/16 to ``[0, 1]``.  The split is stratified by class and
    reproducible for a given ``seed``.

    Returns:
        ``(train, test)`` with ``x`` ``[N, 1, 8, 8]`` and ``y`` ``[N]``; ``len(test)`` is about
        ``test_fraction * 1797``.
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction!r} must lie strictly between 0 and 1")
    bunch = _sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0
    labels = np.asarray(bunch.target, dtype=np.int64)
    index = np.arange(len(labels))
    train_idx, test_idx = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=labels)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)

    def make(idx: np.ndarray, split: str) -> ArrayDataset:
        x = torch.from_numpy(images[idx]).unsqueeze(1)
        return ArrayDataset(x, torch.from_numpy(labels[idx]), 10, f"digits-{split}")

    return make(train_idx, "train"), make(test_idx, "test")


# --------------------------------------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------------------------------------

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    """Return the file's bytes, gunzipped when the name ends in ``.gz`` or the data starts gzip-like."""
    raw = path.read_bytes()
    if path.suffix != ".gz" and not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise IdxFormatError(
            f"{path}: corrupt or truncated gzip data ({len(raw)} compressed bytes): {err}"
        ) from err


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (the MNIST format), plain or gzipped.

    The header is two zero bytes, a dtype code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions, then each dimension as a big-endian uint32;
    big-endian data follows.

    Returns:
        An array in native byte order with the stored shape, e.g. ``[N, 28, 28]`` uint8 for images and
        ``[N]`` uint8 for labels.

    Raises:
        FileNotFoundError: no file at ``path``.
        IdxFormatError: bad magic number, unknown dtype code, or a size that does not match the header
            (the message names the path, the expected size and the actual size).
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxFormatError(f"{path}: expected at least a 4-byte IDX header, got {len(data)} bytes")
    if data[0] != 0 or data[1] != 0:
        raise IdxFormatError(
            f"{path}: not an IDX file, magic number starts with {data[:2].hex()} instead of 0000"
        )
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        accepted = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise IdxFormatError(f"{path}: unknown IDX dtype code 0x{code:02X}; accepted codes: {accepted}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxFormatError(
            f"{path}: truncated header, expected {header} bytes for {ndim} dimensions, got {len(data)}"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "trailing bytes in"
        raise IdxFormatError(
            f"{path}: {kind} IDX data, expected {expected} bytes (shape {shape}, {dtype.name}), "
            f"got {len(data)} bytes"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> Path:
    """Write ``array`` (any shape with 1..255 dimensions) as an IDX file; gzipped if ``path`` ends in .gz.

    Accepted dtypes: uint8, int8, int16, int32, float32, float64.  Returns the path written.
    """
    path = Path(path)
    array = np.asarray(array)
    codes = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}
    native = array.dtype.newbyteorder("=")
    if native not in codes:
        accepted = ", ".join(dt.name for dt in codes)
        raise ValueError(f"cannot write dtype {array.dtype} to IDX {path}; accepted dtypes: {accepted}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"cannot write a {array.ndim}-D array to IDX {path}; accepted: 1 to 255 dims")
    code = codes[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)
    return path


def _idx_candidates(stem: str) -> list[str]:
    """Accepted file names for one of :data:`IDX_FILES`: ``-idx`` or ``.idx``, plain or ``.gz``."""
    dotted = stem.replace("-idx", ".idx")
    return [stem, f"{stem}.gz", dotted, f"{dotted}.gz"]


def _find_idx_files(root: Path) -> list[Path]:
    """Return the paths of the four :data:`IDX_FILES` under ``root``, or raise FileNotFoundError."""
    found: list[Path | None] = []
    for stem in IDX_FILES:
        hits = [root / name for name in _idx_candidates(stem) if (root / name).is_file()]
        found.append(hits[0] if hits else None)
    if all(found):
        return found  # type: ignore[return-value]
    missing = [stem for stem, hit in zip(IDX_FILES, found) if hit is None]
    state = "does not exist" if not root.is_dir() else f"lacks {', '.join(missing)}"
    raise FileNotFoundError(
        f"IDX folder {root} {state}. Expected the four files {', '.join(IDX_FILES)} "
        "(each optionally gzipped as .gz, and '.idx' accepted in place of '-idx')"
    )


def _to_dataset(
    images: np.ndarray, labels: np.ndarray, classes: int, name: str, paths: Sequence[Path]
) -> ArrayDataset:
    """Turn uint8 images ``[N, H, W]`` and integer labels ``[N]`` into an :class:`ArrayDataset`."""
    image_path, label_path = paths
    if images.ndim != 3 or images.dtype != np.uint8:
        raise ValueError(f"{image_path}: expected uint8 images [N, H, W], got {images.dtype} {images.shape}")
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(f"{label_path}: expected integer labels [N], got {labels.dtype} {labels.shape}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{name}: {images.shape[0]} images in {image_path} but {labels.shape[0]} labels in "
            f"{label_path}; the counts must match"
        )
    x = torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1)
    return ArrayDataset(x, torch.from_numpy(labels.astype(np.int64)), classes, name)


def load_idx_folder(root: str | os.PathLike[str], name: str = "mnist") -> tuple[ArrayDataset, ArrayDataset]:
    """Load an MNIST-style folder of four IDX files (see :data:`IDX_FILES`).

    Images are uint8 ``[N, H, W]`` on disk and become float32 ``[N, 1, H, W]`` in ``[0, 1]``.
    ``classes`` is ``1 + the largest label`` over both splits (10 for MNIST and Fashion-MNIST).

    Returns:
        ``(train, test)`` named ``f"{name}-train"`` and ``f"{name}-test"``.

    Raises:
        FileNotFoundError: the folder or one of the files is missing (the message lists all four names).
        ValueError: image and label counts differ, or the arrays have the wrong rank or dtype.
        IdxFormatError: a file is corrupt or truncated.
    """
    root = Path(root).expanduser()
    train_img, train_lbl, test_img, test_lbl = _find_idx_files(root)
    arrays = [read_idx(p) for p in (train_img, train_lbl, test_img, test_lbl)]
    labels = [arrays[1], arrays[3]]
    for lbl, path in zip(labels, (train_lbl, test_lbl)):
        if lbl.size and lbl.min() < 0:
            raise ValueError(f"{path}: labels must be >= 0, got {int(lbl.min())}")
    nonempty = [lbl for lbl in labels if lbl.size]
    classes = 1 + max(int(lbl.max()) for lbl in nonempty) if nonempty else 1
    train = _to_dataset(arrays[0], arrays[1], classes, f"{name}-train", (train_img, train_lbl))
    test = _to_dataset(arrays[2], arrays[3], classes, f"{name}-test", (test_img, test_lbl))
    return train, test


# --------------------------------------------------------------------------------------------------------
# MNIST download
# --------------------------------------------------------------------------------------------------------


def _md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, target: Path, md5: str, timeout: float) -> None:
    """Download ``url`` into ``target`` via a temp file in the same folder; check MD5, then os.replace."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        request = urllib.request.Request(url, headers={"User-Agent": "lfp-snn"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5.lower():
            raise DownloadError(f"MD5 mismatch for {url}: expected {md5}, got {digest.hexdigest()}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def download_mnist(
    root: str | os.PathLike[str],
    *,
    urls: Sequence[str] | None = None,
    timeout: float = 30.0,
    md5: Mapping[str, str] | None = None,
) -> Path:
    """Download the four gzipped MNIST IDX files into ``root`` and return ``root`` as a Path.

    Each file is tried from each base URL in ``urls`` in turn (default :data:`MNIST_MIRRORS`), checked
    against its MD5 (default :data:`MNIST_MD5`, whose keys name the files), and moved into place
    atomically, so a failed or corrupt download leaves no file behind.  Files already present with the
    right MD5 are not downloaded again; present files with a wrong MD5 are replaced.

    Args:
        root: destination folder, created if missing.
        urls: base URLs; ``base + file name`` is fetched.
        timeout: seconds for each connection and read.
        md5: ``{file name: md5 hex digest}`` override (tests use it with locally served files).

    Raises:
        DownloadError: every mirror failed for some file (the message lists each URL and its error).
    """
    root = Path(root).expanduser()
    mirrors = list(MNIST_MIRRORS if urls is None else urls)
    digests = dict(MNIST_MD5 if md5 is None else md5)
    if not mirrors:
        raise ValueError("urls is empty; give at least one base URL such as " + MNIST_MIRRORS[0])
    if not digests:
        raise ValueError("md5 is empty; give {file name: md5} for the files to download")
    root.mkdir(parents=True, exist_ok=True)
    for fname, digest in digests.items():
        target = root / fname
        if target.is_file() and _md5_of(target) == digest.lower():
            log.info("%s present with the right MD5, skipping", target)
            continue
        errors = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + fname
            try:
                log.info("downloading %s", url)
                _fetch(url, target, digest, timeout)
                break
            except (OSError, http.client.HTTPException, ValueError) as err:
                errors.append(f"  {url}: {err}")
        else:
            raise DownloadError(f"could not download {fname} into {root}:\n" + "\n".join(errors))
    return root


# --------------------------------------------------------------------------------------------------------
# load_dataset
# --------------------------------------------------------------------------------------------------------


def default_mnist_root() -> Path:
    """``$LFP_SNN_DATA/mnist`` when ``LFP_SNN_DATA`` is set, else ``~/.cache/lfp-snn/mnist``."""
    base = os.environ.get("LFP_SNN_DATA")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "lfp-snn") / "mnist"


_SPECS_HELP = "'digits', 'mnist', 'fashion-mnist', 'idx:<folder>', 'mnist:<folder>', 'fashion-mnist:<folder>'"


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
        download_mnist(folder)
    try:
        return load_idx_folder(folder, "mnist")
    except FileNotFoundError as err:
        if download:
            raise
        raise FileNotFoundError(
            f"MNIST not found: {err}\nPass download=True (or --download on the command line) to fetch "
            f"the four .gz files from {', '.join(MNIST_MIRRORS)} into {folder}, set LFP_SNN_DATA to a "
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


def load_dataset(
    spec: str, root: str | os.PathLike[str] | None = None, download: bool = False
) -> tuple[ArrayDataset, ArrayDataset]:
    """Load a data set by spec and return ``(train, test)``.

    Args:
        spec: one of ``"digits"``, ``"mnist"``, ``"fashion-mnist"``, ``"idx:<folder>"``,
            ``"mnist:<folder>"``, ``"fashion-mnist:<folder>"``.
        root: folder for ``mnist``/``fashion-mnist`` when the spec names none (defaults:
            :func:`default_mnist_root` and :data:`FASHION_MNIST_DIR`); not allowed with ``<name>:<folder>``
            and ignored for ``digits``.
        download: for MNIST, download missing files first (:func:`download_mnist`); other data sets
            ignore it.

    Raises:
        ValueError: unknown spec (the message lists the accepted ones), or both a folder and ``root``.
        FileNotFoundError: the files are absent (the message says how to get them).
    """
    name, folder = _parse_spec(spec)
    if folder is not None and root is not None:
        raise ValueError(f"dataset spec {spec!r} names a folder, so root={str(root)!r} must be None")
    if name == "digits":
        return load_digits()
    if folder is None and root is not None:
        folder = Path(root)
    if name == "mnist":
        return _load_mnist(folder or default_mnist_root(), download)
    if name == "fashion-mnist":
        return _load_fashion(folder or FASHION_MNIST_DIR)
    assert folder is not None  # idx always carries a folder, checked in _parse_spec
    return load_idx_folder(folder, "idx")
