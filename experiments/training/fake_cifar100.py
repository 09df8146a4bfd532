"""Fabricate a tiny CIFAR-100 archive in the official format, for tests and offline smoke runs.

``cifar-100-python.tar.gz`` with ``cifar-100-python/{train,test,meta}``: pickled dicts with
``b"data"`` (uint8 numpy ``(n, 3072)``) and ``b"fine_labels"`` (list of ints < 100), like
the real one (which also has coarse labels and file names, unused here).
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from training.cifar100_archive import FOLDER, md5_of


def _pickled(obj) -> bytes:
    return pickle.dumps(obj, protocol=2)


def make_archive(path: Path, n_train: int = 40, n_test: int = 20, seed: int = 0) -> str:
    """Write the archive to ``path``; return its md5. Labels are ``i % 100``."""
    rng = np.random.default_rng(seed)
    members = {"meta": _pickled({b"fine_label_names": [f"c{i}".encode() for i in range(100)]})}
    for split, n in (("train", n_train), ("test", n_test)):
        members[split] = _pickled(
            {
                b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                b"fine_labels": [i % 100 for i in range(n)],
                b"coarse_labels": [i % 20 for i in range(n)],
            }
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return md5_of(path)


def cli_overrides(folder: Path) -> list[str]:
    """LightningCLI overrides that point ``CIFAR100DataModule`` at a fabricated archive served
    from ``folder`` (24 training and 8 test images; nothing is downloaded)."""
    archive = folder / "served" / "cifar-100-python.tar.gz"
    md5 = make_archive(archive, n_train=24, n_test=8)
    return [
        f"--data.url={archive.as_uri()}",
        f"--data.md5={md5}",
        f"--data.data_dir={folder / 'data'}",
        "--data.val_size=8",
        "--data.batch_size=4",
        "--data.num_workers=0",
    ]
