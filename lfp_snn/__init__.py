"""lfp-snn: spiking neural networks trained by Layer-wise Feedback Propagation (no surrogate gradients)."""

__version__ = "0.1.0"
