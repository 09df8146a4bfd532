"""Mutation check: inject known bugs into a copy of the package, run the tests that should
catch each, and count the survivors.

Each mutant replaces one exact snippet of one source file (it must occur exactly once there, so a
mutant whose code has moved is reported ``stale`` instead of silently testing nothing). The
copy holds ``unfoldconv/``, ``tests/``, ``pyproject.toml`` and ``README.md``; the tests run
there with ``-x`` (a killed mutant stops at its first failure) and the default markers (no
``slow``).

    python scripts/mutate.py                  # every mutant, its relevant test files
    python scripts/mutate.py --table-only     # only tests/test_routes.py against each
    python scripts/mutate.py --without-table  # what the rest of the suite catches
    python scripts/mutate.py -k flip -k clip  # the mutants whose id contains a word
    python scripts/mutate.py --list

Exit status 1 when a mutant survives (or is stale), 0 when every mutant is killed. Not part of
the default test suite: a full run takes ~10-20 minutes on 2 busy cores.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COPIED = ("unfoldconv", "tests", "pyproject.toml", "README.md")
TABLE = ("tests/test_routes.py",)
ENGINE = (*TABLE, "tests/test_unfold.py", "tests/test_fold.py", "tests/test_unfold_transpose.py")
CONV = (*TABLE, "tests/test_conv.py", "tests/test_conv_transpose.py")
CHUNKED = (*CONV, "tests/test_locally_connected.py")
CPU_FOLD = (*TABLE, "tests/test_cpu_fold.py")
TRITON = (*TABLE, "tests/test_kernels_triton.py")


@dataclass(frozen=True)
class Mutant:
    id: str
    path: str  # relative to the repository root
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = [
    # the torch route of the engine (unfoldconv/_engine.py)
    Mutant(
        "scatter-clip-first-off-by-one",
        "unfoldconv/_engine.py",
        "first = max(0, (-shift + s - 1) // s)",
        "first = max(0, (-shift + s) // s)",
        ENGINE,
    ),
    Mutant(
        "scatter-clip-last-off-by-one",
        "unfoldconv/_engine.py",
        "last = min(n_out - 1, (size - 1 - shift) // s)",
        "last = min(n_out - 1, (size - 2 - shift) // s)",
        ENGINE,
    ),
    Mutant(
        "scatter-kernel-flip-ignored",
        "unfoldconv/_engine.py",
        "shift = (k - 1 - k_idx if geometry.flip else k_idx) * dil - lo",
        "shift = k_idx * dil - lo",
        ENGINE,
    ),
    Mutant(
        "gather-kernel-flip-ignored",
        "unfoldconv/_engine.py",
        "    if not geometry.flip:\n        columns.copy_(view)",
        "    if True:\n        columns.copy_(view)",
        ENGINE,
    ),
    Mutant(
        "gather-first-dim-stride-everywhere",
        "unfoldconv/_engine.py",
        "view = view.unfold(2 + axis, dil * (k - 1) + 1, s)",
        "view = view.unfold(2 + axis, dil * (k - 1) + 1, geometry.stride[0])",
        ENGINE,
    ),
    Mutant(
        "gather-padding-after-as-before",
        "unfoldconv/_engine.py",
        "for size, (lo, _) in zip(spatial, geometry.padding)",
        "for size, (_, lo) in zip(spatial, geometry.padding)",
        ENGINE,
    ),
    # the chunked engines (unfoldconv/_chunked.py)
    Mutant(
        "chunk-boundary-off-by-one",
        "unfoldconv/_chunked.py",
        "yield start, min(batch, start + chunk)",
        "yield start, min(batch, start + chunk - 1)",
        CHUNKED,
    ),
    Mutant(
        "chunked-conv-groups-interleaved",
        "unfoldconv/_chunked.py",
        "    kernels = weight.reshape(groups, c_out // groups, -1)  # (g, C_out/g, C/g*K)\n"
        "    output = input.new_empty((n, c_out, num_blocks))",
        "    kernels = weight.reshape(c_out // groups, groups, -1).transpose(0, 1)\n"
        "    output = input.new_empty((n, c_out, num_blocks))",
        CHUNKED,
    ),
    Mutant(
        "chunked-conv-backward-weight-grad-of-last-chunk-only",
        "unfoldconv/_chunked.py",
        "                grad_weight.baddbmm_(\n                    go_rows,",
        "                grad_weight.zero_().baddbmm_(\n                    go_rows,",
        CHUNKED,
    ),
    Mutant(
        "locally-connected-positions-and-groups-swapped",
        "unfoldconv/_chunked.py",
        "result.view(length, groups, size, c_out // groups).permute(2, 1, 3, 0)",
        "result.view(groups, length, size, c_out // groups).permute(2, 0, 3, 1)",
        CHUNKED,
    ),
    Mutant(
        "slab-reads-one-input-row-short",
        "unfoldconv/_chunked.py",
        "stop = (rows.stop - 1) * geometry.stride[0] + span - before",
        "stop = (rows.stop - 1) * geometry.stride[0] + span - before - 1",
        CHUNKED,
    ),
    Mutant(
        "slab-gradients-overwrite-instead-of-add",
        "unfoldconv/_chunked.py",
        "grad_input[chunk.samples, :, rows] += scatter(columns, sub_size, sub_geometry)",
        "grad_input[chunk.samples, :, rows] = scatter(columns, sub_size, sub_geometry)",
        CHUNKED,
    ),
    # the non-overlapping conv (unfoldconv/conv.py)
    Mutant(
        "patches-grouped-axes-permuted",
        "unfoldconv/conv.py",
        "columns = blocks.permute(0, 1, 2, *kernel_axes, *grid_axes)",
        "columns = blocks.permute(0, 2, 1, *kernel_axes, *grid_axes)",
        CONV,
    ),
    Mutant(
        "patches-kernel-and-grid-axes-swapped",
        "unfoldconv/conv.py",
        "tokens = blocks.permute(0, *grid_axes, 1, 2, *kernel_axes)",
        "tokens = blocks.permute(0, *kernel_axes, 1, 2, *grid_axes)",
        CONV,
    ),
    # the transposed conv's fold route (unfoldconv/conv_transpose.py)
    Mutant(
        "conv-transpose-stride-and-dilation-swapped",
        "unfoldconv/conv_transpose.py",
        "geometry = Geometry(kernel_size, dilation, tuple((p, p) for p in padding), stride)",
        "geometry = Geometry(kernel_size, stride, tuple((p, p) for p in padding), dilation)",
        CONV,
    ),
    # the compiled CPU fold (unfoldconv/_cpu_fold.py)
    Mutant(
        "cpu-fold-clip-first-off-by-one",
        "unfoldconv/_cpu_fold.py",
        "first = max(0, (-shift + s - 1) // s)",
        "first = max(0, (-shift + s) // s)",
        CPU_FOLD,
    ),
    Mutant(
        "cpu-fold-kernel-flip-ignored",
        "unfoldconv/_cpu_fold.py",
        "shift = (k - 1 - k_idx if flip else k_idx) * dil - lo",
        "shift = k_idx * dil - lo",
        CPU_FOLD,
    ),
    Mutant(
        "cpu-fold-first-dim-stride-as-last",
        "unfoldconv/_cpu_fold.py",
        "int(geometry.stride[-1])",
        "int(geometry.stride[0])",
        CPU_FOLD,
    ),
    Mutant(
        "cpu-fold-ignores-torch-backend",
        "unfoldconv/_cpu_fold.py",
        'and current_backend() != "torch"',
        "and True",
        CPU_FOLD,
    ),
    # the Triton kernels (through the interpreter)
    Mutant(
        "triton-fold-clip-off-by-one",
        "unfoldconv/kernels/_fold.py",
        "hits = hits & (out_pos < out_size[i])",
        "hits = hits & (out_pos <= out_size[i])",
        TRITON,
    ),
    Mutant(
        "triton-fold-kernel-flip-ignored",
        "unfoldconv/kernels/_fold.py",
        "            if FLIP:\n                kernel_index = KERNEL_SIZE[i] - 1 - kernel_index\n"
        "            shifted",
        "            if False:\n                kernel_index = KERNEL_SIZE[i] - 1 - kernel_index\n"
        "            shifted",
        TRITON,
    ),
    Mutant(
        "triton-unfold-clip-off-by-one",
        "unfoldconv/kernels/_unfold.py",
        "& (in_pos < input_size[i])",
        "& (in_pos <= input_size[i])",
        TRITON,
    ),
]


def copy_tree(destination: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=ignore)
        else:
            shutil.copy2(source, destination / name)


def run_tests(tree: Path, tests: tuple[str, ...], timeout: float) -> tuple[str, float, str]:
    """``("passed" | "failed" | "error" | "timeout", seconds, last output line)``."""
    command = [
        sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-p", "no:xdist",
        "-p", "no:randomly", *tests,
    ]  # fmt: skip
    start = time.perf_counter()
    try:
        proc = subprocess.run(command, cwd=tree, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start, ""
    seconds = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    last = lines[-1] if lines else proc.stderr.strip()[-200:]
    outcome = {0: "passed", 1: "failed"}.get(proc.returncode, "error")
    return outcome, seconds, last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-k", action="append", default=[], help="run mutants whose id has this")
    parser.add_argument("--table-only", action="store_true", help="only tests/test_routes.py")
    parser.add_argument(
        "--without-table",
        action="store_true",
        help="the relevant files less tests/test_routes.py (what the rest of the suite catches)",
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip the unmutated run")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per mutant")
    parser.add_argument("--list", action="store_true", help="print the mutants and exit")
    args = parser.parse_args()
    mutants = [m for m in MUTANTS if not args.k or any(word in m.id for word in args.k)]
    if args.list:
        for mutant in mutants:
            print(f"{mutant.id:55} {mutant.path}")
        return 0

    def tests_of(mutant: Mutant) -> tuple[str, ...]:
        if args.table_only:
            return TABLE
        if args.without_table:
            return tuple(t for t in mutant.tests if t not in TABLE)
        return mutant.tests

    results = []
    with tempfile.TemporaryDirectory(prefix="unfoldconv-mutants-") as scratch:
        tree = Path(scratch) / "tree"
        if not args.no_baseline:
            copy_tree(tree)
            tests = tuple(
                sorted({t for m in mutants for t in (TABLE if args.table_only else m.tests)})
            )
            outcome, seconds, last = run_tests(tree, tests, args.timeout)
            print(f"baseline (no mutant): {outcome} in {seconds:.0f}s: {last}", flush=True)
            if outcome != "passed":
                print("the unmutated tests must pass first")
                return 2
            shutil.rmtree(tree)
        for mutant in mutants:
            copy_tree(tree)
            source = tree / mutant.path
            text = source.read_text()
            if text.count(mutant.old) != 1:
                outcome, seconds, last = "stale", 0.0, f"snippet found {text.count(mutant.old)}x"
            else:
                source.write_text(text.replace(mutant.old, mutant.new))
                outcome, seconds, last = run_tests(tree, tests_of(mutant), args.timeout)
            status = {"failed": "killed", "error": "killed (error)", "passed": "SURVIVED"}
            status = status.get(outcome, outcome.upper())
            print(f"{mutant.id:55} {status:15} {seconds:5.0f}s  {last[:90]}", flush=True)
            results.append(status)
            shutil.rmtree(tree)
    killed = sum(status.startswith("killed") for status in results)
    print(f"\n{killed} of {len(results)} mutants killed, {len(results) - killed} not killed")
    return 0 if killed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
