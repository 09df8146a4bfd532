"""Determinism across processes: two separate interpreter runs of the same computation give
bit-identical outputs and gradients (unfold, fold on every CPU route, conv chunked and whole,
locally connected, conv_transpose); on CUDA too when a GPU is present.

Within one process the fold is checked in tests/test_fold.py; a second process also has a fresh
thread pool, fresh allocations and freshly compiled kernels, which is where run-to-run
differences (atomics, a work split that depends on timing) would show.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import sys
import torch
import unfoldconv

device, path = sys.argv[1], sys.argv[2]
torch.manual_seed(0)
torch.set_num_threads(2)  # the compiled fold's thread pool and torch's OpenMP split both run


def randn(*shape):
    return torch.randn(shape, dtype=torch.float32).to(device)


results = {}
x = randn(4, 6, 17, 15).requires_grad_(True)
columns = unfoldconv.unfold(x, 3, padding=1, stride=2)
(results["unfold.grad"],) = torch.autograd.grad(columns, x, randn(*columns.shape))
results["unfold"] = columns.detach()
for name in ("auto", "torch"):  # auto: the compiled CPU fold where numba is installed
    with unfoldconv.backend(name):
        cols = randn(8, 16 * 9, 16 * 16).requires_grad_(True)
        image = unfoldconv.fold(cols, (31, 31), 3, stride=2, padding=1)
        (results[f"fold-{name}.grad"],) = torch.autograd.grad(image, cols, randn(*image.shape))
        results[f"fold-{name}"] = image.detach()
weight, bias = randn(8, 3, 3, 3).requires_grad_(True), randn(8).requires_grad_(True)
for workspace in (None, 1):  # the whole batch, one sample per chunk
    out = unfoldconv.conv(x, weight, bias, padding=1, stride=2, groups=2, workspace_bytes=workspace)
    grads = torch.autograd.grad(out, (x, weight, bias), randn(*out.shape))
    results[f"conv-{workspace}"] = out.detach()
    for name, grad in zip(("input", "weight", "bias"), grads):
        results[f"conv-{workspace}.grad-{name}"] = grad
weight_lc = randn(8, 7, 8, 6, 3, 3).requires_grad_(True)
out = unfoldconv.locally_connected(x, weight_lc, stride=2, workspace_bytes=1)
grads = torch.autograd.grad(out, (x, weight_lc), randn(*out.shape))
results["locally_connected"], results["locally_connected.grad-input"] = out.detach(), grads[0]
results["locally_connected.grad-weight"] = grads[1]
weight_t = randn(6, 4, 3, 3).requires_grad_(True)
out = unfoldconv.conv_transpose(x, weight_t, stride=2, padding=1)
grads = torch.autograd.grad(out, (x, weight_t), randn(*out.shape))
results["conv_transpose"], results["conv_transpose.grad-input"] = out.detach(), grads[0]
results["conv_transpose.grad-weight"] = grads[1]
torch.save({key: value.cpu() for key, value in results.items()}, path)
"""


def _run_twice(device: str, tmp_path: Path) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"}
    paths = [tmp_path / f"run{i}.pt" for i in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, device, str(path)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for path in paths
    ]
    for proc in procs:
        _, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr[-3000:]
    return [torch.load(path) for path in paths]


def _assert_bit_identical(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    differing = [key for key in first if not torch.equal(first[key], second[key])]
    assert not differing, f"differ between the two processes: {differing}"


def test_two_cpu_processes_are_bit_identical(tmp_path):
    _assert_bit_identical(*_run_twice("cpu", tmp_path))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_two_cuda_processes_are_bit_identical(tmp_path):
    _assert_bit_identical(*_run_twice("cuda", tmp_path))
