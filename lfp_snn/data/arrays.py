"""The in-memory labelled image data set every loader returns, and its batching.

The data sets are small enough to live in memory as whole tensors, so batching is plain tensor indexing
(:meth:`ArrayDataset.batches`) and needs no ``DataLoader``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class ArrayDataset:
    """An in-memory labelled image data set.

    Attributes:
        x: images, float32 ``[N, C, H, W]`` with values in ``[0, 1]``.
        y: labels, int64 ``[N]`` with values in ``[0, classes)``.
        classes: number of classes.
        name: a human-readable name such as ``"mnist-train"``.
    """

    x: torch.Tensor
    y: torch.Tensor
    classes: int
    name: str

    def __post_init__(self) -> None:
        _check_images(self.x, self.name)
        _check_labels(self.y, self.classes, self.name)
        if self.x.shape[0] != self.y.shape[0]:
            raise ValueError(
                f"{self.name}: {self.x.shape[0]} images but {self.y.shape[0]} labels; the counts must match"
            )

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x_i, y_i)``: an image ``[C, H, W]`` and a 0-d int64 label."""
        return self.x[i], self.y[i]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The shape ``(C, H, W)`` of one image."""
        c, h, w = self.x.shape[1:]
        return int(c), int(h), int(w)

    def subset(self, n: int, seed: int = 0, stratified: bool = True) -> ArrayDataset:
        """Return ``n`` samples drawn without replacement, reproducibly for a given ``seed``.

        With ``stratified=True`` each class keeps its share of the samples (largest-remainder rounding),
        otherwise the ``n`` samples are a uniform random choice.  The chosen samples keep their original
        order.

        Args:
            n: number of samples, ``1 <= n <= len(self)``.
            seed: seed of the ``torch.Generator`` that picks the samples.
            stratified: keep class proportions.

        Returns:
            A new :class:`ArrayDataset` with ``x`` ``[n, C, H, W]`` and ``y`` ``[n]``.
        """
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= len(self):
            raise ValueError(f"subset size n={n!r} must be an int in [1, {len(self)}] for {self.name}")
        gen = torch.Generator().manual_seed(seed)
        if stratified:
            index = stratified_choice(self.y, self.classes, n, gen)
        else:
            index = torch.randperm(len(self), generator=gen)[:n]
        index, _ = torch.sort(index)
        return ArrayDataset(self.x[index], self.y[index], self.classes, f"{self.name}[{n}]")

    def holdout(self, fraction: float, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
        """Split off a validation set: ``(fit, validation)`` with ``validation`` a stratified draw of
        ``round(fraction · N)`` samples (at least one per class), ``fit`` the rest; disjoint, both in the
        original order, the same for a given ``seed`` (:func:`holdout_index`)."""
        fit, val = holdout_index(self.y, self.classes, fraction, seed, self.name)
        return tuple(
            ArrayDataset(self.x[i], self.y[i], self.classes, f"{self.name}-{tag}")
            for i, tag in ((fit, "fit"), (val, "validation"))
        )

    def batches(
        self,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate over ``(x, y)`` mini-batches: ``x`` ``[B, C, H, W]`` float32, ``y`` ``[B]`` int64.

        Args:
            batch_size: ``B``, at least 1; the last batch may be smaller unless ``drop_last``.
            shuffle: visit the samples in a random order (drawn once, when this is called).
            generator: random source for the order; ``None`` uses torch's global generator.  The
                same seeded generator gives the same batches.
            drop_last: leave out a final batch smaller than ``batch_size``.
        """
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} must be an int >= 1")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        return self._iter_batches(order, batch_size, stop)

    def _iter_batches(
        self, order: torch.Tensor, batch_size: int, stop: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, stop, batch_size):
            index = order[start : min(start + batch_size, stop)]
            yield self.x[index], self.y[index]


def _check_images(x: torch.Tensor, name: str) -> None:
    """Raise unless ``x`` is a float32 ``[N, C, H, W]`` tensor with values in ``[0, 1]``."""
    if not isinstance(x, torch.Tensor) or x.dtype != torch.float32 or x.dim() != 4:
        got = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name}: images must be a float32 tensor [N, C, H, W], got {got}")
    if x.numel() and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ValueError(f"{name}: image values must lie in [0, 1], got [{float(x.min())}, {float(x.max())}]")


def _check_labels(y: torch.Tensor, classes: int, name: str) -> None:
    """Raise unless ``y`` is an int64 ``[N]`` tensor with values in ``[0, classes)``."""
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 1:
        raise ValueError(f"{name}: classes={classes!r} must be an int >= 1")
    if not isinstance(y, torch.Tensor) or y.dtype != torch.int64 or y.dim() != 1:
        got = f"{y.dtype} {tuple(y.shape)}" if isinstance(y, torch.Tensor) else type(y).__name__
        raise ValueError(f"{name}: labels must be an int64 tensor [N], got {got}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= classes):
        raise ValueError(f"{name}: labels must lie in [0, {classes}), got [{int(y.min())}, {int(y.max())}]")


def holdout_index(
    y: torch.Tensor, classes: int, fraction: float, seed: int = 0, name: str = "data"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(fit, validation)`` sorted indices of ``y`` [N]: ``validation`` a stratified draw of
    ``max(classes, round(fraction · N))`` samples seeded with ``seed``, ``fit`` the rest. ValueError when
    ``fraction`` is not in (0, 1) or the split would leave either side empty."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"validation fraction must lie in (0, 1), got {fraction!r}")
    n = len(y)
    n_val = max(classes, round(fraction * n))
    if n_val >= n:
        raise ValueError(
            f"{name}: a validation split of {n_val} of {n} samples leaves none to train on; use more samples "
            "or a smaller fraction"
        )
    val = stratified_choice(y, classes, n_val, torch.Generator().manual_seed(seed))
    mask = torch.ones(n, dtype=torch.bool)
    mask[val] = False
    return torch.nonzero(mask).flatten(), torch.sort(val).values


def stratified_choice(y: torch.Tensor, classes: int, n: int, gen: torch.Generator) -> torch.Tensor:
    """Pick ``n`` indices of ``y`` [N] so that each class gets its proportional share."""
    counts = torch.bincount(y, minlength=classes)
    quota = counts.double() * n / len(y)
    take = torch.floor(quota).long()
    short = n - int(take.sum())
    if short:
        # Largest fractional parts first, lower class index on ties; never exceeds a class's count.
        frac = quota - take.double()
        order = sorted(range(classes), key=lambda c: (-float(frac[c]), c))
        take[order[:short]] += 1
    picks = []
    for c in range(classes):
        members = torch.nonzero(y == c).flatten()
        picks.append(members[torch.randperm(len(members), generator=gen)[: int(take[c])]])
    return torch.cat(picks)
