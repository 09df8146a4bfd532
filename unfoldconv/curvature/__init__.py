"""Curvature on the chunked engine: KFAC factors and per-sample gradients of any convolution.

Functional ops (any ``d``, transposed, every ``padding_mode``, computed chunk by chunk through
the engine, never the whole ``(N, C*K, L)`` columns at once):

- :func:`kfac_input_factor`: KFAC's input factor ``A`` (``mode="expand"`` or ``"reduce"``).
- :func:`kfac_output_factor`: KFAC's output-gradient factor ``B``.
- :func:`per_sample_grad`: per-sample weight (and bias) gradients.
- :func:`per_sample_grad_norm`: their norms (ghost norm where it is cheaper).

and :class:`FactorRecorder`, which hooks every convolution and ``nn.Linear`` of a model and
accumulates both factors over micro-batches and ranks.
"""

from unfoldconv.curvature._factors import kfac_input_factor, kfac_output_factor
from unfoldconv.curvature._per_sample import per_sample_grad, per_sample_grad_norm
from unfoldconv.curvature._recorder import FactorRecorder

__all__ = [
    "FactorRecorder",
    "kfac_input_factor",
    "kfac_output_factor",
    "per_sample_grad",
    "per_sample_grad_norm",
]
