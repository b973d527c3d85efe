"""The LFP engine: LFP over any model it can trace, through typed layer handlers and one validated plan.

- :mod:`.graph`: the model as a graph of nodes (an ``nn.Sequential`` in order, anything else by torch.fx);
- :mod:`.handlers`: one handler per kind of node (Linear/Conv, LIF, pooling, shape, sums, ...) in a registry;
- :mod:`.plan`: :class:`FeedbackPlan`, validated once against the model and input;
- :mod:`.activations`: the rows that flow forward and the typed messages that flow back;
- :mod:`.forward`, :mod:`.reverse`: the two passes; :mod:`.schedules`: full, micro-batch, time chunks;
- :mod:`.api`: :func:`feedback`, :func:`feedback_result`, :func:`write_gradients`, :func:`run`.
"""

from .activations import Act, Normalized, Reward
from .api import feedback, feedback_result, forward_trace, make_plan, run, write_gradients
from .forward import Trace
from .graph import Graph, GraphError, Node, build_graph, leaves
from .handlers import (
    SHAPE_ONLY,
    Back,
    Handler,
    register_handler,
    supported,
    supported_layers,
    unregister_handler,
)
from .handlers.elementwise import ACTIVATIONS as ELEMENTWISE
from .plan import CompiledPlan, FeedbackPlan
from .reverse import propagate
from .schedules import FeedbackResult

__all__ = [
    "ELEMENTWISE",
    "SHAPE_ONLY",
    "Act",
    "Back",
    "CompiledPlan",
    "FeedbackPlan",
    "FeedbackResult",
    "Graph",
    "GraphError",
    "Handler",
    "Node",
    "Normalized",
    "Reward",
    "Trace",
    "build_graph",
    "feedback",
    "feedback_result",
    "forward_trace",
    "leaves",
    "make_plan",
    "propagate",
    "register_handler",
    "run",
    "supported",
    "supported_layers",
    "unregister_handler",
    "write_gradients",
]
