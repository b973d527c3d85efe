"""Readers and writers for event-camera / event-audio recordings.

Every reader returns events as a structured numpy array with the dtype :data:`EVENT_DTYPE`
(fields ``x``, ``y``, ``t``, ``p``; the tonic convention):

- ``x``, ``y``: pixel column and row (int16); for 1-D sensors (audio channels) ``x`` is the unit and ``y`` is 0,
- ``t``: timestamp in microseconds (int64),
- ``p``: polarity (int8), 1 = ON (brightness went up), 0 = OFF; 0 for sensors with a single polarity.

A sensor size is a tuple ``(W, H, P)``: width (number of x values), height (number of y values), polarities.

The code is written from the published format descriptions (N-MNIST / N-Caltech101 by Orchard et al. 2015; the
Spiking Heidelberg Digits by Cramer et al. 2020; tonic's preprocessed DVS Gesture files).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "EVENT_DTYPE",
    "NMNIST_SENSOR_SIZE",
    "NCALTECH101_SENSOR_SIZE",
    "SHD_SENSOR_SIZE",
    "DVSGESTURE_SENSOR_SIZE",
    "DVSGESTURE_CLASSES",
    "make_events",
    "as_events",
    "read_nmnist_bin",
    "write_nmnist_bin",
    "read_shd",
    "read_shd_sample",
    "write_shd",
    "read_dvsgesture_npy",
    "write_dvsgesture_npy",
]

EVENT_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
"""Canonical event dtype: x, y (int16 pixels), t (int64 µs), p (int8, 1 = ON, 0 = OFF)."""

NMNIST_SENSOR_SIZE = (34, 34, 2)
NCALTECH101_SENSOR_SIZE = (240, 180, 2)
SHD_SENSOR_SIZE = (700, 1, 1)
DVSGESTURE_SENSOR_SIZE = (128, 128, 2)
DVSGESTURE_CLASSES = (
    "hand clapping",
    "right hand wave",
    "left hand wave",
    "right arm clockwise",
    "right arm counter-clockwise",
    "left arm clockwise",
    "left arm counter-clockwise",
    "arm roll",
    "air drums",
    "air guitar",
    "other gestures",
)

PathLike = str | os.PathLike


def make_events(x, y, t, p) -> np.ndarray:
    """Build an event array of dtype :data:`EVENT_DTYPE` from four equally long 1-D sequences.

    ``x``, ``y`` in pixels, ``t`` in µs, ``p`` in {0, 1}. Scalars are broadcast to the common length.
    """
    x, y, t, p = (np.asarray(v) for v in (x, y, t, p))
    sizes = [v.size for v in (x, y, t, p) if v.ndim > 0]
    n = sizes[0] if sizes else 1
    out = np.empty(n, dtype=EVENT_DTYPE)
    out["x"], out["y"], out["t"], out["p"] = x, y, t, p
    return out


def as_events(events: np.ndarray) -> np.ndarray:
    """Convert any structured array with fields ``x``, ``t``, ``p`` (``y`` optional) to :data:`EVENT_DTYPE`.

    Float timestamps are rounded to whole µs; boolean polarities become 0/1; a missing ``y`` becomes 0.
    Raises ValueError naming the fields found when ``x``, ``t`` or ``p`` is missing.
    """
    names = events.dtype.names or ()
    missing = [f for f in ("x", "t", "p") if f not in names]
    if missing:
        raise ValueError(
            f"events need the fields x, t, p (y optional); missing {missing}, found fields {list(names)}"
        )
    if events.dtype == EVENT_DTYPE:
        return events
    out = np.empty(len(events), dtype=EVENT_DTYPE)
    out["x"] = events["x"]
    out["y"] = events["y"] if "y" in names else 0
    t = events["t"]
    out["t"] = np.rint(t) if np.issubdtype(t.dtype, np.floating) else t
    out["p"] = events["p"]
    return out


# --------------------------------------------------------------------------------------------------------------
# N-MNIST / N-Caltech101 ``.bin``
# --------------------------------------------------------------------------------------------------------------

_TS_BITS = 23
_TS_PERIOD = 1 << _TS_BITS  # timestamps are stored modulo 2^23 µs (about 8.39 s)
_TS_HALF = _TS_PERIOD // 2
_OVERFLOW_Y = 240  # reference readers treat records with y == 240 as "timestamp overflow" markers
_OVERFLOW_INCREMENT = 1 << 13


def read_nmnist_bin(path: PathLike, *, overflow_markers: bool = True) -> np.ndarray:
    """Read an N-MNIST / N-Caltech101 ``.bin`` file.

    Format: 5 bytes per event; byte 0 = x, byte 1 = y, byte 2 bit 7 = polarity (1 = ON), bits 6..0 of byte 2 =
    timestamp bits 22..16, bytes 3 and 4 = timestamp bits 15..0 (big-endian), in µs.

    Timestamps are stored modulo 2^23 µs. They are unwrapped on reading under the assumption that consecutive
    events in file order are less than 2^22 µs (about 4.2 s) apart in either direction: every step between
    consecutive raw timestamps is taken as the one in [-2^22, 2^22) that is congruent modulo 2^23. So a drop of
    more than 2^22 µs means a wrap (add 2^23), while small backward steps (slightly unsorted events) are kept
    as they are. The first event's time is taken as stored (in [0, 2^23)). :func:`write_nmnist_bin` checks the
    same conditions, so write -> read round-trips bit-exactly, also past 2^23 µs.

    With ``overflow_markers`` (default), records with y == 240 are treated as the reference readers of the data
    set authors do: they are not events, and each one adds 2^13 µs to the timestamps of all later events. No
    N-MNIST (34 rows) or N-Caltech101 (180 rows) event has y == 240.

    Returns:
        events of dtype :data:`EVENT_DTYPE`, shape [N], in file order; sensor size :data:`NMNIST_SENSOR_SIZE`
        (34, 34, 2) for N-MNIST, :data:`NCALTECH101_SENSOR_SIZE` for N-Caltech101.

    Raises:
        ValueError: the file size is not a multiple of 5 bytes (truncated file); the message names path and size.
    """
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % 5:
        raise ValueError(
            f"{path}: size {raw.size} bytes is not a multiple of 5 (N-MNIST .bin records are 5 bytes each); "
            "the file is truncated or not in this format"
        )
    rec = raw.reshape(-1, 5).astype(np.int64)
    x, y = rec[:, 0], rec[:, 1]
    p = rec[:, 2] >> 7
    ts = ((rec[:, 2] & 0x7F) << 16) | (rec[:, 3] << 8) | rec[:, 4]

    offset = np.zeros(len(rec), dtype=np.int64)
    if overflow_markers:
        is_marker = y == _OVERFLOW_Y
        if is_marker.any():
            offset = np.cumsum(is_marker) * _OVERFLOW_INCREMENT
            keep = ~is_marker
            x, y, p, ts, offset = x[keep], y[keep], p[keep], ts[keep], offset[keep]

    t = _unwrap(ts) + offset
    return make_events(x, y, t, p)


def _unwrap(ts: np.ndarray) -> np.ndarray:
    """Undo the modulo-2^23 wrap: each step is mapped to [-2^22, 2^22) (see :func:`read_nmnist_bin`)."""
    if ts.size == 0:
        return ts.astype(np.int64)
    steps = np.diff(ts)
    steps = (steps + _TS_HALF) % _TS_PERIOD - _TS_HALF
    out = np.empty_like(ts, dtype=np.int64)
    out[0] = ts[0]
    np.cumsum(steps, out=out[1:])
    out[1:] += ts[0]
    return out


def write_nmnist_bin(path: PathLike, events: np.ndarray) -> None:
    """Write events in the N-MNIST ``.bin`` format (see :func:`read_nmnist_bin`), in the order given.

    Conditions (ValueError naming the offending value otherwise), which make write -> read exact:
    x and y in 0..255 and y != 240 (the overflow-marker row), p in {0, 1}, t >= 0 in µs, the first event's
    t < 2^23, and consecutive events less than 2^22 µs apart (in either direction). Times past 2^23 µs are
    stored modulo 2^23 and unwrapped by the reader.
    """
    ev = as_events(np.asarray(events))
    x = ev["x"].astype(np.int64)
    y = ev["y"].astype(np.int64)
    t = ev["t"].astype(np.int64)
    p = ev["p"].astype(np.int64)
    for name, v, lo, hi in (("x", x, 0, 255), ("y", y, 0, 255), ("p", p, 0, 1)):
        bad = (v < lo) | (v > hi)
        if bad.any():
            raise ValueError(f"write_nmnist_bin: {name}={v[bad][0]} is outside {lo}..{hi}")
    if (y == _OVERFLOW_Y).any():
        raise ValueError(f"write_nmnist_bin: y={_OVERFLOW_Y} cannot be stored (it marks timestamp overflows)")
    if t.size:
        if (t < 0).any():
            raise ValueError(f"write_nmnist_bin: t={t[t < 0][0]} µs is negative; times must be >= 0")
        if t[0] >= _TS_PERIOD:
            raise ValueError(
                f"write_nmnist_bin: first event t={t[0]} µs must be < 2^23 = {_TS_PERIOD} µs "
                "(the reader cannot recover whole periods before the first event)"
            )
        steps = np.diff(t)
        bad = (steps >= _TS_HALF) | (steps < -_TS_HALF)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"write_nmnist_bin: events {i} and {i + 1} are {steps[i]} µs apart; consecutive events must "
                f"be less than 2^22 = {_TS_HALF} µs apart for the timestamps to unwrap exactly"
            )
    tw = t % _TS_PERIOD
    rec = np.empty((len(ev), 5), dtype=np.uint8)
    rec[:, 0] = x
    rec[:, 1] = y
    rec[:, 2] = (p << 7) | (tw >> 16)
    rec[:, 3] = (tw >> 8) & 0xFF
    rec[:, 4] = tw & 0xFF
    Path(path).write_bytes(rec.tobytes())


# --------------------------------------------------------------------------------------------------------------
# SHD / SSC ``.h5``
# --------------------------------------------------------------------------------------------------------------

_SHD_REQUIRED = ("spikes/times", "spikes/units", "labels")


def _h5py():
    try:
        import h5py
    except ImportError as err:  # pragma: no cover - h5py is a core dependency
        raise ImportError("reading SHD/SSC files needs h5py (pip install h5py)") from err
    return h5py


def open_h5(path: PathLike):
    """An h5py handle on ``path`` for reading; FileNotFoundError or ValueError naming the file when it is
    missing or not an HDF5 file."""
    h5py = _h5py()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}" + (" (it is a folder)" if path.is_dir() else ""))
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not an HDF5 file; SHD/SSC recordings come as .h5 (HDF5) files")
    return h5py.File(path, "r")


def _check_shd_layout(f, path) -> None:
    missing = [name for name in _SHD_REQUIRED if name not in f]
    if missing:
        found: list[str] = []
        f.visit(found.append)
        raise ValueError(
            f"{path}: not an SHD/SSC file: missing {missing}. Expected datasets {list(_SHD_REQUIRED)} "
            f"(optional extra/...); the file holds {found or 'nothing'}"
        )


def _shd_events(times_s: np.ndarray, units: np.ndarray) -> np.ndarray:
    times_s = np.asarray(times_s, dtype=np.float64)
    units = np.asarray(units)
    if times_s.shape != units.shape:
        raise ValueError(f"SHD sample has {times_s.size} spike times but {units.size} units")
    return make_events(units, 0, np.rint(times_s * 1e6).astype(np.int64), 0)


def read_shd(path: PathLike) -> tuple[list[np.ndarray], np.ndarray]:
    """Read a whole Spiking Heidelberg Digits / Spiking Speech Commands ``.h5`` file.

    Layout: ``spikes/times`` (ragged float seconds), ``spikes/units`` (ragged uint16 channel index), ``labels``
    (one integer per sample), optionally ``extra/...`` (speaker, keys, meta_info; ignored here).

    Returns:
        (events, labels): a list with one event array per sample (dtype :data:`EVENT_DTYPE`; ``t`` in µs,
        rounded to whole µs; ``x`` = unit in 0..699; ``y`` = 0; ``p`` = 0) and labels as int64 [N].
        Sensor size :data:`SHD_SENSOR_SIZE` = (700, 1, 1).

    Raises:
        ValueError: a required dataset is missing; the message lists what is expected and what the file holds.
    """
    with open_h5(path) as f:
        _check_shd_layout(f, path)
        times = f["spikes/times"][:]
        units = f["spikes/units"][:]
        labels = np.asarray(f["labels"][:], dtype=np.int64)
    if not (len(times) == len(units) == len(labels)):
        raise ValueError(
            f"{path}: spikes/times has {len(times)} samples, spikes/units {len(units)}, labels {len(labels)}"
        )
    return [_shd_events(t, u) for t, u in zip(times, units)], labels


def read_shd_sample(f, index: int) -> tuple[np.ndarray, int]:
    """Read one sample from an open h5py SHD/SSC file ``f`` (see :func:`read_shd`): (events, label)."""
    return _shd_events(f["spikes/times"][index], f["spikes/units"][index]), int(f["labels"][index])


def write_shd(
    path: PathLike, events: Sequence[np.ndarray], labels: Sequence[int], *, keys: Sequence[str] | None = None
) -> None:
    """Write samples in the SHD/SSC ``.h5`` layout (vlen float32 seconds, vlen uint16 units, uint16 labels).

    ``events[i]["t"]`` in µs, ``events[i]["x"]`` = unit. ``keys`` (class names) go to ``extra/keys``.
    Times are stored as float32 seconds like the published files, so they read back to within about 0.1 µs
    per second of recording (rounded to whole µs on reading).
    """
    h5py = _h5py()
    with h5py.File(path, "w") as f:
        n = len(events)
        times = f.create_dataset("spikes/times", (n,), dtype=h5py.vlen_dtype(np.float32))
        units = f.create_dataset("spikes/units", (n,), dtype=h5py.vlen_dtype(np.uint16))
        for i, ev in enumerate(events):
            ev = as_events(np.asarray(ev))
            times[i] = (ev["t"] / 1e6).astype(np.float32)
            units[i] = ev["x"].astype(np.uint16)
        f.create_dataset("labels", data=np.asarray(labels, dtype=np.uint16))
        if keys is not None:
            f.create_dataset("extra/keys", data=np.array([k.encode() for k in keys]))


# --------------------------------------------------------------------------------------------------------------
# DVS Gesture ``.npy`` (tonic's preprocessed layout)
# --------------------------------------------------------------------------------------------------------------


def read_dvsgesture_npy(path: PathLike) -> np.ndarray:
    """Read one sample of tonic's preprocessed DVS Gesture data set.

    Layout: a numpy ``.npy`` array of shape [N, 4] with columns x, y, p, t, where t is in **milliseconds**
    (tonic multiplies by 1000 on loading; so does this reader). The label is the file name (``<label>.npy``).

    Returns:
        events of dtype :data:`EVENT_DTYPE` (t in µs); sensor size :data:`DVSGESTURE_SENSOR_SIZE` (128, 128, 2).
    """
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{path}: not a DVS Gesture .npy array ({e})") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(
            f"{path}: expected an [N, 4] array with columns x, y, p, t (ms), got {getattr(arr, 'shape', type(arr).__name__)}"
        )
    t_ms = arr[:, 3]
    t_us = np.rint(t_ms * 1000.0) if np.issubdtype(arr.dtype, np.floating) else t_ms.astype(np.int64) * 1000
    return make_events(arr[:, 0], arr[:, 1], t_us, arr[:, 2])


def write_dvsgesture_npy(path: PathLike, events: np.ndarray) -> None:
    """Write events as tonic's preprocessed DVS Gesture ``.npy`` ([N, 4] int64 columns x, y, p, t in ms).

    Times must be whole milliseconds (the format's precision); ValueError naming the first other value.
    """
    ev = as_events(np.asarray(events))
    bad = ev["t"] % 1000 != 0
    if bad.any():
        raise ValueError(f"write_dvsgesture_npy: t={ev['t'][bad][0]} µs is not a whole number of ms")
    arr = np.stack([ev["x"], ev["y"], ev["p"], ev["t"] // 1000], axis=1).astype(np.int64)
    np.save(path, arr)
