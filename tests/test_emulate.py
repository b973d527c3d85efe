"""Saccade emulation of event data from static images."""

from __future__ import annotations

import pickle
import time

import numpy as np
import pytest
import torch

from lfp_snn.encoders.events import ToFrames
from lfp_snn.events import EVENT_DTYPE, EmulatedEvents, SaccadeParams, emulate_saccades, saccade_path


def digit_like(n: int, seed: int = 0, size: int = 28) -> np.ndarray:
    """Stroke images like handwritten digits: blurred random elliptic arcs, [n, 1, size, size] in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.zeros((n, 1, size, size), np.float32)
    for i in range(n):
        img = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = rng.uniform(9, 19, 2)
            rx, ry = rng.uniform(3, 8, 2)
            a0, span = rng.uniform(0, 2 * np.pi), rng.uniform(np.pi / 2, 2 * np.pi)
            a = np.linspace(a0, a0 + span, 40)[:, None, None]
            d2 = (xx - cx - rx * np.cos(a)) ** 2 + (yy - cy - ry * np.sin(a)) ** 2
            img = np.maximum(img, np.exp(-d2 / 2.0).max(axis=0))
        out[i, 0] = np.clip(img * 1.2, 0, 1) * (img > 0.02)  # MNIST-like: exact zeros away from strokes
    return out


IMAGES = digit_like(12)


def test_path_is_a_closed_triangle_of_three_saccades():
    p = SaccadeParams()
    path = saccade_path(p)
    assert path.shape == (301, 2) and p.duration_us == 300_000
    np.testing.assert_array_equal(path[0], path[-1])
    corners = path[[0, 100, 200]]
    sides = np.linalg.norm(corners - np.roll(corners, 1, axis=0), axis=1)
    np.testing.assert_allclose(sides, 3.0, atol=0.01)  # equilateral, side = amplitude
    assert np.abs(np.diff(path, axis=0)).max() < 0.05  # smooth: ~0.03 px per 1 ms step


def test_events_shape_range_and_order():
    evs = emulate_saccades(IMAGES)
    assert len(evs) == len(IMAGES)
    for ev in evs:
        assert ev.dtype == EVENT_DTYPE and len(ev) > 200
        assert ev["x"].min() >= 0 and ev["x"].max() < 34 and ev["y"].min() >= 0 and ev["y"].max() < 34
        assert ev["t"].min() >= 0 and ev["t"].max() <= 300_000 and (np.diff(ev["t"]) >= 0).all()
        assert set(np.unique(ev["p"])) <= {0, 1}
    assert EmulatedEvents(IMAGES[:1], [0]).sensor_size == (34, 34, 2)


def test_deterministic_per_sample():
    a = emulate_saccades(IMAGES)
    b = emulate_saccades(torch.from_numpy(IMAGES), chunk_size=5)  # torch input, other batching
    c = emulate_saccades(IMAGES[7:9], start_index=7)  # a slice reproduces its samples
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(a[7], c[0])
    np.testing.assert_array_equal(a[8], c[1])
    d = emulate_saccades(IMAGES[:3], SaccadeParams(seed=1))
    assert any(len(x) != len(y) or (x != y).any() for x, y in zip(a, d))
    twin = emulate_saccades(IMAGES[[0, 0]])  # same image, different index: different random stream
    assert len(twin[0]) != len(twin[1]) or (twin[0] != twin[1]).any()


def test_polarity_balance_over_the_closed_triangle():
    evs = emulate_saccades(IMAGES)
    on = sum(int(e["p"].sum()) for e in evs)
    total = sum(len(e) for e in evs)
    assert abs(2 * on - total) / total < 0.05  # the path ends where it starts: ON ~ OFF overall
    for e in evs:
        assert abs(2 * int(e["p"].sum()) - len(e)) / len(e) < 0.2


def test_events_only_at_moving_edges():
    img = np.zeros((1, 1, 28, 28), np.float32)
    img[0, 0, 10:18, 10:18] = 1.0  # a bright square: only pixels near its border see changes
    ev = emulate_saccades(img)[0]
    assert len(ev) > 100
    # the square sits at 3 + (10..17) +- 1.8 px in the 34 x 34 canvas
    assert ev["x"].min() >= 11 and ev["x"].max() <= 22 and ev["y"].min() >= 11 and ev["y"].max() <= 22
    inner = (ev["x"] >= 16) & (ev["x"] <= 17) & (ev["y"] >= 16) & (ev["y"] <= 17)
    assert not inner.any()  # the uniform interior never changes
    blank = emulate_saccades(np.zeros((2, 28, 28), np.float32))
    assert [len(e) for e in blank] == [0, 0]


def test_noise_events():
    blank = np.zeros((4, 28, 28), np.float32)
    evs = emulate_saccades(blank, SaccadeParams(noise_rate_hz=5.0))
    expected = 5.0 * 0.3 * 34 * 34 * 2  # rate * duration * pixels * polarities = 3468
    for ev in evs:
        assert abs(len(ev) - expected) < 5 * np.sqrt(expected)
        assert (np.diff(ev["t"]) >= 0).all() and ev["t"].max() <= 300_000


def test_more_events_with_lower_threshold():
    few = sum(len(e) for e in emulate_saccades(IMAGES[:4], SaccadeParams(threshold=0.3)))
    many = sum(len(e) for e in emulate_saccades(IMAGES[:4], SaccadeParams(threshold=0.15)))
    assert many > 1.5 * few


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"amplitude": 6.0}, r"amplitude=6\.0.*pad/2=3\.0"),
        ({"pad": -1}, "pad=-1"),
        ({"threshold": 0.0}, "threshold=0.0"),
        ({"eps": 0}, "eps=0"),
        ({"noise_rate_hz": -1.0}, "noise_rate_hz=-1.0"),
        ({"saccade_ms": 0.1}, "no time step"),
    ],
)
def test_bad_params(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SaccadeParams(**kwargs)


def test_bad_images():
    with pytest.raises(ValueError, match=r"in \[0, 1\].*max 255"):
        emulate_saccades(np.full((1, 28, 28), 255.0))
    with pytest.raises(ValueError, match=r"\(2, 3, 28, 28\)"):
        emulate_saccades(np.zeros((2, 3, 28, 28)))
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        EmulatedEvents(IMAGES[:3], [0, 1])


def test_dataset_and_cache(tmp_path):
    imgs, labels = IMAGES[:4], [3, 1, 4, 1]
    first = EmulatedEvents(imgs, labels, cache_dir=tmp_path)
    assert not first.cache_hit and (first.cache_path / "events.npy").is_file()
    assert first.cache_path.parent == tmp_path
    again = EmulatedEvents(imgs, labels, cache_dir=tmp_path)
    assert again.cache_hit and again.cache_path == first.cache_path
    for i in range(4):
        (a, la), (b, lb) = first[i], again[i]
        assert la == lb == labels[i] and a.dtype == b.dtype == EVENT_DTYPE
        np.testing.assert_array_equal(a, b)
    changed = EmulatedEvents(imgs, labels, cache_dir=tmp_path, threshold=0.25)  # a parameter changed
    assert (
        not changed.cache_hit and changed.cache_path != first.cache_path and changed.params.threshold == 0.25
    )
    other_imgs = imgs.copy()
    other_imgs[0, 0, 0, 0] = 0.5
    assert not EmulatedEvents(other_imgs, labels, cache_dir=tmp_path).cache_hit  # the data changed
    assert all(p.name.startswith("saccades-") for p in tmp_path.iterdir())  # no temporary folders left
    assert len(list(tmp_path.iterdir())) == 3 and first.classes == [str(i) for i in range(5)]
    # pickling (DataLoader workers) reopens the memory map instead of copying it
    clone = pickle.loads(pickle.dumps(again))
    np.testing.assert_array_equal(clone[2][0], first[2][0])
    # a damaged cache is recomputed, not trusted
    (first.cache_path / "offsets.npy").write_bytes(b"garbage")
    fixed = EmulatedEvents(imgs, labels, cache_dir=tmp_path)
    assert not fixed.cache_hit
    np.testing.assert_array_equal(fixed[3][0], first[3][0])
    assert EmulatedEvents(imgs, labels, cache_dir=tmp_path).cache_hit


def test_dataset_with_frame_transform():
    ds = EmulatedEvents(IMAGES[:2], [0, 1], transform=ToFrames((34, 34, 2), n_time_bins=30))
    frames, label = ds[1]
    assert frames.shape == (30, 2, 34, 34) and label == 1
    assert frames.numpy().sum() == len(emulate_saccades(IMAGES[1:2], start_index=1)[0])


@pytest.mark.slow
def test_speed_1000_images():
    imgs = digit_like(1000, seed=1)
    t0 = time.perf_counter()
    evs = emulate_saccades(imgs)
    elapsed = time.perf_counter() - t0
    counts = np.array([len(e) for e in evs])
    assert counts.min() > 0 and 1000 < counts.mean() < 20_000  # N-MNIST has ~4,000 per sample
    assert elapsed < 20.0, f"1,000 images took {elapsed:.1f} s"  # ~2 s on 2 idle cores; slack for load
