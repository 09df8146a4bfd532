"""The official CIFAR-100 python archive: download (atomically, md5-verified), extract, read.

The archive (``cifar-100-python.tar.gz``) holds ``cifar-100-python/{train,test,meta}``,
pickles whose dicts have ``b"data"`` (uint8, ``(n, 3072)``, channel-major 3x32x32) and
``b"fine_labels"`` (n ints in ``[0, 100)``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import tarfile
import tempfile
import urllib.request
from pathlib import Path

import torch

CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
CIFAR100_MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
ARCHIVE_NAME = "cifar-100-python.tar.gz"
FOLDER = "cifar-100-python"
SPLITS = ("train", "test")


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    """Hex md5 of the file at ``path``."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def download(url: str, dest: Path, md5: str, timeout: float = 60.0) -> Path:
    """Fetch ``url`` (``https://``, ``http://`` or ``file://``) to ``dest`` and verify its md5.

    The bytes go to a temporary file beside ``dest``, which is renamed onto ``dest`` only
    once its md5 equals ``md5``; on any failure the temporary file is removed, so no partial
    or unverified ``dest`` is ever left behind. A ``dest`` that already exists is verified
    instead of downloaded again.

    Raises:
        RuntimeError: the download failed (message names the url and file).
        ValueError: the md5 differs (message names the file, expected and received md5).
    """
    dest = Path(dest)
    if dest.exists():
        got = md5_of(dest)
        if got != md5:
            raise ValueError(
                f"{dest}: md5 mismatch, expected {md5}, received {got} "
                "(delete the file to download it again)"
            )
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.md5()
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as src:
                for block in iter(lambda: src.read(1 << 20), b""):
                    h.update(block)
                    out.write(block)
        except OSError as err:  # URLError and HTTPError are OSErrors
            raise RuntimeError(f"{dest.name}: download from {url} failed: {err}") from err
        got = h.hexdigest()
        if got != md5:
            raise ValueError(
                f"{dest.name}: md5 mismatch for the file downloaded from {url}, "
                f"expected {md5}, received {got}"
            )
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return dest


def extract(archive: Path, root: Path) -> Path:
    """Extract ``archive`` into ``root`` (unless done before); return ``root / FOLDER``."""
    folder = Path(root) / FOLDER
    if all((folder / s).is_file() for s in SPLITS):
        return folder
    with tarfile.open(archive, "r:gz") as tar:
        try:
            tar.extractall(root, filter="data")
        except TypeError:  # Python without extraction filters
            tar.extractall(root)
    missing = [s for s in SPLITS if not (folder / s).is_file()]
    if missing:
        raise RuntimeError(f"{archive}: expected {FOLDER}/{missing} in the archive, not found")
    return folder


def prepare(root: Path, url: str = CIFAR100_URL, md5: str = CIFAR100_MD5) -> Path:
    """Download (if needed), verify and extract the archive under ``root``; return its folder."""
    root = Path(root)
    return extract(download(url, root / ARCHIVE_NAME, md5), root)


def read_split(folder: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Read ``folder / split``: ``x`` uint8 ``(n, 3, 32, 32)``, ``y`` int64 ``(n,)``."""
    if split not in SPLITS:
        raise ValueError(f"split: expected one of {SPLITS}, got {split!r}")
    with open(Path(folder) / split, "rb") as f:
        entry = pickle.load(f, encoding="bytes")
    data = torch.as_tensor(entry[b"data"], dtype=torch.uint8)
    if data.dim() != 2 or data.shape[1] != 3072:
        raise ValueError(f"{folder / split}: expected b'data' of shape (n, 3072), got {data.shape}")
    return data.reshape(-1, 3, 32, 32), torch.as_tensor(entry[b"fine_labels"], dtype=torch.long)
