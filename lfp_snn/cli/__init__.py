"""The ``lfp-snn`` command: one module per subcommand (:mod:`.train`, :mod:`.compare`, :mod:`.sweep`,
:mod:`.export`), each imported only when its subcommand runs; :mod:`.options` holds the ``train`` options the
others share.

``main(argv)`` runs a command line; bad input is one ``error: ...`` line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .options import add_train_arguments, apply_recipe, configs_from_args

COMMANDS: dict[str, tuple[str, str]] = {
    "train": (
        "lfp_snn.cli.train",
        "train a model (LFP by default) and report test accuracy and spike statistics",
    ),
    "compare": (
        "lfp_snn.cli.compare",
        "train several methods (LFP rules, BPTT baselines) on the same data and seeds; write a table and plots",
    ),
    "sweep": (
        "lfp_snn.cli.sweep",
        "grid over β × T × method × seed × lr; results in one HDF5 file, heatmaps and tables",
    ),
    "export": ("lfp_snn.cli.export", "write a trained model to NIR (neuromorphic chips) or an FPGA bundle"),
}
"""Subcommand -> (its module, one line of help). Each module has ``add_command(subparsers)``."""

DESCRIPTION = (
    "Train spiking neural networks without surrogate gradients, by Layer-wise Feedback Propagation, and "
    "export them to hardware."
)


def build_parser(commands=None) -> argparse.ArgumentParser:
    """The ``lfp-snn`` parser with the subcommands in ``commands`` fully built (their modules imported; all
    of them when None) and the others listed by name and help only."""
    p = argparse.ArgumentParser(prog="lfp-snn", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, (module, help_text) in COMMANDS.items():
        if commands is None or name in commands:
            importlib.import_module(module).add_command(sub, help_text)
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return p


USAGE_ERRORS = (ValueError, OSError, ImportError)
"""What a command raises for bad input (a value, a file, a missing package): each message names the value or the
file and what is accepted, so it is shown as one line, without a traceback."""


def run_command(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; bad input is one line on stderr and exit code 2, Ctrl-C is
    one line and exit code 130."""
    args = parser.parse_args(argv)
    if getattr(args, "allocator", None) == "retain":
        from ..allocator import retain_freed_memory

        retain_freed_memory()
    try:
        if hasattr(args, "recipe"):
            apply_recipe(args)
        return args.func(args)
    except USAGE_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    """``lfp-snn ARGS``: build only the subcommand named in ``argv`` and run it."""
    argv = list(sys.argv[1:] if argv is None else argv)
    chosen = [argv[0]] if argv and argv[0] in COMMANDS else []
    return run_command(build_parser(chosen), argv)


__all__ = ["COMMANDS", "add_train_arguments", "build_parser", "configs_from_args", "main", "run_command"]
