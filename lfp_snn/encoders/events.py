"""Event -> tensor encoders: bin an event stream (structured array with fields x, y, t, p; t in µs) into
time-first dense frames.

- :class:`ToFrames` -> float32 [T, P, H, W] (P = 1 with ``merge_polarity``),
- :class:`ToSpikeTrains` -> float32 [T, units] for 1-D sensors such as SHD (sensor (700, 1, 1) -> [T, 700]);
  for other sensors units = P * H * W in (p, y, x) order.

Both are frozen dataclasses over the pure function :func:`events_to_frames`.

Binning. The recording spans the window [t_start, t_end] (default: first to last event time); events outside
an explicit window are left out (that is what a window is for). Every event inside the window lands in
exactly one bin; **none is lost at bin edges**: bins are half-open [edge_k, edge_k+1) except the last, which is
closed, so the event at t_end goes into the last bin. In ``mode="count"`` the frames therefore sum to the number
of events in the window.

- ``n_time_bins=T``: T equal bins; event at time t goes to bin floor((t - t_start) * T / (t_end - t_start)),
  computed exactly in integers, clipped to T - 1. A zero-length window puts everything in bin 0.
- ``time_window=w`` (µs): bins of width w starting at t_start; T = max(1, ceil((t_end - t_start) / w)); the last
  bin [t_start + (T-1) w, t_end] is closed and may be shorter than w.

Relation to ``tonic.transforms.ToFrame``: with ``time_window=w, include_incomplete=True`` tonic gives the same
frames whenever (t_end - t_start) is not a multiple of w; otherwise it drops the events at t_end. With
``n_time_bins=T`` tonic uses bins of width (t_end - t_start) // T and drops the events at or after
t_start + T * width (at least the last event).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import torch

__all__ = ["ToFrames", "ToSpikeTrains", "events_to_frames", "time_bin_index"]

_MODES = ("count", "binary")


def _check_sensor_size(sensor_size) -> tuple[int, int, int]:
    try:
        size = tuple(int(s) for s in sensor_size)
    except TypeError as err:
        raise ValueError(f"sensor_size={sensor_size!r} must be a tuple (W, H, P) of positive ints") from err
    if len(size) != 3 or min(size) < 1 or any(int(s) != s for s in sensor_size):
        raise ValueError(f"sensor_size={sensor_size!r} must be a tuple (W, H, P) of positive ints")
    return size  # type: ignore[return-value]


def _check_binning(n_time_bins, time_window, window) -> None:
    if (n_time_bins is None) == (time_window is None):
        raise ValueError(
            f"set exactly one of n_time_bins and time_window (got n_time_bins={n_time_bins!r}, "
            f"time_window={time_window!r})"
        )
    if n_time_bins is not None and (
        isinstance(n_time_bins, bool) or not isinstance(n_time_bins, Integral) or n_time_bins <= 0
    ):
        raise ValueError(f"n_time_bins={n_time_bins!r} must be a positive int")
    if time_window is not None and (
        isinstance(time_window, bool)
        or not isinstance(time_window, Real)
        or not math.isfinite(time_window)
        or time_window <= 0
    ):
        raise ValueError(f"time_window={time_window!r} (bin width in µs) must be a positive number")
    if window is not None:
        ok = len(window) == 2 and all(float(v).is_integer() for v in window) and window[1] >= window[0]
        if not ok:
            raise ValueError(f"window={window!r} must be (t_start, t_end) in whole µs with t_start <= t_end")


def _check_downsample(downsample, sensor_size) -> None:
    if isinstance(downsample, bool) or not isinstance(downsample, Integral) or downsample < 1:
        raise ValueError(f"downsample={downsample!r} must be a positive int")
    w, h, _ = sensor_size
    for name, dim in (("W", w), ("H", h)):
        if dim > 1 and dim % downsample:
            raise ValueError(
                f"downsample={downsample} does not divide sensor {name}={dim} (sensor_size={sensor_size}); "
                "use a divisor of the sensor width and height"
            )


def time_bin_index(
    t: np.ndarray,
    *,
    n_time_bins: int | None = None,
    time_window: float | None = None,
    window: tuple[int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Assign timestamps ``t`` (µs, [N]) to time bins (see the module docstring for the rule).

    Returns:
        (index int64 [M], keep bool [N], T): the bin of each kept event (those inside the window), the mask
        of kept events, and the number of bins T.
    """
    _check_binning(n_time_bins, time_window, window)
    t = np.asarray(t).astype(np.int64, copy=False)
    if window is None:
        if t.size == 0:
            return np.zeros(0, np.int64), np.zeros(0, bool), int(n_time_bins or 1)
        t0, t1 = int(t.min()), int(t.max())
        keep = np.ones(t.shape, dtype=bool)
    else:
        t0, t1 = int(window[0]), int(window[1])
        keep = (t >= t0) & (t <= t1)
    rel = t[keep] - np.int64(t0)
    span = t1 - t0
    if n_time_bins is not None:
        n = int(n_time_bins)
        if span <= 0:
            idx = np.zeros(rel.shape, np.int64)
        elif span * n < 2**62:  # exact integer arithmetic: floor(rel * n / span)
            idx = (rel * n) // np.int64(span)
        else:  # recordings of days at µs resolution: float64 (may move events within 1 ulp of an edge)
            idx = np.floor(rel * (n / span)).astype(np.int64)
    else:
        if float(time_window).is_integer():
            w = int(time_window)
            n = max(1, -(-span // w))
            idx = rel // np.int64(w)
        else:
            n = max(1, math.ceil(span / time_window))
            idx = np.floor(rel / time_window).astype(np.int64)
    np.clip(idx, 0, n - 1, out=idx)
    return idx, keep, n


def events_to_frames(
    events: np.ndarray,
    sensor_size: tuple[int, int, int],
    *,
    n_time_bins: int | None = None,
    time_window: float | None = None,
    window: tuple[int, int] | None = None,
    mode: str = "count",
    merge_polarity: bool = False,
    downsample: int = 1,
) -> torch.Tensor:
    """Bin events into float32 frames [T, P, H // downsample, W // downsample] (P = 1 if ``merge_polarity``).

    ``events``: structured array with fields x, y, t (µs), p (y may be absent for 1-D sensors).
    ``sensor_size``: (W, H, P). ``mode``: "count" (events per bin and pixel) or "binary" (1 where any).
    ``downsample``: integer factor pooling d x d pixels (sums counts); must divide W and H (dims of size 1
    are left as they are).

    Raises:
        ValueError: both or neither of n_time_bins/time_window, n_time_bins <= 0, time_window <= 0, a bad
        window, mode or downsample, or an event outside the sensor (the message names the value).
    """
    W, H, P = _check_sensor_size(sensor_size)
    if mode not in _MODES:
        raise ValueError(f"mode={mode!r} is not accepted; use one of {_MODES}")
    _check_downsample(downsample, (W, H, P))
    names = events.dtype.names or ()
    if "x" not in names or "t" not in names or "p" not in names:
        raise ValueError(f"events need fields x, t, p (and y for 2-D sensors); found {list(names)}")

    idx, keep, n = time_bin_index(
        events["t"], n_time_bins=n_time_bins, time_window=time_window, window=window
    )
    x = events["x"][keep].astype(np.int64)
    y = events["y"][keep].astype(np.int64) if "y" in names else np.zeros_like(x)
    p = events["p"][keep].astype(np.int64)
    for name, v, size in (("x", x, W), ("y", y, H), ("p", p, P)):
        bad = (v < 0) | (v >= size)
        if bad.any():
            raise ValueError(
                f"event with {name}={v[bad][0]} is outside the sensor: {name} must be in 0..{size - 1} "
                f"for sensor_size={(W, H, P)}"
            )

    Wd = W // downsample if W > 1 else 1
    Hd = H // downsample if H > 1 else 1
    Pd = 1 if merge_polarity else P
    if downsample > 1:
        x = x // downsample
        y = y // downsample
    if merge_polarity:
        p = np.zeros_like(p)
    flat = ((idx * Pd + p) * Hd + y) * Wd + x
    counts = np.bincount(flat, minlength=n * Pd * Hd * Wd)
    if mode == "binary":
        np.minimum(counts, 1, out=counts)
    return torch.from_numpy(counts.astype(np.float32).reshape(n, Pd, Hd, Wd))


@dataclass(frozen=True)
class ToFrames:
    """Events -> float32 frames [T, P, H', W'] (P = 1 if ``merge_polarity``; H' = H / downsample).

    Args:
        sensor_size: (W, H, P).
        n_time_bins: number of equal time bins T (exactly one of this and ``time_window``).
        time_window: bin width in µs.
        window: (t_start, t_end) in µs, or None for first..last event. Events outside are left out.
        mode: "count" or "binary".
        merge_polarity: sum ON and OFF into one channel.
        downsample: integer spatial pooling factor dividing W and H.

    Settings are checked when the encoder is made (ValueError naming the bad value). See the module docstring
    for the binning rule (no event is lost at bin edges).
    """

    sensor_size: tuple[int, int, int]
    n_time_bins: int | None = None
    time_window: float | None = None
    window: tuple[int, int] | None = None
    mode: str = "count"
    merge_polarity: bool = False
    downsample: int = 1

    def __post_init__(self) -> None:
        size = _check_sensor_size(self.sensor_size)
        object.__setattr__(self, "sensor_size", size)
        _check_binning(self.n_time_bins, self.time_window, self.window)
        if self.window is not None:
            object.__setattr__(self, "window", tuple(self.window))
        if self.mode not in _MODES:
            raise ValueError(f"mode={self.mode!r} is not accepted; use one of {_MODES}")
        _check_downsample(self.downsample, size)

    def __call__(self, events: np.ndarray) -> torch.Tensor:
        return events_to_frames(
            events,
            self.sensor_size,
            n_time_bins=self.n_time_bins,
            time_window=self.time_window,
            window=self.window,
            mode=self.mode,
            merge_polarity=self.merge_polarity,
            downsample=self.downsample,
        )

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        """(P, H', W') of each frame."""
        W, H, P = self.sensor_size
        d = self.downsample
        return (1 if self.merge_polarity else P, H // d if H > 1 else 1, W // d if W > 1 else 1)


@dataclass(frozen=True)
class ToSpikeTrains(ToFrames):
    """Events -> float32 spike-count trains [T, units], units = P' * H' * W' in (p, y, x) order.

    Meant for 1-D sensors: SHD / SSC with sensor (700, 1, 1) gives [T, 700] (unit = x). Same arguments and
    binning rule as :class:`ToFrames`.
    """

    def __call__(self, events: np.ndarray) -> torch.Tensor:
        frames = super().__call__(events)
        return frames.reshape(frames.shape[0], -1)

    @property
    def n_units(self) -> int:
        """Number of output units per time step."""
        return math.prod(self.frame_shape)
