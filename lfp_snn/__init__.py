"""lfp-snn: spiking neural networks trained by Layer-wise Feedback Propagation (no surrogate gradients).

import lfp_snn
fb = lfp_snn.feedback(model, inputs, labels, reward="sigmoid", rule="epsilon")   # {param name: feedback}
"""

from .engine import (
    FeedbackPlan,
    FeedbackResult,
    Handler,
    feedback,
    feedback_result,
    forward_trace,
    propagate,
    register_handler,
    run,
    supported_layers,
    write_gradients,
)
from .network import SpikingSequential
from .neurons import (
    LIF,
    AdaptiveLIF,
    CubaLIF,
    Heaviside,
    LIFParameters,
    LIFState,
    MultiSpikeLIF,
    RecurrentLIF,
    lif_scan,
)
from .rewards import SequenceReward, correct_class_reward, sequence_reward, sigmoid_reward, softmax_reward
from .rules import (
    AlphaBeta,
    Composite,
    Epsilon,
    Rule,
    ZPlusZMinus,
    get_composite,
    presets,
    register,
    stabilize,
)

__version__ = "0.1.0"

__all__ = [
    "LIF",
    "AdaptiveLIF",
    "CubaLIF",
    "MultiSpikeLIF",
    "RecurrentLIF",
    "AlphaBeta",
    "Composite",
    "Epsilon",
    "FeedbackPlan",
    "FeedbackResult",
    "Handler",
    "Heaviside",
    "LIFParameters",
    "LIFState",
    "Rule",
    "SequenceReward",
    "SpikingSequential",
    "ZPlusZMinus",
    "correct_class_reward",
    "feedback",
    "feedback_result",
    "forward_trace",
    "get_composite",
    "lif_scan",
    "presets",
    "propagate",
    "register",
    "register_handler",
    "run",
    "sequence_reward",
    "sigmoid_reward",
    "softmax_reward",
    "stabilize",
    "supported_layers",
    "write_gradients",
]
