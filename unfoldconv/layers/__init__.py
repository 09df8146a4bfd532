"""``nn.Module`` layers built on the engine: twins of torch's conv layers and new ones.

- :class:`ConvNd`, :class:`Conv1d`, :class:`Conv2d`, :class:`Conv3d`: ``nn.Conv*d`` twins.
- :class:`ConvTransposeNd` and ``ConvTranspose1d/2d/3d``: ``nn.ConvTranspose*d`` twins.
- :class:`LocallyConnectedNd` and ``LocallyConnected1d/2d/3d``: unshared-kernel convolutions.
- :class:`PatchEmbed`: ViT patch embedding for any d, timm's parameter names.
- :func:`convert`: swap every conv layer of a model between torch's and ours.
"""

from unfoldconv.layers.conv import Conv1d, Conv2d, Conv3d, ConvNd
from unfoldconv.layers.conv_transpose import (
    ConvTranspose1d,
    ConvTranspose2d,
    ConvTranspose3d,
    ConvTransposeNd,
)
from unfoldconv.layers.convert import convert
from unfoldconv.layers.locally_connected import (
    LocallyConnected1d,
    LocallyConnected2d,
    LocallyConnected3d,
    LocallyConnectedNd,
)
from unfoldconv.layers.patch_embed import PatchEmbed

__all__ = [
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvNd",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "ConvTransposeNd",
    "LocallyConnected1d",
    "LocallyConnected2d",
    "LocallyConnected3d",
    "LocallyConnectedNd",
    "PatchEmbed",
    "convert",
]
