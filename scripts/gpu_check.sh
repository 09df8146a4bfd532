#!/usr/bin/env bash
# The ten-minute GPU check: everything a lent GPU machine should measure, into one folder.
#
#   bash scripts/gpu_check.sh [RESULTS_DIR]            # on the GPU machine
#   bash scripts/gpu_check.sh --dry-run [RESULTS_DIR]  # anywhere: print the steps, run a CPU smoke
#
# Needs only what the lent machines have (torch 2.11 + CUDA, Triton 3.6, pytest, einops,
# Lightning; no network): the project runs from this checkout on PYTHONPATH, nothing is
# installed. Steps (each under its own time limit, 600 s in all; a failing step is recorded and
# the next runs):
#   1. versions.txt   torch / Triton / CUDA / device, TF32 flags, where unfoldconv imports from
#   2. cuda-tests.log pytest -m cuda (every cuda-marked test of the suite)
#   3. compile.log    the compile-to-sm_90 tests of every kernel (also the slow, all-tiles one)
#   3b. kernels.txt   unfold and fold kernels against a device-to-device copy of the same bytes
#                     (median of CUDA-event timings, target <= 1.25x the copy), and the host
#                     time per call of each launcher on tiny tensors (launch-bound), the warmed
#                     kernel called directly and through Triton's JITFunction.run
#   4. bench-tf32/, bench-ieee/   python experiments/benchmark.py --device cuda, groups unfold,
#                     fold, Conv2d, Conv3d, batch 32 and 256, under each precision policy
#   5. bench-unfold-route/        the same Conv2d cases on the unfold + GEMM conv route (tf32)
#   6. profile.txt    torch.profiler table of All-CNN-C conv2 forward + backward at batch 256:
#                     torch's Conv2d, ours (implicit GEMM), ours (unfold route)
#   summary.txt       one line per step: name, exit status, seconds
set -uo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
if [[ "${1:-}" == "--dry-run" ]]; then
    DRY_RUN=1
    shift
fi
OUT=${1:-results/gpu_check/$(date +%Y%m%d-%H%M%S)}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
unset UNFOLDCONV_BACKEND UNFOLDCONV_CONV_ROUTE TRITON_INTERPRET
: >"$OUT/summary.txt"

if ((DRY_RUN)); then
    DEVICE=cpu
    BATCHES=(2)
    ONLY=Conv2d
    MATCH=(--match conv2)
    TIMING=(--quick --no-memory --min-run-time 0.01)
    PROFILE_BATCH=2
else
    DEVICE=cuda
    BATCHES=(32 256)
    ONLY=unfold,fold,Conv2d,Conv3d
    MATCH=()
    TIMING=(--min-run-time 0.2)
    PROFILE_BATCH=256
fi

# step NAME SECONDS COMMAND...: run COMMAND with output into NAME.log, record status and time
step() {
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local status=$?
    echo "$name status=$status seconds=$((SECONDS - start))" | tee -a "$OUT/summary.txt"
}

step versions 20 "$PY" - <<'EOF'
import platform, torch, unfoldconv
try:
    import triton
    triton_version = triton.__version__
except ImportError:
    triton_version = "absent"
print("python", platform.python_version())
print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())
print("triton", triton_version)
print("device", torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device")
print("torch.backends.cudnn.allow_tf32", torch.backends.cudnn.allow_tf32)
print("torch.backends.cuda.matmul.allow_tf32", torch.backends.cuda.matmul.allow_tf32)
print("float32_matmul_precision", torch.get_float32_matmul_precision())
print("unfoldconv from", unfoldconv.__file__)
EOF
cp "$OUT/versions.log" "$OUT/versions.txt"
cat "$OUT/versions.txt"

if ((DRY_RUN)); then  # the same pytest command, on a CPU: every cuda test skips, none may fail
    step cuda-tests 300 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests/test_kernels_conv.py
else
    step cuda-tests 120 "$PY" -m pytest -q -p no:cacheprovider -m cuda tests
fi
step compile 150 "$PY" -m pytest -q -p no:cacheprovider -m "slow or not slow" \
    -k "for_h100" tests/test_kernels_triton.py tests/test_kernels_conv.py \
    tests/test_kernels_tiles.py

if ((DRY_RUN)); then  # the kernels through Triton's interpreter, tiny shapes
    KERNEL_ENV=(env TRITON_INTERPRET=1 UNFOLDCONV_BACKEND=triton)
else
    KERNEL_ENV=(env)
fi
step kernels 60 "${KERNEL_ENV[@]}" "$PY" - "$DEVICE" "$OUT/kernels.txt" <<'EOF'
"""unfold / fold kernels against a device-to-device copy of the same bytes; host time per call."""
import statistics
import sys
import time

import torch

from unfoldconv import kernels
from unfoldconv._args import make_geometry
from unfoldconv.kernels import _launch

device, path = torch.device(sys.argv[1]), sys.argv[2]
cuda = device.type == "cuda"
# (name, input shape, (d, kernel, dilation, padding, stride))
CASES = [
    ("allcnnc-conv2 b256", (256, 96, 32, 32), (2, 3, 1, 1, 1)),
    ("allcnnc-conv3 b256 s2", (256, 96, 32, 32), (2, 3, 1, 1, 2)),
    ("allcnnc-conv7 b256", (256, 192, 6, 6), (2, 3, 1, 0, 1)),
    ("3d 16^3 b8", (8, 32, 16, 16, 16), (3, 3, 1, 1, 1)),
    ("1d 4096 b64 s2", (64, 64, 4096), (1, 5, 1, 2, 2)),
]
if not cuda:  # the dry run: tiny, through the interpreter
    CASES = [(name, (1, 2, 8, 8), window) for name, _, window in CASES[:2]]


def median_ms(fn, repeats=20 if cuda else 2):
    fn()
    times = []
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            fn()
            times.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(times)


lines = ["| case | op | ms | copy ms | x copy | GB/s |", "|---|---|---|---|---|---|"]
worst = 0.0
for name, shape, window in CASES:
    geometry = make_geometry(*window)
    x = torch.randn(shape, device=device)
    columns = kernels.unfold(x, geometry)
    workspace = torch.empty_like(columns).view(-1)
    source, target = torch.empty_like(columns), torch.empty_like(columns)
    copy = median_ms(lambda: target.copy_(source))  # reads and writes the columns' bytes
    moved = (x.numel() + columns.numel()) * x.element_size()
    for op, fn in [
        ("unfold", lambda: kernels.unfold(x, geometry, out=workspace)),
        ("fold", lambda: kernels.fold(columns, shape[2:], geometry)),
    ]:
        ms = median_ms(fn)
        worst = max(worst, ms / copy)
        lines.append(
            f"| {name} | {op} | {ms:.4f} | {copy:.4f} | {ms / copy:.2f} | {moved / ms / 1e6:.0f} |"
        )
lines.append(f"worst ratio to the copy: {worst:.2f} (target <= 1.25)")

# host time per call: tiny tensors, no synchronisation inside the loop (launch-bound)
tiny = torch.randn(2, 4, 8, 8, device=device)
geometry = make_geometry(2, 3, 1, 1, 1)
tiny_columns = kernels.unfold(tiny, geometry)
for direct in (True, False):
    _launch.DIRECT = direct
    _launch.clear_plans()
    for op, fn in [
        ("unfold", lambda: kernels.unfold(tiny, geometry)),
        ("fold", lambda: kernels.fold(tiny_columns, (8, 8), geometry)),
    ]:
        for _ in range(20):
            fn()
        if cuda:
            torch.cuda.synchronize()
        calls = 2000 if cuda else 5
        begin = time.perf_counter()
        for _ in range(calls):
            fn()
        if cuda:
            torch.cuda.synchronize()
        us = (time.perf_counter() - begin) / calls * 1e6
        lines.append(f"host per call, {op}, direct={direct}: {us:.1f} us")
_launch.DIRECT = True
with open(path, "w") as report:
    report.write("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
cat "$OUT/kernels.log" 2>/dev/null | tail -20

for precision in tf32 ieee; do
    step "bench-$precision" 80 "$PY" experiments/benchmark.py --device "$DEVICE" \
        --only "$ONLY" "${MATCH[@]}" --batches "${BATCHES[@]}" --precision "$precision" \
        "${TIMING[@]}" --out "$OUT/bench-$precision"
done
step bench-unfold-route 40 env UNFOLDCONV_CONV_ROUTE=unfold "$PY" experiments/benchmark.py \
    --device "$DEVICE" --only Conv2d "${MATCH[@]}" --batches "${BATCHES[@]}" --precision tf32 \
    "${TIMING[@]}" --out "$OUT/bench-unfold-route"

step profile 50 "$PY" - "$DEVICE" "$PROFILE_BATCH" "$OUT/profile.txt" <<'EOF'
"""All-CNN-C conv2 (96 -> 96, 3x3, padding 1, 32x32) forward + backward under torch.profiler."""
import statistics
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from unfoldconv._backend import conv_route
from unfoldconv.layers import Conv2d

device, batch, path = torch.device(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
native = torch.nn.Conv2d(96, 96, 3, padding=1, device=device)
ours = Conv2d.from_native(native)
x = torch.randn(batch, 96, 32, 32, device=device, requires_grad=True)
grad = torch.randn(batch, 96, 32, 32, device=device)
activities = [ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * (device.type == "cuda")
sort = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"


def step(layer):
    layer(x).backward(grad)


def median_ms(layer, repeats=20):
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            step(layer)
            end.record()
            torch.cuda.synchronize()
            times.append(start.elapsed_time(end))
        else:
            import time

            begin = time.perf_counter()
            step(layer)
            times.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(times)


with open(path, "w") as report:
    for precision in (True, False):
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = precision
        medians = {}
        for name, layer, route in [
            ("torch Conv2d (cuDNN)", native, "auto"),
            ("unfoldconv implicit GEMM", ours, "implicit_gemm"),
            ("unfoldconv unfold + GEMM", ours, "unfold"),
        ]:
            with conv_route(route):
                for _ in range(3):  # warm-up: autotuning, cuDNN's algorithm search
                    step(layer)
                medians[name] = median_ms(layer)
                with profile(activities=activities) as prof:
                    for _ in range(5):
                        step(layer)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
            title = f"== {name}, batch {batch}, allow_tf32={precision}, 5 forward + backward"
            report.write(title + "\n")
            report.write(prof.key_averages().table(sort_by=sort, row_limit=15) + "\n\n")
        base = medians["torch Conv2d (cuDNN)"]
        lines = [f"| {n} | {t:.3f} | {t / base:.2f} |" for n, t in medians.items()]
        table = "\n".join(["| allow_tf32=" + str(precision) + " | median ms | x torch |",
                           "|---|---|---|", *lines])
        report.write(table + "\n\n")
        print(table)
EOF
cat "$OUT/profile.log" 2>/dev/null | tail -12
echo "results in $OUT"
cat "$OUT/summary.txt"
