"""IDX files (the MNIST format), plain or gzipped, and MNIST-style folders of four of them."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .arrays import ArrayDataset

IDX_FILES: tuple[str, str, str, str] = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
"""The four file names of an MNIST-style folder (each may end in ``.gz``; ``-idx`` may be ``.idx``)."""


class IdxFormatError(ValueError):
    """An IDX file is corrupt, truncated or not an IDX file at all."""


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
