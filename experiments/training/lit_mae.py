"""MAE-style pre-training of a :class:`VisionTransformer`: mask patches, reconstruct them.

He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners", on any stem and any d: a
share ``mask_ratio`` of the patch tokens (random per sample) is dropped, the ViT encodes the
visible ones, a light decoder (mask tokens at the dropped places, its own position embeddings,
a few pre-norm blocks) predicts every patch's pixels, and the loss is the mean squared error on
the masked patches only. Targets are :func:`unfoldconv.patchify` of the input with the patch
size of the token grid (the stem's ``stride``; the whole patch for non-overlapping stems),
optionally normalised per patch (MAE's ``norm_pix_loss``); :func:`unfoldconv.unpatchify` turns
predictions back into images for :func:`save_reconstruction_figure`.
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch import nn

from training.vit_net import VisionTransformer
from unfoldconv import patchify, unpatchify


def random_masking(
    num_samples: int,
    num_patches: int,
    mask_ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Split each sample's patches into visible and masked ones, at random.

    ``num_masked = round(num_patches * mask_ratio)`` patches are masked in every sample (an
    exact share), the rest are visible; the noise that picks them comes from ``generator`` (on
    the CPU, so a seed gives the same masks on every device).

    Returns:
        ``(visible, masked)``: sorted patch indices, ``(num_samples, num_patches -
        num_masked)`` and ``(num_samples, num_masked)``, disjoint, covering ``range(L)``.

    Example:
        >>> visible, masked = random_masking(2, 8, 0.75, torch.Generator().manual_seed(0))
        >>> visible.shape, masked.shape
        (torch.Size([2, 2]), torch.Size([2, 6]))
    """
    num_masked = round(num_patches * mask_ratio)
    if not 0 < num_masked < num_patches:
        raise ValueError(
            f"mask_ratio must leave at least one masked and one visible patch out of "
            f"{num_patches}, got mask_ratio={mask_ratio!r}"
        )
    noise = torch.rand(num_samples, num_patches, generator=generator)
    order = noise.argsort(dim=1)
    visible = order[:, : num_patches - num_masked].sort(dim=1).values
    masked = order[:, num_patches - num_masked :].sort(dim=1).values
    return visible.to(device), masked.to(device)


def take_tokens(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tokens[n, index[n]]`` for every sample: ``(N, L, E)``, ``(N, T) -> (N, T, E)``."""
    return tokens.gather(1, index[:, :, None].expand(-1, -1, tokens.shape[2]))


def normalise_patches(patches: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Each patch (last axis) to zero mean and unit variance, as MAE's ``norm_pix_loss``."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + eps).sqrt()


class LitMAE(pl.LightningModule):
    """Masked-autoencoder training of ``net`` (its ``embed`` and ``encode``; the head is unused).

    Args:
        net: the :class:`VisionTransformer` to pre-train; its stem's token grid must tile the
            input (``grid_size * stride == img_size``).
        mask_ratio: share of the patches masked in every sample.
        decoder_dim, decoder_depth, decoder_heads: the light decoder's width, blocks, heads.
        norm_pix_loss: targets normalised per patch (MAE's best setting).
        lr, weight_decay: AdamW's (MAE's betas 0.9, 0.95).
        seed: of the masks (training: one generator, drawn on; validation: the same masks
            every epoch).

    Batches are ``(x, y)`` (``y`` unused) or ``x``, ``x`` ``(B, C, *spatial)``.
    ``net.head`` takes no part in the loss: under DDP use
    ``strategy="ddp_find_unused_parameters_true"``.

    Example:
        >>> from training.vit_net import build_vit
        >>> mae = LitMAE(build_vit(img_size=(32, 32), patch_size=4, depth=1))
        >>> prediction, visible, masked = mae(torch.randn(2, 3, 32, 32))
        >>> prediction.shape, visible.shape, masked.shape  # 8x8 patches of 3x4x4 pixels
        (torch.Size([2, 64, 48]), torch.Size([2, 16]), torch.Size([2, 48]))
    """

    def __init__(
        self,
        net: VisionTransformer,
        mask_ratio: float = 0.75,
        decoder_dim: int = 64,
        decoder_depth: int = 1,
        decoder_heads: int = 4,
        norm_pix_loss: bool = False,
        lr: float = 1.5e-3,
        weight_decay: float = 0.05,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        stem = net.stem
        self.patch_size = tuple(stem.stride)  # the token cell: what each token reconstructs
        self.img_size = tuple(stem.img_size)
        covered = tuple(g * s for g, s in zip(net.grid_size, self.patch_size))
        if covered != self.img_size:
            raise ValueError(
                f"the stem's tokens must tile the input for MAE targets: grid_size="
                f"{net.grid_size} x stride={self.patch_size} != img_size={self.img_size}"
            )
        self.num_patches = math.prod(net.grid_size)
        in_channels = stem.proj.in_channels
        embed_dim = net.pos_embed.shape[-1]
        patch_numel = in_channels * math.prod(self.patch_size)
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(torch.zeros(1, self.num_patches, decoder_dim))
        self.decoder_blocks = nn.Sequential(
            *(
                nn.TransformerEncoderLayer(
                    decoder_dim,
                    decoder_heads,
                    dim_feedforward=2 * decoder_dim,
                    dropout=0.0,
                    activation="gelu",
                    batch_first=True,
                    norm_first=True,
                )
                for _ in range(decoder_depth)
            )
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, patch_numel)
        nn.init.trunc_normal_(self.decoder_pos_embed, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)  # as MAE
        self.mask_generator = torch.Generator().manual_seed(seed)

    def targets(self, input: torch.Tensor) -> torch.Tensor:
        """Pixels of every patch, ``(N, L, C*K)`` (per-patch normalised with ``norm_pix_loss``)."""
        patches = patchify(input, self.patch_size)  # (N, C, *spatial) -> (N, L, C*K)
        return normalise_patches(patches) if self.hparams.norm_pix_loss else patches

    def forward(
        self, input: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predict every patch from the visible ones.

        Returns ``(prediction, visible, masked)``: ``(N, L, C*K)`` and the index tensors of
        :func:`random_masking`.
        """
        tokens = self.net.embed(input)  # (N, L, E), with position embeddings
        visible, masked = random_masking(
            tokens.shape[0], self.num_patches, self.hparams.mask_ratio, generator, input.device
        )
        encoded = self.net.encode(take_tokens(tokens, visible))  # (N, prefix + V, E)
        encoded = encoded[:, self.net.num_prefix_tokens :]  # (N, V, E)
        decoded = self.decoder_embed(encoded)  # (N, V, D)
        width = decoded.shape[2]
        slots = self.mask_token.expand(tokens.shape[0], self.num_patches, width)  # (N, L, D)
        slots = slots.scatter(1, visible[:, :, None].expand(-1, -1, width), decoded)
        slots = self.decoder_blocks(slots + self.decoder_pos_embed)
        return self.decoder_pred(self.decoder_norm(slots)), visible, masked

    def loss(self, input: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean squared error over the masked patches' pixels."""
        prediction, _, masked = self(input, generator)
        error = (prediction - self.targets(input)) ** 2
        return take_tokens(error, masked).mean()

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.loss(_images(batch), self.mask_generator)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        masks = torch.Generator().manual_seed(self.hparams.seed + 1 + batch_idx)
        loss = self.loss(_images(batch), masks)
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, sync_dist=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        hp = self.hparams
        return torch.optim.AdamW(
            self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay, betas=(0.9, 0.95)
        )

    @torch.no_grad()
    def reconstruct(
        self, input: torch.Tensor, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """``input``, ``masked`` (masked patches zeroed) and ``reconstruction`` (visible
        patches from the input, masked ones predicted), each ``(N, C, *spatial)``."""
        prediction, _, masked = self(input, generator)
        patches = patchify(input, self.patch_size)  # (N, L, C*K)
        if self.hparams.norm_pix_loss:  # back to pixels with each patch's own statistics
            mean = patches.mean(dim=-1, keepdim=True)
            std = (patches.var(dim=-1, keepdim=True) + 1e-6).sqrt()
            prediction = prediction * std + mean
        is_masked = torch.zeros(patches.shape[:2], dtype=torch.bool, device=input.device)
        is_masked = is_masked.scatter(1, masked, True)[:, :, None]  # (N, L, 1)
        spatial = tuple(input.shape[2:])
        return {
            "input": input,
            "masked": unpatchify(patches.masked_fill(is_masked, 0), self.patch_size, spatial),
            "reconstruction": unpatchify(
                torch.where(is_masked, prediction, patches), self.patch_size, spatial
            ),
        }


def _images(batch) -> torch.Tensor:
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _to_rgb(image: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """``(C, H, W)`` to an ``(H, W, 3)`` or ``(H, W)`` array in [0, 1] (scale of the input)."""
    image = ((image - low) / (high - low + 1e-12)).clamp(0, 1)
    return image[:3].permute(1, 2, 0) if image.shape[0] >= 3 else image[0]


def save_reconstruction_figure(
    module: LitMAE,
    input: torch.Tensor,
    path: str | Path,
    num_images: int = 4,
    seed: int = 0,
) -> Path:
    """Rows of input / masked / reconstruction for the first ``num_images`` samples, to ``path``.

    Images ``(N, C, H, W)`` are shown as they are, videos ``(N, C, T, H, W)`` by their middle
    frame; each row uses its input's range for all three panels. ``seed`` picks the masks.
    Returns the path written (any format matplotlib writes, by the suffix).
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    if input.dim() not in (4, 5):
        raise ValueError(
            f"input must be images (N, C, H, W) or videos (N, C, T, H, W), got input of shape "
            f"{tuple(input.shape)}"
        )
    was_training = module.training
    module.eval()
    images = module.reconstruct(input[:num_images], torch.Generator().manual_seed(seed))
    module.train(was_training)
    if input.dim() == 5:  # videos: the middle frame
        images = {name: video[:, :, video.shape[2] // 2] for name, video in images.items()}
    rows = images["input"].shape[0]
    figure = Figure(figsize=(6, 2 * rows))
    axes = figure.subplots(rows, 3, squeeze=False)
    for row in range(rows):
        low, high = images["input"][row].min(), images["input"][row].max()
        for column, name in enumerate(("input", "masked", "reconstruction")):
            axis = axes[row, column]
            pixels = _to_rgb(images[name][row].float().cpu(), low.cpu(), high.cpu())
            axis.imshow(pixels.numpy())
            axis.set_axis_off()
            if row == 0:
                axis.set_title(name)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    return path
