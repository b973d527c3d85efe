"""scikit-learn's 8x8 handwritten digits (ships inside scikit-learn: the embedded default data set)."""

from __future__ import annotations

import numpy as np
import torch

from .arrays import ArrayDataset


def load_digits(test_fraction: float = 0.25, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """Load scikit-learn's 8x8 digits (1797 images, 10 classes), split into train and test.

    Pixel values 0..16 are scaled by 1/16 to ``[0, 1]``.  The split is stratified by class and
    reproducible for a given ``seed``.

    Returns:
        ``(train, test)`` with ``x`` ``[N, 1, 8, 8]`` and ``y`` ``[N]``; ``len(test)`` is about
        ``test_fraction * 1797``.
    """
    from sklearn.datasets import load_digits as _sk_load_digits
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction!r} must lie strictly between 0 and 1")
    bunch = _sk_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / 16.0
    labels = np.asarray(bunch.target, dtype=np.int64)
    index = np.arange(len(labels))
    train_idx, test_idx = train_test_split(index, test_size=test_fraction, random_state=seed, stratify=labels)
    train_idx, test_idx = np.sort(train_idx), np.sort(test_idx)

    def make(idx: np.ndarray, split: str) -> ArrayDataset:
        x = torch.from_numpy(images[idx]).unsqueeze(1)
        return ArrayDataset(x, torch.from_numpy(labels[idx]), 10, f"digits-{split}")

    return make(train_idx, "train"), make(test_idx, "test")
