"""Integer reference simulator for FPGA bundles: the arithmetic the hardware does, bit for bit.

Per layer (dense, fan-in N_IN, N_OUT neurons), all values integers in the layer's membrane scale:

    acc   = b_q + Σ_i w_q[o, i] s_i             accumulator of acc_bits (never overflows, see the manifest)
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
:func:`simulate_bundle` reads the network from a bundle's files (after checking every sha256).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

BUNDLE_FORMAT = "lfp-snn-fpga-bundle"
BUNDLE_VERSION = 1
DECAYS = ("multiply", "shift")


class BundleError(ValueError):
    """A bundle that is missing, incomplete, tampered with or of an unknown format."""


@dataclass
class QuantLayer:
    """One dense LIF layer in integers. ``beta`` holds β_q (multiply) or k (shift) per neuron."""

    name: str
    weight: np.ndarray  # int64 [n_out, n_in]
    bias: np.ndarray  # int64 [n_out]
    threshold: np.ndarray  # int64 [n_out]
    beta: np.ndarray  # int64 [n_out]
    reset: str
    reset_delay: bool
    scale: float = 1.0  # real value of one LSB of weights, bias, threshold and membrane
    info: dict = field(default_factory=dict)  # float β, effective β, saturation counts, ...

    @property
    def n_in(self) -> int:
        return int(self.weight.shape[1])

    @property
    def n_out(self) -> int:
        return int(self.weight.shape[0])


@dataclass
class QuantNetwork:
    layers: list[QuantLayer]
    weight_bits: int
    mem_bits: int
    decay: str
    beta_bits: int
    input_shape: tuple[int, ...] = ()

    @property
    def n_in(self) -> int:
        return self.layers[0].n_in


def acc_bits_for(layer: QuantLayer | None, weight_bits: int, mem_bits: int, n_in: int | None = None) -> int:
    """Accumulator width that can never overflow: |acc| <= n_in 2^(W-1) + 2^(M-1)."""
    n = layer.n_in if layer is not None else n_in
    bound = n * 2 ** (weight_bits - 1) + 2 ** (mem_bits - 1)
    return int(bound).bit_length() + 1


def _sat(x: np.ndarray, bits: int) -> np.ndarray:
    return np.clip(x, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1)


def _decay(u: np.ndarray, beta: np.ndarray, decay: str, beta_bits: int) -> np.ndarray:
    if decay == "multiply":
        return (u * beta) >> beta_bits
    return np.where(beta == 0, u, u - (u >> beta))


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
        current = _sat(x @ L.weight.T + L.bias, M)  # [T, B, N]; int64 is exact for any bundle we write
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
    if man.get("format") != BUNDLE_FORMAT or man.get("format_version") != BUNDLE_VERSION:
        raise BundleError(
            f"{path}: expected format {BUNDLE_FORMAT!r} version {BUNDLE_VERSION}, got "
            f"{man.get('format')!r} version {man.get('format_version')!r}"
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
        n_in, n_out = int(L["n_in"]), int(L["n_out"])
        f = L["files"]
        layers.append(
            QuantLayer(
                name=L["name"],
                weight=read_mem(bundle / f["weight"]["mem"], W, True, n_in * n_out).reshape(n_out, n_in),
                bias=read_mem(bundle / f["bias"]["mem"], M, True, n_out),
                threshold=read_mem(bundle / f["threshold"]["mem"], M, True, n_out),
                beta=read_mem(bundle / f["beta"]["mem"], bw, False, n_out),
                reset=L["reset"],
                reset_delay=bool(L["reset_delay"]),
                scale=float(L["scale"]),
            )
        )
    return QuantNetwork(layers, W, M, decay, beta_bits, tuple(man["input"]["shape"]))


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
    """Spikes of every LIF layer of a dense spiking model for [T, B, ...] inputs (float arithmetic)."""
    import torch
    from torch import nn

    from ..neurons.lif import LIF
    from .nir_export import _flat_layers

    x = torch.as_tensor(np.asarray(x_seq) if not hasattr(x_seq, "detach") else x_seq.detach().cpu())
    x = x.float().reshape(x.shape[0], x.shape[1], -1)
    out = []
    with torch.no_grad():
        for name, m in _flat_layers(model):
            if isinstance(m, (nn.Flatten, nn.Dropout)):
                continue
            if isinstance(m, (nn.Linear, LIF)):
                x = m(x)
                if isinstance(m, LIF):
                    out.append(x.to(torch.uint8).numpy())
            else:
                raise ValueError(f"layer {name!r} ({type(m).__name__}) is not part of a dense spiking MLP")
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
    f = float_layer_spikes(model, x_seq)
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
