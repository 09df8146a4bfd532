"""What the benchmark measures: one :class:`Case` per (operation, shape), each with the
implementations that compute the same thing.

Engine cases (``unfold``, ``fold``, ``unfold_transpose``): ``unfoldconv``; ``torch``
(``F.unfold`` / ``F.fold``, 2-d only); ``unfoldNd`` (d <= 3, when installed); ``copy``: allocate
and copy a tensor so that the bytes read + written equal the op's (the memory-bound floor).

Layer cases: ``unfoldconv``'s layer; ``torch``, its ``torch.nn`` twin with the same parameters
(cuDNN on CUDA); ``torch no-cuDNN``, the same under ``torch.backends.cudnn.flags(enabled=False)``
(CUDA only); ``F.unfold+matmul`` (``F.unfold+einsum`` for LocallyConnected2d), the usual
hand-written layer; ``route=unfold`` for ConvTranspose2d (when the engine has that route).

Shapes: the All-CNN-C conv layers as :func:`training.allcnnc_net.conv_layer_shapes` traces them,
and 3-d / 4-d inputs. Every implementation is timed forward (under ``no_grad``) and
forward+backward (gradients reach the input and every parameter).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import unfoldconv
from training.allcnnc_net import conv_layer_shapes
from unfoldconv import layers

MODES = ("forward", "forward+backward")
OURS = "unfoldconv"
# The 7 All-CNN-C shapes: conv5 and conv9 are left out, their inputs repeat conv4's 3x3 at 16x16
# (with 192 instead of 96 channels in) and conv8's 192x6x6.
ALLCNNC_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv6", "conv7", "conv8")

Thunk = Callable[[], object]
Factory = Callable[[str], Thunk]  # mode -> a zero-argument callable that runs it once


@dataclass
class Case:
    """One operation on one shape, with its competing implementations.

    Args:
        group: what is measured, e.g. ``"unfold"`` or ``"Conv2d"``.
        name: the shape, readable, e.g. ``"conv2 b32 96x32x32 k3 s1 p1"``.
        series: the set of cases it is summarised with, e.g. ``"b32"`` or ``"3d"``.
        impls: implementation name -> :data:`Factory`.
        bytes_moved: bytes the forward op reads + writes at the least (engine ops; ``None`` for
            layers); forward+backward moves twice as many.
        threads: CPU threads for this case (``None``: the run's ``--threads``).
    """

    group: str
    name: str
    series: str
    impls: dict[str, Factory]
    bytes_moved: int | None = None
    threads: int | None = None


def optional_unfoldnd():
    """The ``unfoldNd`` module, or ``None`` when it is not installed (its comparisons are then
    skipped)."""
    try:
        import unfoldNd
    except ImportError:
        return None
    return unfoldNd


def op_factory(
    op: Callable[[torch.Tensor], torch.Tensor],
    make_input: Callable[[], torch.Tensor],
    parameters: Sequence[torch.Tensor] = (),
    context: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
    grad_forward: bool = False,
) -> Factory:
    """Thunks for ``op``: forward under ``no_grad`` (with ``grad_forward``: with grad on, so
    autograd records the parameters, as in training), or forward + backward of a fixed output
    gradient into the input and ``parameters`` (their gradients cleared each call); each call
    runs inside ``context()``."""
    grad_mode = torch.enable_grad if grad_forward else torch.no_grad

    def factory(mode: str) -> Thunk:
        if mode == "forward":
            x = make_input()

            def forward():
                with context(), grad_mode():
                    return op(x)

            return forward
        x = make_input().requires_grad_(True)
        with context():
            grad = torch.randn_like(op(x))

        def forward_backward():
            x.grad = None
            for parameter in parameters:
                parameter.grad = None
            with context():
                op(x).backward(grad)

        return forward_backward

    return factory


def module_factory(module: nn.Module, make_input: Callable[[], torch.Tensor], **kw) -> Factory:
    """:func:`op_factory` of ``module``, clearing its parameters' gradients."""
    return op_factory(module, make_input, list(module.parameters()), **kw)


def copy_factory(bytes_moved: int, device: torch.device, dtype: torch.dtype) -> Factory:
    """Allocate and copy ``bytes_moved / 2`` bytes (so ``bytes_moved`` are read + written); twice
    for forward+backward."""
    numel = max(1, bytes_moved // (2 * dtype.itemsize))
    source = torch.randn(numel, device=device, dtype=dtype)

    def factory(mode: str) -> Thunk:
        copies = 1 if mode == "forward" else 2

        def copy():
            for _ in range(copies):
                torch.empty_like(source).copy_(source)

        return copy

    return factory


def shape_label(shape: Sequence[int]) -> str:
    return "x".join(map(str, shape))


def window_cases(
    name: str,
    series: str,
    shape: tuple[int, ...],
    kernel: int,
    stride: int,
    padding: int,
    device: torch.device,
    transpose: bool = True,
    dtype: torch.dtype = torch.float32,
) -> list[Case]:
    """``unfold``, ``fold`` and (``transpose``) ``unfold_transpose`` of ``(N, C, *spatial)``."""
    d = len(shape) - 2
    spatial = shape[2:]
    kw = {"kernel_size": kernel, "stride": stride, "padding": padding}
    fold_kw = {**kw, "kernel_size": (kernel,) * d}  # a d-tuple: fold's d is not 2 here
    unfoldNd = optional_unfoldnd() if d <= 3 else None
    itemsize = dtype.itemsize

    def make_x():
        return torch.randn(shape, device=device, dtype=dtype)

    columns_shape = unfoldconv.unfold(make_x(), **kw).shape

    def make_columns():
        return torch.randn(columns_shape, device=device, dtype=dtype)

    label = f"{name} {shape_label(shape)} k{kernel} s{stride} p{padding}"
    unfold_bytes = (math.prod(shape) + math.prod(columns_shape)) * itemsize  # read x, write cols
    unfold_impls = {OURS: op_factory(lambda x: unfoldconv.unfold(x, **kw), make_x)}
    fold_impls = {OURS: op_factory(lambda c: unfoldconv.fold(c, spatial, **fold_kw), make_columns)}
    if d == 2:
        unfold_impls["torch"] = op_factory(lambda x: F.unfold(x, **kw), make_x)
        fold_impls["torch"] = op_factory(lambda c: F.fold(c, spatial, **kw), make_columns)
    if unfoldNd is not None:
        unfold_impls["unfoldNd"] = op_factory(lambda x: unfoldNd.unfoldNd(x, **kw), make_x)
        fold_impls["unfoldNd"] = op_factory(
            lambda c: unfoldNd.foldNd(c, tuple(spatial), **kw), make_columns
        )
    unfold_impls["copy"] = fold_impls["copy"] = copy_factory(unfold_bytes, device, dtype)
    cases = [
        Case("unfold", label, series, unfold_impls, unfold_bytes),
        Case("fold", label, series, fold_impls, unfold_bytes),  # read cols, write x
    ]
    if transpose:
        t_numel = unfoldconv.unfold_transpose(make_x(), **kw).numel()
        t_bytes = (math.prod(shape) + t_numel) * itemsize
        t_impls = {OURS: op_factory(lambda x: unfoldconv.unfold_transpose(x, **kw), make_x)}
        if unfoldNd is not None:
            t_impls["unfoldNd"] = op_factory(lambda x: unfoldNd.unfold_transposeNd(x, **kw), make_x)
        t_impls["copy"] = copy_factory(t_bytes, device, dtype)
        cases.append(Case("unfold_transpose", label, series, t_impls, t_bytes))
    return cases


def native_comparators(
    native: nn.Module, make_input: Callable[[], torch.Tensor], device: torch.device
) -> dict[str, Factory]:
    """``torch`` (cuDNN where there is one) and, on CUDA, ``torch no-cuDNN``."""
    impls = {"torch": module_factory(native, make_input)}
    if device.type == "cuda":
        impls["torch no-cuDNN"] = module_factory(
            native, make_input, context=lambda: torch.backends.cudnn.flags(enabled=False)
        )
    return impls


def conv_case(name, series, batch, c_in, c_out, spatial, kernel, stride, padding, device) -> Case:
    """A ``Conv2d`` / ``Conv3d`` (by ``len(spatial)``) layer against torch's."""
    d = len(spatial)
    torch.manual_seed(0)
    native_class, our_class = (nn.Conv2d, layers.Conv2d) if d == 2 else (nn.Conv3d, layers.Conv3d)
    native = native_class(c_in, c_out, kernel, stride, padding, device=device)
    ours = our_class.from_native(native)

    def make_input():
        return torch.randn(batch, c_in, *spatial, device=device)

    impls = {OURS: module_factory(ours, make_input)}
    impls.update(native_comparators(native, make_input, device))
    if d == 2:
        out_size = [(s + 2 * padding - kernel) // stride + 1 for s in spatial]

        def unfold_matmul(x):
            columns = F.unfold(x, kernel, padding=padding, stride=stride)  # (N, C*K, L)
            output = native.weight.view(c_out, -1) @ columns + native.bias.view(1, -1, 1)
            return output.view(x.shape[0], c_out, *out_size)  # (N, C_out, L) -> NCHW

        impls["F.unfold+matmul"] = op_factory(unfold_matmul, make_input, [*native.parameters()])
    label = f"{name} b{batch} {c_in}->{c_out} {shape_label(spatial)} k{kernel} s{stride} p{padding}"
    return Case(f"Conv{d}d", label, series, impls)


def small_conv_case(device: torch.device) -> Case:
    """The call-overhead case: ``Conv2d(3, 8, 3)`` on ``(2, 3, 8, 8)``, one thread, the forward
    with grad on (the parameters require grad, as in training)."""
    torch.manual_seed(0)
    native = nn.Conv2d(3, 8, 3, device=device)
    ours = layers.Conv2d.from_native(native)

    def make_input():
        return torch.randn(2, 3, 8, 8, device=device)

    impls = {
        OURS: module_factory(ours, make_input, grad_forward=True),
        "torch": module_factory(native, make_input, grad_forward=True),
    }
    return Case("small-conv", "b2 3->8 8x8 k3 (1 thread, grad on)", "b2", impls, threads=1)


def locally_connected_case(name, series, batch, c_in, c_out, size, kernel, device) -> Case:
    torch.manual_seed(0)
    ours = layers.LocallyConnected2d(c_in, c_out, size, kernel, device=device)
    out_size = size - kernel + 1
    num_blocks = out_size * out_size
    # the snippet's own layout: weight (C_out, C*K, L), bias (C_out, L)
    weight = torch.randn(c_out, c_in * kernel * kernel, num_blocks, device=device)
    bias = torch.randn(c_out, num_blocks, device=device)
    weight.requires_grad_(True)
    bias.requires_grad_(True)

    def unfold_einsum(x):
        columns = F.unfold(x, kernel)  # (N, C*K, L)
        output = torch.einsum("nkl,okl->nol", columns, weight) + bias
        return output.view(x.shape[0], c_out, out_size, out_size)

    def make_input():
        return torch.randn(batch, c_in, size, size, device=device)

    impls = {
        OURS: module_factory(ours, make_input),
        "F.unfold+einsum": op_factory(unfold_einsum, make_input, [weight, bias]),
    }
    label = f"{name} b{batch} {c_in}->{c_out} {size}x{size} k{kernel}"
    return Case("LocallyConnected2d", label, series, impls)


def conv_transpose2d_case(name, series, batch, c_in, c_out, size, kernel, stride, padding, device):
    torch.manual_seed(0)
    native = nn.ConvTranspose2d(c_in, c_out, kernel, stride, padding, device=device)
    ours = layers.ConvTranspose2d.from_native(native)

    def make_input():
        return torch.randn(batch, c_in, size, size, device=device)

    impls = {OURS: module_factory(ours, make_input)}
    impls.update(native_comparators(native, make_input, device))
    if "route" in inspect.signature(unfoldconv.conv_transpose).parameters:

        def unfold_route(x):
            return unfoldconv.conv_transpose(
                x, native.weight, native.bias, stride, padding, route="unfold"
            )

        impls["route=unfold"] = op_factory(unfold_route, make_input, [*native.parameters()])
    label = f"{name} b{batch} {c_in}->{c_out} {size}x{size} k{kernel} s{stride} p{padding}"
    return Case("ConvTranspose2d", label, series, impls)


def patch_embed_case(name, series, batch, spatial, patch, embed_dim, device) -> Case:
    torch.manual_seed(0)
    d = len(spatial)
    ours = layers.PatchEmbed(patch, 3, embed_dim, device=device)
    native = (nn.Conv2d if d == 2 else nn.Conv3d)(3, embed_dim, patch, stride=patch, device=device)
    native.load_state_dict(ours.proj.state_dict())

    def conv_tokens(x):
        return native(x).flatten(2).transpose(1, 2)  # (N, E, *grid) -> (N, L, E)

    def make_input():
        return torch.randn(batch, 3, *spatial, device=device)

    impls = {
        OURS: module_factory(ours, make_input),
        f"torch Conv{d}d": op_factory(conv_tokens, make_input, [*native.parameters()]),
    }
    label = f"{name} b{batch} 3x{shape_label(spatial)} p{shape_label(patch)}"
    return Case("PatchEmbed", label, series, impls)


def allcnnc_cases(
    device: torch.device, batches: Sequence[int], names: Sequence[str] = ALLCNNC_LAYERS
) -> list[Case]:
    """Engine and Conv2d cases on the All-CNN-C layers ``names`` at each batch size;
    ``unfold_transpose`` at the smallest batch only (at batch 256 unfoldNd's one-hot transposed
    convolution takes minutes per call on 2 CPU cores)."""
    shapes = [s for s in conv_layer_shapes() if s.name in names]
    cases = []
    for batch in batches:
        series = f"b{batch}"
        for s in shapes:
            spatial = (s.input_size, s.input_size)
            shape = (batch, s.in_channels, *spatial)
            window = (s.kernel_size, s.stride, s.padding)
            transpose = batch == min(batches)
            cases += window_cases(f"{s.name} b{batch}", series, shape, *window, device, transpose)
            channels = (s.in_channels, s.out_channels)
            cases.append(conv_case(s.name, series, batch, *channels, spatial, *window, device))
    return cases


def other_cases(device: torch.device, quick: bool) -> list[Case]:
    """3-d and 4-d engine cases, a Conv3d, and the other layers (smaller with ``quick``)."""
    full_3d = [  # the 3-d targets, in the quick run too (one case each)
        *window_cases("3d", "3d", (8, 16, 16, 32, 32), 3, 1, 1, device, transpose=not quick),
        *window_cases("4d", "4d", (2, 8, 12, 12, 12, 12), 3, 1, 1, device, transpose=not quick),
        conv_case("3d", "3d", 8, 16, 32, (16, 32, 32), 3, 1, 1, device),
        small_conv_case(device),
    ]
    if quick:
        return [
            *full_3d,
            locally_connected_case("conv7", "b2", 2, 192, 192, 8, 3, device),
            conv_transpose2d_case("up2x", "b2", 2, 32, 16, 8, 4, 2, 1, device),
            patch_embed_case("vit", "b2", 2, (32, 32), (16, 16), 16, device),
            patch_embed_case("tubelet", "b1", 1, (4, 32, 32), (2, 16, 16), 16, device),
        ]
    return [
        *full_3d,
        locally_connected_case("conv7", "b32", 32, 192, 192, 8, 3, device),
        conv_transpose2d_case("up2x", "b32", 32, 192, 96, 8, 4, 2, 1, device),
        conv_transpose2d_case("same", "b32", 32, 96, 96, 16, 3, 1, 1, device),
        patch_embed_case("ViT-B/16", "b32", 32, (224, 224), (16, 16), 768, device),
        patch_embed_case("tubelets", "b8", 8, (16, 224, 224), (2, 16, 16), 768, device),
    ]
