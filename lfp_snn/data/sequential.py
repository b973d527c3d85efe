"""Images read row by row: the temporal tasks recurrent and synaptic neurons are for.

Image t-th row is time step t: an [N, C, H, W] image set becomes [N, H, C·W] sequences (8 steps of 8 inputs
for scikit-learn's digits, 28 of 28 for (Fashion-)MNIST), a sequence data set like the event sets
(``temporal``), so ``lfp-snn train --data sequential-digits`` feeds the rows in time order with no encoder.
"""

from __future__ import annotations

from ..events.training_data import FrameDataset
from .arrays import ArrayDataset

PREFIX = "sequential-"


def row_sequences(ds: ArrayDataset) -> FrameDataset:
    """The images of ``ds`` as sequences of their rows: x [N, H, C·W] (float32), the same labels."""
    n, c, h, w = ds.x.shape
    x = ds.x.permute(0, 2, 1, 3).reshape(n, h, c * w).contiguous()
    return FrameDataset(x, ds.y, ds.classes, f"sequential-{ds.name}", (c * w, 1, 1))


def is_sequential_spec(spec: str) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def load_sequential(spec: str, download: bool = False) -> tuple[FrameDataset, FrameDataset]:
    """(train, test) for ``sequential-<image spec>`` (``sequential-digits``, ``sequential-fashion-mnist[:DIR]``,
    ``sequential-mnist[:DIR]``, ``sequential-idx:DIR``)."""
    from .images import load_dataset

    if not is_sequential_spec(spec) or len(spec) == len(PREFIX):
        raise ValueError(
            f"expected 'sequential-<image data set>' (sequential-digits, sequential-fashion-mnist, ...), got {spec!r}"
        )
    train, test = load_dataset(spec[len(PREFIX) :], download=download)
    return row_sequences(train), row_sequences(test)
