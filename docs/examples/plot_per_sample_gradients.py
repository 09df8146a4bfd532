"""
Per-sample gradients and DP-style clipping
==========================================

Differentially private SGD (DP-SGD, as Opacus implements it) needs the gradient of *each
sample* separately: every sample's gradient is clipped to norm ``C``, the clipped gradients are
averaged, and Gaussian noise of scale ``sigma * C / batch`` is added. The layers of
:mod:`unfoldconv.layers` work under :mod:`torch.func`, so ``vmap(grad(...))`` gives all the
per-sample gradients of a small CNN in one call; this example checks them against a loop of
ordinary backward passes, one sample at a time, and pictures the norms before and after
clipping.
"""

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from unfoldconv.layers import Conv2d

torch.manual_seed(0)
model = nn.Sequential(
    Conv2d(3, 8, 3, padding=1),
    nn.ReLU(),
    Conv2d(8, 8, 3, stride=2, padding=1),
    nn.ReLU(),
    nn.Flatten(),
    nn.Linear(8 * 8 * 8, 10),
)
params = {name: p.detach() for name, p in model.named_parameters()}
batch = 32
images = torch.randn(batch, 3, 16, 16)
images[: batch // 4] *= 4  # a few loud samples: their gradients are the ones clipping bounds
labels = torch.randint(0, 10, (batch,))


def sample_loss(p, image, label):
    """The loss of one sample (vmap adds the batch dim back)."""
    logits = functional_call(model, p, (image[None],))
    return nn.functional.cross_entropy(logits, label[None])


per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))(params, images, labels)
print({name: tuple(g.shape) for name, g in per_sample.items()})

# %%
# The same gradients, one backward pass per sample:
for i in (0, batch - 1):
    model.zero_grad()
    nn.functional.cross_entropy(model(images[i : i + 1]), labels[i : i + 1]).backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(per_sample[name][i], p.grad)
print("vmap(grad) equals the per-sample loop")

# %%
# Clipping: each sample's whole gradient (all layers together) to norm ``C``; here ``C`` is
# the median norm, so half of the samples are scaled down. Then the DP-SGD update direction.
norms = torch.stack([g.flatten(1).norm(dim=1) for g in per_sample.values()]).norm(dim=0)  # (N,)
clip = norms.median()
scale = (clip / (norms + 1e-6)).clamp(max=1.0)  # (N,)
clipped = {name: g * scale.view(-1, *[1] * (g.dim() - 1)) for name, g in per_sample.items()}
clipped_norms = torch.stack([g.flatten(1).norm(dim=1) for g in clipped.values()]).norm(dim=0)
sigma = 1.0
update = {
    name: g.mean(0) + sigma * clip / batch * torch.randn_like(g[0]) for name, g in clipped.items()
}
assert torch.all(clipped_norms <= clip * (1 + 1e-4))
print(f"C = {clip:.3f}; norms before clipping {norms.min():.3f} .. {norms.max():.3f}")
print(f"mean gradient norm {sum(g.mean(0).square().sum() for g in per_sample.values()) ** 0.5:.3f}"
      f", clipped + noise {sum(u.square().sum() for u in update.values()) ** 0.5:.3f}")  # fmt: skip

fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
order = norms.argsort()
axes[0].bar(range(batch), norms[order], color="lightgray", label="per-sample norm")
axes[0].bar(range(batch), clipped_norms[order], color="tab:blue", label="after clipping")
axes[0].axhline(clip, color="crimson", linestyle="--", label=f"C = {clip:.2f}")
axes[0].set_xlabel("sample (sorted by norm)")
axes[0].set_ylabel("gradient norm (all layers)")
axes[0].legend(fontsize=8)
axes[0].set_title("per-sample gradient norms")
layer_norms = {
    name: g.flatten(1).norm(dim=1) for name, g in per_sample.items() if name.endswith("weight")
}
axes[1].boxplot(list(layer_norms.values()), showfliers=True)
axes[1].set_xticks(range(1, len(layer_norms) + 1), list(layer_norms), fontsize=8)
axes[1].set_yscale("log")
axes[1].set_title("per-sample norms by layer (weights)")
fig.tight_layout()
