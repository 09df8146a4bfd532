"""Data of the experiments: synthetic set, augmentation, the CIFAR-100 archive and loaders."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import pytest
import torch

from training import augment, cifar100_archive
from training.data import CIFAR100DataModule, SyntheticCIFAR100DataModule
from training.fake_cifar100 import make_archive
from training.synthetic import make_synthetic

# ------------------------------------------------------------------------ synthetic data


def test_synthetic_shapes_balance_and_determinism():
    x, y = make_synthetic(300, seed=1)
    assert x.shape == (300, 3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    torch.testing.assert_close(torch.bincount(y, minlength=100), torch.full((100,), 3))
    x2, y2 = make_synthetic(300, seed=1)
    torch.testing.assert_close(x, x2)
    torch.testing.assert_close(y, y2)
    assert not torch.equal(make_synthetic(300, seed=2)[0], x)


def test_synthetic_classes_are_separable():
    """Nearest class mean (over the global per-channel means) beats chance by far."""
    x, y = make_synthetic(2000, seed=1)
    xv, yv = make_synthetic(500, seed=2)
    feats, feats_v = x.mean(dim=(2, 3)), xv.mean(dim=(2, 3))
    centres = torch.stack([feats[y == c].mean(0) for c in range(100)])
    pred = torch.cdist(feats_v, centres).argmin(1)
    assert (pred == yv).float().mean() > 0.1  # chance is 0.01


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"n": 0}, r"n: expected an int >= 1, got 0", id="n-zero"),
        pytest.param({"n": 4, "num_classes": -1}, r"num_classes: .* got -1", id="classes-neg"),
        pytest.param(
            {"n": 4, "noise": -1.0},
            r"noise: expected a non-negative float, got -1.0",
            id="noise-neg",
        ),
    ],
)
def test_synthetic_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_synthetic(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        pytest.param(
            {"n_train": 0}, ValueError, r"n_train: expected an int >= 1, got 0", id="n_train"
        ),
        pytest.param({"n_val": -3}, ValueError, r"n_val: expected an int >= 1, got -3", id="n_val"),
        pytest.param(
            {"batch_size": 0}, ValueError, r"batch_size: expected an int >= 1, got 0", id="batch"
        ),
        pytest.param(
            {"batch_size": 2.0},
            TypeError,
            r"batch_size: expected an int >= 1, got 2.0",
            id="batch-float",
        ),
        pytest.param(
            {"num_workers": -1},
            ValueError,
            r"num_workers: expected an int >= 0, got -1",
            id="workers",
        ),
        pytest.param(
            {"seed": 0, "n_test": True},
            TypeError,
            r"n_test: expected an int >= 1, got True",
            id="n_test-bool",
        ),
    ],
)
def test_synthetic_datamodule_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        SyntheticCIFAR100DataModule(**kwargs)


def test_synthetic_datamodule_same_order_for_same_seed():
    def first_labels():
        dm = SyntheticCIFAR100DataModule(n_train=64, n_val=8, n_test=8, batch_size=16, seed=3)
        dm.setup("fit")
        return torch.cat([y for _, y in dm.train_dataloader()])

    torch.testing.assert_close(first_labels(), first_labels())


# ------------------------------------------------------------------------ augmentation


def test_augment_keeps_shape_and_range():
    x = torch.rand(16, 3, 32, 32)
    out = augment.deepobs_augment(x, generator=torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize(
    ("name", "op", "param"),
    [
        pytest.param("brightness", augment.adjust_brightness, 0.0, id="brightness"),
        pytest.param("saturation", augment.adjust_saturation, 1.0, id="saturation"),
        pytest.param("contrast", augment.adjust_contrast, 1.0, id="contrast"),
    ],
)
def test_colour_ops_identity_at_neutral_parameter(name, op, param):
    x = torch.rand(4, 3, 8, 8)
    torch.testing.assert_close(op(x, torch.full((4, 1, 1, 1), param)), x)


def test_random_crop_is_a_shifted_window():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32)
    out = augment.random_crop(x, pad=2, generator=torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for img in range(2):
        windows = [padded[img, :, r : r + 32, c : c + 32] for r in range(5) for c in range(5)]
        assert any(torch.equal(out[img], w) for w in windows)


def test_normalize_per_channel():
    mean = torch.tensor(augment.CIFAR100_MEAN)[None, :, None, None]
    out = augment.normalize(mean.expand(2, 3, 4, 4))
    torch.testing.assert_close(out, torch.zeros(2, 3, 4, 4))


# ------------------------------------------------------------------------ the archive


@pytest.fixture(scope="module")
def fake_archive(tmp_path_factory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("served") / cifar100_archive.ARCHIVE_NAME
    return path, make_archive(path, n_train=40, n_test=20)


@pytest.fixture
def http_url(fake_archive):
    """The fake archive served over HTTP on 127.0.0.1 (loopback only)."""
    path, _ = fake_archive

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=str(path.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{path.name}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("scheme", ["file", "http"])
def test_cifar100_datamodule_reads_fabricated_archive(scheme, fake_archive, request, tmp_path):
    path, md5 = fake_archive
    url = path.as_uri() if scheme == "file" else request.getfixturevalue("http_url")
    dm = CIFAR100DataModule(data_dir=str(tmp_path), batch_size=8, val_size=10, url=url, md5=md5)
    dm.prepare_data()
    dm.setup("fit")
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (30, 10, 20)
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.uint8
    assert y.dtype == torch.int64 and int(y.max()) < 100
    # the loader's tensors are the pickles' rows, reshaped channel-major
    folder = tmp_path / cifar100_archive.FOLDER
    xs, ys = cifar100_archive.read_split(folder, "test")
    assert xs.shape == (20, 3, 32, 32) and xs.dtype == torch.uint8
    torch.testing.assert_close(ys, torch.arange(20) % 100)
    # the batch transform normalises (training batches are also augmented)
    out, _ = dm.on_after_batch_transfer((x, y), 0)
    assert out.dtype == torch.float32 and out.shape == (8, 3, 32, 32)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        cifar100_archive.FOLDER,
        cifar100_archive.ARCHIVE_NAME,
    ]


def test_checksum_mismatch_is_an_error_and_leaves_no_file(fake_archive, tmp_path):
    path, md5 = fake_archive
    wrong = "0" * 32
    dest = tmp_path / cifar100_archive.ARCHIVE_NAME
    match = rf"{cifar100_archive.ARCHIVE_NAME}: md5 mismatch.*expected {wrong}, received {md5}"
    with pytest.raises(ValueError, match=match):
        cifar100_archive.download(path.as_uri(), dest, wrong)
    assert list(tmp_path.iterdir()) == []


def test_failed_download_is_an_error_and_leaves_no_file(tmp_path):
    url = (tmp_path / "missing.tar.gz").as_uri()
    dest = tmp_path / "out" / cifar100_archive.ARCHIVE_NAME
    with pytest.raises(RuntimeError, match=rf"{cifar100_archive.ARCHIVE_NAME}: download from"):
        cifar100_archive.download(url, dest, cifar100_archive.CIFAR100_MD5)
    assert list(dest.parent.iterdir()) == []


def test_existing_archive_with_wrong_checksum_is_an_error(tmp_path):
    dest = tmp_path / cifar100_archive.ARCHIVE_NAME
    dest.write_bytes(b"not an archive")
    with pytest.raises(ValueError, match=rf"{dest.name}: md5 mismatch, expected 1{{32}}"):
        cifar100_archive.download("file:///nonexistent", dest, "1" * 32)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"val_size": -1}, r"val_size: expected an int >= 0, got -1", id="val-neg"),
        pytest.param({"val_size": 40}, r"val_size: expected fewer than the 40", id="val-big"),
    ],
)
def test_cifar100_datamodule_bad_val_size(kwargs, match, fake_archive, tmp_path):
    path, md5 = fake_archive
    with pytest.raises(ValueError, match=match):
        dm = CIFAR100DataModule(data_dir=str(tmp_path), url=path.as_uri(), md5=md5, **kwargs)
        dm.setup("fit")
