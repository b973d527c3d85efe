"""Downloading MNIST (for users who are online; nothing else downloads anything) and where it is kept."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
"""Base URLs tried in order by :func:`download_mnist`."""

MNIST_MD5: dict[str, str] = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
"""Published MD5 digests of the four gzipped MNIST files."""


class DownloadError(OSError):
    """No mirror delivered a file with the expected checksum."""


def default_mnist_root() -> Path:
    """``$LFP_SNN_DATA/mnist`` when ``LFP_SNN_DATA`` is set, else ``~/.cache/lfp-snn/mnist``."""
    base = os.environ.get("LFP_SNN_DATA")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "lfp-snn") / "mnist"


def _md5_of(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, target: Path, md5: str, timeout: float) -> None:
    """Download ``url`` into ``target`` via a temp file in the same folder; check MD5, then os.replace."""
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.md5()
        request = urllib.request.Request(url, headers={"User-Agent": "lfp-snn"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != md5.lower():
            raise DownloadError(f"MD5 mismatch for {url}: expected {md5}, got {digest.hexdigest()}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def download_mnist(
    root: str | os.PathLike[str],
    *,
    urls: Sequence[str] | None = None,
    timeout: float = 30.0,
    md5: Mapping[str, str] | None = None,
) -> Path:
    """Download the four gzipped MNIST IDX files into ``root`` and return ``root`` as a Path.

    Each file is tried from each base URL in ``urls`` in turn (default :data:`MNIST_MIRRORS`), checked
    against its MD5 (default :data:`MNIST_MD5`, whose keys name the files), and moved into place
    atomically, so a failed or corrupt download leaves no file behind.  Files already present with the
    right MD5 are not downloaded again; present files with a wrong MD5 are replaced.

    Args:
        root: destination folder, created if missing.
        urls: base URLs; ``base + file name`` is fetched.
        timeout: seconds for each connection and read.
        md5: ``{file name: md5 hex digest}`` override (tests use it with locally served files).

    Raises:
        DownloadError: every mirror failed for some file (the message lists each URL and its error).
    """
    root = Path(root).expanduser()
    mirrors = list(MNIST_MIRRORS if urls is None else urls)
    digests = dict(MNIST_MD5 if md5 is None else md5)
    if not mirrors:
        raise ValueError("urls is empty; give at least one base URL such as " + MNIST_MIRRORS[0])
    if not digests:
        raise ValueError("md5 is empty; give {file name: md5} for the files to download")
    root.mkdir(parents=True, exist_ok=True)
    for fname, digest in digests.items():
        target = root / fname
        if target.is_file() and _md5_of(target) == digest.lower():
            log.info("%s present with the right MD5, skipping", target)
            continue
        errors = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + fname
            try:
                log.info("downloading %s", url)
                _fetch(url, target, digest, timeout)
                break
            except (OSError, http.client.HTTPException, ValueError) as err:
                errors.append(f"  {url}: {err}")
        else:
            raise DownloadError(f"could not download {fname} into {root}:\n" + "\n".join(errors))
    return root
