"""Fixed-point quantisation of spiking models and the FPGA bundle writer.

The model is a chain of Linear/Conv2d -> LIF layers, max pools and average pools of spikes and Flatten
(:mod:`lfp_snn.engine.fixed` finds the stages; an average pool becomes a *sum* pool whose ``1 / divisor`` goes
into the next layer's weights). The rules, shared with integer-in-the-loop training
(:mod:`lfp_snn.quantization`), per layer:

* one scale ``s`` per layer: ``scale="pow2"`` (default) takes the smallest power of two with
  ``max|W| / s <= 2^(W-1) - 1`` (so the weights are signed ``Qm.n`` with ``n = -log2 s``); ``scale="real"``
  takes ``s = max|W| / (2^(W-1) - 1)`` (integers times a real factor); ``scale="mse"`` the power of two with
  the least squared quantisation error (it saturates the largest weights). ``W`` = ``weight_bits``.
* ``w_q = sat_W(round(w / s))``, ``b_q = sat_M(round(b / s))``, ``θ_q = round(θ / s)``: bias, threshold and
  membrane share the weight's scale, so a binary input spike adds ``w_q`` to the accumulator directly.
  ``round`` is round-half-away-from-zero; ``sat_N`` clamps to ``[-2^(N-1), 2^(N-1) - 1]`` (saturated values
  are counted in the manifest and warned about). ``θ_q`` must lie in ``[1, 2^(M-1) - 1]`` (``M`` =
  ``mem_bits``), else ValueError naming the value.
* decay ``"multiply"``: ``β_q = round(β 2^beta_bits)`` (unsigned, ``beta_bits + 1`` bits so β = 1 fits),
  ``D(U) = (U β_q) >> beta_bits``. Decay ``"shift"``: ``β ≈ 1 - 2^-k`` with the nearest ``k`` in
  ``1..mem_bits`` (k = 0 encodes β = 1, no leak), ``D(U) = U - (U >> k)``; a warning gives the effective β.
* the reset (subtract / zero, delayed or not) is kept as the model has it; see
  :mod:`lfp_snn.export.simulator` for the exact order of operations.

The bundle takes binary input spikes per step (bit j = flattened input j). A model trained on analogue
(constant-current) input must be fed an encoded spike train (e.g. Bernoulli/rate encoding of the pixel
intensities); the bundle does not quantise analogue inputs.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from torch import nn

from ..engine import build_graph
from ..engine.fixed import fixed_network
from ..quantization import DECAYS, DEFAULT_FORMATS, SCALES, FixedPoint
from .nir_export import check_finite, load_model
from .simulator import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    QuantFlatten,
    QuantLayer,
    QuantNetwork,
    QuantPool,
    acc_bits_for,
    check_spikes,
    sha256_file,
    simulate,
)

__all__ = [
    "DECAYS",
    "SCALES",
    "check_replaceable",
    "export_fpga",
    "quantize",
    "resolve_formats",
    "trained_formats",
]

ORDER_OF_OPERATIONS = [
    "for every sample: U[o] = 0 for all neurons of all layers",
    "for every time step t, layer by layer (layer l's spikes at step t are layer l+1's input at step t):",
    "  the layer's pre stages, in order: max_pool: x = OR of the spikes in each window; sum_pool: x = their "
    "count (zero padding); flatten: nothing moves (C order)",
    "  acc[o] = bias[c(o)] + sum over the inputs i of neuron o of weight[o][i] * x_i   (acc_bits wide: cannot "
    "overflow); dense: all inputs; conv: the window of o's position, outside the input counts as 0",
    "  I[o] = sat_M(acc[o])",
    "  D = (U[o] * beta[o]) >>> beta_bits   (decay 'multiply', arithmetic shift = floor)",
    "      or U[o] - (U[o] >>> k[o]), k = 0 meaning D = U[o]   (decay 'shift')",
    "  reset_delay = 1: r = U[o] > theta[o] (previous step's membrane);",
    "      subtract: U[o] = sat_M(D + I[o] - (r ? theta[o] : 0));  zero: U[o] = sat_M((r ? 0 : D) + I[o]);",
    "      S[o] = U[o] > theta[o]",
    "  reset_delay = 0: U[o] = sat_M(D + I[o]); S[o] = U[o] > theta[o];",
    "      if S[o]: U[o] = U[o] - theta[o] (subtract) or 0 (zero)",
    "comparisons are signed and strict; sat_M clamps to [-2^(M-1), 2^(M-1)-1]",
]


# ------------------------------------------------------------------------------------------ quantisation


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else tuple(int(a) for a in v)


def _out_hw(shape, kernel, stride, padding, name: str) -> tuple[int, int]:
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = (shape[1] + 2 * ph - kh) // sh + 1, (shape[2] + 2 * pw - kw) // sw + 1
    if oh < 1 or ow < 1:
        raise ValueError(f"layer {name!r}: its window {kernel} does not fit the input {tuple(shape)}")
    return oh, ow


def _per_neuron(v, shape: tuple[int, ...], what: str, name: str) -> np.ndarray:
    a = v.detach().cpu().numpy()
    try:
        return np.ascontiguousarray(np.broadcast_to(a, shape)).reshape(-1).astype(np.int64)
    except ValueError:
        raise ValueError(
            f"LIF after layer {name!r}: {what} has shape {list(a.shape)}, which does not broadcast to its "
            f"{math.prod(shape)} neurons {list(shape)}"
        ) from None


def _infer_input_shape(stages) -> tuple[int, ...]:
    for st in stages:
        if st.kind == "flatten":
            continue
        if st.kind == "layer" and isinstance(st.module, nn.Linear):
            return (st.module.in_features,)
        break
    raise ValueError(
        "cannot infer the input shape of a model that starts with a convolution or pooling; pass "
        "input_shape=(C, H, W) or export from a checkpoint folder (its config.json holds the input shape)"
    )


def quantize(
    model: nn.Module | str | os.PathLike,
    weight_bits: int = DEFAULT_FORMATS.weight_bits,
    mem_bits: int = DEFAULT_FORMATS.mem_bits,
    decay: str = DEFAULT_FORMATS.decay,
    beta_bits: int = DEFAULT_FORMATS.beta_bits,
    scale: str = DEFAULT_FORMATS.scale,
    input_shape: tuple[int, ...] | None = None,
) -> QuantNetwork:
    """The integer network of a spiking model (see the module docstring for the rules): the same stages and
    integers that integer-in-the-loop training runs (:func:`lfp_snn.engine.fixed.fixed_network`)."""
    model, cfg = load_model(model)
    check_finite(model)
    fmt = FixedPoint(weight_bits, mem_bits, beta_bits, decay, scale)
    fx = fixed_network(build_graph(model), fmt, fused=False, warn=True)
    if input_shape is None:
        input_shape = tuple(cfg["model"]["input_shape"]) if cfg is not None else _infer_input_shape(fx.stages)
    shape, vmax, pre, layers = tuple(int(v) for v in input_shape), 1, [], []
    for st in fx.stages:
        m = st.module
        if st.kind == "flatten":
            new = (math.prod(shape),)
            pre.append(QuantFlatten(st.name, shape, new))
            shape = new
            continue
        if st.kind in ("max_pool", "sum_pool"):
            if len(shape) != 3:
                raise ValueError(
                    f"layer {st.name!r} pools a {len(shape)}-D activation {shape}; it needs (C, H, W)"
                )
            k = _pair(m.kernel_size)
            stride = _pair(m.stride if m.stride is not None else m.kernel_size)
            padding = _pair(m.padding)
            out = (shape[0], *_out_hw(shape, k, stride, padding, st.name))
            P = QuantPool(
                "max" if st.kind == "max_pool" else "sum", st.name, k, stride, padding, shape, out, st.divisor
            )
            pre.append(P)
            shape, vmax = out, P.out_max if P.kind == "sum" else vmax
            continue
        q = st.quant
        if isinstance(m, nn.Linear):
            if math.prod(shape) != m.in_features:
                raise ValueError(
                    f"input_shape {tuple(input_shape)} leaves {math.prod(shape)} values for layer {st.name!r}, "
                    f"which takes {m.in_features}"
                )
            kind, in_shape, out_shape = "dense", (m.in_features,), (m.out_features,)
            stride, padding = (1, 1), (0, 0)
        else:
            if len(shape) != 3 or shape[0] != m.in_channels:
                raise ValueError(
                    f"layer {st.name!r} (Conv2d, {m.in_channels} input channels) reads an activation of shape "
                    f"{shape}"
                )
            stride, padding = _pair(m.stride), _pair(m.padding)
            kind, in_shape = "conv", shape
            out_shape = (m.out_channels, *_out_hw(shape, _pair(m.kernel_size), stride, padding, st.name))
        layers.append(
            QuantLayer(
                st.name,
                q.weight.cpu().numpy(),
                q.bias.cpu().numpy(),
                _per_neuron(q.threshold, out_shape, "threshold", st.name),
                _per_neuron(q.beta, out_shape, "beta", st.name),
                st.lif.reset,
                bool(st.lif.reset_delay),
                q.scale,
                q.info,
                kind,
                in_shape,
                out_shape,
                stride,
                padding,
                vmax,
                pre,
            )
        )
        pre, shape, vmax = [], out_shape, 1
    return QuantNetwork(
        layers, weight_bits, mem_bits, decay, beta_bits, tuple(int(v) for v in input_shape), scale
    )


# -------------------------------------------------------------------------------------------- file writers


def _hex(v: int, bits: int) -> str:
    return format(int(v) & ((1 << bits) - 1), f"0{(bits + 3) // 4}x")


def _write_mem(path: Path, values, bits: int) -> None:
    path.write_text("".join(_hex(v, bits) + "\n" for v in values))


def _write_coe(path: Path, values, bits: int, comment: str) -> None:
    words = [_hex(v, bits) for v in values]
    body = ",\n".join(words) + ";\n"
    path.write_text(f"; {comment}\nmemory_initialization_radix=16;\nmemory_initialization_vector=\n{body}")


def _write_mif(path: Path, values, bits: int, comment: str) -> None:
    lines = [
        f"-- {comment}",
        f"WIDTH={bits};",
        f"DEPTH={len(values)};",
        "ADDRESS_RADIX=UNS;",
        "DATA_RADIX=HEX;",
        "CONTENT BEGIN",
    ]
    lines += [f"\t{a} : {_hex(v, bits)};" for a, v in enumerate(values)]
    lines.append("END;")
    path.write_text("\n".join(lines) + "\n")


def _spike_words(spikes: np.ndarray) -> list[int]:
    """uint8 [T, S, N] -> one integer per (sample, step), sample-major; bit j = neuron j."""
    T, S, N = spikes.shape
    packed = np.packbits(
        spikes.transpose(1, 0, 2).reshape(S * T, N).astype(np.uint8), axis=1, bitorder="little"
    )
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def _ctype(bits: int, signed: bool) -> str:
    for n in (8, 16, 32, 64):
        if bits <= n:
            return f"{'' if signed else 'u'}int{n}_t"
    raise ValueError(f"no C type for {bits} bits")


def _q_format(bits: int, s: float, signed: bool = True) -> str:
    """Qm.n (ARM notation: m integer bits, n fraction bits, plus a sign bit when signed) for s = 2^-n."""
    n = -math.log2(s)
    if abs(n - round(n)) > 1e-12:
        return f"integer x {s:.9g} (real scale)"
    n = int(round(n))
    m = bits - (1 if signed else 0) - n
    return f"{'' if signed else 'U'}Q{m}.{n}"


def _c_array(ctype: str, name: str, values) -> str:
    vals = [str(int(v)) for v in values]
    rows = [", ".join(vals[i : i + 16]) for i in range(0, len(vals), 16)]
    return f"static const {ctype} {name}[{len(vals)}] = {{\n    " + ",\n    ".join(rows) + "\n};\n"


def _c_header(net: QuantNetwork, man: dict) -> str:
    W, M = net.weight_bits, net.mem_bits
    bw = man["number_formats"]["beta"]["bits"]
    out = [
        "/* lfp_snn_model.h -- generated by lfp_snn.export.export_fpga; do not edit.",
        " * Integer spiking network (dense and convolutional LIF layers, pooling of spikes); order of operations",
        " * per time step (manifest.json):",
        *[f" *   {line}" for line in ORDER_OF_OPERATIONS],
        " */",
        "#ifndef LFP_SNN_MODEL_H",
        "#define LFP_SNN_MODEL_H",
        "#include <stdint.h>",
        "#include <string.h>",
        "",
        f"#define LFP_SNN_FORMAT_VERSION {BUNDLE_VERSION}",
        f"#define LFP_SNN_NUM_LAYERS {len(net.layers)}",
        f"#define LFP_SNN_INPUT_SIZE {net.n_in}",
        f"#define LFP_SNN_WEIGHT_BITS {W}",
        f"#define LFP_SNN_MEM_BITS {M}",
        f"#define LFP_SNN_MEM_MAX ({2 ** (M - 1) - 1}LL)",
        f"#define LFP_SNN_MEM_MIN (-{2 ** (M - 1)}LL)",
        f"#define LFP_SNN_DECAY_SHIFT {1 if net.decay == 'shift' else 0}",
        f"#define LFP_SNN_BETA_BITS {net.beta_bits}",
        "",
    ]
    for i, L in enumerate(net.layers):
        p = f"LFP_SNN_L{i}"
        out += [
            f"/* layer {i}: torch layer {L.name!r} ({L.kind}), scale {L.scale!r} per LSB */",
            f"#define {p}_N_IN {L.n_in}",
            f"#define {p}_N_OUT {L.n_out}",
            f"#define {p}_ACC_BITS {man['layers'][i]['acc_bits']}",
            f"#define {p}_RESET_SUBTRACT {1 if L.reset == 'subtract' else 0}",
            f"#define {p}_RESET_DELAY {1 if L.reset_delay else 0}",
            _c_array(_ctype(W, True), f"lfp_snn_l{i}_weight", L.weight.reshape(-1)),
            _c_array(_ctype(M, True), f"lfp_snn_l{i}_bias", L.bias),
            _c_array(_ctype(M, True), f"lfp_snn_l{i}_threshold", L.threshold),
            _c_array(_ctype(bw, False), f"lfp_snn_l{i}_beta", L.beta),
        ]
    out.append(_C_COMMON)
    for i, L in enumerate(net.layers):
        out += [_c_pool(i, j, P) for j, P in enumerate(L.pre) if P.kind != "flatten"]
        out.append(_c_layer_step(i, L))
    out += [_c_network(net), "#endif /* LFP_SNN_MODEL_H */", ""]
    return "\n".join(out)


_C_COMMON = r"""
/* Reference implementation of the order of operations (portable C99, not optimised). */
static inline int64_t lfp_snn_sat(int64_t v) {
    return v > LFP_SNN_MEM_MAX ? LFP_SNN_MEM_MAX : (v < LFP_SNN_MEM_MIN ? LFP_SNN_MEM_MIN : v);
}
static inline int64_t lfp_snn_asr(int64_t v, int k) { /* arithmetic shift right = floor(v / 2^k) */
    return v >= 0 ? (v >> k) : -((-v + (((int64_t)1 << k) - 1)) >> k);
}
static inline int64_t lfp_snn_decay(int64_t u, int64_t b) {
#if LFP_SNN_DECAY_SHIFT
    return b == 0 ? u : u - lfp_snn_asr(u, (int)b);
#else
    return lfp_snn_asr(u * b, LFP_SNN_BETA_BITS);
#endif
}
static inline int lfp_snn_neuron(int64_t *u, int64_t acc, int64_t th, int64_t b, int subtract, int delay) {
    int64_t cur = lfp_snn_sat(acc), d = lfp_snn_decay(*u, b);
    int s;
    if (delay) {
        int r = *u > th;
        *u = subtract ? lfp_snn_sat(d + cur - (r ? th : 0)) : lfp_snn_sat((r ? 0 : d) + cur);
        s = *u > th;
    } else {
        *u = lfp_snn_sat(d + cur);
        s = *u > th;
        if (s) *u = subtract ? *u - th : 0;
    }
    return s;
}
"""


def _c_pool(i: int, j: int, P) -> str:
    """Pre stage j of layer i: a max (OR) or sum pool of 0/1 spikes, [C][H][W] -> [C][OH][OW] bytes."""
    (C, H, Wd), (_, OH, OW) = P.in_shape, P.out_shape
    (kh, kw), (sh, sw), (ph, pw) = P.kernel, P.stride, P.padding
    combine = (
        "v |= x[(c * {H} + iy) * {W} + ix];" if P.kind == "max" else "v += x[(c * {H} + iy) * {W} + ix];"
    )
    return f"""static inline void lfp_snn_l{i}_pre{j}(const uint8_t *x, uint8_t *y) {{ /* {P.kind} pool {P.name!r} */
    for (int c = 0; c < {C}; ++c)
        for (int oy = 0; oy < {OH}; ++oy)
            for (int ox = 0; ox < {OW}; ++ox) {{
                uint8_t v = 0;
                for (int ky = 0; ky < {kh}; ++ky)
                    for (int kx = 0; kx < {kw}; ++kx) {{
                        int iy = oy * {sh} + ky - {ph}, ix = ox * {sw} + kx - {pw};
                        if (iy >= 0 && iy < {H} && ix >= 0 && ix < {Wd}) {combine.format(H=H, W=Wd)}
                    }}
                y[(c * {OH} + oy) * {OW} + ox] = v;
            }}
}}
"""


def _c_layer_step(i: int, L: QuantLayer) -> str:
    p = f"LFP_SNN_L{i}"
    neuron = (
        f"lfp_snn_neuron(&u[o], acc, lfp_snn_l{i}_threshold[o], lfp_snn_l{i}_beta[o], {p}_RESET_SUBTRACT, "
        f"{p}_RESET_DELAY)"
    )
    if L.kind == "dense":
        return f"""static inline void lfp_snn_l{i}_step(int64_t *u, const uint8_t *x, uint8_t *s) {{
    for (int o = 0; o < {p}_N_OUT; ++o) {{
        int64_t acc = lfp_snn_l{i}_bias[o];
        for (int i = 0; i < {p}_N_IN; ++i)
            if (x[i]) acc += (int64_t)lfp_snn_l{i}_weight[o * {p}_N_IN + i] * x[i];
        s[o] = (uint8_t){neuron};
    }}
}}
"""
    (C, H, Wd), (CO, OH, OW) = L.in_shape, L.out_shape
    kh, kw = L.weight.shape[2:]
    (sh, sw), (ph, pw) = L.stride, L.padding
    return f"""static inline void lfp_snn_l{i}_step(int64_t *u, const uint8_t *x, uint8_t *s) {{ /* convolution */
    for (int c = 0; c < {CO}; ++c)
        for (int oy = 0; oy < {OH}; ++oy)
            for (int ox = 0; ox < {OW}; ++ox) {{
                int o = (c * {OH} + oy) * {OW} + ox;
                int64_t acc = lfp_snn_l{i}_bias[c];
                for (int ci = 0; ci < {C}; ++ci)
                    for (int ky = 0; ky < {kh}; ++ky)
                        for (int kx = 0; kx < {kw}; ++kx) {{
                            int iy = oy * {sh} + ky - {ph}, ix = ox * {sw} + kx - {pw};
                            if (iy < 0 || iy >= {H} || ix < 0 || ix >= {Wd}) continue;
                            uint8_t v = x[(ci * {H} + iy) * {Wd} + ix];
                            if (v) acc += (int64_t)lfp_snn_l{i}_weight[((c * {C} + ci) * {kh} + ky) * {kw} + kx] * v;
                        }}
                s[o] = (uint8_t){neuron};
            }}
}}
"""


def _c_network(net: QuantNetwork) -> str:
    fields, calls = [], []
    for i, L in enumerate(net.layers):
        fields += [f"    int64_t u{i}[LFP_SNN_L{i}_N_OUT];", f"    uint8_t s{i}[LFP_SNN_L{i}_N_OUT];"]
        src = "in" if i == 0 else f"st->s{i - 1}"
        for j, P in enumerate(L.pre):
            if P.kind == "flatten":
                continue
            fields.append(f"    uint8_t p{i}_{j}[{math.prod(P.out_shape)}];")
            calls.append(f"    lfp_snn_l{i}_pre{j}({src}, st->p{i}_{j});")
            src = f"st->p{i}_{j}"
        calls.append(f"    lfp_snn_l{i}_step(st->u{i}, {src}, st->s{i});")
    fields_s, calls_s = "\n".join(fields), "\n".join(calls)
    return f"""typedef struct {{
{fields_s}
}} lfp_snn_state;  /* membranes u<l> and the last step's spikes s<l> of every layer, pooled inputs p<l>_<j> */

static inline void lfp_snn_reset(lfp_snn_state *st) {{ memset(st, 0, sizeof *st); }}

/* one time step of the whole network; in: LFP_SNN_INPUT_SIZE bytes of 0/1 */
static inline void lfp_snn_step(lfp_snn_state *st, const uint8_t *in) {{
{calls_s}
}}
"""


# ----------------------------------------------------------------------------------------------- bundle


def _golden_inputs(net: QuantNetwork, inputs, samples: int, steps: int, rate: float, seed: int) -> np.ndarray:
    if inputs is not None:
        defaults = {k: v.default for k, v in inspect.signature(export_fpga).parameters.items()}
        drawn = {"samples": samples, "steps": steps, "rate": rate, "seed": seed}
        given = [k for k, v in drawn.items() if v != defaults[k]]
        if given:
            raise ValueError(f"{', '.join(given)}: options of the random golden inputs; inputs are given")
    if inputs is None:
        if samples < 1 or steps < 1:
            raise ValueError(f"samples and steps must be >= 1, got {samples}, {steps}")
        rng = np.random.default_rng(seed)
        return (rng.random((steps, samples, net.n_in)) < rate).astype(np.int64)
    return check_spikes(inputs, net.n_in, "inputs (golden test vectors)")


def _pre_entry(P) -> dict:
    if P.kind == "flatten":
        return {
            "type": "flatten",
            "name": P.name,
            "in_shape": list(P.in_shape),
            "out_shape": list(P.out_shape),
        }
    entry = {
        "type": f"{P.kind}_pool",
        "name": P.name,
        "kernel": list(P.kernel),
        "stride": list(P.stride),
        "padding": list(P.padding),
        "in_shape": list(P.in_shape),
        "out_shape": list(P.out_shape),
        "out_bits": int(P.out_max).bit_length(),
    }
    if P.kind == "sum":
        entry["divisor"] = P.divisor
        entry["note"] = (
            "the spike count of each window (zero padding); the average pool's 1/divisor is folded into the "
            "weights of the layer that reads it"
        )
    else:
        entry["note"] = "OR of the spikes in each window (= their maximum; zero padding)"
    return entry


def _layer_entry(i: int, L: QuantLayer, W: int, M: int, files: dict) -> dict:
    entry = {
        "index": i,
        "name": L.name,
        "type": "dense_lif" if L.kind == "dense" else "conv_lif",
        "n_in": L.n_in,
        "n_out": L.n_out,
        "in_shape": list(L.in_shape) if L.in_shape else [L.n_in],
        "out_shape": list(L.out_shape) if L.out_shape else [L.n_out],
        "fan_in": L.fan_in,
        "input_max": L.in_max,
        "input_bits": int(L.in_max).bit_length(),
        "pre": [_pre_entry(P) for P in L.pre],
        "scale": L.scale,
        "weight_format": _q_format(W, L.scale),
        "membrane_format": _q_format(M, L.scale),
        "acc_bits": acc_bits_for(L, W, M),
    }
    if L.kind == "dense":
        entry["weight_layout"] = (
            "row-major [n_out][n_in]: word o * n_in + i is the weight from input i to neuron o"
        )
        entry["bias_layout"] = "one word per neuron"
    else:
        co, ci, kh, kw = L.weight.shape
        entry.update(
            kernel=[kh, kw],
            stride=list(L.stride),
            padding=list(L.padding),
            weight_layout="row-major [c_out][c_in][ky][kx]: word ((c * C_in + ci) * kh + ky) * kw + kx",
            bias_layout="one word per output channel",
            neuron_layout="C order (c, y, x): neuron o = (c * H_out + y) * W_out + x; threshold, beta and the "
            "membranes have one word per neuron",
            window="neuron (c, y, x) reads input (ci, y * stride_h + ky - pad_h, x * stride_w + kx - pad_w); "
            "positions outside the input are 0 (zero padding)",
        )
    entry.update(reset=L.reset, reset_delay=L.reset_delay, files=files, **L.info)
    return entry


def _manifest(net: QuantNetwork, files: dict, vectors: dict, beta_w: int) -> dict:
    W, M = net.weight_bits, net.mem_bits
    layers = [_layer_entry(i, L, W, M, files[i]) for i, L in enumerate(net.layers)]
    return {
        "format": BUNDLE_FORMAT,
        "format_version": BUNDLE_VERSION,
        "producer": "lfp_snn.export.export_fpga",
        "input": {
            "size": net.n_in,
            "shape": list(net.input_shape),
            "encoding": "binary spikes per time step; bit j of a vector word = flattened (C order) input j. "
            "Analogue inputs must be spike-encoded (e.g. Bernoulli/rate) before they reach the bundle.",
        },
        "number_formats": {
            "weight": {
                "bits": W,
                "signed": True,
                "encoding": "two's complement",
                "per_layer_q": "layers[].weight_format",
                "scale_mode": net.scale,
            },
            "bias": {"bits": M, "signed": True, "encoding": "two's complement", "scale": "the layer's scale"},
            "inputs": {
                "bits": "layers[].input_bits",
                "signed": False,
                "note": "a layer's inputs are spikes (1 bit) or, after a sum pool, spike counts",
            },
            "threshold": {
                "bits": M,
                "signed": True,
                "encoding": "two's complement (always > 0)",
                "scale": "the layer's scale",
            },
            "membrane": {
                "bits": M,
                "signed": True,
                "encoding": "two's complement",
                "per_layer_q": "layers[].membrane_format",
            },
            "accumulator": {
                "bits": "layers[].acc_bits",
                "signed": True,
                "note": "fan_in input_max 2^(W-1) + 2^(M-1) fits, so the accumulator never overflows",
            },
            "beta": {
                "bits": beta_w,
                "signed": False,
                "encoding": f"UQ1.{net.beta_bits} fraction beta_q = round(beta 2^{net.beta_bits})"
                if net.decay == "multiply"
                else "shift k (beta = 1 - 2^-k; k = 0: no leak)",
            },
            "spikes": {"bits": 1, "signed": False},
            "q_notation": "ARM: signed Qm.n has 1 sign bit, m integer bits and n fraction bits",
        },
        "decay": {"mode": net.decay, "beta_bits": net.beta_bits},
        "order_of_operations": ORDER_OF_OPERATIONS,
        "overflow": "accumulator: cannot overflow (acc_bits); every membrane result saturates to mem_bits "
        "(sat_M); quantisation of weights (weight_bits) and biases (mem_bits) saturates too, counted in "
        "layers[].saturated",
        "rounding": "round half away from zero when quantising; decay uses floor (arithmetic shift right)",
        "layers": layers,
        "test_vectors": vectors,
    }


def _write_bundle(
    root: Path, net: QuantNetwork, golden_x: np.ndarray, trained: FixedPoint | None = None
) -> None:
    from .verilog import generate_hdl

    W, M = net.weight_bits, net.mem_bits
    beta_w = (net.beta_bits + 1) if net.decay == "multiply" else int(M).bit_length()
    files = []
    for i, L in enumerate(net.layers):
        entry = {}
        for kind, values, bits in (
            ("weight", L.weight.reshape(-1), W),
            ("bias", L.bias, M),
            ("threshold", L.threshold, M),
            ("beta", L.beta, beta_w),
        ):
            stem = f"layer{i}_{kind}"
            note = f"lfp-snn layer {i} {kind}: {len(values)} words, {bits} bits, hex"
            _write_mem(root / f"{stem}.mem", values, bits)
            _write_coe(root / f"{stem}.coe", values, bits, note)
            _write_mif(root / f"{stem}.mif", values, bits, note)
            entry[kind] = {
                "mem": f"{stem}.mem",
                "coe": f"{stem}.coe",
                "mif": f"{stem}.mif",
                "bits": bits,
                "words": len(values),
            }
        files.append(entry)
    (root / "vectors").mkdir()
    spikes = simulate(net, golden_x)
    _write_mem(root / "vectors" / "input.mem", _spike_words(golden_x.astype(np.uint8)), net.n_in)
    vec_layers = []
    for i, s in enumerate(spikes):
        rel = f"vectors/layer{i}_spikes.mem"
        _write_mem(root / rel, _spike_words(s), net.layers[i].n_out)
        vec_layers.append(rel)
    T, S = golden_x.shape[:2]
    vectors = {
        "samples": S,
        "steps": T,
        "input": "vectors/input.mem",
        "layers": vec_layers,
        "layout": "line s * steps + t holds step t of sample s; bit j = input/neuron j (LSB first); membranes "
        "start at 0 for every sample",
        "source": "lfp_snn.export.simulator (the integer reference simulator)",
    }
    man = _manifest(net, files, vectors, beta_w)
    man["trained_in_the_loop"] = trained.to_dict() if trained is not None else None
    (root / "lfp_snn_model.h").write_text(_c_header(net, man))
    for rel, text in generate_hdl(man).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    digests = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            rel = p.relative_to(root).as_posix()
            digests[rel] = sha256_file(p)
    man["files"] = digests
    (root / "manifest.json").write_text(json.dumps(man, indent=2) + "\n")


BUNDLE_FOLDERS = ("hdl", "vectors")
"""The sub-folders a bundle has (every other path in it is a file its manifest lists)."""


def _contents(root: Path) -> tuple[set[str], set[str], set[str]]:
    """(files, folders, links) under ``root``, as posix paths relative to it; links are not followed."""
    files, folders, links = set(), set(), set()
    for here, dirs, names in os.walk(root, followlinks=False):
        rel = Path(here).relative_to(root)
        for d in list(dirs):
            p = (rel / d).as_posix()
            if (Path(here) / d).is_symlink():
                links.add(p)
                dirs.remove(d)
            else:
                folders.add(p)
        for n in names:
            p = (rel / n).as_posix()
            (links if (Path(here) / n).is_symlink() else files).add(p)
    return files, folders, links


def _shown(paths, limit: int = 5) -> str:
    paths = sorted(paths)
    more = f", ... ({len(paths)} in all)" if len(paths) > limit else ""
    return ", ".join(paths[:limit]) + more


def _holds(files: set[str], folders: set[str], links: set[str]) -> str:
    parts = []
    if files:
        parts.append(f"{len(files)} file{'s' * (len(files) != 1)} ({_shown(files)})")
    if links:
        parts.append(f"{len(links)} link{'s' * (len(links) != 1)} ({_shown(links)})")
    if folders and not files and not links:
        parts.append(f"{len(folders)} empty folder{'s' * (len(folders) != 1)} ({_shown(folders)})")
    return " and ".join(parts)


def _not_ours(target: Path, why: str, holding: str) -> ValueError:
    return ValueError(
        f"{target} is not an lfp-snn FPGA bundle ({why}); it holds {holding}; refusing to replace it: export "
        "to a new or empty folder"
    )


def _bundle_listing(target: Path) -> set[str]:
    """The files of the bundle in ``target`` as its manifest lists them (manifest.json included), after
    checking that ``target`` holds exactly such a bundle, as :func:`export_fpga` wrote it: a manifest whose
    ``format`` field names the lfp-snn bundle format, every other file listed there with an unchanged
    sha256, no other files, folders or links. ValueError naming the folder and what it holds otherwise."""
    files, folders, links = _contents(target)
    holding = _holds(files, folders, links)
    if "manifest.json" not in files:
        raise _not_ours(target, "no manifest.json", holding)
    try:
        man = json.loads((target / "manifest.json").read_text())
    except (OSError, ValueError) as e:
        raise _not_ours(target, f"its manifest.json cannot be read as JSON: {e}", holding) from None
    fmt = man.get("format") if isinstance(man, dict) else None
    if fmt != BUNDLE_FORMAT:
        raise _not_ours(target, f"its manifest.json has format {fmt!r}, not {BUNDLE_FORMAT!r}", holding)
    listed = man.get("files")
    if not isinstance(listed, dict) or not all(isinstance(k, str) for k in listed):
        raise _not_ours(target, "its manifest.json of that format lists no files with their sha256", holding)
    ours = set(listed) | {"manifest.json"}
    parents = {p.as_posix() for rel in ours for p in Path(rel).parents if p != Path(".")}
    others = (files - ours) | (folders - parents - set(BUNDLE_FOLDERS)) | links
    if others:
        raise ValueError(
            f"{target} is an lfp-snn FPGA bundle but also holds {len(others)} path(s) that are not part of it "
            f"({_shown(others)}); refusing to replace it, even with overwrite: move those away first"
        )
    changed = sorted(rel for rel in set(listed) & files if sha256_file(target / rel) != listed[rel])
    if changed:
        raise ValueError(
            f"{target} is an lfp-snn FPGA bundle, but {_shown(changed)} changed since it was written (the "
            "sha256 differs from its manifest); refusing to replace it, even with overwrite: move the bundle "
            "away first"
        )
    return ours


def _swap_into_place(tmp: Path, target: Path) -> None:
    """Rename the finished bundle ``tmp`` to ``target``. An old bundle there is renamed aside first and
    deleted only after checking it once more (it may have changed since :func:`check_replaceable`); if it is
    no longer exactly a bundle, it is put back and nothing is deleted."""
    if not target.exists():
        os.replace(tmp, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    os.rmdir(old)
    os.replace(target, old)
    try:
        _bundle_listing(old)
    except ValueError:
        os.replace(old, target)
        raise ValueError(
            f"{target} changed while the new bundle was written: it is no longer exactly an lfp-snn FPGA "
            "bundle; it was left as it is and nothing was replaced"
        ) from None
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(old, target)
        raise
    shutil.rmtree(old, ignore_errors=True)


def check_replaceable(target: Path, overwrite: bool) -> None:
    """Raise unless ``target`` is absent, an empty folder, or (with ``overwrite``) exactly a bundle written by
    :func:`export_fpga`: its manifest.json's ``format`` field names the bundle format, and the folder holds
    the files it lists, unchanged (sha256), and nothing else. Any other folder is refused with one error
    naming it and what it holds; nothing is ever deleted that export_fpga did not write."""
    if not target.exists() and not target.is_symlink():
        return
    if target.is_symlink() or not target.is_dir():
        raise ValueError(
            f"{target} exists and is {'a link' if target.is_symlink() else 'a file'}, not a folder; refusing "
            "to replace it"
        )
    if not any(target.iterdir()):
        return
    _bundle_listing(target)
    if not overwrite:
        raise FileExistsError(
            f"{target} holds an FPGA bundle already; pass overwrite=True (--overwrite) to replace it"
        )


FORMAT_NAMES = ("weight_bits", "mem_bits", "beta_bits", "decay", "scale")


def trained_formats(cfg: dict | None) -> FixedPoint | None:
    """The number formats a checkpoint was trained with in the loop (its config.json's ``train`` entry has
    ``weight_bits``), or None for a float run."""
    train = (cfg or {}).get("train") or {}
    if train.get("weight_bits") is None:
        return None
    d = DEFAULT_FORMATS.to_dict()
    return FixedPoint(**{k: train.get(k, d[k]) for k in FORMAT_NAMES})


def resolve_formats(cfg: dict | None, where: str = "the run", **given) -> FixedPoint:
    """The formats to export with: those given (None: not given), else the run's trained formats, else the
    defaults. A run trained in the loop exported with other formats is a ValueError naming both: its bundle
    would not reproduce the spikes training computed."""
    trained = trained_formats(cfg)
    base = (trained or DEFAULT_FORMATS).to_dict()
    want = {k: (base[k] if given.get(k) is None else given[k]) for k in FORMAT_NAMES}
    if trained is not None:
        differ = [k for k in FORMAT_NAMES if want[k] != base[k]]
        if differ:
            asked = ", ".join(f"{k}={want[k]!r}" for k in differ)
            had = ", ".join(f"{k}={base[k]!r}" for k in differ)
            raise ValueError(
                f"{where} was trained in the loop with {trained.describe()}; the export asks for {asked} (trained: "
                f"{had}), so the bundle would not reproduce the spikes training computed. Export with the trained "
                "formats (leave those options out), or load the model (lfp_snn.checkpoint.load_checkpoint) and "
                "export the module to quantise it otherwise"
            )
    return FixedPoint(**want)


def export_fpga(
    model_or_folder: nn.Module | str | os.PathLike,
    out_dir: str | os.PathLike,
    weight_bits: int | None = None,
    mem_bits: int | None = None,
    decay: str | None = None,
    inputs=None,
    *,
    beta_bits: int | None = None,
    scale: str | None = None,
    samples: int = 4,
    steps: int = 25,
    rate: float = 0.25,
    seed: int = 0,
    input_shape: tuple[int, ...] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a fixed-point FPGA bundle of a spiking model to ``out_dir``; return its path.

    The number formats (``weight_bits``, ``mem_bits``, ``decay``, ``beta_bits``, ``scale``) not given are a
    checkpoint's trained formats when it was trained in the loop (``lfp-snn train --weight-bits``; other
    formats than trained are a ValueError naming both), else 8, 16, ``"multiply"``, 8, ``"pow2"``.

    ``inputs``: binary spikes [T, B, ...] for the golden test vectors; default ``samples`` random Bernoulli
    spike trains of ``steps`` steps (firing probability ``rate``, ``seed``). The bundle is written into a
    temporary directory beside ``out_dir`` and renamed into place only when complete. An existing non-empty
    ``out_dir`` is refused, unless ``overwrite=True`` and it is a bundle this function wrote, holding nothing
    but the files its manifest lists: other folders, and other files, are never deleted.
    """
    target = Path(out_dir).absolute()
    check_replaceable(target, overwrite)
    model, cfg = load_model(model_or_folder)
    where = str(model_or_folder) if cfg is not None else "the model"
    fmt = resolve_formats(
        cfg, where, weight_bits=weight_bits, mem_bits=mem_bits, decay=decay, beta_bits=beta_bits, scale=scale
    )
    if input_shape is None and cfg is not None:
        input_shape = tuple(cfg["model"]["input_shape"])
    net = quantize(model, fmt.weight_bits, fmt.mem_bits, fmt.decay, fmt.beta_bits, fmt.scale, input_shape)
    golden = _golden_inputs(net, inputs, samples, steps, rate, seed)
    check_replaceable(target, overwrite)  # again: the folder may have changed while the model was quantised
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        _write_bundle(tmp, net, golden, trained_formats(cfg))
        _swap_into_place(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
