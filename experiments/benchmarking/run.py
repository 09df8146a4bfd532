"""The benchmark's command line: choose the cases, run them (under load if asked), report."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
from pathlib import Path

import torch

import unfoldconv
from benchmarking.cases import ALLCNNC_LAYERS, allcnnc_cases, optional_unfoldnd, other_cases
from benchmarking.curvature_cases import curvature_cases
from benchmarking.load import busy_process
from benchmarking.plots import plot_ratios
from benchmarking.tables import write_tables
from benchmarking.timing import run_case
from training.report import markdown_table


def parse_args(argv: list[str] | None = None, description: str = "") -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python experiments/benchmark.py",
        description=description,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--quick", action="store_true",
        help="batch 32 only (unless --batches), short timing, small extra cases",
    )  # fmt: skip
    parser.add_argument(
        "--load", action="store_true", help="run with one busy process beside the benchmark"
    )
    parser.add_argument(
        "--backend", default="auto", choices=["auto", "torch", "triton"],
        help="unfoldconv.backend(...) for every call (triton on CPU needs TRITON_INTERPRET=1)",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=None, help="report folder (default results/benchmark/<device>)"
    )
    parser.add_argument(
        "--only", default=None, help="comma-separated groups, e.g. unfold,fold,Conv2d"
    )
    parser.add_argument("--match", default=None, help="keep only cases whose name contains this")
    parser.add_argument(
        "--shapes", default=",".join(ALLCNNC_LAYERS), help="All-CNN-C layers to include"
    )
    parser.add_argument(
        "--batches", type=int, nargs="+", default=None,
        help="All-CNN-C batch sizes (default 32 256; 32 with --quick)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory runs")
    parser.add_argument(
        "--min-run-time", type=float, default=None,
        help="seconds of timing per implementation and mode (default 0.3; 0.05 with --quick)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.batches = args.batches or ([32] if args.quick else [32, 256])
    if any(batch < 1 for batch in args.batches):
        parser.error(f"--batches: expected positive ints, got {args.batches}")
    if args.threads < 1:
        parser.error(f"--threads: expected a positive int, got {args.threads}")
    unknown = set(args.shapes.split(",")) - set(ALLCNNC_LAYERS)
    if unknown:
        parser.error(f"--shapes: expected names from {ALLCNNC_LAYERS}, got {sorted(unknown)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available to this torch")
    interpreting = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    if args.backend == "triton" and args.device == "cpu" and not interpreting:
        parser.error("--backend triton on CPU needs TRITON_INTERPRET=1 (use auto or torch)")
    return args


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def run_metadata(args: argparse.Namespace, device: torch.device) -> dict:
    """What the numbers depend on; written into every CSV row and the Markdown header."""
    unfoldNd = optional_unfoldnd()
    return {
        "device": args.device,
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": args.threads,
        "backend": args.backend,
        "load": "1 busy process" if args.load else "quiet",
        "quick": args.quick,
        "unfoldNd": getattr(unfoldNd, "__version__", "installed") if unfoldNd else "absent",
    }


def progress(items: list, enabled: bool = True):
    """``tqdm`` over ``items`` when it is installed (it comes with Lightning), else the items."""
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, unit="case", disable=not enabled)


def main(argv: list[str] | None = None, description: str = "") -> dict[str, Path]:
    """Run the benchmark on ``argv``; return the written paths (``csv``, ``markdown``, ``plot``)."""
    args = parse_args(argv, description)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if optional_unfoldnd() is None:
        print("note: unfoldNd is not installed; its comparisons are skipped")
    cases = allcnnc_cases(device, args.batches, args.shapes.split(","))
    cases += other_cases(device, args.quick)
    cases += curvature_cases(device, args.batches, args.shapes.split(","), args.quick)
    if args.only:
        cases = [case for case in cases if case.group in args.only.split(",")]
    if args.match:
        cases = [case for case in cases if args.match in case.name]
    meta = run_metadata(args, device)
    min_run_time = args.min_run_time or (0.05 if args.quick else 0.3)
    load = busy_process() if args.load else contextlib.nullcontext()
    rows = []
    with load, unfoldconv.backend(args.backend):
        bar = progress(cases)
        for case in bar:
            if hasattr(bar, "set_description"):
                bar.set_description(f"{case.group} {case.name}")
            rows += run_case(case, device, min_run_time, args.threads, memory=not args.no_memory)

    out_dir = args.out or Path("results") / "benchmark" / args.device
    stem = "benchmark" + "-quick" * args.quick + "-load" * args.load
    stem += f"-{args.backend}" * (args.backend != "auto")
    header = "# unfoldconv benchmark\n\n" + ", ".join(f"{k}: {v}" for k, v in meta.items())
    paths, records, overview = write_tables(rows, out_dir, stem, header, meta)
    plot = plot_ratios(records, out_dir / f"{stem}.png")
    if plot is not None:
        paths["plot"] = plot
    print(header + "\n\n" + markdown_table(overview))
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return paths
