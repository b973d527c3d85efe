"""Emulated event data: static images -> N-MNIST-like event recordings by the saccade method.

Orchard, Jayawant, Cohen and Thakor (2015), "Converting static image datasets to spiking neuromorphic datasets
using saccades", recorded N-MNIST by moving an event camera along three saccades forming a triangle in front of
each MNIST digit. Here the camera is emulated:

1. **Motion.** The image, zero-padded to (H + pad) x (W + pad), moves along a closed equilateral triangle of side
   ``amplitude`` pixels, centred in the canvas: three saccades of ``saccade_ms`` each (3 x 100 ms = 300 ms by
   default) at constant speed along straight sides, sampled at ``rate_hz`` (1 kHz). Sub-pixel shifts use bilinear
   interpolation, so the motion is smooth.
   Positions are rounded to 1/256 pixel and intensities to 1/256, which makes the rendering exact in float32
   (the result does not depend on how images are batched).
2. **Pixels.** Each canvas pixel sees log-intensity L = log(I + eps). It keeps a reference level and emits an ON
   (p = 1) event each time L rises by its contrast threshold theta above the reference, an OFF (p = 0) event
   each time L falls by theta below it, moving the reference by theta per event. Thresholds are drawn once per
   sensor from N(threshold, threshold_sigma) (clipped below at ``min_threshold``; one theta per pixel for both
   polarities), i.e. the same for every sample.
   Each sample starts with the reference at L(0) plus a uniform jitter in [-theta/2, theta/2). Several crossings
   within one time step get times interpolated linearly between the two frames. With the defaults (eps = 0.1,
   theta = 0.2) a 28 x 28 digit gives a few thousand events, like N-MNIST (its sample recording has 4,325).
3. **Noise.** Optional background events at ``noise_rate_hz`` per pixel and polarity, uniform in space and time.

Everything random for sample i comes from a generator seeded by (seed, i); the sensor thresholds from (seed), so
each sample is reproducible on its own. Output events: :data:`~lfp_snn.events.formats.EVENT_DTYPE`, t in µs in
[0, 3 * saccade_ms * 1000], sorted by time; sensor size (W + pad, H + pad, 2), i.e. (34, 34, 2) for 28 x 28.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .formats import EVENT_DTYPE

__all__ = ["SaccadeParams", "emulate_saccades", "saccade_path", "sensor_thresholds", "EmulatedEvents"]

_CACHE_FORMAT = "lfp_snn.events.emulate/v1"
_Q = 256.0  # positions (px) and intensities are rounded to multiples of 1/256


@dataclass(frozen=True)
class SaccadeParams:
    """Parameters of the saccade emulation (see the module docstring).

    Attributes:
        pad: pixels added to the width and to the height, half on each side (28 + 6 -> 34), int >= 0.
        amplitude: side of the triangular path in pixels; its circumradius amplitude / sqrt(3) must be <= pad / 2.
        saccade_ms: duration of each of the 3 saccades, ms.
        rate_hz: frame rate of the emulated motion (time step 1e6 / rate_hz µs).
        threshold: mean contrast threshold theta in log-intensity units.
        threshold_sigma: per-pixel standard deviation of theta.
        min_threshold: lower clip of theta (> 0).
        eps: offset in log(I + eps), I in [0, 1]; smaller eps -> more events at dark edges.
        noise_rate_hz: background events per pixel per polarity per second.
        seed: base seed; sample i uses (seed, i), the sensor's thresholds use (seed).
    """

    pad: int = 6
    amplitude: float = 3.0
    saccade_ms: float = 100.0
    rate_hz: float = 1000.0
    threshold: float = 0.2
    threshold_sigma: float = 0.03
    min_threshold: float = 0.05
    eps: float = 0.1
    noise_rate_hz: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not (isinstance(self.pad, int) and self.pad >= 0):
            raise ValueError(f"pad={self.pad!r} must be an int >= 0")
        if not self.amplitude >= 0:
            raise ValueError(f"amplitude={self.amplitude!r} must be >= 0 pixels")
        if self.amplitude / math.sqrt(3) > self.pad / 2 + 1e-9:
            raise ValueError(
                f"amplitude={self.amplitude} px moves the image out of the canvas: its circumradius "
                f"amplitude/sqrt(3)={self.amplitude / math.sqrt(3):.3f} must be <= pad/2={self.pad / 2}"
            )
        if not self.saccade_ms > 0 or not self.rate_hz > 0:
            raise ValueError(f"saccade_ms={self.saccade_ms!r} and rate_hz={self.rate_hz!r} must be > 0")
        if self.steps_per_saccade < 1:
            raise ValueError(
                f"saccade_ms={self.saccade_ms} at rate_hz={self.rate_hz} gives no time step; raise either"
            )
        if not self.min_threshold > 0 or not self.threshold > 0 or not self.threshold_sigma >= 0:
            raise ValueError(
                f"threshold={self.threshold!r}, min_threshold={self.min_threshold!r} must be > 0 and "
                f"threshold_sigma={self.threshold_sigma!r} >= 0"
            )
        if not self.eps > 0:
            raise ValueError(f"eps={self.eps!r} must be > 0")
        if not self.noise_rate_hz >= 0:
            raise ValueError(f"noise_rate_hz={self.noise_rate_hz!r} must be >= 0")
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ValueError(f"seed={self.seed!r} must be an int >= 0")

    @property
    def steps_per_saccade(self) -> int:
        return int(round(self.saccade_ms * self.rate_hz / 1000.0))

    @property
    def dt_us(self) -> float:
        """Time step in µs."""
        return 1e6 / self.rate_hz

    @property
    def duration_us(self) -> int:
        """Length of a recording in µs (3 saccades)."""
        return int(round(3 * self.steps_per_saccade * self.dt_us))


def saccade_path(params: SaccadeParams) -> np.ndarray:
    """Image offsets along the triangle, float64 [T + 1, 2] as (dx, dy) px around the centred position,
    at times k * dt_us for k = 0..T (T = 3 * steps_per_saccade); closed: the last row equals the first."""
    n = params.steps_per_saccade
    r = params.amplitude / math.sqrt(3.0)
    ang = np.deg2rad([-90.0, 30.0, 150.0])  # y grows downwards: first vertex above the centre
    vert = np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
    k = np.arange(3 * n + 1)
    seg = np.minimum(k // n, 2)
    frac = (k - seg * n) / n
    pos = vert[seg] + frac[:, None] * (vert[(seg + 1) % 3] - vert[seg])
    return np.round(pos * _Q) / _Q


def sensor_thresholds(params: SaccadeParams, height: int, width: int) -> np.ndarray:
    """Per-pixel contrast thresholds of the emulated sensor, float32 [height, width] (canvas size)."""
    rng = np.random.default_rng([params.seed, 0])
    th = rng.normal(params.threshold, params.threshold_sigma, size=(height, width))
    return np.maximum(th, params.min_threshold).astype(np.float32)


def _as_images(images) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().numpy()
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 4:
        if arr.shape[1] != 1:
            raise ValueError(f"images of shape {arr.shape}: expected [N, 1, H, W] (one channel) or [N, H, W]")
        arr = arr[:, 0]
    if arr.ndim != 3:
        raise ValueError(f"images of shape {arr.shape}: expected [N, 1, H, W] or [N, H, W]")
    if arr.size and not (np.isfinite(arr).all() and arr.min() >= 0.0 and arr.max() <= 1.0):
        raise ValueError(
            f"image values must be finite and in [0, 1]; got min {np.nanmin(arr)}, max {np.nanmax(arr)}"
        )
    return np.ascontiguousarray(arr)


def _dilate(mask: np.ndarray, lo: int, hi: int, axis: int) -> np.ndarray:
    """OR of ``mask`` shifted by lo..hi along ``axis`` (shifted-in values are False)."""
    out = np.zeros_like(mask)
    n = mask.shape[axis]
    for s in range(lo, hi + 1):
        src = [slice(None)] * mask.ndim
        dst = [slice(None)] * mask.ndim
        if s >= 0:
            src[axis], dst[axis] = slice(0, n - s), slice(s, n)
        else:
            src[axis], dst[axis] = slice(-s, n), slice(0, n + s)
        out[tuple(dst)] |= mask[tuple(src)]
    return out


def emulate_saccades(
    images, params: SaccadeParams | None = None, *, start_index: int = 0, chunk_size: int = 64
) -> list[np.ndarray]:
    """Convert static images to event recordings (see the module docstring).

    Args:
        images: [N, 1, H, W] or [N, H, W], values in [0, 1] (numpy or torch).
        params: emulation settings (defaults: :class:`SaccadeParams`).
        start_index: sample index of ``images[0]`` (selects the per-sample random stream), so converting
            ``images[i:j]`` with ``start_index=i`` gives the same events as converting all of them.
        chunk_size: images processed together (vectorised); does not change the results.

    Returns:
        one event array per image (dtype EVENT_DTYPE, t in µs, sorted by time), sensor (W + pad, H + pad, 2).
    """
    params = params or SaccadeParams()
    imgs = _as_images(images)
    N, H, W = imgs.shape
    Hc, Wc = H + params.pad, W + params.pad
    imgs = np.round(imgs * _Q) / _Q  # exact products below

    path = saccade_path(params)
    ox = path[:, 0] + params.pad / 2  # top-left corner of the image in the canvas, px (multiples of 1/256)
    oy = path[:, 1] + params.pad / 2
    theta_map = sensor_thresholds(params, Hc, Wc)
    out: list[np.ndarray] = []
    for c0 in range(0, N, chunk_size):
        out.extend(_emulate_chunk(imgs[c0 : c0 + chunk_size], params, start_index + c0, ox, oy, theta_map))
    return out


def _taps(offsets: np.ndarray, margin: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear taps for sampling an image placed at ``offsets``: canvas pixel u reads image pixels
    u + q and u + q + 1 with weights 1 - f and f; returns (q + margin as int64, f as float32)."""
    q = np.floor(-offsets)
    return (q + margin).astype(np.int64), (-offsets - q).astype(np.float32)


def _emulate_chunk(img, params, first_index, ox, oy, theta_map) -> list[np.ndarray]:
    B, H, W = img.shape
    Hc, Wc = theta_map.shape
    dt = params.dt_us
    T1 = len(ox)
    E = params.pad + 2  # zero margin around the image, px

    # active pixels: canvas pixels within reach of a non-zero image pixel at some time (others never change)
    canvas = np.zeros((Hc, B, Wc), dtype=bool)
    canvas[:H, :, :W] = img.transpose(1, 0, 2) > 0
    active = _dilate(canvas, math.floor(oy.min()) - 1, math.ceil(oy.max()) + 1, axis=0)
    active = _dilate(active, math.floor(ox.min()) - 1, math.ceil(ox.max()) + 1, axis=2)
    flat = np.flatnonzero(active)
    yy, bb, xx = np.unravel_index(flat, active.shape)

    # per-sample random streams: reference jitter (now) and noise (at the end)
    rngs = [np.random.default_rng([params.seed, 1, first_index + b]) for b in range(B)]
    jitter = np.stack([r.random((Hc, Wc), dtype=np.float32) for r in rngs])  # [B, Hc, Wc]
    th = theta_map[yy, xx]
    inv = (1.0 / th).astype(np.float32)

    # rendering buffers, layout [rows, B, columns]; bilinear taps are exact in float32 (1/256 grid)
    P = np.zeros((H, B, W + 2 * E), dtype=np.float32)
    P[:, :, E : E + W] = img.transpose(1, 0, 2)
    X = np.zeros((H + 2 * E, B, Wc), dtype=np.float32)
    Xt = np.empty((H, B, Wc), dtype=np.float32)
    Fr = np.empty((Hc, B, Wc), dtype=np.float32)
    Ft = np.empty((Hc, B, Wc), dtype=np.float32)
    qx, fx = _taps(ox, E)
    qy, fy = _taps(oy, E)
    eps = np.float32(params.eps)
    one = np.float32(1.0)

    def log_frame(t: int) -> np.ndarray:
        """log(I + eps) at the active pixels for frame t, float32 [A]."""
        a0 = P[:, :, qx[t] : qx[t] + Wc]
        a1 = P[:, :, qx[t] + 1 : qx[t] + 1 + Wc]
        np.multiply(a0, one - fx[t], out=X[E : E + H])
        np.multiply(a1, fx[t], out=Xt)
        X[E : E + H] += Xt
        np.multiply(X[qy[t] : qy[t] + Hc], one - fy[t], out=Fr)
        np.multiply(X[qy[t] + 1 : qy[t] + 1 + Hc], fy[t], out=Ft)
        np.add(Fr, Ft, out=Fr)
        lf = np.take(Fr.reshape(-1), flat)
        lf += eps
        return np.log(lf, out=lf)

    # the pixels' event loop, vectorised over all active pixels of the chunk; for each pixel with events in
    # step k -> k+1 keep (k, pixel, signed count, reference before the step, L before and after)
    l_prev = log_frame(0)
    ref = l_prev + (jitter[bb, yy, xx] - np.float32(0.5)) * th
    d = np.empty_like(ref)
    n_k = np.empty_like(ref)
    rec: list[tuple[np.ndarray, ...]] = []
    for k in range(T1 - 1):
        l_next = log_frame(k + 1)
        np.subtract(l_next, ref, out=d)
        np.multiply(d, inv, out=d)
        np.trunc(d, out=n_k)
        nz = np.flatnonzero(n_k != 0)
        if nz.size:
            n_nz = n_k[nz]
            rec.append(
                (np.full(nz.size, k, np.int64), nz, n_nz.astype(np.int64), ref[nz], l_prev[nz], l_next[nz])
            )
            ref[nz] += n_nz * th[nz]
        l_prev = l_next

    cols = list(zip(*rec)) if rec else [[np.zeros(0, np.int64)]] * 3 + [[np.zeros(0, np.float32)]] * 3
    kk, aa, n, ref_before, lp, ln = (np.concatenate(c) for c in cols)

    # expand counts into single events; times interpolated linearly between the two frames
    reps = np.abs(n)
    grp = np.repeat(np.arange(len(n)), reps)
    starts = np.cumsum(reps) - reps
    j = np.arange(int(reps.sum())) - starts[grp] + 1
    sgn = np.sign(n)[grp]
    a = aa[grp]
    level = ref_before[grp] + th[a] * (sgn * j).astype(np.float32)
    lp, step = lp[grp], (ln - lp)[grp]
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(step != 0, (level - lp) / step, 1.0)
    f = np.clip(f, 0.0, 1.0)
    ev_t = np.rint((kk[grp] + f.astype(np.float64)) * dt).astype(np.int64)
    ev_b = bb[a]
    ev = np.empty(len(grp), dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["t"], ev["p"] = xx[a], yy[a], ev_t, (sgn > 0)

    # split per sample sorted by time (stable: ties keep the (step, y, x) order), add noise
    dur = params.duration_us
    order = np.argsort(ev_b * np.int64(dur + 1) + ev_t, kind="stable")
    ev = ev[order]
    bounds_b = np.searchsorted(ev_b[order], np.arange(B + 1))
    mean_noise = params.noise_rate_hz * dur * 1e-6 * Hc * Wc * 2
    result = []
    for b in range(B):
        e = ev[bounds_b[b] : bounds_b[b + 1]]
        rng = rngs[b]
        n_noise = int(rng.poisson(mean_noise))
        if n_noise:
            noise = np.empty(n_noise, dtype=EVENT_DTYPE)
            noise["x"] = rng.integers(0, Wc, n_noise)
            noise["y"] = rng.integers(0, Hc, n_noise)
            noise["t"] = rng.integers(0, dur + 1, n_noise)
            noise["p"] = rng.integers(0, 2, n_noise)
            e = np.concatenate([e, noise])
            e = e[np.argsort(e["t"], kind="stable")]
        result.append(e)
    return result


# --------------------------------------------------------------------------------------------------------------
# data set with on-disk cache
# --------------------------------------------------------------------------------------------------------------


def _cache_key(imgs: np.ndarray, params: SaccadeParams) -> str:
    h = hashlib.sha256()
    h.update(_CACHE_FORMAT.encode())
    h.update(json.dumps(dataclasses.asdict(params), sort_keys=True).encode())
    h.update(json.dumps([list(imgs.shape), str(imgs.dtype)]).encode())
    h.update(np.ascontiguousarray(imgs).tobytes())
    return h.hexdigest()


def _write_cache(path: Path, events: np.ndarray, offsets: np.ndarray, params: SaccadeParams) -> None:
    """Write ``path/`` (events.npy, offsets.npy, params.json) atomically: fill a temporary folder next to it,
    then rename it into place. If another process got there first, its copy is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        for name, arr in (("events.npy", events), ("offsets.npy", offsets)):
            with open(tmp / name, "wb") as fh:
                np.save(fh, arr)
                fh.flush()
                os.fsync(fh.fileno())
        (tmp / "params.json").write_text(json.dumps(dataclasses.asdict(params), indent=1, sort_keys=True))
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "offsets.npy").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _read_cache(path: Path, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Memory-mapped events and offsets from a cache folder, or None when it is absent or unusable."""
    try:
        offsets = np.load(path / "offsets.npy", allow_pickle=False)
        events = np.load(path / "events.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    if events.dtype != EVENT_DTYPE or offsets.shape != (n + 1,) or offsets[-1] != len(events):
        return None
    return events, offsets


class EmulatedEvents(torch.utils.data.Dataset):
    """A data set of emulated saccade recordings of static images: item i -> (events, label).

    Args:
        images: [N, 1, H, W] or [N, H, W] in [0, 1] (numpy or torch).
        labels: [N] integer labels.
        params: :class:`SaccadeParams`; keyword arguments (e.g. ``threshold=0.25``) override its fields.
        cache_dir: if given, the recordings are stored in the folder ``cache_dir/saccades-<hash>/`` (events.npy,
            offsets.npy, params.json), where the hash covers every parameter and the image data. An existing
            folder is reused (memory-mapped, so large sets need little RAM); a new one is written atomically.
        transform: optional callable applied to each event array (e.g. a ``ToFrames`` encoder).
        classes: class names; default ``"0".."K-1"`` with K = max label + 1.

    All recordings are computed (about 2 s per 1,000 28 x 28 images on one core) or loaded when the data set is
    made; without ``cache_dir`` they stay in memory (~60 kB per sample). ``cache_hit`` tells whether they came
    from the cache, ``cache_path`` where they are. Sensor size: (W + pad, H + pad, 2).
    """

    def __init__(
        self,
        images,
        labels: Sequence[int] | np.ndarray | torch.Tensor,
        params: SaccadeParams | None = None,
        *,
        cache_dir: str | os.PathLike | None = None,
        transform: Callable[[np.ndarray], Any] | None = None,
        classes: Sequence[str] | None = None,
        **overrides: Any,
    ):
        params = params or SaccadeParams()
        if overrides:
            params = dataclasses.replace(params, **overrides)
        self.params = params
        imgs = _as_images(images)
        if isinstance(labels, torch.Tensor):
            labels = labels.cpu().numpy()
        self.targets = [int(v) for v in np.asarray(labels).reshape(-1)]
        if len(self.targets) != len(imgs):
            raise ValueError(f"{len(imgs)} images but {len(self.targets)} labels")
        N, H, W = imgs.shape
        self.sensor_size = (W + params.pad, H + params.pad, 2)
        n_classes = max(self.targets, default=-1) + 1
        self.classes = list(classes) if classes is not None else [str(i) for i in range(n_classes)]
        self.transform = transform
        self.cache_hit = False
        self.cache_path: Path | None = None

        if cache_dir is not None:
            self.cache_path = Path(cache_dir) / f"saccades-{_cache_key(imgs, params)[:32]}"
            cached = _read_cache(self.cache_path, N)
            if cached is not None:
                self._events, self._offsets = cached
                self.cache_hit = True
                return
            if self.cache_path.exists():  # unusable (e.g. written by something else): replace it
                shutil.rmtree(self.cache_path)
        recordings = emulate_saccades(imgs, params)
        self._offsets = np.zeros(N + 1, dtype=np.int64)
        self._offsets[1:] = np.cumsum([len(e) for e in recordings])
        self._events = np.concatenate(recordings) if N else np.zeros(0, EVENT_DTYPE)
        if self.cache_path is not None:
            _write_cache(self.cache_path, self._events, self._offsets, params)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        if self._events is None:  # after unpickling in a DataLoader worker: reopen the memory map
            self._events, self._offsets = _read_cache(self.cache_path, len(self.targets))
        index = range(len(self.targets))[index]  # negative indices, IndexError past the end
        lo, hi = self._offsets[index], self._offsets[index + 1]
        events = np.array(self._events[lo:hi])
        if self.transform is not None:
            events = self.transform(events)
        return events, self.targets[index]

    def __getstate__(self):
        state = dict(self.__dict__)
        if self.cache_path is not None:
            state["_events"] = None  # do not copy a memory map (or a cached copy) into every worker
        return state
