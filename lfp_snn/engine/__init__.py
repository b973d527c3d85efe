"""The LFP engine: forward with what the feedback needs, then one reverse pass, for ANNs and SNNs."""

from ..propagation import (
    ELEMENTWISE,
    SHAPE_ONLY,
    FeedbackResult,
    feedback,
    feedback_result,
    forward_trace,
    leaves,
    propagate,
    run,
    supported_layers,
    write_gradients,
)

__all__ = [
    "ELEMENTWISE",
    "SHAPE_ONLY",
    "FeedbackResult",
    "feedback",
    "feedback_result",
    "forward_trace",
    "leaves",
    "propagate",
    "run",
    "supported_layers",
    "write_gradients",
]
