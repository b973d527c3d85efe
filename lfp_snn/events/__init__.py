"""Event data: readers/writers for event-camera and event-audio formats, folder data sets, a tonic adapter,
a time-padding collate, and emulated (saccade) event recordings of static images.

Events are structured numpy arrays of :data:`EVENT_DTYPE` (fields x, y, t in µs, p); sensor sizes are (W, H, P).
Encoders that turn events into tensors live in :mod:`lfp_snn.encoders.events`.
"""

from .datasets import (
    DVSGestureFolder,
    NMNISTFolder,
    SHDFile,
    TonicAdapter,
    from_tonic,
    pad_time,
    pad_time_collate,
)
from .emulate import EmulatedEvents, SaccadeParams, emulate_saccades, saccade_path, sensor_thresholds
from .formats import (
    DVSGESTURE_CLASSES,
    DVSGESTURE_SENSOR_SIZE,
    EVENT_DTYPE,
    NCALTECH101_SENSOR_SIZE,
    NMNIST_SENSOR_SIZE,
    SHD_SENSOR_SIZE,
    as_events,
    make_events,
    read_dvsgesture_npy,
    read_nmnist_bin,
    read_shd,
    read_shd_sample,
    write_dvsgesture_npy,
    write_nmnist_bin,
    write_shd,
)

__all__ = [
    "EVENT_DTYPE",
    "NMNIST_SENSOR_SIZE",
    "NCALTECH101_SENSOR_SIZE",
    "SHD_SENSOR_SIZE",
    "DVSGESTURE_SENSOR_SIZE",
    "DVSGESTURE_CLASSES",
    "make_events",
    "as_events",
    "read_nmnist_bin",
    "write_nmnist_bin",
    "read_shd",
    "read_shd_sample",
    "write_shd",
    "read_dvsgesture_npy",
    "write_dvsgesture_npy",
    "NMNISTFolder",
    "SHDFile",
    "DVSGestureFolder",
    "TonicAdapter",
    "from_tonic",
    "pad_time",
    "pad_time_collate",
    "SaccadeParams",
    "saccade_path",
    "sensor_thresholds",
    "emulate_saccades",
    "EmulatedEvents",
]
