"""Synthetic patterns (experiments/training/vit_data.py): shapes, determinism, class structure."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from training.vit_data import PatternsDataModule, make_patterns, roll_per_sample


@pytest.mark.parametrize(("frames", "shape"), [(None, (3, 32, 32)), (8, (3, 8, 32, 32))])
def test_shapes_and_balanced_labels(frames, shape):
    x, y = make_patterns(40, num_classes=4, frames=frames)
    assert x.shape == (40, *shape) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and torch.bincount(y).tolist() == [10, 10, 10, 10]


def test_deterministic_under_a_seed():
    first, again = make_patterns(16, seed=3), make_patterns(16, seed=3)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    other = make_patterns(16, seed=4)
    assert not torch.equal(first[0], other[0])
    # the classes look the same under another sample seed: noise-free class means agree
    clean_a, y_a = make_patterns(64, num_classes=2, noise=0.0, max_shift=0, seed=1)
    clean_b, y_b = make_patterns(64, num_classes=2, noise=0.0, max_shift=0, seed=2)
    assert torch.equal(clean_a[y_a == 0][0], clean_b[y_b == 0][0])


def test_roll_per_sample_is_torch_roll():
    x = torch.randn(3, 2, 4, 5, 6)
    shifts = torch.tensor([[1, 2], [-1, 0], [7, -4]])
    rolled = roll_per_sample(x, shifts)
    for i in range(3):
        assert torch.equal(rolled[i], torch.roll(x[i], tuple(shifts[i].tolist()), (-2, -1)))


def test_video_moves():
    """Noise-free, unshifted videos change from frame to frame (the class velocity)."""
    x, _ = make_patterns(4, frames=8, noise=0.0, max_shift=0)
    assert (x[:, :, 0] - x[:, :, -1]).abs().amax(dim=(1, 2, 3)).min() > 0.1


def test_mean_colour_carries_no_class():
    """Every class template has zero mean per channel: the class is in the patterns."""
    x, _ = make_patterns(20, num_classes=5, noise=0.0)
    assert x.mean(dim=(2, 3)).abs().max() < 1e-5


def patch_means(x):
    if x.dim() == 5:  # videos: mean over time first
        x = x.mean(dim=2)
    return F.avg_pool2d(x, 4).flatten(1)  # (N, 3 * 8 * 8): one mean colour per 4x4 patch


@pytest.mark.parametrize("frames", [None, 8], ids=["image", "video"])
def test_learnable_by_a_linear_probe_on_patch_means(frames):
    """A linear probe on patch-mean colours, 100 full-batch Adam steps, reaches at least 3x
    chance (10 classes: 30%) on held-out samples at the default noise; chance itself is what
    the probe gets with shuffled training labels (a check that the bar means something)."""
    torch.manual_seed(0)
    train_x, train_y = make_patterns(400, frames=frames, seed=1)
    val_x, val_y = make_patterns(200, frames=frames, seed=2)
    features, val_features = patch_means(train_x), patch_means(val_x)

    def probe_accuracy(labels):
        probe = torch.nn.Linear(features.shape[1], 10)
        optimizer = torch.optim.Adam(probe.parameters(), lr=1e-2)
        for _ in range(100):
            optimizer.zero_grad()
            F.cross_entropy(probe(features), labels).backward()
            optimizer.step()
        return (probe(val_features).argmax(dim=1) == val_y).float().mean().item()

    assert probe_accuracy(train_y) > 0.3
    assert probe_accuracy(train_y[torch.randperm(len(train_y))]) < 0.25


@pytest.mark.parametrize(("kind", "shape"), [("image", (3, 32, 32)), ("video", (3, 8, 32, 32))])
def test_datamodule(kind, shape):
    data = PatternsDataModule(kind, train_size=20, val_size=10, batch_size=8, seed=5)
    data.setup("fit")
    x, y = next(iter(data.train_dataloader()))
    assert x.shape == (8, *shape) and y.shape == (8,)
    assert data.shape == shape and len(data.val_dataloader().dataset) == 10
    again = PatternsDataModule(kind, train_size=20, val_size=10, batch_size=8, seed=5)
    again.setup("fit")
    assert torch.equal(next(iter(again.train_dataloader()))[0], x)  # same data, same order
    assert not torch.equal(data.train_set.tensors[0][:10], data.val_set.tensors[0])


# (id, call, message parts)
ERROR_CASES = [
    ("n", lambda: make_patterns(0), ["n=0", "positive"]),
    ("classes", lambda: make_patterns(4, num_classes=1.5), ["num_classes=1.5"]),
    ("frames", lambda: make_patterns(4, frames=0), ["frames=0"]),
    ("noise", lambda: make_patterns(4, noise=-1.0), ["noise=-1.0"]),
    ("shift", lambda: make_patterns(4, max_shift=-1), ["max_shift=-1"]),
    ("kind", lambda: PatternsDataModule("audio"), ["kind", "'audio'", "video"]),
    ("batch", lambda: PatternsDataModule(batch_size=0), ["batch_size=0"]),
]


@pytest.mark.parametrize(
    "call, parts", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES]
)
def test_errors(call, parts):
    with pytest.raises(ValueError) as info:
        call()
    for part in parts:
        assert info.match(part)
