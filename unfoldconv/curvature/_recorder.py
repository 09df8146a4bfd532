"""``FactorRecorder``: KFAC factors of every convolution and linear layer of a model, by hooks."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from unfoldconv._args import check_bool, output_padding_for
from unfoldconv.curvature._checks import accumulation_dtype, check_mode
from unfoldconv.curvature._factors import kfac_input_factor, output_factor_sum


def _is_locally_connected(module: nn.Module) -> bool:
    # imported here: the layers sit above the functional ops in the package's layout
    from unfoldconv.layers.locally_connected import LocallyConnectedNd

    return isinstance(module, LocallyConnectedNd)


def _factorable(module: nn.Module) -> bool:
    """Layers the recorder factors: torch's and our convolutions (any d, transposed), Linear."""
    return isinstance(module, (_ConvNd, nn.Linear))


class _Sums:
    """One layer's running sums: ``A`` and ``B`` summed, and what ``A`` is averaged over."""

    def __init__(self) -> None:
        self.input_factor: torch.Tensor | None = None
        self.output_factor: torch.Tensor | None = None
        self.count = 0  # positions (expand) or samples (reduce) summed into input_factor
        self.samples = 0

    def add(self, input_factor, output_factor, count: int, samples: int) -> None:
        if self.input_factor is None:
            self.input_factor, self.output_factor = input_factor, output_factor
        else:
            self.input_factor += input_factor
            self.output_factor += output_factor
        self.count += count
        self.samples += samples


class FactorRecorder:
    """Records KFAC's factors ``(A, B)`` of every convolution and ``nn.Linear`` of a model.

    Inside ``with FactorRecorder(model) as recorder:`` every forward of a recorded layer (with
    gradients on) keeps a reference to the layer's input, and a hook on its output adds, when
    the backward reaches it, ``A`` (:func:`kfac_input_factor`, summed) and ``B``
    (:func:`kfac_output_factor`, summed) to the layer's running sums: micro-batches and
    gradient accumulation add up. Each layer's own geometry and ``padding_mode`` are read at
    that moment (a transposed convolution's ``output_padding`` from its actual output, so
    ``forward(input, output_size)`` is honoured).

    Recorded: torch's ``Conv1d/2d/3d`` and ``ConvTranspose1d/2d/3d`` and every other subclass
    of torch's ``_ConvNd``, which includes ``unfoldconv.layers``' convolutions of any ``d`` and
    :class:`~unfoldconv.layers.PatchEmbed`'s ``proj``; and ``nn.Linear``, whose dims between
    the batch and the features count as positions (tokens: expand treats each as a sample,
    reduce averages / sums over them first). Locally connected layers have no shared kernel and
    no Kronecker factors: the recorder refuses them unless ``layers=`` leaves them out.

    :meth:`factors` gives ``{name: (A, B)}``: ``A`` as ``kfac_input_factor(...,
    reduction="mean")`` over every sample seen (``N * L`` positions for expand, ``N`` samples
    for reduce), ``B`` as ``kfac_output_factor(..., reduction="sum")``; groups first
    (``nn.Linear``: one group), in float32 or wider, on the layer's device. With ``bias=True``
    the ones row is appended for layers that have a bias. The factors follow the gradient of
    whatever was backpropagated: for a loss that averages over the batch, ``B`` carries
    ``1 / N²`` per sample (multiply by ``N²`` for the sum of each sample's own outer
    products). :meth:`all_reduce` sums the sums across ``torch.distributed`` ranks
    (gloo on CPU, nccl on GPU) before they are normalised, so every rank gets the factors of the
    global batch.

    Args:
        module: the model.
        mode: ``"expand"`` or ``"reduce"`` (both factors).
        bias: append the ones row to ``A`` of layers with a bias.
        layers: names (as ``module.named_modules()``) of the layers to record; ``None``: every
            convolution and linear layer.

    Example:
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
        ...                       nn.Linear(8 * 6 * 6, 10))
        >>> with FactorRecorder(model) as recorder:
        ...     for _ in range(2):  # two micro-batches
        ...         model(torch.randn(4, 3, 6, 6)).square().sum().backward()
        >>> A, B = recorder.factors()["0"]
        >>> A.shape, B.shape, recorder.num_samples
        (torch.Size([1, 28, 28]), torch.Size([1, 8, 8]), 8)
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        mode: str = "expand",
        bias: bool = True,
        layers: Iterable[str] | None = None,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        self.mode = check_mode(mode)
        self.bias = check_bool("bias", bias)
        self.module = module
        self._layers = self._select(module, layers)
        self._sums: dict[str, _Sums] = {}
        self._handles: list = []

    @staticmethod
    def _select(module: nn.Module, layers: Iterable[str] | None) -> dict[str, nn.Module]:
        named = dict(module.named_modules())
        if layers is None:
            refused = [name for name, m in named.items() if _is_locally_connected(m)]
            if refused:
                raise ValueError(
                    f"module has locally connected layers {refused}: they share no kernel and "
                    f"have no Kronecker factors; leave them out with layers= (the names of the "
                    f"layers to record)"
                )
            return {name: m for name, m in named.items() if _factorable(m)}
        if isinstance(layers, str) or not isinstance(layers, Iterable):
            raise TypeError(
                f"layers must be None or an iterable of layer names, got layers={layers!r}"
            )
        chosen = {}
        for name in layers:
            if name not in named:
                raise ValueError(
                    f"layers must name layers of module (as module.named_modules()), got "
                    f"{name!r}; the convolution and linear layers are "
                    f"{[n for n, m in named.items() if _factorable(m)]}"
                )
            if not _factorable(named[name]):
                raise ValueError(
                    f"layers must name convolution or nn.Linear layers, got {name!r}, a "
                    f"{type(named[name]).__name__} (locally connected layers have no "
                    f"Kronecker factors)"
                )
            chosen[name] = named[name]
        return chosen

    # -- hooks -----------------------------------------------------------------------------------

    def __enter__(self) -> FactorRecorder:
        for name, layer in self._layers.items():
            hook = self._forward_hook(name)
            self._handles.append(layer.register_forward_hook(hook, with_kwargs=True))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _forward_hook(self, name: str):
        def hook(layer: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> None:
            if not (torch.is_grad_enabled() and output.requires_grad):
                return
            input = args[0] if args else kwargs["input"]  # layer(x) or layer(input=x)
            input, out_shape = input.detach(), output.shape

            def backward_hook(grad_output: torch.Tensor) -> None:
                self._record(name, layer, input, out_shape, grad_output.detach())

            output.register_hook(backward_hook)

        return hook

    def _record(self, name, layer, input, out_shape, grad_output) -> None:
        with torch.no_grad():
            bias = self.bias and layer.bias is not None
            if isinstance(layer, nn.Linear):
                factors = _linear_factors(input, grad_output, self.mode, bias)
            else:
                factors = self._conv_factors(layer, input, out_shape, grad_output, bias)
        self._sums.setdefault(name, _Sums()).add(*factors)

    def _conv_factors(self, layer, input, out_shape, grad_output, bias):
        d = len(layer.kernel_size)
        batched = input.dim() == d + 2
        output_padding = 0
        if layer.transposed:  # the output_padding of this call (forward(input, output_size))
            output_padding = output_padding_for(
                input.shape[-d:], out_shape[-d:], tuple(layer.kernel_size), tuple(layer.stride),
                tuple(layer.padding), tuple(layer.dilation),
            )  # fmt: skip
        input_factor = kfac_input_factor(
            input, tuple(layer.kernel_size), tuple(layer.stride),
            layer.padding if isinstance(layer.padding, str) else tuple(layer.padding),
            tuple(layer.dilation), layer.groups, padding_mode=layer.padding_mode,
            transposed=layer.transposed, output_padding=output_padding, mode=self.mode,
            bias=bias, reduction="sum", workspace_bytes=getattr(layer, "workspace_bytes", None),
        )  # fmt: skip
        grad_output = grad_output if batched else grad_output.unsqueeze(0)
        output_factor = output_factor_sum(grad_output, layer.groups, self.mode)
        n = grad_output.shape[0]
        count = n * math.prod(grad_output.shape[2:]) if self.mode == "expand" else n
        return input_factor, output_factor, count, n

    # -- results ---------------------------------------------------------------------------------

    @property
    def num_samples(self) -> int:
        """Samples seen: the most any recorded layer's backward was reached by."""
        return max((sums.samples for sums in self._sums.values()), default=0)

    def reset(self) -> None:
        """Forget every sum (the hooks stay while inside the ``with`` block)."""
        self._sums.clear()

    def factors(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """``{layer name: (A, B)}``, normalised as the class docstring says.

        Layers whose backward was never reached are left out.
        """
        recorded = {name: s for name, s in self._sums.items() if s.count > 0}
        if not recorded:
            raise ValueError(
                "no factors recorded yet: run forward and backward of the module inside "
                "`with recorder:` before calling factors() (forwards under no_grad, or without "
                "a backward, record nothing)"
            )
        return {  # in the module's order
            name: (recorded[name].input_factor / recorded[name].count,
                   recorded[name].output_factor.clone())
            for name in self._layers
            if name in recorded
        }  # fmt: skip

    def all_reduce(self, group=None) -> None:
        """Sum every layer's sums and counts across the ranks of ``group`` (``torch.distributed``).

        Every rank must call it, with the same model; a layer that one rank never reached is
        counted as zeros there.
        """
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            raise ValueError(
                "all_reduce needs an initialised torch.distributed process group "
                "(torch.distributed.init_process_group), got none"
            )
        for name, layer in self._layers.items():
            sums = self._sums.setdefault(name, _Sums())
            device = layer.weight.device
            if sums.input_factor is None:
                shapes = self._factor_shapes(layer)
                dtype = accumulation_dtype(layer.weight.dtype)
                sums.input_factor = torch.zeros(shapes[0], dtype=dtype, device=device)
                sums.output_factor = torch.zeros(shapes[1], dtype=dtype, device=device)
            counts = torch.tensor([sums.count, sums.samples], dtype=torch.float64, device=device)
            for tensor in (sums.input_factor, sums.output_factor, counts):
                dist.all_reduce(tensor, group=group)
            sums.count, sums.samples = int(counts[0].item()), int(counts[1].item())

    def _factor_shapes(self, layer: nn.Module) -> tuple[tuple[int, ...], tuple[int, ...]]:
        bias = int(self.bias and layer.bias is not None)
        if isinstance(layer, nn.Linear):
            return (1, layer.in_features + bias, layer.in_features + bias), (
                1, layer.out_features, layer.out_features,
            )  # fmt: skip
        groups = layer.groups
        rows = layer.in_channels // groups * math.prod(layer.kernel_size) + bias
        c = layer.out_channels // groups
        return (groups, rows, rows), (groups, c, c)


def _linear_factors(input, grad_output, mode: str, bias: bool):
    """``(A sum, B sum, count, samples)`` of an ``nn.Linear``: dims between are positions."""
    dtype = accumulation_dtype(input.dtype)
    if input.dim() == 1:  # one unbatched sample
        input, grad_output = input.view(1, 1, -1), grad_output.view(1, 1, -1)
    n = input.shape[0]
    x = input.reshape(n, -1, input.shape[-1]).to(dtype)  # (N, L, in)
    g = grad_output.reshape(n, -1, grad_output.shape[-1]).to(dtype)  # (N, L, out)
    if mode == "reduce":
        x, g = x.mean(1, keepdim=True), g.sum(1, keepdim=True)  # (N, 1, .)
    x, g = x.reshape(-1, x.shape[-1]), g.reshape(-1, g.shape[-1])  # (N*L, .)
    count = x.shape[0]
    if bias:
        x = torch.cat([x, x.new_ones((count, 1))], dim=1)
    return (x.T @ x).unsqueeze(0), (g.T @ g).unsqueeze(0), count, n
