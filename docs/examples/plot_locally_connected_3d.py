"""
A locally connected layer on volumes
====================================

:class:`~unfoldconv.layers.LocallyConnected3d` is a convolution whose kernel differs at every
output position: ``weight`` is ``(*out_spatial, C_out, C_in, *kernel)``. It is one line to
build for any ``d``, and it is computed as unfold + one batched matmul over the positions.

Here the target is a filter that *changes across the volume*: the input is smoothed in the
front half of the depth axis and edge-filtered (a discrete Laplacian) in the back half. A
``Conv3d`` shares one kernel between both halves and cannot fit it; the locally connected
layer can. Both are trained with the same data, seed and optimizer.
"""

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from unfoldconv.layers import Conv3d, LocallyConnected3d

torch.manual_seed(0)
size = (8, 8, 8)  # (D, H, W)

# the two kernels of the target: a 3x3x3 box blur, and a 3-d Laplacian
blur = torch.full((1, 1, 3, 3, 3), 1 / 27)
laplace = torch.zeros(1, 1, 3, 3, 3)
laplace[0, 0, 1, 1, 1] = 6.0
for offset in [(0, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 1), (1, 1, 0), (1, 1, 2)]:
    laplace[(0, 0, *offset)] = -1.0


def target(volumes):
    front = F.conv3d(volumes, blur, padding=1)
    back = F.conv3d(volumes, laplace, padding=1)
    depth = torch.arange(size[0]).view(1, 1, -1, 1, 1)
    return torch.where(depth < size[0] // 2, front, back)


def volumes(n):
    """Smooth random volumes: noise blurred once, so both filters have something to do."""
    return F.conv3d(torch.randn(n, 1, *size), blur, padding=1) * 5


local = LocallyConnected3d(1, 1, input_size=size, kernel_size=3, padding=1)
shared = Conv3d(1, 1, kernel_size=3, padding=1)
print(local)
print("local weight", tuple(local.weight.shape), "bias", tuple(local.bias.shape))

# %%
# With the same kernel at every position, the locally connected layer *is* the convolution:
with torch.no_grad():
    tied = LocallyConnected3d(1, 1, input_size=size, kernel_size=3, padding=1)
    tied.weight.copy_(shared.weight.expand_as(tied.weight))
    tied.bias.copy_(shared.bias.view(1, 1, 1, 1).expand_as(tied.bias))
probe = volumes(2)
torch.testing.assert_close(tied(probe), shared(probe))

# %%
# Train both on the position-dependent target (full-batch Adam, 60 steps):
train_x = volumes(32)
train_y = target(train_x)
losses = {}
for name, layer in {"Conv3d (one kernel)": shared, "LocallyConnected3d": local}.items():
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.1)
    history = []
    for _ in range(60):
        optimizer.zero_grad()
        loss = F.mse_loss(layer(train_x), train_y)
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    losses[name] = history
    print(f"{name}: final training MSE {history[-1]:.2e}")

# %%
# The loss curves, and one test volume: a slice from the smoothed front half and one from the
# edge-filtered back half, as the target has them and as each layer reproduces them.
test_x = volumes(1)
test_y = target(test_x)
with torch.no_grad():
    outputs = {"target": test_y, "Conv3d": shared(test_x), "LocallyConnected3d": local(test_x)}

fig = plt.figure(figsize=(12, 5.5))
grid = fig.add_gridspec(2, 4, width_ratios=[1.6, 1, 1, 1])
ax = fig.add_subplot(grid[:, 0])
for name, history in losses.items():
    ax.semilogy(history, label=name)
ax.set_xlabel("step")
ax.set_ylabel("training MSE")
ax.set_title("fitting a filter that changes with depth")
ax.legend()
for row, depth in enumerate((1, 6)):
    for col, (name, volume) in enumerate(outputs.items()):
        ax = fig.add_subplot(grid[row, col + 1])
        reference = outputs["target"][0, 0, depth]
        ax.imshow(volume[0, 0, depth], cmap="magma", vmin=reference.min(), vmax=reference.max())
        ax.set_xticks([])
        ax.set_yticks([])
        half = "front: blur" if depth < 4 else "back: Laplacian"
        ax.set_title(f"{name}\ndepth {depth} ({half})", fontsize=8)
fig.tight_layout()

# %%
# On held-out volumes, and in the learned kernels: the local kernel's centre tap, averaged over
# each depth slice, follows the target's (1/27 for the blur in front, 6 for the Laplacian at
# the back) as far as 60 steps get it, while the shared kernel settles in between.
held_out = volumes(16)
with torch.no_grad():
    for name, layer in {"Conv3d": shared, "LocallyConnected3d": local}.items():
        print(f"{name}: held-out MSE {F.mse_loss(layer(held_out), target(held_out)):.2e}")
centre = local.weight[:, :, :, 0, 0, 1, 1, 1].detach()  # (D, H, W): the centre tap per position
print("local centre tap per depth:", [round(v, 2) for v in centre.mean(dim=(1, 2)).tolist()])
print("shared centre tap:", round(shared.weight[0, 0, 1, 1, 1].item(), 2))
