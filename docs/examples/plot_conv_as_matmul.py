"""
A convolution is unfold + matmul
================================

A convolution with weight ``(C_out, C_in, *kernel)`` is one matrix product with the columns of
its input: ``y = w.flatten(1) @ unfold(x)``, reshaped to the output grid. Its transpose (the
gradient of the convolution with respect to its input, and ``nn.ConvTranspose``) is the other
product followed by :func:`unfoldconv.fold`: ``fold(w.flatten(1).T @ x)``. This example writes
both out by hand in 1-d, 2-d, 3-d and 4-d and checks them against torch (for 4-d, where torch
has no convolution, against a sum of 3-d convolutions).
"""

import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import unfoldconv

torch.manual_seed(0)
TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TORCH_CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def conv_by_hand(x, w, stride, padding):
    """``(N, C_in, *size) -> (N, C_out, *out)`` as one matmul with the columns."""
    d = w.dim() - 2
    columns = unfoldconv.unfold(x, w.shape[2:], stride=stride, padding=padding)  # (N, C_in*K, L)
    out = [(s + 2 * padding - k) // stride + 1 for s, k in zip(x.shape[2:], w.shape[2:])]
    y = w.flatten(1) @ columns  # (C_out, C_in*K) @ (N, C_in*K, L) -> (N, C_out, L)
    return y.view(x.shape[0], w.shape[0], *out), d


def conv_transpose_by_hand(x, w, stride, padding, output_size):
    """The adjoint: ``(N, C_in, *size) -> (N, C_out, *output_size)`` for a weight
    ``(C_in, C_out, *kernel)`` of ``conv_transpose``: matmul, then fold the columns."""
    columns = w.flatten(1).T @ x.flatten(2)  # (C_out*K, C_in) @ (N, C_in, L) -> (N, C_out*K, L)
    return unfoldconv.fold(columns, output_size, w.shape[2:], stride=stride, padding=padding)


def conv4d_reference(x, w, stride, padding):
    """4-d convolution as a sum of 3-d ones over the first kernel dim (torch has no conv4d)."""
    x = F.pad(x, [padding] * 8)
    out0 = (x.shape[2] - w.shape[2]) // stride + 1
    slices = []
    for t in range(out0):
        acc = 0
        for k in range(w.shape[2]):
            acc = acc + F.conv3d(x[:, :, t * stride + k], w[:, :, k], stride=stride)
        slices.append(acc)
    return torch.stack(slices, dim=2)


sizes = {1: (19,), 2: (9, 11), 3: (6, 7, 8), 4: (5, 6, 5, 6)}
errors = {"conv": [], "conv_transpose": []}
for d, size in sizes.items():
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    w = torch.randn(4, 3, *([3] * d), dtype=torch.float64)
    stride, padding = 2, 1
    y, _ = conv_by_hand(x, w, stride, padding)
    expected = TORCH_CONV[d](x, w, stride=stride, padding=padding) if d <= 3 else None
    if expected is None:
        expected = conv4d_reference(x, w, stride, padding)
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(unfoldconv.conv(x, w, stride=stride, padding=padding), expected)
    errors["conv"].append((y - expected).abs().max().item())

    # the transpose maps y's shape back to x's: weight (C_in=4, C_out=3, *kernel) here
    g = torch.randn_like(y)
    back = conv_transpose_by_hand(g, w, stride, padding, size)
    if d <= 3:
        # the output_padding that makes torch's transposed conv give back x's size
        output_padding = [
            s - ((o - 1) * stride - 2 * padding + 3) for s, o in zip(size, y.shape[2:])
        ]
        expected_t = TORCH_CONV_T[d](g, w, stride=stride, padding=padding,
                                     output_padding=output_padding)  # fmt: skip
    else:  # the gradient of the 4-d convolution with respect to its input
        x_var = x.clone().requires_grad_()
        (expected_t,) = torch.autograd.grad(conv4d_reference(x_var, w, stride, padding), x_var, g)
    torch.testing.assert_close(back, expected_t)
    errors["conv_transpose"].append((back - expected_t).abs().max().item())
    print(f"d={d}: x {tuple(x.shape)} -> y {tuple(y.shape)}; columns "
          f"{(3 * 3**d, math.prod(y.shape[2:]))} per sample; max errors "
          f"{errors['conv'][-1]:.1e} (conv), "
          f"{errors['conv_transpose'][-1]:.1e} (transpose)")  # fmt: skip

# %%
# Both routes agree with torch to float64 rounding in every dimension (a bar at 1e-18 means
# bit-identical):

fig, ax = plt.subplots(figsize=(7, 3.5))
dims = list(sizes)
for offset, (name, values) in zip((-0.2, 0.2), errors.items()):
    ax.bar([d + offset for d in dims], [max(v, 1e-18) for v in values], width=0.4, label=name)
ax.set_yscale("log")
ax.set_xticks(dims, [f"{d}-d" for d in dims])
ax.set_ylabel("max |by hand - torch|")
ax.set_title("unfold + matmul (conv) and matmul + fold (transpose) vs torch, float64")
ax.legend()
fig.tight_layout()

# %%
# The layers of :mod:`unfoldconv.layers` do exactly this (in chunks of a few samples, see
# :doc:`/guide/memory`), and are drop-ins for torch's:

from unfoldconv.layers import Conv2d

native = torch.nn.Conv2d(3, 8, 3, padding=1)
ours = Conv2d.from_native(native)
x = torch.randn(4, 3, 16, 16)
torch.testing.assert_close(ours(x), native(x))
print(isinstance(ours, torch.nn.Conv2d), ours)
