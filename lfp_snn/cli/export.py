"""``lfp-snn export nir|fpga``: write hardware artefacts from a checkpoint folder and prove them by running
(:mod:`lfp_snn.export`)."""

from __future__ import annotations

import argparse
import inspect
import json
import warnings

ROUND_TRIP_STEPS = 25  # time steps of the random spike input that `export nir` runs through both models


def _nir(a: argparse.Namespace) -> int:
    import torch

    if a.steps < 1:
        raise ValueError(f"--steps (of the round-trip check) must be >= 1, got {a.steps}")

    from ..engine import run
    from ..export.nir_export import export_nir, import_nir, load_model
    from ..export.nir_targets import get_target

    spec = get_target(a.target)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        graph = export_nir(
            a.checkpoint,
            a.out,
            dt=a.dt,
            target=a.target,
            maxpool=a.maxpool,
            convert_reset=a.convert_reset,
            fold_r=True if a.fold_r else None,
            overwrite=a.overwrite,
        )
    for w in caught:
        print(f"warning: {w.message}")
    # prove it: read the file back and compare output spikes with the original on random input
    model, _ = load_model(a.checkpoint)
    back = import_nir(a.out)
    shape = next(p for n, p in model.named_parameters() if n.endswith("weight")).shape
    x = _probe_input(model, a.steps, shape)
    if a.convert_reset:
        from ..export.nir_export import convert_reset

        model = convert_reset(model, a.convert_reset, False)
    same = bool(torch.equal(run(model, x), run(back, x)))
    report = {
        "nir": str(a.out),
        "target": spec.name,
        "dt": float(graph.metadata["dt"]),
        "read_with": spec.reader,
        "exact_there": spec.exact,
        "round_trip_identical_spikes": same,
        "steps": a.steps,
    }
    ok = same
    if a.cross_check:
        from ..export.nir_readers import ReaderUnavailable, run_in_reader

        try:
            got = run_in_reader(spec.name, a.out, x, settings="exact")
        except ReaderUnavailable as e:
            raise SystemExit(f"error: --cross-check: {e}") from None
        ref = run(model.double(), x.double()) if spec.name == "norse" else run(model, x)
        mismatches = int((got.to(ref.dtype).reshape(ref.shape) != ref).sum())
        report["cross_check_mismatches"] = mismatches
        report["cross_check_total"] = int(ref.numel())
        ok = ok and mismatches == 0
    print(json.dumps(report))
    return 0 if ok else 1


def _probe_input(model, steps: int, first_weight_shape):
    import torch

    from ..models import ModelConfig

    cfg = getattr(model, "_lfp_config", None)
    g = torch.Generator().manual_seed(0)
    if isinstance(cfg, ModelConfig):
        shape = cfg.input_shape
    elif len(first_weight_shape) == 4:
        shape = (first_weight_shape[1], 28, 28)
    else:
        shape = (first_weight_shape[1],)
    return (torch.rand(steps, 4, *shape, generator=g) < 0.3).float()


def _fpga(a: argparse.Namespace) -> int:
    from ..export.fixed_point import export_fpga
    from ..export.simulator import verify_bundle
    from ..export.verilog import iverilog_available, run_verilog_check

    out = export_fpga(
        a.checkpoint,
        a.out,
        weight_bits=a.weight_bits,
        mem_bits=a.mem_bits,
        decay=a.decay,
        beta_bits=a.beta_bits,
        scale=a.scale,
        samples=a.samples,
        steps=a.steps,
        overwrite=a.overwrite,
    )
    verify_bundle(out)
    report = {"bundle": str(out), "verified": True}
    if a.verilog:
        if not iverilog_available():
            raise SystemExit("error: --verilog needs Icarus Verilog (apt-get install iverilog)")
        res = run_verilog_check(out)
        report["verilog_bit_exact"] = bool(res.ok)
        report["verilog_mismatches"] = res.mismatches
    print(json.dumps(report))
    return 0 if report.get("verilog_bit_exact", True) else 1


def _defaults(fn) -> dict:
    """Parameter name -> default of ``fn``: the export options take their defaults from the API."""
    return {k: v.default for k, v in inspect.signature(fn).parameters.items() if v.default is not v.empty}


def add_command(sub, help_text: str) -> None:
    """Add the ``export`` subcommand with its kinds ``nir`` and ``fpga``."""
    from ..export.fixed_point import DECAYS, export_fpga
    from ..export.nir_export import export_nir
    from ..export.nir_targets import TARGET_NAMES

    nir_d, fpga_d = _defaults(export_nir), _defaults(export_fpga)
    p = sub.add_parser(
        "export",
        help=help_text,
        description="Export a checkpoint folder (config.json + model.pt from `lfp-snn train --out`).",
    )
    kinds = p.add_subparsers(dest="kind", required=True)
    n = kinds.add_parser(
        "nir",
        help="NIR graph for a reader: generic, snntorch, norse, spyx, sinabs (Speck), rockpool (Xylo)",
        description="Write a NIR graph for one reader (--target) and check it by reading it back. Each target "
        "writes what its reader needs and warns where that reader cannot run the trained neuron exactly, "
        "naming the neuron it runs exactly (docs/export.md, 'Target presets').",
    )
    n.add_argument("checkpoint", help="checkpoint folder")
    n.add_argument("--out", required=True, help="output .nir file")
    n.add_argument(
        "--target",
        default=nir_d["target"],
        choices=TARGET_NAMES,
        help="the reader: generic (NIR as written, lfp-snn's import), snntorch (import_from_nir, dt 1e-4), norse "
        "(from_nir, r folded), spyx (from_nir, dt 1), sinabs (from_nir; Speck), rockpool (from_nir), xylo "
        f"(rockpool plus Xylo's design rules as errors) (default: {nir_d['target']})",
    )
    n.add_argument(
        "--dt",
        type=float,
        default=None,
        help="time step in seconds for the continuous mapping (default: the target's: generic, norse, rockpool "
        "and xylo 1e-3, snntorch 1e-4 (its importer hard-codes it), spyx and sinabs 1)",
    )
    n.add_argument(
        "--fold-r",
        action="store_true",
        help="put R = 1/(1-β) into the weights and write r = 1, for readers that ignore r (on for norse; "
        "generic and snntorch only otherwise)",
    )
    n.add_argument(
        "--cross-check",
        action="store_true",
        help="also run the file in the target's own reader (it must be installed) on the check's random "
        "input, with the settings under which it runs lfp-snn's neuron, and count differing output spikes",
    )
    n.add_argument(
        "--maxpool",
        default=nir_d["maxpool"],
        choices=("error", "spiking"),
        help="MaxPool2d has no NIR node: error, or an exact sum-pool + IF gate substitute on spikes "
        f"(default: {nir_d['maxpool']})",
    )
    n.add_argument(
        "--convert-reset",
        default=None,
        choices=("zero",),
        help="rewrite the neurons to reset-to-zero without delay (what NIR represents); fine-tune after",
    )
    n.add_argument(
        "--steps",
        type=int,
        default=ROUND_TRIP_STEPS,
        help=f"steps of the round-trip check (default {ROUND_TRIP_STEPS})",
    )
    n.add_argument("--overwrite", action="store_true", help="replace the file --out if it exists")
    n.set_defaults(func=_nir)
    f = kinds.add_parser(
        "fpga", help="fixed-point bundle (.mem/.coe/.mif, C header, golden vectors, Verilog)"
    )
    f.add_argument(
        "checkpoint",
        help="checkpoint folder (a spiking chain of Linear/Conv2d -> LIF layers, pooling, Flatten)",
    )
    f.add_argument("--out", required=True, help="output folder (written atomically)")
    from ..quantization import DEFAULT_FORMATS, SCALES

    std = DEFAULT_FORMATS.to_dict()
    for name, what in (
        ("weight_bits", "weight"),
        ("mem_bits", "membrane, bias and threshold"),
        ("beta_bits", "β fraction"),
    ):
        f.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            default=None,
            help=f"bits of the {what} words (default: the run's if it was trained with --weight-bits, else "
            f"{std[name]})",
        )
    f.add_argument(
        "--decay",
        default=None,
        choices=DECAYS,
        help="membrane decay by a fixed-point multiply, or by a right shift (β ≈ 1 - 2^-k) (default: the run's "
        f"if it was trained with --weight-bits, else {std['decay']})",
    )
    f.add_argument(
        "--scale",
        default=None,
        choices=SCALES,
        help="each layer's LSB: pow2, the power of two at which max|w| fits; real, max|w| / (2^(W-1) - 1); mse, the power of two with the least squared error (saturating the largest weights) (default: the run's if it was trained "
        f"with --weight-bits, else {std['scale']})",
    )
    f.add_argument(
        "--samples",
        type=int,
        default=fpga_d["samples"],
        help=f"golden test vectors: samples (default: {fpga_d['samples']})",
    )
    f.add_argument(
        "--steps",
        type=int,
        default=fpga_d["steps"],
        help=f"golden test vectors: time steps (default: {fpga_d['steps']})",
    )
    f.add_argument("--verilog", action="store_true", help="also run the Verilog LIF layer in iverilog")
    f.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the bundle in --out (only a bundle export fpga wrote, holding nothing else)",
    )
    f.set_defaults(func=_fpga)
