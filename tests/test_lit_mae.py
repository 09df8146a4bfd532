"""MAE (experiments/training/lit_mae.py): masking, targets, a training step, the figure."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

from training.lit_mae import LitMAE, random_masking, save_reconstruction_figure, take_tokens
from training.vit_net import build_vit
from unfoldconv import patchify, unpatchify

# (id, stem, img_size, patch_size, token cell = what each token reconstructs)
CASES = [
    ("1d", "patch", (32,), (4,), (4,)),
    ("2d-patch", "patch", (32, 32), (4, 4), (4, 4)),
    ("2d-overlap", "overlap", (32, 32), (4, 4), (4, 4)),
    ("2d-conv", "conv", (32, 32), (4, 4), (4, 4)),
    ("3d-tubelets", "patch", (8, 32, 32), (2, 4, 4), (2, 4, 4)),
]


def small_mae(stem="patch", img_size=(32, 32), patch_size=4, **kwargs):
    torch.manual_seed(0)
    vit = build_vit(stem, img_size, patch_size, embed_dim=32, depth=1, num_heads=2)
    return LitMAE(vit, decoder_dim=16, decoder_heads=2, **kwargs)


@pytest.mark.parametrize("mask_ratio", [0.75, 0.5, 0.1])
def test_masking_exact_share_disjoint(mask_ratio):
    visible, masked = random_masking(6, 64, mask_ratio, torch.Generator().manual_seed(0))
    num_masked = round(64 * mask_ratio)
    assert masked.shape == (6, num_masked) and visible.shape == (6, 64 - num_masked)
    for row_visible, row_masked in zip(visible, masked):
        together = torch.cat([row_visible, row_masked]).sort().values
        assert torch.equal(together, torch.arange(64))  # disjoint and covering
    assert not torch.equal(masked[0], masked[1])  # random per sample


def test_masking_seeded():
    first = random_masking(4, 16, 0.5, torch.Generator().manual_seed(7))
    again = random_masking(4, 16, 0.5, torch.Generator().manual_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(first, again))


@pytest.mark.parametrize("mask_ratio", [0.0, 1.0, 0.001])
def test_masking_errors(mask_ratio):
    with pytest.raises(ValueError, match=rf"out of 64, got mask_ratio={mask_ratio}"):
        random_masking(2, 64, mask_ratio)


@pytest.mark.parametrize(
    "stem, img_size, patch_size, cell", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_shapes_and_target_round_trip(stem, img_size, patch_size, cell):
    mae = small_mae(stem, img_size, patch_size)
    x = torch.randn(2, 3, *img_size)
    assert mae.patch_size == cell
    targets = mae.targets(x)
    assert torch.equal(unpatchify(targets, cell, img_size), x)  # targets are the pixels
    prediction, visible, masked = mae(x)
    assert prediction.shape == targets.shape == (2, mae.num_patches, 3 * torch.Size(cell).numel())
    assert visible.shape[1] + masked.shape[1] == mae.num_patches


def test_norm_pix_targets():
    mae = small_mae(norm_pix_loss=True)
    targets = mae.targets(torch.randn(2, 3, 32, 32) * 5 + 3)
    assert_close(targets.mean(dim=-1), torch.zeros(2, 64), atol=1e-5, rtol=0)
    assert_close(targets.var(dim=-1), torch.ones(2, 64), atol=1e-4, rtol=0)


def test_loss_is_mse_on_masked_patches_only():
    """The loss recomputed from the prediction: masked patches only; the visible ones do not
    count (changing the prediction there leaves the loss unchanged)."""
    mae = small_mae()
    x = torch.randn(2, 3, 32, 32)
    loss = mae.loss(x, torch.Generator().manual_seed(1))
    prediction, _, masked = mae(x, torch.Generator().manual_seed(1))
    targets = patchify(x, 4)
    expected = take_tokens((prediction - targets) ** 2, masked).mean()
    assert_close(loss, expected)
    slow = torch.stack(
        [((prediction[n, masked[n]] - targets[n, masked[n]]) ** 2).mean() for n in range(2)]
    ).mean()
    assert_close(loss, slow)


def test_visible_tokens_only_are_encoded():
    """The encoder sees the visible tokens only: changing the input inside a masked patch
    does not change the decoder's input at the visible places (nor anything of the encoder)."""
    mae = small_mae().eval()
    x = torch.randn(1, 3, 32, 32)
    _, _, masked = mae(x, torch.Generator().manual_seed(3))
    patch = masked[0, 0].item()
    row, col = divmod(patch, 8)
    changed = x.clone()
    changed[:, :, 4 * row : 4 * row + 4, 4 * col : 4 * col + 4] += 10.0
    captured = []
    hook = mae.decoder_embed.register_forward_hook(lambda m, i, o: captured.append(o))
    mae(x, torch.Generator().manual_seed(3))
    mae(changed, torch.Generator().manual_seed(3))  # the same masks
    hook.remove()
    assert torch.equal(captured[0], captured[1])


def test_loss_decreases_on_a_fixed_batch():
    mae = small_mae()
    x = torch.randn(8, 3, 32, 32)
    optimizer = mae.configure_optimizers()
    losses = []
    for _ in range(15):
        optimizer.zero_grad()
        loss = mae.loss(x, torch.Generator().manual_seed(0))  # same masks every step
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


def test_training_step_with_a_trainer(tmp_path):
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    mae = small_mae()
    data = DataLoader(TensorDataset(torch.randn(8, 3, 32, 32), torch.zeros(8)), batch_size=4)
    trainer = pl.Trainer(
        fast_dev_run=True,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        logger=False,
        enable_model_summary=False,
    )
    trainer.fit(mae, data, data)
    assert torch.isfinite(trainer.callback_metrics["train_loss"])
    assert torch.isfinite(trainer.callback_metrics["val_loss"])


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_reconstruct_keeps_visible_patches(norm_pix_loss):
    mae = small_mae(norm_pix_loss=norm_pix_loss)
    x = torch.randn(2, 3, 32, 32)
    images = mae.reconstruct(x, torch.Generator().manual_seed(0))
    _, visible, masked = mae(x, torch.Generator().manual_seed(0))
    patches = {name: patchify(image, 4) for name, image in images.items()}
    for n in range(2):
        assert torch.equal(patches["reconstruction"][n, visible[n]], patchify(x, 4)[n, visible[n]])
        assert torch.equal(patches["masked"][n, visible[n]], patchify(x, 4)[n, visible[n]])
        assert not patches["masked"][n, masked[n]].any()


@pytest.mark.parametrize(
    "img_size, patch_size", [((32, 32), 4), ((8, 32, 32), (2, 4, 4))], ids=["image", "video"]
)
def test_figure_is_written(tmp_path, img_size, patch_size):
    mae = small_mae("patch", img_size, patch_size)
    path = save_reconstruction_figure(mae, torch.randn(3, 3, *img_size), tmp_path / "mae.png", 2)
    assert path.exists() and path.stat().st_size > 1000
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert mae.training  # the mode is restored


def test_errors():
    vit = build_vit("overlap", (30, 30), 4, overlap=1, depth=1)  # grid 7 x stride 4 != 30
    with pytest.raises(
        ValueError, match=r"grid_size=\(7, 7\).*stride=\(4, 4\).*img_size=\(30, 30\)"
    ):
        LitMAE(vit)
    with pytest.raises(ValueError, match=r"input.*\(2, 3, 32\)"):
        save_reconstruction_figure(small_mae("patch", (32,), 4), torch.randn(2, 3, 32), "x.png")
