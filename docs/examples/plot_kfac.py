"""
KFAC with the recorder, and one preconditioned step
===================================================

:class:`~unfoldconv.curvature.FactorRecorder` hooks every convolution and linear layer of a
model and collects KFAC's two factors per layer while the model trains: the input factor ``A``
(from the layer's columns, computed chunk by chunk through the engine) and the output-gradient
factor ``B``. This example records them for a small CNN, checks one against the functional
op, pictures them, and takes one KFAC step ``ΔW = -lr · B⁻¹ G A⁻¹`` (damped) next to a plain
gradient step, each at its best learning rate from a grid. One step on one batch says little
about a training run (which direction goes further depends on the problem, the damping and the
step); it shows the mechanics, with numbers measured when these pages were built.
"""

import matplotlib.pyplot as plt
import torch
from torch import nn
from torch.nn import functional as F

from unfoldconv.curvature import (
    FactorRecorder,
    kfac_input_factor,
    per_sample_grad_norm,
)
from unfoldconv.layers import Conv2d

torch.manual_seed(0)
model = nn.Sequential(
    Conv2d(3, 8, 3, padding=1),
    nn.ReLU(),
    Conv2d(8, 16, 3, stride=2, padding=1),
    nn.ReLU(),
    nn.AdaptiveAvgPool2d(2),
    nn.Flatten(),
    nn.Linear(16 * 2 * 2, 10),
)
# a teacher network labels random images: a task with structure to learn
teacher = nn.Sequential(nn.Conv2d(3, 4, 5, stride=4), nn.Flatten(), nn.Linear(4 * 3 * 3, 10))
images = torch.randn(64, 3, 16, 16)
with torch.no_grad():
    labels = teacher(images).argmax(1)

# %%
# Record the factors over four micro-batches of 16 (gradients accumulate as usual):
with FactorRecorder(model) as recorder:
    model.zero_grad()
    for x, y in zip(images.split(16), labels.split(16)):
        (F.cross_entropy(model(x), y, reduction="sum") / len(images)).backward()
factors = recorder.factors()
print("samples seen:", recorder.num_samples)
for name, (A, B) in factors.items():
    print(f"layer {name}: A {tuple(A.shape)}, B {tuple(B.shape)}")

# %%
# ``A`` of the first layer is ``kfac_input_factor`` of its input (the images) over all samples:
A0 = kfac_input_factor(images, 3, padding=1, bias=True)
torch.testing.assert_close(factors["0"][0], A0)

# %%
# The factors of the first convolution: ``A`` is ``(1, 28, 28)`` (3 channels x 9 kernel
# offsets + the bias row), ``B`` is ``(1, 8, 8)`` (the output channels).
fig, axes = plt.subplots(1, 4, figsize=(13, 3.3))
for ax, (title, matrix) in zip(
    axes[:2], [("A of layer 0 (inputs)", factors["0"][0][0]), ("B of layer 0", factors["0"][1][0])]
):
    image = ax.imshow(matrix, cmap="RdBu_r", vmin=-matrix.abs().max(), vmax=matrix.abs().max())
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_title(title, fontsize=9)
for name, (A, B) in factors.items():
    axes[2].semilogy(torch.linalg.eigvalsh(A[0].double()).flip(0), label=f"A, layer {name}")
    axes[3].semilogy(torch.linalg.eigvalsh(B[0].double()).flip(0), label=f"B, layer {name}")
for ax, title in zip(axes[2:], ["eigenvalues of A", "eigenvalues of B"]):
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
fig.tight_layout()

# %%
# One KFAC step
# -------------
# For each layer the gradient as a matrix ``G = [grad W, grad b]`` (``C_out x D'``), and the
# damped KFAC direction ``(B + λ_B I)⁻¹ G (A + λ_A I)⁻¹`` (damping: 10% of each factor's
# mean eigenvalue). Both directions are tried at learning rates from a grid, and the loss
# after the step is compared.
layers = {name: module for name, module in model.named_modules() if name in factors}


def gradient_matrix(layer):
    weight = layer.weight.grad.flatten(1)  # (C_out, D)
    return torch.cat([weight, layer.bias.grad[:, None]], dim=1)  # (C_out, D + 1)


def damped_inverse(matrix, fraction=0.1):
    damping = fraction * matrix.diagonal().mean()
    return torch.linalg.inv(matrix + damping * torch.eye(len(matrix), dtype=matrix.dtype))


directions = {"gradient": {}, "KFAC": {}}
for name, layer in layers.items():
    A, B = factors[name]
    G = gradient_matrix(layer)
    directions["gradient"][name] = G
    directions["KFAC"][name] = damped_inverse(B[0]) @ G @ damped_inverse(A[0])

start = {
    name: (layer.weight.detach().clone(), layer.bias.detach().clone())
    for name, layer in layers.items()
}


def loss_after_step(direction, lr):
    with torch.no_grad():
        for name, layer in layers.items():
            weight, bias = start[name]
            step = direction[name]
            layer.weight.copy_(weight - lr * step[:, :-1].reshape(weight.shape))
            layer.bias.copy_(bias - lr * step[:, -1])
        return F.cross_entropy(model(images), labels).item()


initial = loss_after_step(directions["gradient"], 0.0)
rates = torch.logspace(-6, 2, 17).tolist()
curves = {kind: [loss_after_step(d, lr) for lr in rates] for kind, d in directions.items()}
loss_after_step(directions["gradient"], 0.0)  # back to the start
for kind, curve in curves.items():
    best = min(range(len(rates)), key=curve.__getitem__)
    print(f"{kind}: best loss after one step {curve[best]:.4f} at lr {rates[best]:.1e} "
          f"(from {initial:.4f})")  # fmt: skip

fig, ax = plt.subplots(figsize=(7, 3.8))
for kind, curve in curves.items():
    ax.semilogx(rates, curve, marker="o", markersize=3, label=kind)
ax.axhline(initial, color="gray", linestyle=":", label="before the step")
ax.set_ylim(top=initial * 1.05, bottom=min(min(c) for c in curves.values()) * 0.98)
ax.set_xlabel("learning rate")
ax.set_ylabel("training loss after one step")
ax.set_title("One step along the gradient and along the KFAC direction")
ax.legend()
fig.tight_layout()

# %%
# Per-sample gradient norms of the first layer (DP-SGD's clipping) need the layer's input and
# output gradient only:
out = model[0](images)
out.retain_grad()
F.cross_entropy(model[1:](out), labels, reduction="sum").backward()
norms = per_sample_grad_norm(images, out.grad, 3, padding=1, bias=True)
print("per-sample gradient norms of layer 0:", tuple(norms.shape), f"median {norms.median():.3f}")
