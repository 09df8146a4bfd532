"""Helpers shared by the test files: case tables, layer comparisons, torch's ModuleInfo inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.testing import assert_close


def params(rows):
    """Table rows ``(id, *values)`` as ``pytest.param(*values, id=id)`` for ``parametrize``."""
    return [pytest.param(*row[1:], id=row[0]) for row in rows]


def as_tuple(value, d):
    """An int size as a d-tuple; a sequence as a tuple."""
    return (value,) * d if isinstance(value, int) else tuple(value)


def compare_layers(native, ours, x, **forward_kwargs):
    """Outputs and gradients of input, weight and bias agree (float64: default tolerances)."""
    x_native = x.clone().requires_grad_(True)
    x_ours = x.clone().requires_grad_(True)
    expected = native(x_native, **forward_kwargs)
    actual = ours(x_ours, **forward_kwargs)
    assert_close(actual, expected)
    grad = torch.randn_like(expected)
    expected.backward(grad)
    actual.backward(grad)
    assert_close(x_ours.grad, x_native.grad)
    assert_close(ours.weight.grad, native.weight.grad)
    if native.bias is not None:
        assert_close(ours.bias.grad, native.bias.grad)


def module_infos(names):
    """torch's own ``ModuleInfo`` entries whose name is in ``names`` (any iterable, a generator
    too: it is read once), in the order of ``names``; a name torch does not have is an error, so
    a renamed entry cannot silently leave the parameter list short."""
    from torch.testing._internal.common_modules import module_db

    wanted = list(names)
    by_name = {info.name: info for info in module_db}
    missing = [name for name in wanted if name not in by_name]
    assert not missing, f"torch's module_db has no entries {missing}"
    return [by_name[name] for name in wanted]


def check_module_db_inputs(info, ours_cls):
    """Every constructor / forward input of ``info``, CPU float64: ours equals torch's module."""
    inputs = info.module_inputs_func(
        info, device="cpu", dtype=torch.float64, requires_grad=False, training=True
    )
    assert inputs
    for module_input in inputs:
        args, kwargs = module_input.constructor_input.args, module_input.constructor_input.kwargs
        native = info.module_cls(*args, **kwargs, dtype=torch.float64)
        ours = ours_cls.from_native(native)
        (x,) = module_input.forward_input.args
        compare_layers(native, ours, x, **module_input.forward_input.kwargs)


def run_script(
    script: Path, args: list[str], cwd: Path, timeout: float = 600
) -> subprocess.CompletedProcess:
    """Run an experiment entry ``script`` with ``args`` in a fresh interpreter; it must succeed."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc
