"""What a parametric layer's input x is, as a typed value, so that every op computes with the values it is
handed (and a representation that cannot do something refuses instead of answering for another x).

Each value holds the rows of one layer input ([rows, ...]: B rows for an ANN or for an input that is the same
at every step, T·B rows for a sequence):

- :class:`Dense`: a float tensor.
- :class:`Spikes`: non-negative integers kept as uint8 (spikes, max-pooled or reshaped spikes, event
  counts): exact, 4x smaller than float32; converted a block of rows at a time where an op needs floats.
- :class:`SparseRows`: non-negative integers (0/1 spikes or event counts) of a [rows, features] input kept
  as index lists, one per row, with the value of every entry (``embedding_bag`` layout). Work and memory
  of the ops scale with the number of non-zero entries, not rows x features.
- :class:`Zero`: all zeros (x⁻ of a non-negative input, as the αβ rule asks for).

The rules form x⁺ = max(x, 0) and x⁻ = min(x, 0) with :meth:`Value.positive` / :meth:`Value.negative`; a
non-negative representation returns itself and :class:`Zero`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..kernels.layout import rows_like, rows_view


def row_slices(rows: int, per_row: int, elements: int = 1 << 18):
    """Slices over ``rows`` rows of ``per_row`` entries, ~``elements`` entries a slice: for working through
    a big tensor a block at a time, so that conversions and temporaries stay small."""
    step = max(1, elements // max(per_row, 1))
    for a in range(0, rows, step):
        yield slice(a, a + step)


def multiply_by_blocks_(r: Tensor, x: Tensor) -> Tensor:
    """r ⊙= x in place for a uint8 x shaped like r, a block of rows at a time (no float copy of all x); r
    contiguous or channels-last (:mod:`lfp_snn.kernels.layout`), x in any layout."""
    r2, x2 = rows_view(r), rows_like(x, r)
    for sl in row_slices(*r2.shape):
        r2[sl].mul_(x2[sl])
    return r


class Value:
    """Base class: an op's input x. ``shape`` is x's shape, ``nonnegative`` whether x >= 0 everywhere."""

    shape: torch.Size
    nonnegative: bool = False

    @property
    def device(self) -> torch.device:
        raise NotImplementedError

    def dense(self, dtype: torch.dtype, memory_format: torch.memory_format | None = None) -> Tensor:
        """x as a tensor of ``dtype`` (a new tensor unless x already is one of that dtype), in
        ``memory_format`` when one is given (e.g. channels-last for a CPU convolution), converted in one copy."""
        raise NotImplementedError

    def cast(self, dtype: torch.dtype) -> Value:
        """x for GEMMs in ``dtype`` (e.g. bfloat16). Exact representations (spikes, counts) stay as they are."""
        return self

    def positive(self) -> Value:
        return self if self.nonnegative else Dense(self.dense(self.float_dtype()).clamp(min=0))

    def negative(self) -> Value:
        return (
            Zero(self.shape, self.device)
            if self.nonnegative
            else Dense(self.dense(self.float_dtype()).clamp(max=0))
        )

    def float_dtype(self) -> torch.dtype:
        return torch.get_default_dtype()

    def multiply_(self, r: Tensor) -> Tensor:
        """r ⊙= x in place (r shaped like x) and return r."""
        raise NotImplementedError

    @property
    def is_zero(self) -> bool:
        return False


class Dense(Value):
    def __init__(self, t: Tensor) -> None:
        self.t = t
        self.shape = t.shape

    @property
    def device(self) -> torch.device:
        return self.t.device

    def float_dtype(self) -> torch.dtype:
        return self.t.dtype

    def dense(self, dtype: torch.dtype, memory_format: torch.memory_format | None = None) -> Tensor:
        return _to(self.t, dtype, memory_format)

    def cast(self, dtype: torch.dtype) -> Value:
        return self if self.t.dtype == dtype else Dense(self.t.to(dtype))

    def multiply_(self, r: Tensor) -> Tensor:
        return r.mul_(self.t)


class Spikes(Value):
    """Non-negative integers (0/1 spikes, event counts) kept as uint8."""

    nonnegative = True

    def __init__(self, t: Tensor) -> None:
        if t.dtype != torch.uint8:
            raise TypeError(f"Spikes holds uint8 values, got a {t.dtype} tensor")
        self.t = t
        self.shape = t.shape

    @property
    def device(self) -> torch.device:
        return self.t.device

    def dense(self, dtype: torch.dtype, memory_format: torch.memory_format | None = None) -> Tensor:
        return _to(self.t, dtype, memory_format)

    def multiply_(self, r: Tensor) -> Tensor:
        return multiply_by_blocks_(r, self.t)


class SparseRows(Value):
    """A [rows, features] input of non-negative integers as index lists (one per row) with entry values.

    ``cols`` (int32) are the feature indices of the non-zero entries ordered by row, ``offsets`` (int32) where
    each row's entries start, ``weights`` the entries' values (None when every entry is 1), and ``source``
    the uint8 tensor they were made from (the caller's input; kept for :meth:`multiply_` and :meth:`dense`).
    All index tensors live on the input's device.
    """

    nonnegative = True
    MAX_DENSITY = 0.1  # above this share of non-zero entries the dense GEMM is as fast

    def __init__(self, source: Tensor) -> None:
        if source.dtype != torch.uint8 or source.dim() != 2:
            raise TypeError(
                f"SparseRows is made from a uint8 [rows, features] tensor, got {source.dtype} "
                f"{list(source.shape)}"
            )
        self.source = source
        self.shape = source.shape
        idx = source.nonzero()  # [nnz, 2], ordered by row, then feature
        self.cols = idx[:, 1].to(torch.int32)
        self.offsets = _offsets(idx[:, 0], source.shape[0])
        # 0/1 spikes need no entry values; counts keep theirs
        counts = source.numel() > 0 and int(source.max()) > 1
        self.weights = source[idx[:, 0], idx[:, 1]] if counts else None
        self._by_feature: tuple[Tensor, Tensor] | None = None

    @classmethod
    def suits(cls, x: Tensor) -> bool:
        """A 2-D uint8 tensor with at most MAX_DENSITY non-zero entries."""
        if x.dtype != torch.uint8 or x.numel() == 0 or x.dim() != 2:
            return False
        return int(torch.count_nonzero(x)) <= cls.MAX_DENSITY * x.numel()

    @property
    def device(self) -> torch.device:
        return self.source.device

    @property
    def nnz(self) -> int:
        return len(self.cols)

    def dense(self, dtype: torch.dtype, memory_format: torch.memory_format | None = None) -> Tensor:
        return _to(self.source, dtype, memory_format)

    def multiply_(self, r: Tensor) -> Tensor:
        return multiply_by_blocks_(r, self.source)

    def entry_weights(self, dtype: torch.dtype) -> Tensor | None:
        return None if self.weights is None else self.weights.to(dtype)

    def by_feature(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """(rows ordered by feature, offsets per feature, entry values in that order or None): the index
        by feature that the weight feedback sums over (made on first use and kept while the value lives)."""
        if self._by_feature is None:
            dev = self.source.device
            counts = torch.diff(self.offsets, append=self.offsets.new_tensor([self.nnz])).long()
            rows = torch.repeat_interleave(torch.arange(self.shape[0], dtype=torch.int32, device=dev), counts)
            order = torch.argsort(self.cols, stable=True)
            self._by_feature = (rows[order], _offsets(self.cols[order].long(), self.shape[1]), order)
        rows, offsets, order = self._by_feature
        return rows, offsets, None if self.weights is None else self.weights[order]


class Zero(Value):
    """All zeros of a given shape."""

    nonnegative = True

    def __init__(self, shape, device) -> None:
        self.shape = torch.Size(shape)
        self._device = torch.device(device)

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def is_zero(self) -> bool:
        return True

    def dense(self, dtype: torch.dtype, memory_format: torch.memory_format | None = None) -> Tensor:
        z = torch.zeros(self.shape, dtype=dtype, device=self._device)
        return z if memory_format is None else z.contiguous(memory_format=memory_format)

    def multiply_(self, r: Tensor) -> Tensor:
        return r.zero_()


def _to(t: Tensor, dtype: torch.dtype, memory_format: torch.memory_format | None) -> Tensor:
    """``t`` in ``dtype`` (and ``memory_format``): itself when it already is, else one converted copy."""
    if memory_format is None:
        return t if t.dtype == dtype else t.to(dtype)
    return t.to(dtype, memory_format=memory_format)


def as_value(t: Tensor) -> Value:
    """A tensor as a value: uint8 data as :class:`Spikes`, anything else as :class:`Dense`."""
    return Spikes(t) if t.dtype == torch.uint8 else Dense(t)


def _offsets(sorted_keys: Tensor, n: int) -> Tensor:
    """Start of each of n groups in a sorted key list (int32, as embedding_bag takes with int32 indices)."""
    counts = torch.bincount(sorted_keys, minlength=n)
    out = torch.zeros(n, dtype=torch.int64, device=sorted_keys.device)
    torch.cumsum(counts[:-1], 0, out=out[1:])
    return out.to(torch.int32)
