"""The benchmark's command line: choose the cases, run them (under load if asked), report."""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
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

#: --precision: the value both TF32 flags get (None: torch's own defaults are left).
PRECISIONS = {"torch": None, "tf32": True, "ieee": False}


def apply_precision(name: str) -> None:
    allow = PRECISIONS[name]
    if allow is not None:
        torch.backends.cudnn.allow_tf32 = allow
        torch.backends.cuda.matmul.allow_tf32 = allow


class DefaultsOnceFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows ``(default: X)`` unless the help text already says its default, or there is none
    to show (``None``, a flag's ``False``): one default per option, never ``(default: None)``."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if "default" in (action.help or "") or action.default in (None, False):
            return action.help or ""
        return super()._get_help_string(action)


def known_groups() -> list[str]:
    """Every case group (``--only``'s choices), read from the cases the benchmark builds: the
    smallest set of them (one All-CNN-C layer at batch 1 and the quick extra cases) has every
    group, so a group added in :mod:`benchmarking.cases` is listed without an edit here."""
    device = torch.device("cpu")
    cases = allcnnc_cases(device, [1], ALLCNNC_LAYERS[:1]) + other_cases(device, quick=True)
    cases += curvature_cases(device, [1], ALLCNNC_LAYERS[:1], quick=True)
    return sorted({case.group for case in cases})


def build_parser(description: str = "", groups: list[str] | None = None) -> argparse.ArgumentParser:
    """The benchmark's options; ``groups`` (for ``--help``) are listed in ``--only``'s help."""
    parser = argparse.ArgumentParser(
        prog="python experiments/benchmark.py",
        description=description,
        formatter_class=DefaultsOnceFormatter,
        epilog="Reports go to --out as benchmark[-quick][-load][-<backend>].{csv,md,png}.",
    )
    parser.add_argument(
        "--device", default="cpu", choices=["cpu", "cuda"],
        help="where every case runs: cpu, or cuda (the first GPU; torch's side is timed with "
        "cuDNN on and off; needs a CUDA build of torch)",
    )  # fmt: skip
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
        "--out", type=Path, default=None,
        help="report folder (default: results/benchmark/<device>)",
    )  # fmt: skip
    listed = (
        f": {', '.join(groups)}" if groups else " (python experiments/benchmark.py -h lists them)"
    )
    parser.add_argument(
        "--only", default=None, metavar="GROUP[,GROUP...]",
        help=f"comma-separated case groups to run (default: all); the groups{listed}",
    )  # fmt: skip
    parser.add_argument(
        "--match", default=None, metavar="TEXT",
        help="keep only cases whose name contains TEXT (default: every case)",
    )  # fmt: skip
    parser.add_argument(
        "--shapes", default=",".join(ALLCNNC_LAYERS), help="comma-separated All-CNN-C layers"
    )
    parser.add_argument(
        "--batches", type=int, nargs="+", default=None,
        help="All-CNN-C batch sizes (default: 32 256; 32 with --quick)",
    )  # fmt: skip
    parser.add_argument(
        "--precision", default="torch", choices=list(PRECISIONS),
        help="float32 policy on CUDA for torch's convs and matmuls and ours alike: tf32 or ieee "
        "sets torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32 both "
        "(like with like); torch leaves torch's own flags (cudnn True, matmul False)",
    )  # fmt: skip
    parser.add_argument("--threads", type=int, default=2, help="CPU threads")
    parser.add_argument("--no-memory", action="store_true", help="skip peak-memory runs")
    parser.add_argument(
        "--min-run-time", type=float, default=None,
        help="seconds of timing per implementation and mode (default: 0.3; 0.05 with --quick)",
    )  # fmt: skip
    return parser


def check_only(parser: argparse.ArgumentParser, only: str | None, groups: list[str]) -> None:
    """``--only``'s groups must be among ``groups``; else the parser's error, listing them."""
    if only is None:
        return
    requested = [group for group in only.split(",") if group]
    unknown = [group for group in requested if group not in groups]
    if unknown or not requested:
        parser.error(
            f"--only: unknown group(s) {unknown or [only]}; the groups are {', '.join(groups)}"
        )


def parse_args(argv: list[str] | None = None, description: str = "") -> argparse.Namespace:
    """The benchmark's arguments, checked (``--only`` against :func:`known_groups`)."""
    wants_help = any(arg in ("-h", "--help") for arg in (sys.argv[1:] if argv is None else argv))
    groups = known_groups() if wants_help else None
    parser = build_parser(description, groups)
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
    if args.only is not None:
        check_only(parser, args.only, known_groups())
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
    apply_precision(args.precision)
    if optional_unfoldnd() is None:
        print("note: unfoldNd is not installed; its comparisons are skipped")
    cases = allcnnc_cases(device, args.batches, args.shapes.split(","))
    cases += other_cases(device, args.quick)
    cases += curvature_cases(device, args.batches, args.shapes.split(","), args.quick)
    if args.only:
        cases = [case for case in cases if case.group in args.only.split(",")]
    if args.match:
        cases = [case for case in cases if args.match in case.name]
    if not cases:  # nothing to run: say so instead of writing empty reports
        raise SystemExit(
            f"python experiments/benchmark.py: error: no case matches --only={args.only} "
            f"--match={args.match} --shapes={args.shapes}"
        )
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
    stem += f"-{args.precision}" * (args.precision != "torch")
    header = "# unfoldconv benchmark\n\n" + ", ".join(f"{k}: {v}" for k, v in meta.items())
    header += (  # the float32 policy of every CUDA conv and matmul here (the file name has it)
        f"\n\nprecision: {args.precision} (torch.backends.cudnn.allow_tf32="
        f"{torch.backends.cudnn.allow_tf32}, torch.backends.cuda.matmul.allow_tf32="
        f"{torch.backends.cuda.matmul.allow_tf32})"
    )
    paths, records, overview = write_tables(rows, out_dir, stem, header, meta)
    plot = plot_ratios(records, out_dir / f"{stem}.png")
    if plot is not None:
        paths["plot"] = plot
    print(header + "\n\n" + markdown_table(overview))
    for kind, path in paths.items():
        print(f"wrote {kind}: {path}")
    return paths
