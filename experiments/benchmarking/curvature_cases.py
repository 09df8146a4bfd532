"""The benchmark's ``curvature`` group: :mod:`unfoldconv.curvature` against the materialising
routes people use today.

Per All-CNN-C layer (and a 3-d volume), one :class:`~benchmarking.cases.Case` per op, with its
series naming the op and the batch (``"A-expand b256"``), so each op gets its own summary row
(the op also starts the case's name: the tables key records by group, case and mode):

- ``A-expand``: :func:`~unfoldconv.curvature.kfac_input_factor` against ``F.unfold+einsum``
  (curvlinops' and BackPACK's route: the whole columns, then ``einsum("bik,bjk->ij")``) and
  ``unfoldNd+einsum`` (BackPACK's unfold, any d <= 3).
- ``A-reduce``: ``mode="reduce"`` against ``F.unfold+mean`` (unfold, mean over positions, then
  the same outer product).
- ``grad``: :func:`~unfoldconv.curvature.per_sample_grad` against ``Opacus unfold+einsum``
  (``einsum("noq,npq->nop")`` of the output gradient and the whole columns) and
  ``vmap(grad(F.convNd))``.
- ``norm``: :func:`~unfoldconv.curvature.per_sample_grad_norm` against
  ``materialise+norm`` (Opacus' gradients, then their norms).

The per-sample ops run at the smallest batch only (at batch 256 the gradients alone are
hundreds of MiB per layer). These ops have no backward: both of the benchmark's modes time the
same call. ``python experiments/benchmarking/curvature_cases.py`` runs the group alone, the
forward mode only, and prints one Markdown table (time, peak memory, ratio to ``unfoldconv``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from benchmarking.cases import ALLCNNC_LAYERS, OURS, Case, Factory, optional_unfoldnd, shape_label
from training.allcnnc_net import conv_layer_shapes
from unfoldconv import curvature

GROUP = "curvature"
CONVS = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def thunk_factory(make: Callable[[], Callable[[], object]]) -> Factory:
    """A factory whose thunk is the same in both modes (the ops have no backward)."""

    def factory(mode: str):
        return make()

    return factory


def layer_cases(
    name: str,
    batch: int,
    c_in: int,
    c_out: int,
    spatial: Sequence[int],
    kernel: int,
    stride: int,
    padding: int,
    device: torch.device,
    per_sample: bool,
) -> list[Case]:
    """The curvature cases of one conv layer (``d = len(spatial)``); tensors are made when a
    factory is called (building the cases allocates nothing)."""
    d = len(spatial)
    kw = {"stride": stride, "padding": padding}
    unfoldNd = optional_unfoldnd()
    out = [(size + 2 * padding - kernel) // stride + 1 for size in spatial]
    label = f"{name} b{batch} {c_in}->{c_out} {shape_label(spatial)} k{kernel} s{stride} p{padding}"

    def tensors() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(input, weight, grad_output)``, the same numbers for every implementation."""
        generator = torch.Generator(device=device).manual_seed(0)
        x = torch.randn(batch, c_in, *spatial, device=device, generator=generator)
        weight = torch.randn(c_out, c_in, *(kernel,) * d, device=device, generator=generator)
        grad_output = torch.randn(batch, c_out, *out, device=device, generator=generator)
        return x, weight, grad_output

    def columns(x):
        if d == 2:
            return F.unfold(x, kernel, padding=padding, stride=stride)
        return unfoldNd.unfoldNd(x, kernel, padding=padding, stride=stride)

    materialising = d == 2 or unfoldNd is not None
    unfold_name = "F.unfold" if d == 2 else "unfoldNd"

    def expand_ours():
        x = tensors()[0]
        return lambda: curvature.kfac_input_factor(x, kernel, **kw)

    def expand_materialised():
        x = tensors()[0]

        def run():
            cols = columns(x)  # (N, C*K, L)
            return torch.einsum("bik,bjk->ij", cols, cols) / (cols.shape[0] * cols.shape[2])

        return run

    def reduce_ours():
        x = tensors()[0]
        return lambda: curvature.kfac_input_factor(x, kernel, mode="reduce", **kw)

    def reduce_materialised():
        x = tensors()[0]

        def run():
            means = columns(x).mean(-1)  # (N, C*K)
            return means.T @ means / means.shape[0]

        return run

    cases = []
    impls = {OURS: thunk_factory(expand_ours)}
    if materialising:
        impls[f"{unfold_name}+einsum"] = thunk_factory(expand_materialised)
    cases.append(Case(GROUP, f"A-expand {label}", f"A-expand b{batch}", impls))
    impls = {OURS: thunk_factory(reduce_ours)}
    if materialising:
        impls[f"{unfold_name}+mean"] = thunk_factory(reduce_materialised)
    cases.append(Case(GROUP, f"A-reduce {label}", f"A-reduce b{batch}", impls))
    if not per_sample:
        return cases

    def opacus_grads(x, grad_output):
        cols = columns(x)  # (N, C*K, L)
        return torch.einsum("noq,npq->nop", grad_output.flatten(2), cols)  # (N, C_out, C*K)

    def grads_ours():
        x, _, grad_output = tensors()
        return lambda: curvature.per_sample_grad(x, grad_output, kernel, **kw)

    def grads_opacus():
        x, _, grad_output = tensors()
        return lambda: opacus_grads(x, grad_output)

    def grads_vmap():
        x, weight, grad_output = tensors()
        conv = CONVS[d]

        def loss(weight, x, go):
            return (conv(x[None], weight, **kw) * go[None]).sum()

        per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0, 0))
        return lambda: per_sample(weight, x, grad_output)

    impls = {OURS: thunk_factory(grads_ours)}
    if materialising:
        impls["Opacus unfold+einsum"] = thunk_factory(grads_opacus)
    impls["vmap(grad(conv))"] = thunk_factory(grads_vmap)
    cases.append(Case(GROUP, f"grad {label}", f"grad b{batch}", impls))

    def norm_ours():
        x, _, grad_output = tensors()
        return lambda: curvature.per_sample_grad_norm(x, grad_output, kernel, **kw)

    def norm_materialised():
        x, _, grad_output = tensors()
        return lambda: opacus_grads(x, grad_output).flatten(1).norm(dim=1)

    impls = {OURS: thunk_factory(norm_ours)}
    if materialising:
        impls["materialise+norm"] = thunk_factory(norm_materialised)
    route = "ghost" if ghost_route(c_in, c_out, kernel**d, math.prod(out)) else "direct"
    cases.append(Case(GROUP, f"norm {label} ({route})", f"norm b{batch}", impls))
    return cases


def ghost_route(c_in: int, c_out: int, kernel_numel: int, positions: int) -> bool:
    """Whether :func:`~unfoldconv.curvature.per_sample_grad_norm` takes the ghost route."""
    rows = c_in * kernel_numel
    return positions * (c_out + rows) < c_out * rows


def curvature_cases(
    device: torch.device,
    batches: Sequence[int],
    names: Sequence[str] = ALLCNNC_LAYERS,
    quick: bool = False,
) -> list[Case]:
    """The ``curvature`` group: the All-CNN-C layers ``names`` at each batch size (per-sample
    ops at the smallest), and a 3-d volume (``(8, 16, 16, 64, 64)``, kernel 3; smaller with
    ``quick``)."""
    shapes = [s for s in conv_layer_shapes() if s.name in names]
    cases = []
    for batch in batches:
        for s in shapes:
            cases += layer_cases(
                s.name, batch, s.in_channels, s.out_channels, (s.input_size,) * 2,
                s.kernel_size, s.stride, s.padding, device, per_sample=batch == min(batches),
            )  # fmt: skip
    volume = ((2, 4, 8, 16, 16), 4) if quick else ((8, 16, 16, 64, 64), 16)
    (batch, c_in, *spatial), c_out = volume
    cases += layer_cases("3d", batch, c_in, c_out, spatial, 3, 1, 1, device, per_sample=True)
    return cases


def main(argv: list[str] | None = None) -> None:
    """Run the group alone (forward mode only) and print one Markdown table."""
    import argparse

    from benchmarking.timing import peak_memory_mib, time_ms

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batches", type=int, nargs="+", default=[32, 256])
    parser.add_argument("--shapes", default=",".join(ALLCNNC_LAYERS))
    parser.add_argument("--series", default=None, help="keep series starting with these")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-volume", action="store_true")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-run-time", type=float, default=0.05)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cases = curvature_cases(device, args.batches, args.shapes.split(","), args.quick)
    if args.no_volume:
        cases = [case for case in cases if " 3d " not in case.name]
    if args.series:
        cases = [c for c in cases if c.series.startswith(tuple(args.series.split(",")))]
    print("| series | case | impl | ms | peak MiB | ours / impl (time) | impl / ours (memory) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for case in cases:
        measured = {}
        for impl, factory in case.impls.items():
            thunk = factory("forward")
            thunk()  # warm-up
            measured[impl] = (
                time_ms(thunk, args.min_run_time, args.threads),
                peak_memory_mib(thunk, device),
            )
        ours_ms, ours_mib = measured[OURS]
        for impl, (ms, mib) in measured.items():
            ratio = "" if impl == OURS else f"{ours_ms / ms:.2f}"
            memory = "" if impl == OURS else f"{mib / max(ours_mib, 1e-3):.1f}"
            print(
                f"| {case.series} | {case.name} | {impl} | {ms:.1f} | {mib:.1f} | {ratio} | "
                f"{memory} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
