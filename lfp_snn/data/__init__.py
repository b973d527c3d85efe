"""Data sets held in memory as whole tensors: scikit-learn's digits, MNIST-like IDX folders, an MNIST
downloader, and loading any data set (images or event recordings) by its spec.

- :mod:`.arrays`: :class:`ArrayDataset`, the in-memory data set and its batching;
- :mod:`.digits`: :func:`load_digits`; :mod:`.idx`: IDX files and folders; :mod:`.mnist`: the downloader;
- :mod:`.images`: :func:`load_dataset`, static image sets by spec;
- :mod:`.specs`: :func:`load_data`, any spec (images, or event data from :mod:`lfp_snn.events`).
"""

from .arrays import ArrayDataset
from .digits import load_digits
from .idx import IDX_FILES, IdxFormatError, load_idx_folder, read_idx, write_idx
from .images import DATASETS, FASHION_MNIST_DIR, load_dataset
from .mnist import MNIST_MD5, MNIST_MIRRORS, DownloadError, default_mnist_root, download_mnist
from .specs import is_event_spec, load_data, sample_shape

__all__ = [
    "DATASETS",
    "FASHION_MNIST_DIR",
    "IDX_FILES",
    "MNIST_MD5",
    "MNIST_MIRRORS",
    "ArrayDataset",
    "DownloadError",
    "IdxFormatError",
    "default_mnist_root",
    "download_mnist",
    "is_event_spec",
    "load_data",
    "load_dataset",
    "load_digits",
    "load_idx_folder",
    "read_idx",
    "sample_shape",
    "write_idx",
]
