"""
Unfold and fold, pictured
=========================

:func:`unfoldconv.unfold` (im2col) copies every ``kernel_size`` block of the input into one
column; :func:`unfoldconv.fold` (col2im) puts the column entries back where they came from and
**sums the overlaps**. This example numbers the elements of a small image so that each cell of
the columns shows which input element landed there, then folds columns back and pictures the
overlap sums.
"""

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

import unfoldconv

# %%
# Which input element lands in which column
# -----------------------------------------
# A 2-channel 4x5 image whose elements are numbered 0, 1, 2, ... in memory order, unfolded with
# a 2x3 kernel. The columns are ``(N, C*K, L)``: the rows run channel-major, then through the
# ``K = 6`` kernel offsets in row-major order; the ``L = 3*3`` block positions run row-major
# along the last axis. For ``d = 2`` this is exactly ``F.unfold`` (bit for bit).

image = torch.arange(2 * 4 * 5, dtype=torch.float32).reshape(1, 2, 4, 5)  # (N, C, H, W)
kernel = (2, 3)
columns = unfoldconv.unfold(image, kernel)  # (1, 2*6, 3*3)
print("columns:", tuple(columns.shape))
assert torch.equal(columns, F.unfold(image, kernel))

position = 4  # the block at output row 1, column 1 (row-major over the 3 x 3 positions)
row, col = divmod(position, 3)

fig, axes = plt.subplots(1, 3, figsize=(11, 4.2), gridspec_kw={"width_ratios": [5, 5, 9 * 0.75]})
for channel, ax in enumerate(axes[:2]):
    ax.imshow(image[0, channel], cmap="Blues", vmin=-10, vmax=50)
    for i in range(4):
        for j in range(5):
            ax.text(j, i, int(image[0, channel, i, j]), ha="center", va="center", fontsize=9)
    ax.add_patch(
        plt.Rectangle((col - 0.5, row - 0.5), 3, 2, fill=False, edgecolor="crimson", linewidth=2.5)
    )
    ax.set_title(f"input, channel {channel}")
    ax.set_xticks([])
    ax.set_yticks([])

ax = axes[2]
ax.imshow(columns[0], cmap="Blues", vmin=-10, vmax=50, aspect="auto")
for i in range(columns.shape[1]):
    for j in range(columns.shape[2]):
        ax.text(j, i, int(columns[0, i, j]), ha="center", va="center", fontsize=8)
ax.add_patch(
    plt.Rectangle((position - 0.5, -0.5), 1, 12, fill=False, edgecolor="crimson", linewidth=2.5)
)
ax.axhline(5.5, color="black", linewidth=1)  # channel 0 rows above, channel 1 rows below
ax.set_yticks(range(12), [f"c{c} k{k}" for c in range(2) for k in range(6)], fontsize=8)
ax.set_xticks(range(9), [f"l={l}" for l in range(9)], fontsize=8)
ax.set_title("unfold(x, (2, 3)): rows c*K + k, columns l")
fig.suptitle("The red block of the input is column l = 4 of the unfolded tensor")
fig.tight_layout()

# %%
# Fold puts the entries back and sums the overlaps
# ------------------------------------------------
# ``fold`` is the adjoint of ``unfold``: ``<unfold(x), y> == <x, fold(y)>``. Folding the
# columns of an all-ones image counts how many blocks cover each pixel, and
# ``fold(unfold(x)) == counts * x``. With stride 1 the centre is covered ``K`` times; a stride
# equal to the kernel covers every pixel once (patches), a dilated kernel leaves a pattern.

settings = {
    "kernel 3, stride 1": {"kernel_size": 3},
    "kernel 3, stride 2, padding 1": {"kernel_size": 3, "stride": 2, "padding": 1},
    "kernel 3, dilation 2": {"kernel_size": 3, "dilation": 2},
    "kernel 2, stride 2 (patches)": {"kernel_size": 2, "stride": 2},
}
size = (8, 8)
x = torch.randn(1, 1, *size)
fig, axes = plt.subplots(1, len(settings), figsize=(12, 3.4))
for ax, (name, kw) in zip(axes, settings.items()):
    ones = torch.ones(1, 1, *size)
    counts = unfoldconv.fold(unfoldconv.unfold(ones, **kw), size, **kw)[0, 0]
    torch.testing.assert_close(unfoldconv.fold(unfoldconv.unfold(x, **kw), size, **kw), counts * x)
    torch.testing.assert_close(  # the same as torch's col2im
        unfoldconv.fold(unfoldconv.unfold(x, **kw), size, **kw),
        F.fold(F.unfold(x, **kw), size, **kw),
    )
    ax.imshow(counts, cmap="viridis", vmin=0, vmax=9)
    for i in range(size[0]):
        for j in range(size[1]):
            ax.text(j, i, int(counts[i, j]), ha="center", va="center", color="white", fontsize=8)
    ax.set_title(name, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
fig.suptitle("fold(unfold(ones)): how many blocks cover each pixel (overlaps are summed)")
fig.tight_layout()

# %%
# The adjoint identity, in numbers
# --------------------------------
y = torch.randn(1, 9, 36)  # columns of an 8x8 image with a 3x3 kernel
lhs = (unfoldconv.unfold(x, 3) * y).sum()
rhs = (x * unfoldconv.fold(y, size, 3)).sum()
print(f"<unfold(x), y> = {lhs:.6f}   <x, fold(y)> = {rhs:.6f}")
torch.testing.assert_close(lhs, rhs)

# %%
# The same in any number of dims: a 3-d volume's blocks are columns of ``C * 27`` rows.
volume = torch.randn(2, 4, 6, 6, 6)
print("3-d:", tuple(unfoldconv.unfold(volume, 3, padding=1).shape))
print("4-d:", tuple(unfoldconv.unfold(torch.randn(1, 2, 5, 5, 5, 5), 3).shape))
