"""Event data for training: recordings binned into frames held in memory, behind the same batching contract as
:class:`lfp_snn.data.ArrayDataset`.

:func:`load_event_dataset` turns a spec into a ``(train, test)`` pair of :class:`FrameDataset`:

==============================  ==================================================================================
spec                            data, frames per sample (T = ``steps``)
==============================  ==================================================================================
``nmnist:<folder>``             N-MNIST ``<folder>/Train|Test/<digit>/*.bin`` -> [T, 2, 34, 34]
``shd:<file>``                  Spiking Heidelberg Digits ``.h5``; test file ``shd_test.h5`` next to a given
                                ``shd_train.h5`` (any ``<x>_train.h5`` -> ``<x>_test.h5``), else a seeded
                                stratified 80/20 split of the file -> [T, 700]
``dvsgesture:<folder>``         DVS Gesture (tonic's ``.npy`` layout), 128 x 128 pooled 4 x 4 -> [T, 2, 32, 32]
``emulated-digits``             scikit-learn's 8x8 digits (1347 train / 450 test) through the saccade emulation
                                (pad 4, triangle side 2 px) -> [T, 2, 12, 12]
``emulated-fashion-mnist[:d]``  Fashion-MNIST (Debian's ``/usr/share/datasets/fashion-mnist`` or IDX folder ``d``)
                                through the saccade emulation -> [T, 2, 34, 34]; **6000 train / 1000 test by
                                default** (see ``limit``)
``emulated-mnist[:d]``          MNIST IDX folder ``d`` (default: lfp-snn's MNIST folder, nothing is downloaded),
                                same emulation and default limit as Fashion-MNIST
==============================  ==================================================================================

Binning: each recording becomes ``steps`` equal time bins of event counts (:class:`~lfp_snn.encoders.events.ToFrames`
with ``n_time_bins=steps, mode="count"``; :class:`~lfp_snn.encoders.events.ToSpikeTrains` for SHD), so no event
is lost: frames sum to the recording's number of events. The bins span each recording from its first to its
last event; emulated recordings use their fixed window [0, 300 ms], so a bin is the same stretch of time in
every sample. Frames are stored as uint8 counts when every count fits (the usual case), else as float16
(exact up to 2048), and come out of :meth:`FrameDataset.batches` as float32.

``limit`` (argument, or the environment variable ``LFP_SNN_EVENT_LIMIT``): ``N`` caps each split at N samples,
``"N_TRAIN,N_TEST"`` caps them separately, ``"all"`` lifts the caps. Capped splits are stratified, seeded
subsets (seed 0) chosen *before* anything is read or emulated. Emulated recordings are cached on disk under
``$LFP_SNN_DATA/emulated`` (else ``~/.cache/lfp-snn/emulated``), keyed by the images and the emulation
parameters; ``cache_dir=False`` keeps them in memory only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.arrays import holdout_index, stratified_choice
from ..data.digits import load_digits
from ..data.images import load_dataset
from ..encoders.events import ToFrames, ToSpikeTrains
from .emulate import EmulatedEvents, SaccadeParams

__all__ = [
    "EVENT_SPECS",
    "EMULATED_DEFAULT_LIMIT",
    "DIGITS_SACCADES",
    "LIMIT_ENV",
    "FrameDataset",
    "default_emulation_cache",
    "is_event_spec",
    "load_event_dataset",
    "parse_limit",
]

EVENT_SPECS: dict[str, str] = {
    "nmnist": "nmnist:<folder> (N-MNIST with Train/ and Test/ folders of .bin files)",
    "shd": "shd:<file> (Spiking Heidelberg Digits .h5, e.g. shd_train.h5; shd_test.h5 next to it is the test set)",
    "dvsgesture": "dvsgesture:<folder> (DVS Gesture in tonic's .npy layout; pooled 128 -> 32 by default)",
    "emulated-digits": "emulated-digits (scikit-learn's 8x8 digits through the saccade emulation)",
    "emulated-fashion-mnist": "emulated-fashion-mnist[:<folder>] (Fashion-MNIST through the saccade emulation; "
    "6000 train / 1000 test unless limit says otherwise)",
    "emulated-mnist": "emulated-mnist[:<folder>] (MNIST IDX files through the saccade emulation; "
    "6000 train / 1000 test unless limit says otherwise)",
}
"""Accepted event specs: name -> the form it takes and what it loads."""

_NEEDS_PATH = ("nmnist", "shd", "dvsgesture")
_NO_PATH = ("emulated-digits",)

EMULATED_DEFAULT_LIMIT: tuple[int, int] = (6000, 1000)
"""Default (train, test) caps for the emulated 28 x 28 data sets (70,000 images each in full)."""

DIGITS_SACCADES = SaccadeParams(pad=4, amplitude=2.0)
"""Emulation settings for the 8x8 digits: 12 x 12 sensor, a triangle of side 2 px (~1,000 events a sample)."""

LIMIT_ENV = "LFP_SNN_EVENT_LIMIT"
"""Environment variable read when ``limit`` is not given: ``N``, ``N_TRAIN,N_TEST`` or ``all``."""

DVSGESTURE_DOWNSAMPLE = 4
_STORAGES = ("auto", "uint8", "float16")

Limit = int | str | tuple[int | None, int | None] | None


# --------------------------------------------------------------------------------------------------------------
# FrameDataset
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class FrameDataset:
    """An in-memory labelled data set of binned event recordings (sequence data).

    Attributes:
        x: frames ``[N, T, ...]`` (``[N, T, P, H, W]`` for cameras, ``[N, T, units]`` for SHD), stored compactly
            as uint8 counts or float16 (float32 accepted too); batches come out as float32.
        y: labels, int64 ``[N]`` with values in ``[0, classes)``.
        classes: number of classes.
        name: a human-readable name such as ``"nmnist-train"``.
        sensor_size: the recording sensor's (W, H, P) before any pooling.
        class_names: optional names of the classes.

    ``temporal = True`` tells :class:`lfp_snn.training.Trainer` that batches are ``[B, T, ...]`` sequences to be
    fed time-first instead of static images for an encoder.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: int
    name: str
    sensor_size: tuple[int, int, int]
    class_names: tuple[str, ...] = ()

    temporal = True  # class attribute, not a field

    def __post_init__(self) -> None:
        x, y = self.x, self.y
        if not isinstance(x, torch.Tensor) or x.dtype not in (torch.uint8, torch.float16, torch.float32):
            got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{self.name}: frames must be a uint8, float16 or float32 tensor, got {got}")
        if x.dim() < 3:
            raise ValueError(
                f"{self.name}: frames must be [N, T, ...] with at least 3 dims, got {tuple(x.shape)}"
            )
        if not isinstance(self.classes, int) or isinstance(self.classes, bool) or self.classes < 1:
            raise ValueError(f"{self.name}: classes={self.classes!r} must be an int >= 1")
        if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
            got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
            raise ValueError(f"{self.name}: labels must be an int64 tensor [N], got {got}")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.classes):
            raise ValueError(
                f"{self.name}: labels must lie in [0, {self.classes}), got [{int(y.min())}, {int(y.max())}]"
            )
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"{self.name}: {x.shape[0]} samples but {y.shape[0]} labels; the counts must match"
            )
        object.__setattr__(self, "sensor_size", tuple(int(s) for s in self.sensor_size))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(frames_i, y_i)``: float32 frames ``[T, ...]`` and a 0-d int64 label."""
        return self.x[i].to(torch.float32), self.y[i]

    @property
    def steps(self) -> int:
        """T, the number of time bins per sample."""
        return int(self.x.shape[1])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one time step of one sample, e.g. ``(2, 34, 34)`` or ``(700,)``."""
        return tuple(int(s) for s in self.x.shape[2:])

    def subset(self, n: int, seed: int = 0, stratified: bool = True) -> FrameDataset:
        """``n`` samples drawn without replacement, reproducibly for ``seed``; stratified by class by default
        (each class keeps its share, largest-remainder rounding); the chosen samples keep their order."""
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(self):
            raise ValueError(f"subset size n={n!r} must be an int in [1, {len(self)}] for {self.name}")
        index = _choose(self.y, self.classes, n, seed, stratified)
        return FrameDataset(
            self.x[index],
            self.y[index],
            self.classes,
            f"{self.name}[{n}]",
            self.sensor_size,
            self.class_names,
        )

    def holdout(self, fraction: float, seed: int = 0) -> tuple[FrameDataset, FrameDataset]:
        """``(fit, validation)`` as :meth:`lfp_snn.data.ArrayDataset.holdout` splits them."""
        fit, val = holdout_index(self.y, self.classes, fraction, seed, self.name)
        return tuple(
            FrameDataset(
                self.x[i], self.y[i], self.classes, f"{self.name}-{tag}", self.sensor_size, self.class_names
            )
            for i, tag in ((fit, "fit"), (val, "validation"))
        )

    def batches(
        self,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate over ``(x, y)`` mini-batches: ``x`` ``[B, T, ...]``, ``y`` int64 ``[B]``. Frames stored as
        uint8 counts come out as uint8 (the LFP engine keeps sparse ones as index lists: ``docs/engine.md``);
        float16 frames come out as float32.

        Same contract as :meth:`lfp_snn.data.ArrayDataset.batches`: the order is drawn once (from ``generator``,
        or torch's global generator) when ``shuffle``; the last batch may be smaller unless ``drop_last``.
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        return self._iter_batches(order, batch_size, stop)

    def _iter_batches(self, order: torch.Tensor, batch_size: int, stop: int):
        for start in range(0, stop, batch_size):
            index = order[start : min(start + batch_size, stop)]
            x = self.x[index]
            yield (x if x.dtype == torch.uint8 else x.to(torch.float32)), self.y[index]

    @classmethod
    def from_events(
        cls,
        events: Sequence[np.ndarray],
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        encoder: ToFrames,
        *,
        classes: int | None = None,
        name: str = "events",
        class_names: Sequence[str] = (),
        storage: str = "auto",
        describe: Callable[[int], str] | None = None,
    ) -> FrameDataset:
        """Bin event recordings with ``encoder`` (a :class:`ToFrames` / :class:`ToSpikeTrains` with
        ``n_time_bins`` set) into a :class:`FrameDataset`.

        Args:
            events: a sequence of event arrays (anything with ``len`` and integer indexing; read one at a time).
            labels: one integer label per recording.
            encoder: the binning; its ``sensor_size`` becomes the data set's.
            classes: number of classes (default: max label + 1).
            storage: ``"uint8"`` (counts clipped at 255), ``"float16"``, or ``"auto"``: uint8 while every
                count fits, float16 otherwise (so no count is clipped).
            describe: recording index -> where it came from (a file), for the error an empty recording
                raises: it would train the network on a silent sample.
        """
        if storage not in _STORAGES:
            raise ValueError(f"storage={storage!r} is not accepted; use one of {_STORAGES}")
        if encoder.n_time_bins is None:
            raise ValueError("the encoder needs n_time_bins (a fixed T) to stack recordings into [N, T, ...]")
        y = torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1))
        n = len(events)
        if len(y) != n:
            raise ValueError(f"{name}: {n} recordings but {len(y)} labels")
        shape = (encoder.n_units,) if isinstance(encoder, ToSpikeTrains) else encoder.frame_shape
        dtype = np.float16 if storage == "float16" else np.uint8
        x = np.zeros((n, encoder.n_time_bins, *shape), dtype=dtype)
        for i in range(n):
            ev = events[i]
            if len(ev) == 0:
                where = describe(i) if describe is not None else f"{name}: recording {i}"
                raise ValueError(
                    f"{where}: an empty recording (no events); training on it would teach the network a "
                    "silent sample: remove or repair it"
                )
            f = encoder(ev).numpy()
            if x.dtype == np.uint8 and f.size and f.max() > 255:
                if storage == "auto":
                    x = x.astype(np.float16)
                else:
                    np.minimum(f, 255, out=f)
            x[i] = f
        k = classes if classes is not None else int(y.max()) + 1 if n else 1
        return cls(torch.from_numpy(x), y, k, name, encoder.sensor_size, tuple(class_names))


def _choose(y: torch.Tensor, classes: int, n: int, seed: int, stratified: bool = True) -> torch.Tensor:
    """Sorted indices of ``n`` samples picked as :meth:`lfp_snn.data.ArrayDataset.subset` does."""
    gen = torch.Generator().manual_seed(seed)
    if stratified:
        index = stratified_choice(y, classes, n, gen)
    else:
        index = torch.randperm(len(y), generator=gen)[:n]
    return torch.sort(index).values


# --------------------------------------------------------------------------------------------------------------
# specs
# --------------------------------------------------------------------------------------------------------------


def _accepted() -> str:
    return "; ".join(EVENT_SPECS.values())


def is_event_spec(spec: str) -> bool:
    """True when ``spec`` names an event data set (its name before any ``:`` is in :data:`EVENT_SPECS`, or
    starts with ``emulated-``, so that a mistyped emulated spec gets this module's error listing the accepted
    ones)."""
    if not isinstance(spec, str):
        return False
    name = spec.partition(":")[0]
    return name in EVENT_SPECS or name.startswith("emulated-")


def _parse_event_spec(spec: str) -> tuple[str, Path | None]:
    if not isinstance(spec, str):
        raise ValueError(f"event data spec must be a str, got {spec!r}; accepted: {_accepted()}")
    name, sep, path = spec.partition(":")
    if name not in EVENT_SPECS:
        raise ValueError(f"unknown event data spec {spec!r}; accepted: {_accepted()}")
    if sep and not path:
        raise ValueError(f"event data spec {spec!r} ends in ':' without a path; use {EVENT_SPECS[name]}")
    if name in _NEEDS_PATH and not sep:
        raise ValueError(f"event data spec {spec!r} needs a path: {EVENT_SPECS[name]}")
    if name in _NO_PATH and sep:
        raise ValueError(f"event data spec {spec!r} takes no path: {EVENT_SPECS[name]}")
    return name, Path(path).expanduser() if sep else None


def parse_limit(limit: Limit) -> tuple[int | None, int | None] | None:
    """``limit`` -> ``(n_train, n_test)`` caps (None = no cap), or None for the spec's defaults.

    Accepts None, an int N >= 1 (both splits), ``"all"`` (no caps), ``"N"``, ``"N_TRAIN,N_TEST"`` (either may
    be ``all``), or a pair of ints/None.
    """
    if limit is None:
        return None
    bad = ValueError(
        f"limit={limit!r} must be N >= 1 (both splits), 'N_TRAIN,N_TEST', 'all', or a pair of ints/None"
    )

    def one(v) -> int | None:
        if v is None or (isinstance(v, str) and v.strip().lower() == "all"):
            return None
        if isinstance(v, str):
            try:
                v = int(v.strip())
            except ValueError:
                raise bad from None
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise bad
        return int(v)

    if isinstance(limit, str):
        parts = limit.split(",")
        if len(parts) == 1:
            v = one(parts[0])
            return (v, v)
        if len(parts) == 2:
            return (one(parts[0]), one(parts[1]))
        raise bad
    if isinstance(limit, (tuple, list)):
        if len(limit) != 2:
            raise bad
        return (one(limit[0]), one(limit[1]))
    v = one(limit)
    return (v, v)


def default_emulation_cache() -> Path:
    """``$LFP_SNN_DATA/emulated`` when ``LFP_SNN_DATA`` is set, else ``~/.cache/lfp-snn/emulated``."""
    base = os.environ.get("LFP_SNN_DATA")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "lfp-snn") / "emulated"


# --------------------------------------------------------------------------------------------------------------
# loaders
# --------------------------------------------------------------------------------------------------------------


class _EventsOf:
    """Lazy view ``[events of dataset[i] for i in indices]`` over an (events, label) data set."""

    def __init__(self, dataset, indices: Sequence[int]):
        self.dataset = dataset
        self.indices = list(indices)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> np.ndarray:
        return self.dataset[self.indices[k]][0]


def _capped(targets: Sequence[int], cap: int | None, classes: int) -> list[int]:
    """All indices, or a stratified seeded choice of ``cap`` of them (sorted)."""
    n = len(targets)
    if cap is None or cap >= n:
        return list(range(n))
    y = torch.as_tensor(np.asarray(targets, dtype=np.int64))
    return _choose(y, classes, cap, seed=0).tolist()


def _from_folder(dataset, cap, encoder, name, classes, class_names) -> FrameDataset:
    index = _capped(dataset.targets, cap, classes)
    labels = [dataset.targets[i] for i in index]
    return FrameDataset.from_events(
        _EventsOf(dataset, index),
        labels,
        encoder,
        classes=classes,
        name=name,
        class_names=class_names,
        describe=lambda k: str(dataset.files[index[k]]),
    )


def _load_nmnist(folder: Path, steps: int, downsample: int, caps) -> tuple[FrameDataset, FrameDataset]:
    from .datasets import NMNISTFolder

    train, test = NMNISTFolder(folder, "train"), NMNISTFolder(folder, "test")
    enc = ToFrames(train.sensor_size, n_time_bins=steps, mode="count", downsample=downsample)
    return tuple(  # type: ignore[return-value]
        _from_folder(ds, cap, enc, f"nmnist-{split}", 10, ds.classes)
        for ds, cap, split in ((train, caps[0], "train"), (test, caps[1], "test"))
    )


def _load_dvsgesture(folder: Path, steps: int, downsample: int, caps) -> tuple[FrameDataset, FrameDataset]:
    from .datasets import DVSGestureFolder

    train, test = DVSGestureFolder(folder, "train"), DVSGestureFolder(folder, "test")
    enc = ToFrames(train.sensor_size, n_time_bins=steps, mode="count", downsample=downsample)
    k = len(train.classes)
    return tuple(  # type: ignore[return-value]
        _from_folder(ds, cap, enc, f"dvsgesture-{split}", k, ds.classes)
        for ds, cap, split in ((train, caps[0], "train"), (test, caps[1], "test"))
    )


def _shd_test_file(path: Path) -> Path | None:
    stem = path.name
    for suffix in ("_train.h5", "_train.hdf5"):
        if stem.endswith(suffix):
            other = path.with_name(stem[: -len(suffix)] + suffix.replace("_train", "_test"))
            return other if other.is_file() else None
    return None


def _load_shd(path: Path, steps: int, downsample: int, caps) -> tuple[FrameDataset, FrameDataset]:
    from .datasets import SHDFile
    from .formats import read_shd

    head = SHDFile(path)  # FileNotFoundError / layout ValueError with a listing
    test_path = _shd_test_file(path)
    events, labels = read_shd(path)
    test_events = None
    if test_path is not None:
        test_events, test_labels = read_shd(test_path)
    # the input size is the file's: one channel per unit up to the highest that fires (700 for SHD and SSC)
    units = 1 + max((int(ev["x"].max()) for ev in [*events, *(test_events or [])] if len(ev)), default=-1)
    if units < 1:
        raise ValueError(f"{path}: no spikes in any sample; an SHD file needs spikes to size the input")
    enc = ToSpikeTrains((units, 1, 1), n_time_bins=steps, mode="count", downsample=downsample)
    if test_path is not None:
        test_head = SHDFile(test_path)
        classes = max(len(head.classes), len(test_head.classes))
        names = head.classes if len(head.classes) == classes else test_head.classes
        parts = [
            (events, labels, list(range(len(labels)))),
            (test_events, test_labels, list(range(len(test_labels)))),
        ]
    else:  # seeded stratified 80/20 split of the one file
        classes, names = len(head.classes), head.classes
        y = torch.as_tensor(labels)
        n_test = max(1, round(0.2 * len(y))) if len(y) > 1 else 0
        test_idx = _choose(y, classes, n_test, seed=0).tolist() if n_test else []
        held = set(test_idx)
        train_idx = [i for i in range(len(y)) if i not in held]
        parts = [(events, labels, train_idx), (events, labels, test_idx)]
    out = []
    for (ev, lab, idx), cap, split in zip(parts, caps, ("train", "test")):
        if cap is not None and cap < len(idx):
            sub = _choose(torch.as_tensor(lab[idx]), classes, cap, seed=0).tolist()
            idx = [idx[i] for i in sub]
        source = test_path if (test_path is not None and split == "test") else path
        out.append(
            FrameDataset.from_events(
                [ev[i] for i in idx],
                lab[idx],
                enc,
                classes=classes,
                name=f"shd-{split}",
                class_names=names,
                describe=lambda k, idx=idx, source=source: f"{source}: sample {idx[k]}",
            )
        )
    return out[0], out[1]


def _emulated(
    images,
    cap: int | None,
    params: SaccadeParams,
    steps: int,
    downsample: int,
    cache_dir,
    name: str,
) -> FrameDataset:
    if cap is not None and cap < len(images):
        images = images.subset(cap, seed=0)
    ds = EmulatedEvents(images.x, images.y, params, cache_dir=cache_dir)
    enc = ToFrames(
        ds.sensor_size,
        n_time_bins=steps,
        window=(0, params.duration_us),
        mode="count",
        downsample=downsample,
    )
    return FrameDataset.from_events(
        _EventsOf(ds, range(len(ds))), ds.targets, enc, classes=images.classes, name=name
    )


def _image_source(name: str, folder: Path | None) -> Callable[[], Any]:
    if name == "emulated-digits":
        return load_digits
    if name == "emulated-fashion-mnist":
        return lambda: load_dataset(f"fashion-mnist:{folder}" if folder else "fashion-mnist")
    return lambda: load_dataset(f"mnist:{folder}" if folder else "mnist")


def load_event_dataset(
    spec: str,
    steps: int,
    *,
    downsample: int | None = None,
    cache_dir: str | os.PathLike | bool | None = None,
    limit: Limit = None,
    saccade_params: SaccadeParams | None = None,
    classes: int | None = None,
) -> tuple[FrameDataset, FrameDataset]:
    """Load an event data set by spec (see :data:`EVENT_SPECS` and the module docstring) as ``(train, test)``
    :class:`FrameDataset` of frames ``[N, T, ...]`` with ``T = steps``.

    Args:
        spec: ``nmnist:<folder>``, ``shd:<file>``, ``dvsgesture:<folder>``, ``emulated-digits``,
            ``emulated-fashion-mnist[:<folder>]`` or ``emulated-mnist[:<folder>]``.
        steps: T, the number of time bins per recording (>= 1).
        downsample: spatial pooling factor (sums counts); default 4 for DVS Gesture (128 -> 32), else 1.
        cache_dir: where emulated recordings are cached; None: :func:`default_emulation_cache`; False: no cache.
        limit: caps on the split sizes (see :func:`parse_limit`); None reads ``$LFP_SNN_EVENT_LIMIT`` and
            otherwise uses the spec's default (6000 train / 1000 test for the emulated 28 x 28 sets, no cap
            for the others).
        saccade_params: emulation settings for the ``emulated-*`` specs (default :data:`DIGITS_SACCADES` for
            the digits, :class:`SaccadeParams` () for the 28 x 28 sets).
        classes: the number of outputs (None: the data set's own, e.g. the classes an SHD file names); at least
            as many as the labels need. The SHD input size is the file's (one channel per unit).

    Raises:
        ValueError: unknown spec (the message lists the accepted ones), a missing or unexpected path, a bad
            ``steps``, ``downsample`` or ``limit``.
        FileNotFoundError: the files are not there (the message describes the expected layout and what is there).
    """
    name, path = _parse_event_spec(spec)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"steps={steps!r} (T, time bins per recording) must be an int >= 1")
    steps = int(steps)
    if downsample is None:
        downsample = DVSGESTURE_DOWNSAMPLE if name == "dvsgesture" else 1
    caps = parse_limit(limit)
    if caps is None:
        caps = parse_limit(os.environ.get(LIMIT_ENV) or None)
    if caps is None:
        caps = (
            EMULATED_DEFAULT_LIMIT if name in ("emulated-fashion-mnist", "emulated-mnist") else (None, None)
        )

    if not name.startswith("emulated-"):
        for option, value in (("cache_dir", cache_dir), ("saccade_params", saccade_params)):
            if value is not None:
                raise ValueError(
                    f"{option} does not apply to {spec!r}: it is an option of the emulated-* specs"
                )
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 2):
        raise ValueError(f"classes={classes!r} must be an integer >= 2 (or None: as many as the data have)")
    if name == "nmnist":
        return _with_classes(_load_nmnist(path, steps, downsample, caps), classes)
    if name == "dvsgesture":
        return _with_classes(_load_dvsgesture(path, steps, downsample, caps), classes)
    if name == "shd":
        return _with_classes(_load_shd(path, steps, downsample, caps), classes)

    if cache_dir is None or cache_dir is True:
        cache = default_emulation_cache()
    elif cache_dir is False:
        cache = None
    else:
        cache = Path(cache_dir).expanduser()
    params = saccade_params or (DIGITS_SACCADES if name == "emulated-digits" else SaccadeParams())
    train_img, test_img = _image_source(name, path)()
    return _with_classes(
        tuple(
            _emulated(imgs, cap, params, steps, downsample, cache, f"{name}-{split}")
            for imgs, cap, split in ((train_img, caps[0], "train"), (test_img, caps[1], "test"))
        ),
        classes,
    )


def _with_classes(pair, classes: int | None):
    """The (train, test) pair with ``classes`` outputs instead of the data set's own number (at least as many
    as the labels need)."""
    if classes is None:
        return pair
    top = max((int(ds.y.max()) + 1 for ds in pair if len(ds)), default=0)
    if classes < top:
        raise ValueError(
            f"classes={classes} is fewer than the labels need: {pair[0].name} and {pair[1].name} hold labels up to "
            f"{top - 1}; give at least {top}"
        )
    return tuple(
        FrameDataset(
            ds.x,
            ds.y,
            classes,
            ds.name,
            ds.sensor_size,
            ds.class_names + tuple(str(k) for k in range(len(ds.class_names), classes))
            if ds.class_names
            else (),
        )
        for ds in pair
    )
