"""Affine ops of parametric layers on typed inputs: the pieces every LFP rule is written against."""

from .affine import PARAMETRIC, ConvOp, LinearOp, affine_op, check_conv
from .values import Dense, SparseRows, Spikes, Value, Zero, as_value, multiply_by_blocks_, row_slices

__all__ = [
    "PARAMETRIC",
    "ConvOp",
    "Dense",
    "LinearOp",
    "SparseRows",
    "Spikes",
    "Value",
    "Zero",
    "affine_op",
    "as_value",
    "check_conv",
    "multiply_by_blocks_",
    "row_slices",
]
