"""
Patch embeddings: overlapping, tubelets, and a new patch size
=============================================================

:class:`~unfoldconv.layers.PatchEmbed` is timm's ViT stem for any number of spatial dims. This
example shows three things it does beyond the usual 16x16 image patches:

1. **overlapping patches** (``stride < patch_size``), pictured on an image;
2. **tubelets** for video, ``patch_size=(2, 4, 4)``;
3. **set_input_size(patch_size=...)**: the trained projection resampled to a new patch size
   (FlexiViT's pseudo-inverse), so an image resized by the same ratio gives nearly the same
   tokens; a naive resize of the weights does not.
"""

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import unfoldconv
from unfoldconv.layers import PatchEmbed

torch.manual_seed(0)

# %%
# Overlapping patches
# -------------------
# Kernel 8, stride 4, padding 2 on a 32x32 image gives the same 8x8 grid as 4x4 patches, but
# every token sees an 8x8 window that overlaps its neighbours by half.
image = torch.zeros(1, 3, 32, 32)
yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
image[0, 0] = torch.sin(xx / 5)
image[0, 1] = torch.cos(yy / 4)
image[0, 2] = ((xx - 16) ** 2 + (yy - 16) ** 2 < 100).float()

overlap = PatchEmbed(patch_size=8, stride=4, padding=2, in_channels=3, embed_dim=32, img_size=32)
plain = PatchEmbed(patch_size=4, in_channels=3, embed_dim=32, img_size=32)
print("overlap grid", overlap.grid_size, "tokens", tuple(overlap(image).shape))
print("patch grid  ", plain.grid_size, "tokens", tuple(plain(image).shape))

fig, axes = plt.subplots(1, 2, figsize=(9, 4.5))
shown = (image[0].permute(1, 2, 0) * 0.5 + 0.5).clamp(0, 1)
for ax, (title, kernel, stride, pad) in zip(
    axes, [("patches 4/4: tiles", 4, 4, 0), ("kernel 8, stride 4, padding 2: overlaps", 8, 4, 2)]
):
    ax.imshow(shown, extent=(-0.5, 31.5, 31.5, -0.5))
    for index, (i, j) in enumerate([(1, 1), (1, 2), (2, 1)]):
        top, left = i * stride - pad, j * stride - pad
        ax.add_patch(
            plt.Rectangle(
                (left - 0.5, top - 0.5), kernel, kernel, fill=False, linewidth=2,
                edgecolor=["crimson", "gold", "cyan"][index],
            )
        )  # fmt: skip
    ax.set_xlim(-3, 20)
    ax.set_ylim(20, -3)
    ax.set_title(title, fontsize=10)
fig.suptitle("Three neighbouring tokens' windows (the top-left corner of the image)")
fig.tight_layout()

# %%
# Tubelets
# --------
# A clip ``(N, C, T, H, W)`` embedded with 2x4x4 tubelets: ``d`` comes from the tuple.
video = torch.randn(2, 3, 8, 32, 32)
tubelets = PatchEmbed(patch_size=(2, 4, 4), in_channels=3, embed_dim=64)
tokens = tubelets(video)
print("video", tuple(video.shape), "-> tokens", tuple(tokens.shape))  # 4 * 8 * 8 = 256 tokens
# the same tokens by hand: patchify (MAE's targets) and one linear map
by_hand = unfoldconv.patchify(video, (2, 4, 4)) @ tubelets.proj.weight.flatten(1).T
torch.testing.assert_close(tokens, by_hand + tubelets.proj.bias)

# %%
# A new patch size for trained weights
# ------------------------------------
# A stem with 4x4 patches on 16x16 images, and the same images upsampled (bicubic) to 32x32.
# :meth:`~unfoldconv.layers.PatchEmbed.set_input_size` resamples the stem to 8x8 patches: the
# grid stays 4x4 and the tokens stay close (FlexiViT's identity is exact for each patch resized
# on its own; resizing the whole image mixes neighbouring patches at their borders, hence the
# small remainder). Resizing the kernel like an image (bilinear, rescaled by the area ratio 1/4
# so the sums match) is the naive alternative.
stem = PatchEmbed(patch_size=4, in_channels=3, embed_dim=48, img_size=16)
noise = F.pad(torch.randn(8, 3, 16, 16), (1, 1, 1, 1), mode="reflect")
small = F.avg_pool2d(noise, 3, 1)  # smooth images, (8, 3, 16, 16)
big = F.interpolate(small, size=(32, 32), mode="bicubic", align_corners=False)
reference = stem(small)  # (8, 16, 48): 16 tokens each

naive = PatchEmbed(patch_size=8, in_channels=3, embed_dim=48, img_size=32)
with torch.no_grad():
    naive.proj.weight.copy_(F.interpolate(stem.proj.weight, size=(8, 8), mode="bilinear") / 4)
    naive.proj.bias.copy_(stem.proj.bias)
original_weight = stem.proj.weight.detach().clone()
stem.set_input_size(img_size=32, patch_size=8)
print("resampled:", stem.patch_size, stem.grid_size, tuple(stem.proj.weight.shape))


def relative_error(tokens):
    return ((tokens - reference).norm() / reference.norm()).item()


errors = {
    "set_input_size (pseudo-inverse)": relative_error(stem(big)),
    "naive bilinear weight resize": relative_error(naive(big)),
}
for name, value in errors.items():
    print(f"{name}: relative token error {value:.3f}")
assert errors["set_input_size (pseudo-inverse)"] < errors["naive bilinear weight resize"]

fig, axes = plt.subplots(1, 4, figsize=(12, 3.2), gridspec_kw={"width_ratios": [1, 1, 1, 1.6]})
filters = [original_weight[0, 0], stem.proj.weight[0, 0].detach(), naive.proj.weight[0, 0].detach()]
for ax, (title, kernel) in zip(axes, zip(["4x4 trained", "8x8 resampled", "8x8 naive"], filters)):
    ax.imshow(kernel, cmap="coolwarm")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
axes[3].barh(list(errors), list(errors.values()), color=["tab:green", "tab:red"])
axes[3].set_xlabel("|tokens(32x32) - tokens(16x16)| / |tokens(16x16)|")
axes[3].tick_params(axis="y", labelsize=8)
fig.suptitle("One filter of proj.weight, and how close the upsampled image's tokens stay")
fig.tight_layout()
