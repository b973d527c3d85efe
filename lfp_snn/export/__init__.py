"""Export: NIR graphs, fixed-point FPGA bundles, their integer reference simulator and a Verilog check.

    export_nir(model_or_folder, path, dt=None, target="generic", ...) -> nir.NIRGraph (NIR file at path)
    import_nir(path_or_graph)                            -> SpikingSequential
    cross_check(model, target, x)                        -> output spike mismatches in the target's own reader
    export_fpga(model_or_folder, out_dir, weight_bits=None, mem_bits=None, decay=None, inputs=None, ...) -> Path
                                                         (formats: the run's trained ones, else 8/16/multiply)
    simulate_bundle(bundle_dir, input_spikes)            -> {"layers", "spikes", "output", "counts"}
    verify_bundle(bundle_dir)                            -> manifest (raises BundleError)
    run_verilog_check(bundle_dir)                        -> VerilogResult (iverilog + vvp, bit-exact check)

See docs/export.md.
"""

from .fixed_point import export_fpga, quantize
from .nir_export import convert_reset, export_nir, import_nir, to_nir_graph
from .nir_readers import ReaderUnavailable, cross_check, run_in_reader
from .nir_targets import TARGET_NAMES, TARGETS, NIRTarget
from .simulator import (
    BundleError,
    QuantLayer,
    QuantNetwork,
    compare_with_float,
    load_bundle,
    simulate,
    simulate_bundle,
    verify_bundle,
)
from .verilog import VerilogResult, generate_hdl, iverilog_available, run_verilog_check

__all__ = [
    "BundleError",
    "NIRTarget",
    "QuantLayer",
    "QuantNetwork",
    "ReaderUnavailable",
    "TARGETS",
    "TARGET_NAMES",
    "VerilogResult",
    "compare_with_float",
    "convert_reset",
    "cross_check",
    "export_fpga",
    "export_nir",
    "generate_hdl",
    "import_nir",
    "iverilog_available",
    "load_bundle",
    "quantize",
    "run_in_reader",
    "run_verilog_check",
    "simulate",
    "simulate_bundle",
    "to_nir_graph",
    "verify_bundle",
]
