"""Integer reference simulator for FPGA bundles: the arithmetic the hardware does, bit for bit.

A bundle is a chain of spiking layers (dense or convolutional, each a Linear/Conv2d + LIF pair); before a
layer's synapses its input may pass through ``pre`` stages: a max pool of spikes (the OR over each window), a
sum pool of spikes (the window's spike count; the average pool's ``1 / divisor`` sits in the layer's weights)
and Flatten (C order: nothing moves). Per layer (fan-in F, N_OUT neurons), all values integers in the
layer's membrane scale:

    acc   = b_q + Σ_i w_q[o, i] x_i             accumulator of acc_bits (never overflows, see the manifest);
                                                x_i: a spike (0/1) or a sum pool's count; for a convolution
                                                the sum runs over the window of output position o (zero padding)
    I     = sat(acc)                            sat(): clamp to [-2^(M-1), 2^(M-1) - 1], M = mem_bits
    D(U)  = (U · β_q) >> beta_bits               decay="multiply" (>> is arithmetic: floor division)
          = U - (U >> k)                        decay="shift" (k = 0: no leak, D(U) = U)
    reset_delay=True:
        r = U > θ_q                             (from the previous step's membrane)
        subtract: U = sat(D(U) + I - θ_q r)      zero: U = sat((r ? 0 : D(U)) + I)
        S = U > θ_q
    reset_delay=False:
        U = sat(D(U) + I);  S = U > θ_q;  then if S: U = U - θ_q (subtract) or 0 (zero)

U starts at 0 for every sample. :func:`simulate` runs this on a :class:`QuantNetwork` held in memory;
:func:`simulate_bundle` reads the network from a bundle's files (after checking every sha256). The
simulator is numpy, written apart from the engine's integer forward (integer-in-the-loop training): the
tests check that the two agree bit for bit.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..quantization import DECAYS

BUNDLE_FORMAT = "lfp-snn-fpga-bundle"
BUNDLE_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: dense layers only, no shapes or pre stages in the manifest


class BundleError(ValueError):
    """A bundle that is missing, incomplete, tampered with or of an unknown format."""


@dataclass
class QuantPool:
    """A pooling stage before a layer: ``kind`` ``"max"`` (OR of the spikes in each window) or ``"sum"``
    (their count); zero padding; shapes (C, H, W)."""

    kind: str
    name: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    divisor: int = 1  # sum pool: the average pool's divisor, folded into the next layer's weights

    @property
    def out_max(self) -> int:
        return 1 if self.kind == "max" else self.kernel[0] * self.kernel[1]


@dataclass
class QuantFlatten:
    """Flatten before a layer: the C-order vector stays as it is; only the shape changes."""

    name: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    kind: str = "flatten"


@dataclass
class QuantLayer:
    """One LIF layer in integers, dense (``kind="dense"``, weight [n_out, n_in]) or convolutional
    (``kind="conv"``, weight [C_out, C_in, kh, kw], stride/padding, shapes (C, H, W)). ``beta`` holds β_q
    (multiply) or k (shift) per neuron, ``threshold`` θ_q per neuron (C order for a convolution), ``bias``
    one value per output channel. ``pre``: the pooling/Flatten stages between the previous layer's spikes
    (or the network's input) and this layer's synapses; ``in_max``: the largest input value (1 for spikes,
    the window size after a sum pool)."""

    name: str
    weight: np.ndarray
    bias: np.ndarray
    threshold: np.ndarray
    beta: np.ndarray
    reset: str
    reset_delay: bool
    scale: float = 1.0  # real value of one LSB of weights, bias, threshold and membrane
    info: dict = field(default_factory=dict)  # float β, effective β, saturation counts, ...
    kind: str = "dense"
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    in_max: int = 1
    pre: list = field(default_factory=list)

    @property
    def n_in(self) -> int:
        return int(math.prod(self.in_shape)) if self.in_shape else int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(math.prod(self.out_shape)) if self.out_shape else int(self.weight.shape[0])

    @property
    def fan_in(self) -> int:
        return int(self.weight[0].size)

    @property
    def input_size(self) -> int:
        """Values this layer receives from the layer before (or the network's input), before ``pre``."""
        if self.pre:
            return int(math.prod(self.pre[0].in_shape))
        return self.n_in


@dataclass
class QuantNetwork:
    layers: list[QuantLayer]
    weight_bits: int
    mem_bits: int
    decay: str
    beta_bits: int
    input_shape: tuple[int, ...] = ()
    scale: str = "pow2"  # how each layer's LSB was chosen (lfp_snn.quantization.SCALES)

    @property
    def n_in(self) -> int:
        return int(math.prod(self.input_shape)) if self.input_shape else self.layers[0].input_size


def acc_bits_for(layer: QuantLayer | None, weight_bits: int, mem_bits: int, n_in: int | None = None) -> int:
    """Accumulator width that can never overflow: |acc| <= fan_in · in_max · 2^(W-1) + 2^(M-1)."""
    n = layer.fan_in * layer.in_max if layer is not None else n_in
    bound = n * 2 ** (weight_bits - 1) + 2 ** (mem_bits - 1)
    return int(bound).bit_length() + 1


def _sat(x: np.ndarray, bits: int) -> np.ndarray:
    return np.clip(x, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def _decay(u: np.ndarray, beta: np.ndarray, decay: str, beta_bits: int) -> np.ndarray:
    if decay == "multiply":
        return (u * beta) >> beta_bits
    return np.where(beta == 0, u, u - (u >> beta))


def _exact_matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for int64 arrays whose every partial sum stays below 2^53 in magnitude (the accumulator bound):
    in float64 (BLAS), which is then exact, converted back to int64."""
    return np.rint(a.astype(np.float64) @ b.astype(np.float64)).astype(np.int64)


def _windows(x: np.ndarray, kernel, stride, padding) -> np.ndarray:
    """[R, C, H, W] -> [R, C, OH, OW, kh, kw] windows over the zero-padded input (a view where possible)."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    v = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    return v[:, :, ::sh, ::sw]


def _pool(P, x: np.ndarray) -> np.ndarray:
    """A pre stage on [T, B, n] int64 values."""
    if P.kind == "flatten":
        return x
    T, B = x.shape[:2]
    win = _windows(x.reshape(T * B, *P.in_shape), P.kernel, P.stride, P.padding)
    y = win.max(axis=(4, 5)) if P.kind == "max" else win.sum(axis=(4, 5))
    return y.reshape(T, B, -1).astype(np.int64)


def _synapses(L: QuantLayer, x: np.ndarray) -> np.ndarray:
    """b_q + Σ w_q x for every step, sample and neuron: [T, B, n_in] -> [T, B, n_out] int64."""
    T, B = x.shape[:2]
    if L.kind == "dense":
        return _exact_matmul(x, L.weight.T) + L.bias
    co = L.weight.shape[0]
    w2 = L.weight.reshape(co, -1).T  # [C_in kh kw, C_out]
    oh, ow = L.out_shape[1:]
    out = np.empty((T, B, co, oh, ow), np.int64)
    rows = max(1, (1 << 22) // max(w2.shape[0] * oh * ow, 1))  # bound the im2col buffer
    flat = x.reshape(T * B, *L.in_shape)
    for a in range(0, T * B, rows):
        win = _windows(flat[a : a + rows], L.weight.shape[2:], L.stride, L.padding)  # [r, C, OH, OW, kh, kw]
        cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(-1, w2.shape[0])
        z = _exact_matmul(cols, w2).reshape(-1, oh, ow, co).transpose(0, 3, 1, 2)
        out.reshape(T * B, co, oh, ow)[a : a + rows] = z + L.bias[:, None, None]
    return out.reshape(T, B, -1)


def check_spikes(spikes, n_in: int, what: str = "input spikes") -> np.ndarray:
    """[T, B, ...] binary (numpy or torch) -> int64 [T, B, n_in]; ValueError naming what is wrong."""
    if hasattr(spikes, "detach"):
        spikes = spikes.detach().cpu().numpy()
    a = np.asarray(spikes)
    if a.ndim < 3:
        raise ValueError(f"{what}: expected [T, B, ...] spikes, got shape {list(a.shape)}")
    a = a.reshape(a.shape[0], a.shape[1], -1)
    if a.shape[2] != n_in:
        raise ValueError(f"{what}: expected {n_in} inputs per step, got {a.shape[2]}")
    if not np.all((a == 0) | (a == 1)):
        raise ValueError(
            f"{what} must be binary (0/1) per step; the bundle takes spikes, not analogue values"
        )
    return a.astype(np.int64)


def simulate(net: QuantNetwork, spikes, membranes: bool = False):
    """Spikes of every layer, uint8 [T, B, n_out], for binary input spikes [T, B, n_in] (integer arithmetic).

    With ``membranes=True`` returns ``(spikes, membranes)``, the membranes int64 [T, B, n_out] after each
    step's reset (the value the hardware stores)."""
    x = check_spikes(spikes, net.n_in)
    M = net.mem_bits
    out, mems = [], []
    for L in net.layers:
        for P in L.pre:
            x = _pool(P, x)
        current = _sat(_synapses(L, x), M)  # [T, B, N]; int64 is exact for any bundle we write
        T, B, N = current.shape
        u = np.zeros((B, N), np.int64)
        s_all = np.zeros((T, B, N), np.uint8)
        u_all = np.zeros((T, B, N), np.int64) if membranes else None
        th, sub = L.threshold, L.reset == "subtract"
        for t in range(T):
            dec = _decay(u, L.beta, net.decay, net.beta_bits)
            if L.reset_delay:
                r = u > th
                if sub:
                    u = _sat(dec + current[t] - th * r, M)
                else:
                    u = _sat(np.where(r, 0, dec) + current[t], M)
                s = u > th
            else:
                u = _sat(dec + current[t], M)
                s = u > th
                u = np.where(s, u - th, u) if sub else np.where(s, 0, u)
            s_all[t] = s
            if membranes:
                u_all[t] = u
        out.append(s_all)
        mems.append(u_all)
        x = s_all.astype(np.int64)
    return (out, mems) if membranes else out


# -------------------------------------------------------------------------------------------- bundle files


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(bundle_dir: str | os.PathLike) -> dict:
    bundle = Path(bundle_dir)
    path = bundle / "manifest.json"
    if not bundle.is_dir():
        raise BundleError(f"no bundle at {bundle}: not a directory")
    if not path.is_file():
        raise BundleError(f"{bundle} has no manifest.json (an incomplete or foreign directory)")
    try:
        man = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path} is not valid JSON: {e}") from None
    if (
        not isinstance(man, dict)
        or man.get("format") != BUNDLE_FORMAT
        or man.get("format_version") not in READABLE_VERSIONS
    ):
        got = (man.get("format"), man.get("format_version")) if isinstance(man, dict) else (None, None)
        raise BundleError(
            f"{path}: expected format {BUNDLE_FORMAT!r} version {' or '.join(map(str, READABLE_VERSIONS))}, got "
            f"{got[0]!r} version {got[1]!r}"
        )
    return man


def check_hashes(bundle_dir: str | os.PathLike, man: dict) -> None:
    bundle = Path(bundle_dir)
    files = man.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleError(f"{bundle / 'manifest.json'} lists no files with their sha256")
    for rel, digest in sorted(files.items()):
        p = bundle / rel
        if Path(rel).is_absolute() or ".." in Path(rel).parts:
            raise BundleError(f"manifest lists a path outside the bundle: {rel!r}")
        if not p.is_file():
            raise BundleError(f"bundle file {rel} is missing (listed in manifest.json)")
        got = sha256_file(p)
        if got != digest:
            raise BundleError(
                f"bundle file {rel} was modified: sha256 {got[:16]}... does not match the manifest's {digest[:16]}..."
            )


def read_mem(path: Path, bits: int, signed: bool, count: int) -> np.ndarray:
    """A ``$readmemh`` file of ``count`` words, ``bits`` wide (two's complement when ``signed``)."""
    return np.array(read_words(path, bits, signed, count), dtype=np.int64)


def read_words(path: Path, bits: int, signed: bool, count: int) -> list[int]:
    """The words of a ``$readmemh`` file as Python ints (any width); BundleError on a malformed file."""
    words = []
    digits = (bits + 3) // 4
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("//", 1)[0].strip()
        if not line:
            continue
        if line.startswith("@"):
            raise BundleError(f"{path.name}:{n}: address records (@) are not used in bundle files")
        if len(line) != digits:
            raise BundleError(f"{path.name}:{n}: expected {digits} hex digits, got {line!r}")
        try:
            v = int(line, 16)
        except ValueError:
            raise BundleError(f"{path.name}:{n}: not a hex word: {line!r}") from None
        if v >> bits:
            raise BundleError(f"{path.name}:{n}: {line} does not fit {bits} bits")
        if signed and v >> (bits - 1):
            v -= 1 << bits
        words.append(v)
    if len(words) != count:
        raise BundleError(f"{path.name}: expected {count} words, found {len(words)}")
    return words


def read_spike_mem(path: Path, width: int, rows: int) -> np.ndarray:
    """Spike vectors (bit j = neuron j), one hex line each -> uint8 [rows, width]."""
    words = read_words(path, width, False, rows)
    raw = b"".join(w.to_bytes((width + 7) // 8, "little") for w in words)
    bits = np.unpackbits(np.frombuffer(raw, np.uint8).reshape(rows, -1), axis=1, bitorder="little")
    return np.ascontiguousarray(bits[:, :width])


def _pre_from_manifest(entry: dict):
    t = entry["type"]
    shapes = tuple(entry["in_shape"]), tuple(entry["out_shape"])
    if t == "flatten":
        return QuantFlatten(entry.get("name", ""), *shapes)
    if t not in ("max_pool", "sum_pool"):
        raise BundleError(f"unknown stage type {t!r} in the manifest")
    return QuantPool(
        "max" if t == "max_pool" else "sum",
        entry.get("name", ""),
        tuple(entry["kernel"]),
        tuple(entry["stride"]),
        tuple(entry["padding"]),
        *shapes,
        int(entry.get("divisor", 1)),
    )


def network_from_manifest(bundle_dir: str | os.PathLike, man: dict) -> QuantNetwork:
    bundle = Path(bundle_dir)
    fmt = man["number_formats"]
    W, M = int(fmt["weight"]["bits"]), int(fmt["membrane"]["bits"])
    decay, beta_bits = man["decay"]["mode"], int(man["decay"]["beta_bits"])
    if decay not in DECAYS:
        raise BundleError(f"unknown decay mode {decay!r} in the manifest")
    bw = int(fmt["beta"]["bits"])
    layers = []
    for L in man["layers"]:
        kind = {"dense_lif": "dense", "conv_lif": "conv"}.get(L.get("type", "dense_lif"))
        if kind is None:
            raise BundleError(f"unknown layer type {L.get('type')!r} in the manifest")
        n_in, n_out = int(L["n_in"]), int(L["n_out"])
        f = L["files"]
        if kind == "conv":
            co, ci = int(L["out_shape"][0]), int(L["in_shape"][0])
            kh, kw = (int(k) for k in L["kernel"])
            wshape, channels = (co, ci, kh, kw), co
        else:
            wshape, channels = (n_out, n_in), n_out
        layers.append(
            QuantLayer(
                name=L["name"],
                weight=read_mem(bundle / f["weight"]["mem"], W, True, math.prod(wshape)).reshape(wshape),
                bias=read_mem(bundle / f["bias"]["mem"], M, True, channels),
                threshold=read_mem(bundle / f["threshold"]["mem"], M, True, n_out),
                beta=read_mem(bundle / f["beta"]["mem"], bw, False, n_out),
                reset=L["reset"],
                reset_delay=bool(L["reset_delay"]),
                scale=float(L["scale"]),
                kind=kind,
                in_shape=tuple(L.get("in_shape", [n_in])),
                out_shape=tuple(L.get("out_shape", [n_out])),
                stride=tuple(L.get("stride", (1, 1))),
                padding=tuple(L.get("padding", (0, 0))),
                in_max=int(L.get("input_max", 1)),
                pre=[_pre_from_manifest(p) for p in L.get("pre", [])],
            )
        )
    scale = fmt["weight"].get("scale_mode", "pow2")
    return QuantNetwork(layers, W, M, decay, beta_bits, tuple(man["input"]["shape"]), scale)


def load_bundle(bundle_dir: str | os.PathLike) -> tuple[QuantNetwork, dict]:
    """(network read from the .mem files, manifest), after checking the format and every sha256."""
    man = read_manifest(bundle_dir)
    check_hashes(bundle_dir, man)
    return network_from_manifest(bundle_dir, man), man


def read_vectors(bundle_dir: str | os.PathLike, man: dict) -> tuple[np.ndarray, list[np.ndarray]]:
    """The golden vectors: input uint8 [T, S, n_in] and the expected spikes per layer [T, S, n_out]."""
    bundle = Path(bundle_dir)
    v = man["test_vectors"]
    S, T = int(v["samples"]), int(v["steps"])

    def load(rel, width):
        return read_spike_mem(bundle / rel, width, S * T).reshape(S, T, width).transpose(1, 0, 2)

    x = load(v["input"], int(man["input"]["size"]))
    ys = [load(rel, int(L["n_out"])) for rel, L in zip(v["layers"], man["layers"])]
    return x, ys


def simulate_bundle(bundle_dir: str | os.PathLike, input_spikes) -> dict:
    """Run a bundle from its files on binary input spikes [T, B, n_in] (numpy or torch).

    Returns ``{"layers": [names], "spikes": [uint8 [T, B, n_out] per layer], "output": last layer's spikes,
    "counts": output spike counts [B, n_out]}``. Raises BundleError (a ValueError) naming the file when the
    bundle is incomplete or a file's sha256 does not match the manifest.
    """
    net, _ = load_bundle(bundle_dir)
    spikes = simulate(net, input_spikes)
    return {
        "layers": [L.name for L in net.layers],
        "spikes": spikes,
        "output": spikes[-1],
        "counts": spikes[-1].sum(0, dtype=np.int64),
    }


def verify_bundle(bundle_dir: str | os.PathLike, check_vectors: bool = True) -> dict:
    """Check a bundle: format, every file's sha256, and (``check_vectors``) that simulating the golden input
    from the files reproduces the golden spikes of every layer. Returns the manifest; raises BundleError."""
    net, man = load_bundle(bundle_dir)
    if check_vectors:
        x, expected = read_vectors(bundle_dir, man)
        got = simulate(net, x)
        for i, (g, e) in enumerate(zip(got, expected)):
            if not np.array_equal(g, e):
                t, b, n = np.argwhere(g != e)[0]
                raise BundleError(
                    f"layer {i} ({man['layers'][i]['name']}): simulating the golden input from the files does not "
                    f"reproduce {man['test_vectors']['layers'][i]} (first difference at step {t}, sample {b}, "
                    f"neuron {n})"
                )
    return man


# ------------------------------------------------------------------------------------- float comparison


def float_layer_spikes(model, x_seq) -> list[np.ndarray]:
    """Spikes of every LIF layer of a spiking model for [T, B, ...] inputs (float arithmetic, the engine's
    forward), as uint8 [T, B, n] (C-order flattened neurons)."""
    import torch

    from ..engine import forward_trace
    from ..neurons.lif import LIF

    x = torch.as_tensor(np.asarray(x_seq) if not hasattr(x_seq, "detach") else x_seq.detach().cpu())
    dtype = next(model.parameters()).dtype
    T = x.shape[0]
    x = x.to(dtype)
    out = []

    def keep(node, inputs, output):
        if node.kind == "module" and isinstance(node.module, LIF):
            v = output.value.reshape(T, -1, *output.value.shape[1:])
            out.append(v.reshape(T, v.shape[1], -1).to(torch.uint8).cpu().numpy())

    forward_trace(model, x, keep=False, observe=keep)
    return out


def compare_with_float(model, bundle_dir: str | os.PathLike, x_seq, labels=None) -> dict:
    """How closely a bundle follows the float model on the same binary input spikes [T, B, ...].

    Returns per-layer ``spike_agreement`` (fraction of equal spike bits over T, B and neurons), per-layer spike
    rates of both, ``prediction_agreement`` (argmax of output spike counts, ties to the lowest index) and,
    with ``labels``, ``float_accuracy`` and ``bundle_accuracy``.
    """
    from .nir_export import load_model

    model, _ = load_model(model)
    sim = simulate_bundle(bundle_dir, x_seq)
    q = sim["spikes"]
    shape = tuple(read_manifest(bundle_dir)["input"]["shape"])
    x = x_seq.detach().cpu().numpy() if hasattr(x_seq, "detach") else np.asarray(x_seq)
    f = float_layer_spikes(model, x.reshape(x.shape[0], x.shape[1], *shape))
    if len(f) != len(q):
        raise ValueError(f"the model has {len(f)} LIF layers but the bundle has {len(q)}")
    res = {
        "layers": sim["layers"],
        "spike_agreement": [float((a == b).mean()) for a, b in zip(f, q)],
        "float_rate": [float(a.mean()) for a in f],
        "bundle_rate": [float(b.mean()) for b in q],
    }
    pf = f[-1].sum(0, dtype=np.int64).argmax(-1)
    pq = q[-1].sum(0, dtype=np.int64).argmax(-1)
    res["prediction_agreement"] = float((pf == pq).mean())
    if labels is not None:
        y = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).reshape(-1)
        res["float_accuracy"] = float((pf == y).mean())
        res["bundle_accuracy"] = float((pq == y).mean())
    return res
