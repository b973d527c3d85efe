"""LFP rules for parametric layers, composites that map layers to rules, and the membrane-aware ε variant.

- :class:`Epsilon` (LFP-ε, Eq. 8-9; ``Epsilon(0)`` is LFP-0), :class:`ZPlusZMinus` (Eq. 12-13),
  :class:`AlphaBeta` (Eq. 10-11): one file each, written against the affine ops of :mod:`lfp_snn.ops`.
- :class:`Composite` (App. A.6.2): layer type / layer name -> rule, with named presets.
- :class:`MembraneShare`: the membrane-aware ε rule for spiking layers (small β / short T).
"""

from .alpha_beta import AlphaBeta, alpha2_beta1
from .base import Gemm, LayerFeedback, Rule, stabilize
from .composites import Composite, get_composite, presets, register
from .epsilon import Epsilon, zero
from .membrane_share import ACTIVITIES, MembraneShare, as_membrane_share, near_firing
from .zplus_zminus import ZPlusZMinus

__all__ = [
    "ACTIVITIES",
    "AlphaBeta",
    "Composite",
    "Epsilon",
    "Gemm",
    "LayerFeedback",
    "MembraneShare",
    "Rule",
    "ZPlusZMinus",
    "alpha2_beta1",
    "as_membrane_share",
    "get_composite",
    "near_firing",
    "presets",
    "register",
    "stabilize",
    "zero",
]
