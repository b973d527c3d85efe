"""Event data sets read from folders already on disk (nothing is ever downloaded), a tonic adapter, and a collate
function that pads variable-length frame tensors along time.

Each data set's ``__getitem__`` returns ``(events, label)`` where ``events`` is a structured array of
:data:`~lfp_snn.events.formats.EVENT_DTYPE` (t in µs), or whatever the optional ``transform`` makes of it (for
example an :class:`lfp_snn.encoders.events.ToFrames` giving a float32 tensor [T, P, H, W]). Each has
``sensor_size`` (W, H, P) and ``classes`` (a list of class names).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .formats import (
    DVSGESTURE_CLASSES,
    DVSGESTURE_SENSOR_SIZE,
    NMNIST_SENSOR_SIZE,
    SHD_SENSOR_SIZE,
    _check_shd_layout,
    _h5py,
    as_events,
    open_h5,
    read_dvsgesture_npy,
    read_nmnist_bin,
    read_shd_sample,
)

__all__ = [
    "NMNISTFolder",
    "SHDFile",
    "DVSGestureFolder",
    "TonicAdapter",
    "from_tonic",
    "pad_time",
    "pad_time_collate",
]

Transform = Callable[[np.ndarray], Any]

_SPLITS = {"train": "Train", "test": "Test"}


def _check_split(split: str) -> str:
    if split not in _SPLITS:
        raise ValueError(f"split={split!r} is not accepted; use 'train' or 'test'")
    return split


def _listing(path: Path, limit: int = 12) -> str:
    if not path.exists():
        return f"{path} does not exist"
    if not path.is_dir():
        return f"{path} is a file, not a folder"
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    shown = ", ".join(names[:limit]) + (f", ... ({len(names)} entries)" if len(names) > limit else "")
    return f"{path} holds [{shown}]" if names else f"{path} is empty"


class _EventFolder(torch.utils.data.Dataset):
    """Shared part: a list of (file, label) pairs, a reader and an optional transform."""

    sensor_size: tuple[int, int, int]
    classes: list[str]

    def __init__(self, files: list[Path], targets: list[int], reader, transform: Transform | None):
        self.files = files
        self.targets = targets
        self._reader = reader
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int):
        events = self._reader(self.files[index])
        if self.transform is not None:
            events = self.transform(events)
        return events, self.targets[index]


class NMNISTFolder(_EventFolder):
    """N-MNIST as unpacked on disk: ``root/Train/<digit>/*.bin`` and ``root/Test/<digit>/*.bin``.

    ``root`` may also be the folder above, holding ``NMNIST/Train`` (tonic's ``save_to``). The label is the
    folder name (0..9). Files are sorted by label, then by name. Sensor size (34, 34, 2); events are read with
    :func:`~lfp_snn.events.formats.read_nmnist_bin` on each access.

    Raises:
        FileNotFoundError: the layout is not found; the message describes the expected layout and what is there.
        ValueError: ``split`` is not 'train' or 'test'.
    """

    sensor_size = NMNIST_SENSOR_SIZE

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Transform | None = None):
        split = _check_split(split)
        root = Path(root)
        sub = _SPLITS[split]
        base = root / sub if (root / sub).is_dir() else root / "NMNIST" / sub
        files: list[Path] = []
        targets: list[int] = []
        if base.is_dir():
            for d in sorted(base.iterdir()):
                if d.is_dir() and re.fullmatch(r"\d", d.name):
                    for f in sorted(d.glob("*.bin")):
                        files.append(f)
                        targets.append(int(d.name))
        if not files:
            raise FileNotFoundError(
                f"no N-MNIST {split} data under {root}: expected {root}/{sub}/<digit 0-9>/*.bin "
                f"(or {root}/NMNIST/{sub}/...); found: {_listing(root)}"
                + (f"; {_listing(base)}" if base.is_dir() else "")
            )
        super().__init__(files, targets, read_nmnist_bin, transform)
        self.root = root
        self.split = split
        self.classes = [str(i) for i in range(10)]


class DVSGestureFolder(_EventFolder):
    """DVS Gesture in tonic's preprocessed layout: ``root/ibmGestureTrain/user<NN>_<lighting>/<label>.npy``
    (and ``ibmGestureTest``); ``root`` may also hold ``DVSGesture/ibmGestureTrain`` (tonic's ``save_to``).

    Each ``.npy`` is [N, 4] with columns x, y, p, t (ms); events come back with t in µs. Label = file name,
    0..10 (11 classes, :data:`~lfp_snn.events.formats.DVSGESTURE_CLASSES`). Sensor size (128, 128, 2).
    ``users`` and ``lighting`` give each sample's user number and lighting condition.

    Raises:
        FileNotFoundError: the layout is not found; the message describes the expected layout and what is there.
    """

    sensor_size = DVSGESTURE_SENSOR_SIZE

    def __init__(self, root: str | os.PathLike, split: str = "train", transform: Transform | None = None):
        split = _check_split(split)
        root = Path(root)
        sub = "ibmGestureTrain" if split == "train" else "ibmGestureTest"
        base = root / sub if (root / sub).is_dir() else root / "DVSGesture" / sub
        files: list[Path] = []
        targets: list[int] = []
        self.users: list[int] = []
        self.lighting: list[str] = []
        if base.is_dir():
            for d in sorted(base.iterdir()):
                m = re.fullmatch(r"user(\d+)_(.+)", d.name)
                if not (d.is_dir() and m):
                    continue
                for f in sorted(d.glob("*.npy"), key=lambda q: (len(q.stem), q.stem)):
                    if re.fullmatch(r"\d+", f.stem) and int(f.stem) < len(DVSGESTURE_CLASSES):
                        files.append(f)
                        targets.append(int(f.stem))
                        self.users.append(int(m.group(1)))
                        self.lighting.append(m.group(2))
        if not files:
            raise FileNotFoundError(
                f"no DVS Gesture {split} data under {root}: expected {root}/{sub}/user<NN>_<lighting>/<0-10>.npy "
                f"(or {root}/DVSGesture/{sub}/...); found: {_listing(root)}"
                + (f"; {_listing(base)}" if base.is_dir() else "")
            )
        super().__init__(files, targets, read_dvsgesture_npy, transform)
        self.root = root
        self.split = split
        self.classes = list(DVSGESTURE_CLASSES)


class SHDFile(torch.utils.data.Dataset):
    """One Spiking Heidelberg Digits / Spiking Speech Commands ``.h5`` file (e.g. ``shd_train.h5``).

    Samples are read on access from an h5py handle opened lazily (once per process, so the data set works in
    DataLoader workers). Events: x = unit (0..699), y = 0, p = 0, t in µs. Sensor size (700, 1, 1). ``classes``
    come from ``extra/keys`` when present, else ``"0".."K-1"`` with K = max label + 1.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file lacks ``spikes/times``, ``spikes/units`` or ``labels`` (the message lists both).
    """

    sensor_size = SHD_SENSOR_SIZE

    def __init__(self, path: str | os.PathLike, transform: Transform | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(
                f"SHD/SSC file {self.path} not found (expected an .h5 file such as shd_train.h5); "
                f"found: {_listing(self.path.parent)}"
            )
        self.transform = transform
        with open_h5(self.path) as f:
            _check_shd_layout(f, self.path)
            self.targets = [int(v) for v in f["labels"][:]]
            keys = f["extra/keys"][:] if "extra/keys" in f else None
        n_classes = max(self.targets, default=-1) + 1
        if keys is not None and len(keys) >= n_classes:
            self.classes = [k.decode() if isinstance(k, bytes) else str(k) for k in keys]
        else:
            self.classes = [str(i) for i in range(n_classes)]
        self._file = None

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        if self._file is None:
            self._file = _h5py().File(self.path, "r")
        events, label = read_shd_sample(self._file, index)
        if self.transform is not None:
            events = self.transform(events)
        return events, label

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None  # h5py handles cannot be pickled; reopen in the worker
        return state

    def __del__(self):
        f = getattr(self, "_file", None)
        if f is not None:
            try:
                f.close()
            except Exception:
                pass


# --------------------------------------------------------------------------------------------------------------
# tonic adapter
# --------------------------------------------------------------------------------------------------------------


def _require_tonic():
    try:
        import tonic
    except ImportError as err:
        raise ImportError(
            "from_tonic needs the optional package tonic (pip install 'lfp-snn[events]' or pip install tonic)"
        ) from err
    return tonic


class TonicAdapter(torch.utils.data.Dataset):
    """Wraps a tonic data set instance: items become ``(events, label)`` with events converted to
    :data:`~lfp_snn.events.formats.EVENT_DTYPE` (float times rounded to whole µs, missing y set to 0), then passed
    through ``transform``. ``sensor_size`` and ``classes`` are taken from the tonic data set."""

    def __init__(self, dataset, transform: Transform | None = None):
        self.dataset = dataset
        self.transform = transform
        size = getattr(dataset, "sensor_size", None)
        if size is None:
            raise ValueError(f"{type(dataset).__name__} has no sensor_size; pass a tonic event data set")
        self.sensor_size = tuple(int(s) for s in size)
        classes = getattr(dataset, "classes", None)
        self.classes = [str(c) for c in classes] if classes is not None else None

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        events, label = self.dataset[index]
        if isinstance(events, np.ndarray) and events.dtype.names:
            events = as_events(events)
        if self.transform is not None:
            events = self.transform(events)
        return events, label


def from_tonic(dataset, transform: Transform | None = None) -> TonicAdapter:
    """Adapt any tonic data set instance (constructed by the caller; nothing is downloaded here).

    Raises ImportError with an install hint when tonic is not installed.
    """
    _require_tonic()
    return TonicAdapter(dataset, transform)


# --------------------------------------------------------------------------------------------------------------
# padding collate
# --------------------------------------------------------------------------------------------------------------


def pad_time(frames: Sequence[torch.Tensor], pad_value: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack tensors [T_i, ...] (same trailing shape) into [T_max, B, ...], padding the end with ``pad_value``.

    Returns:
        (padded [T_max, B, ...], lengths int64 [B] holding each T_i).
    """
    if len(frames) == 0:
        raise ValueError("pad_time got an empty list of frame tensors")
    frames = [torch.as_tensor(f) for f in frames]
    tail = frames[0].shape[1:]
    for i, f in enumerate(frames):
        if f.dim() < 1 or f.shape[1:] != tail:
            raise ValueError(
                f"pad_time: item {i} has shape {tuple(f.shape)}; all items must be [T_i, *{tuple(tail)}]"
            )
    lengths = torch.tensor([f.shape[0] for f in frames], dtype=torch.int64)
    t_max = int(lengths.max())
    out = frames[0].new_full((t_max, len(frames), *tail), pad_value)
    for i, f in enumerate(frames):
        out[: f.shape[0], i] = f
    return out, lengths


def pad_time_collate(batch: Sequence[Any]):
    """DataLoader ``collate_fn`` for variable-length time-first samples.

    - items ``frames`` [T_i, ...] -> ``(frames [T_max, B, ...], lengths [B])``;
    - items ``(frames, label)`` -> ``(frames [T_max, B, ...], labels int64 [B], lengths [B])``.

    Padding is zeros at the end of each sequence; ``lengths`` holds the true T_i.
    """
    if len(batch) and isinstance(batch[0], (tuple, list)):
        frames, labels = zip(*batch)
        padded, lengths = pad_time(frames)
        return padded, torch.as_tensor(labels, dtype=torch.int64), lengths
    return pad_time(batch)
