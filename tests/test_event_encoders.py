"""Event -> frame encoders: shapes, validation, no event lost at bin edges, agreement with tonic."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from lfp_snn.encoders.events import ToFrames, ToSpikeTrains, events_to_frames, time_bin_index
from lfp_snn.events import NMNIST_SENSOR_SIZE, SHD_SENSOR_SIZE, make_events, read_nmnist_bin

try:
    from hypothesis import given, settings
    from hypothesis import strategies as st
except ImportError:  # hypothesis is a dev extra; the seeded numpy test below covers the same property
    given = None

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "nmnist-sample" / "sample.bin"
needs_sample = pytest.mark.skipif(
    not SAMPLE.is_file(), reason=f"real N-MNIST recording not found at {SAMPLE} (../shared is not mounted)"
)


def random_events(rng, n, t_lo, t_hi, sensor=(34, 34, 2)):
    return make_events(
        rng.integers(0, sensor[0], n),
        rng.integers(0, sensor[1], n),
        np.sort(rng.integers(t_lo, t_hi + 1, n)),
        rng.integers(0, sensor[2], n),
    )


# ---------------------------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "exactly one of n_time_bins and time_window"),
        ({"n_time_bins": 5, "time_window": 100}, "exactly one"),
        ({"n_time_bins": 0}, "n_time_bins=0"),
        ({"n_time_bins": -3}, "n_time_bins=-3"),
        ({"n_time_bins": 2.5}, "n_time_bins=2.5"),
        ({"time_window": 0}, "time_window=0"),
        ({"time_window": float("nan")}, "time_window=nan"),
        ({"n_time_bins": 4, "window": (10, 5)}, r"window=\(10, 5\)"),
        ({"n_time_bins": 4, "mode": "sum"}, "mode='sum'"),
        ({"n_time_bins": 4, "downsample": 3}, "downsample=3 does not divide sensor W=34"),
        ({"n_time_bins": 4, "downsample": 0}, "downsample=0"),
    ],
)
def test_bad_settings_raise_naming_the_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ToFrames(NMNIST_SENSOR_SIZE, **kwargs)


def test_bad_sensor_and_events_outside_sensor():
    with pytest.raises(ValueError, match=r"sensor_size=\(34, 34\)"):
        ToFrames((34, 34), n_time_bins=2)
    enc = ToFrames(NMNIST_SENSOR_SIZE, n_time_bins=2)
    with pytest.raises(ValueError, match="x=34 is outside the sensor"):
        enc(make_events([0, 34], [0, 0], [0, 1], [0, 0]))
    with pytest.raises(ValueError, match="y=-1 is outside"):
        enc(make_events([0], [-1], [0], [0]))
    with pytest.raises(ValueError, match="p=2 is outside"):
        enc(make_events([0], [0], [0], [2]))
    with pytest.raises(ValueError, match=r"p=1 is outside.*0\.\.0"):
        ToSpikeTrains(SHD_SENSOR_SIZE, n_time_bins=2)(make_events([5], [0], [0], [1]))


def test_encoders_are_frozen():
    enc = ToFrames(NMNIST_SENSOR_SIZE, n_time_bins=3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        enc.n_time_bins = 4


# ---------------------------------------------------------------------------------------------- binning rule


def test_hand_computed_bins_and_edges():
    t = np.array([0, 4, 5, 9, 10, 20])
    # n_time_bins=4 over [0, 20]: width 5, bins [0,5) [5,10) [10,15) [15,20]; t=5, t=10 open the next bin
    idx, keep, n = time_bin_index(t, n_time_bins=4)
    assert n == 4 and keep.all() and idx.tolist() == [0, 0, 1, 1, 2, 3]
    # time_window=5: same bins, the last one closed so t=20 stays in bin 3
    idx, _, n = time_bin_index(t, time_window=5)
    assert n == 4 and idx.tolist() == [0, 0, 1, 1, 2, 3]
    # time_window=6: ceil(20 / 6) = 4 bins [0,6) [6,12) [12,18) [18,20]
    idx, _, n = time_bin_index(t, time_window=6)
    assert n == 4 and idx.tolist() == [0, 0, 0, 1, 1, 3]
    # explicit window: events outside [4, 10] are left out, t_end=10 goes to the last bin
    idx, keep, n = time_bin_index(t, n_time_bins=3, window=(4, 10))
    assert keep.tolist() == [False, True, True, True, True, False] and idx.tolist() == [0, 0, 2, 2]
    # zero-length recording: everything in bin 0
    idx, _, n = time_bin_index(np.array([7, 7]), n_time_bins=3)
    assert n == 3 and idx.tolist() == [0, 0]


def test_frames_layout_polarity_and_modes():
    ev = make_events([1, 1, 2, 3], [0, 0, 5, 33], [0, 10, 10, 20], [1, 1, 0, 1])
    fr = ToFrames(NMNIST_SENSOR_SIZE, n_time_bins=2)(ev)
    assert fr.dtype == torch.float32 and fr.shape == (2, 2, 34, 34)  # [T, P, H, W]
    assert fr[0, 1, 0, 1] == 1 and fr[1, 1, 0, 1] == 1 and fr[1, 0, 5, 2] == 1 and fr[1, 1, 33, 3] == 1
    assert fr.sum() == 4
    fr = ToFrames(NMNIST_SENSOR_SIZE, n_time_bins=1, mode="binary")(ev)
    assert fr[0, 1, 0, 1] == 1 and fr.sum() == 3
    fr = ToFrames(NMNIST_SENSOR_SIZE, n_time_bins=1, merge_polarity=True)(ev)
    assert fr.shape == (1, 1, 34, 34) and fr[0, 0, 0, 1] == 2
    fr = ToFrames(NMNIST_SENSOR_SIZE, n_time_bins=1, downsample=2)(ev)
    assert fr.shape == (1, 2, 17, 17) and fr[0, 1, 0, 0] == 2 and fr[0, 0, 2, 1] == 1 and fr[0, 1, 16, 1] == 1


def test_empty_events():
    ev = make_events([], [], [], [])
    assert ToFrames(NMNIST_SENSOR_SIZE, n_time_bins=5)(ev).shape == (5, 2, 34, 34)
    assert ToFrames(NMNIST_SENSOR_SIZE, time_window=1000)(ev).shape == (1, 2, 34, 34)
    assert ToFrames(NMNIST_SENSOR_SIZE, time_window=1000, window=(0, 10_000))(ev).shape == (10, 2, 34, 34)


def test_spike_trains_for_shd():
    ev = make_events([0, 5, 5, 699], 0, [0, 100, 999, 1000], 0)
    enc = ToSpikeTrains(SHD_SENSOR_SIZE, time_window=500)
    st_ = enc(ev)
    assert enc.n_units == 700 and st_.shape == (2, 700) and st_.dtype == torch.float32
    assert st_[0, 0] == 1 and st_[0, 5] == 1 and st_[1, 5] == 1 and st_[1, 699] == 1 and st_.sum() == 4
    no_y = np.zeros(2, dtype=[("x", np.int16), ("t", np.int64), ("p", np.int8)])
    no_y["x"], no_y["t"] = [3, 4], [0, 10]
    assert ToSpikeTrains(SHD_SENSOR_SIZE, n_time_bins=2)(no_y)[:, 3:5].tolist() == [[1, 0], [0, 1]]
    assert ToSpikeTrains(SHD_SENSOR_SIZE, n_time_bins=1, downsample=7)(ev).shape == (1, 100)


# ---------------------------------------------------------------------------------------------- no event lost


@pytest.mark.realdata
@needs_sample
@pytest.mark.parametrize(
    "kwargs, n_bins",
    [
        ({"n_time_bins": 10}, 10),
        ({"n_time_bins": 7, "downsample": 2}, 7),
        ({"time_window": 1000}, 311),  # ceil((311_175 - 654) / 1000)
        ({"time_window": 10_000, "window": (0, 320_000)}, 32),
    ],
)
def test_real_recording_every_event_counted(kwargs, n_bins):
    ev = read_nmnist_bin(SAMPLE)
    fr = ToFrames(NMNIST_SENSOR_SIZE, **kwargs)(ev).numpy()
    assert fr.shape[0] == n_bins
    assert fr.sum() == len(ev) == 4325
    assert fr[:, 1].sum() == int(ev["p"].sum())  # ON events in channel 1
    last = ev[np.argmax(ev["t"])]
    d = kwargs.get("downsample", 1)
    assert fr[-1, last["p"], last["y"] // d, last["x"] // d] >= 1  # the event at t_end is in the last bin


def test_random_events_every_event_counted_seeded():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(0, 300))
        lo = int(rng.integers(0, 10**7))
        span = int(rng.integers(0, 10**6))
        ev = random_events(rng, n, lo, lo + span)
        if rng.random() < 0.5:
            enc = ToFrames(NMNIST_SENSOR_SIZE, n_time_bins=int(rng.integers(1, 300)))
        else:  # non-integer bin widths too, at most ~300 bins
            enc = ToFrames(NMNIST_SENSOR_SIZE, time_window=max(span, 1) / float(rng.uniform(0.5, 300)))
        fr = enc(ev).numpy()  # numpy sums: torch's threaded reductions crawl on a busy 2-core machine
        assert fr.sum() == n
        assert fr[:, 1].sum() == ev["p"].sum() and fr[:, 0].sum() == n - ev["p"].sum()


if given is not None:

    @settings(max_examples=40, deadline=None)
    @given(
        n=st.integers(0, 200),
        t0=st.integers(0, 2**40),
        span=st.integers(0, 10**8),
        bins=st.integers(1, 1000),
        per_window=st.one_of(st.none(), st.integers(1, 1000)),
        seed=st.integers(0, 2**32 - 1),
    )
    def test_random_events_every_event_counted_hypothesis(n, t0, span, bins, per_window, seed):
        ev = random_events(np.random.default_rng(seed), n, t0, t0 + span)
        window = None if per_window is None else span // per_window + 1  # at most ~1000 bins
        kwargs = {"n_time_bins": bins} if window is None else {"time_window": window}
        fr = ToFrames(NMNIST_SENSOR_SIZE, **kwargs)(ev).numpy()
        assert fr.sum() == n
        if window is None:
            assert fr.shape[0] == bins
        elif n:
            assert fr.shape[0] == max(1, -(-(int(ev["t"].max()) - int(ev["t"].min())) // window))
        binary = ToFrames(NMNIST_SENSOR_SIZE, mode="binary", merge_polarity=True, **kwargs)(ev).numpy()
        assert binary.max(initial=0) <= 1 and binary.shape[1] == 1


# ---------------------------------------------------------------------------------------------- tonic


def test_matches_tonic_where_tonic_keeps_every_event():
    tonic = pytest.importorskip("tonic", reason="tonic (optional extra) is not installed")
    rng = np.random.default_rng(5)
    checked = 0
    for _ in range(40):
        ev = random_events(rng, 500, 1000, 1000 + int(rng.integers(10_000, 400_000)))
        span = int(ev["t"][-1] - ev["t"][0])
        w = int(rng.integers(1000, 50_000))
        if span % w == 0:
            continue  # tonic then drops the events at t_end
        theirs = tonic.transforms.ToFrame(NMNIST_SENSOR_SIZE, time_window=w, include_incomplete=True)(
            ev.copy()
        )
        ours = ToFrames(NMNIST_SENSOR_SIZE, time_window=w)(ev)
        np.testing.assert_array_equal(ours.numpy(), theirs)
        assert theirs.sum() == len(ev)
        checked += 1
    assert checked > 30


def test_n_time_bins_tonic_drops_last_event_we_do_not():
    tonic = pytest.importorskip("tonic", reason="tonic (optional extra) is not installed")
    rng = np.random.default_rng(6)
    for _ in range(20):
        ev = random_events(rng, 400, 0, 300_000)
        n = int(rng.integers(2, 50))
        span = int(ev["t"][-1] - ev["t"][0])
        ev["t"][-1] = ev["t"][0] + -(-span // n) * n  # span divisible by n: tonic's bins are then exact
        theirs = tonic.transforms.ToFrame(NMNIST_SENSOR_SIZE, n_time_bins=n)(ev.copy())
        ours = ToFrames(NMNIST_SENSOR_SIZE, n_time_bins=n)(ev).numpy()
        at_end = ev[ev["t"] == ev["t"].max()]
        assert theirs.sum() == len(ev) - len(at_end)  # tonic loses the events at t_end
        expected = theirs.astype(np.float32)
        np.add.at(expected, (n - 1, at_end["p"], at_end["y"], at_end["x"]), 1)
        np.testing.assert_array_equal(ours, expected)


def test_events_to_frames_function_equals_class():
    ev = random_events(np.random.default_rng(7), 100, 0, 5000)
    a = events_to_frames(ev, NMNIST_SENSOR_SIZE, n_time_bins=4, merge_polarity=True)
    b = ToFrames(NMNIST_SENSOR_SIZE, n_time_bins=4, merge_polarity=True)(ev)
    assert torch.equal(a, b) and ToFrames(NMNIST_SENSOR_SIZE, n_time_bins=4, downsample=2).frame_shape == (
        2,
        17,
        17,
    )
