"""Any data set by its spec, static images or event recordings: what ``--data`` names on the command line."""

from __future__ import annotations

from .images import load_dataset


def is_event_spec(spec: str) -> bool:
    """True when ``spec`` names an event data set (see :data:`lfp_snn.events.training_data.EVENT_SPECS`)."""
    from ..events.training_data import is_event_spec as _is_event_spec

    return _is_event_spec(spec)


def load_data(spec: str, steps: int, download: bool = False, limit=None, classes: int | None = None):
    """``(train, test)`` for a data spec: a static image set (:func:`~lfp_snn.data.images.load_dataset`:
    ``digits``, ``mnist``, ``fashion-mnist``, ``idx:<folder>``) or an event set binned into ``steps`` frames
    per recording (:func:`lfp_snn.events.training_data.load_event_dataset`: ``nmnist:``, ``shd:``,
    ``dvsgesture:``, ``emulated-*``), capped by ``limit``, or an image set read row by row
    (``sequential-<image spec>``: :mod:`~lfp_snn.data.sequential`)."""
    if is_event_spec(spec):
        from ..events.training_data import load_event_dataset

        return load_event_dataset(spec, steps=steps, limit=limit, classes=classes)
    if classes is not None:
        raise ValueError(f"classes does not apply to {spec!r}: it sets the outputs of event data sets")
    from .sequential import is_sequential_spec, load_sequential

    if is_sequential_spec(spec):
        return load_sequential(spec, download=download)
    return load_dataset(spec, download=download)


def sample_shape(data) -> tuple[int, ...]:
    """One sample's shape without the time axis (event frames are stored [N, T, ...])."""
    return tuple(data.x.shape[2:] if getattr(data, "temporal", False) else data.x.shape[1:])
