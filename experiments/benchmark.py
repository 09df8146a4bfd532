"""Benchmark every engine op and layer against torch, ``unfoldNd`` and the copy floor.

Run::

    python experiments/benchmark.py                 # CPU, full (several minutes)
    python experiments/benchmark.py --device cuda   # on a GPU
    python experiments/benchmark.py --quick         # smoke run: tiny shapes, seconds
    python experiments/benchmark.py --batches 32 --only unfold,fold,Conv2d

Writes ``benchmark.csv`` (one row per case, mode, implementation), ``benchmark.md`` (ratios;
< 1 means ours is faster) and ``benchmark.png`` to ``--out`` (default
``results/benchmark/<device>``). How time and memory are measured: see
``experiments/benchmark_core.py``.

Engine cases: the 7 All-CNN-C conv input shapes (batch 32 and 256) and 3-d / 4-d inputs.
Implementations: ``unfoldconv``; ``torch`` (``F.unfold`` / ``F.fold``, 2-d only); ``unfoldNd``
(d <= 3); ``floor`` = allocate the output and copy that many elements (forward), and the same
again for the gradient (forward+backward).
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make `experiments` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import unfoldconv
from experiments.benchmark_core import Case, Factory, run_case, write_reports
from experiments.benchmark_layers import layer_cases

try:
    import unfoldNd
except ImportError:  # the comparison is optional
    unfoldNd = None

# (name, in_channels, spatial size, kernel, stride, padding) of the All-CNN-C conv inputs
ALLCNNC_SHAPES = [
    ("conv1", 3, 32, 3, 1, 1),
    ("conv2", 96, 32, 3, 1, 1),
    ("conv3", 96, 32, 3, 2, 1),
    ("conv4", 96, 16, 3, 1, 1),
    ("conv6", 192, 16, 3, 2, 1),
    ("conv7", 192, 8, 3, 1, 0),
    ("conv8", 192, 6, 1, 1, 0),
]


def op_factory(
    op: Callable[[torch.Tensor], torch.Tensor], make_input: Callable[[], torch.Tensor]
) -> Factory:
    """Thunks for ``op``: forward alone, or forward and backward with a fixed output gradient."""

    def factory(mode: str):
        if mode == "forward":
            x = make_input()
            return lambda: op(x)
        x = make_input().requires_grad_(True)
        grad = torch.randn_like(op(x))

        def forward_backward():
            x.grad = None
            op(x).backward(grad)

        return forward_backward

    return factory


def floor_factory(numel: int, device: torch.device, dtype: torch.dtype) -> Factory:
    """Allocate an output of ``numel`` elements and copy into it (twice with backward)."""
    source = torch.randn(numel, device=device, dtype=dtype)

    def factory(mode: str):
        copies = 1 if mode == "forward" else 2

        def floor():
            for _ in range(copies):
                torch.empty_like(source).copy_(source)

        return floor

    return factory


def window_cases(
    name: str,
    shape: tuple[int, ...],
    kernel: int,
    stride: int,
    padding: int,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    transpose: bool = True,
) -> list[Case]:
    """unfold and fold cases for one input shape ``(N, C, *spatial)``."""
    d = len(shape) - 2
    spatial = shape[2:]
    kw = {"kernel_size": kernel, "stride": stride, "padding": padding}

    def make_x():
        return torch.randn(shape, device=device, dtype=dtype)

    columns_shape = unfoldconv.unfold(make_x(), **kw).shape

    def make_columns():
        return torch.randn(columns_shape, device=device, dtype=dtype)

    numel = columns_shape.numel()
    label = f"{name} {'x'.join(map(str, shape))} k{kernel} s{stride} p{padding}"

    unfold_impls = {"unfoldconv": op_factory(lambda x: unfoldconv.unfold(x, **kw), make_x)}
    fold_impls = {
        "unfoldconv": op_factory(
            lambda c: unfoldconv.fold(c, spatial, **{**kw, "kernel_size": (kernel,) * d}),
            make_columns,
        )
    }
    if d == 2:
        unfold_impls["torch"] = op_factory(lambda x: F.unfold(x, **kw), make_x)
        fold_impls["torch"] = op_factory(lambda c: F.fold(c, spatial, **kw), make_columns)
    if unfoldNd is not None and d <= 3:
        unfold_impls["unfoldNd"] = op_factory(lambda x: unfoldNd.unfoldNd(x, **kw), make_x)
        fold_impls["unfoldNd"] = op_factory(
            lambda c: unfoldNd.foldNd(c, tuple(spatial), **kw), make_columns
        )
    unfold_impls["floor"] = floor_factory(numel, device, dtype)
    fold_impls["floor"] = floor_factory(numel, device, dtype)

    transpose_kw = {"kernel_size": kernel, "stride": stride, "padding": padding}
    transpose_impls = {
        "unfoldconv": op_factory(lambda x: unfoldconv.unfold_transpose(x, **transpose_kw), make_x)
    }
    if unfoldNd is not None and d <= 3:
        transpose_impls["unfoldNd"] = op_factory(
            lambda x: unfoldNd.unfold_transposeNd(x, **transpose_kw), make_x
        )
    transpose_numel = unfoldconv.unfold_transpose(make_x(), **transpose_kw).numel()
    transpose_impls["floor"] = floor_factory(transpose_numel, device, dtype)
    cases = [
        Case("unfold", label, "unfoldconv", unfold_impls),
        Case("fold", label, "unfoldconv", fold_impls),
    ]
    if transpose:
        cases.append(Case("unfold_transpose", label, "unfoldconv", transpose_impls))
    return cases


def engine_cases(device: torch.device, quick: bool, batches: tuple[int, ...]) -> list[Case]:
    """The engine ops on the All-CNN-C shapes and on 3-d / 4-d inputs.

    ``unfold_transpose`` runs at the smallest batch only: at batch 256 unfoldNd's one-hot
    transposed convolution takes minutes per call on 2 cores.
    """
    cases = []
    batches = (2,) if quick else batches
    shapes = ALLCNNC_SHAPES[-2:] if quick else ALLCNNC_SHAPES
    for batch in batches:
        for name, channels, size, kernel, stride, padding in shapes:
            cases += window_cases(
                f"{name} b{batch}",
                (batch, channels, size, size),
                kernel,
                stride,
                padding,
                device,
                transpose=batch == min(batches),
            )
    if quick:
        cases += window_cases("3d", (1, 2, 6, 6, 6), 3, 1, 1, device)
        cases += window_cases("4d", (1, 2, 4, 4, 4, 4), 3, 1, 1, device)
    else:
        cases += window_cases("3d", (8, 16, 16, 32, 32), 3, 1, 1, device)
        cases += window_cases("4d", (2, 8, 12, 12, 12, 12), 3, 1, 1, device)
    return cases


def all_cases(
    device: torch.device, quick: bool, only: str | None, batches: tuple[int, ...] = (32, 256)
) -> list[Case]:
    cases = engine_cases(device, quick, batches)
    cases += layer_cases(device, quick, batches)
    if only:
        cases = [case for case in cases if case.group in only.split(",")]
    return cases


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, short timing")
    parser.add_argument("--out", type=Path, default=None, help="report folder")
    parser.add_argument("--only", default=None, help="comma-separated groups, e.g. unfold,fold")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument(
        "--batches", type=int, nargs="+", default=[32, 256], help="All-CNN-C batch sizes"
    )
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory runs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Path]:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    if args.threads < 1:
        raise SystemExit(f"--threads must be positive, got {args.threads}")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out_dir = args.out or Path("results") / "benchmark" / args.device
    min_run_time = 0.01 if args.quick else 0.3
    rows = []
    if any(batch < 1 for batch in args.batches):
        raise SystemExit(f"--batches must be positive, got {args.batches}")
    cases = all_cases(device, args.quick, args.only, tuple(args.batches))
    for index, case in enumerate(cases, 1):
        print(f"[{index}/{len(cases)}] {case.group}: {case.name}", flush=True)
        rows += run_case(case, device, min_run_time, args.threads, memory=not args.no_memory)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    header = (
        f"# unfoldconv benchmark\n\ndevice: {args.device} ({name or platform.machine()}), "
        f"threads: {args.threads}, torch {torch.__version__}, quick: {args.quick}"
    )
    paths = write_reports(rows, cases, out_dir, header)
    print(paths["markdown"].read_text())
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return paths


if __name__ == "__main__":
    main()
