"""The backend switch: ``unfoldconv.backend(...)``, ``UNFOLDCONV_BACKEND`` and what each selects."""

from __future__ import annotations

import threading

import pytest
import torch
import torch.nn.functional as F

import unfoldconv
from unfoldconv import _backend, kernels, unfold

X = torch.randn(2, 3, 6, 6)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    monkeypatch.delenv("UNFOLDCONV_BACKEND", raising=False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


@pytest.fixture
def kernel_calls(monkeypatch):
    """Counts the engine's calls into the Triton launchers."""
    calls = []
    for name in ("unfold", "fold"):
        launcher = getattr(kernels, name)

        def counted(*args, _name=name, _launcher=launcher, **kwargs):
            calls.append(_name)
            return _launcher(*args, **kwargs)

        monkeypatch.setattr(kernels, name, counted)
    return calls


def test_default_is_auto_and_blocks_nest():
    assert _backend.current_backend() == "auto"
    with unfoldconv.backend("triton"):
        assert _backend.current_backend() == "triton"
        with unfoldconv.backend("torch"):
            assert _backend.current_backend() == "torch"
        assert _backend.current_backend() == "triton"
    assert _backend.current_backend() == "auto"


def test_block_is_left_on_an_exception():
    with pytest.raises(KeyError), unfoldconv.backend("torch"):
        raise KeyError("inside")
    assert _backend.current_backend() == "auto"


def test_environment_variable_and_block_precedence(monkeypatch):
    monkeypatch.setenv("UNFOLDCONV_BACKEND", "torch")
    assert _backend.current_backend() == "torch"
    with unfoldconv.backend("auto"):
        assert _backend.current_backend() == "auto"


@pytest.mark.parametrize("name", ["cuda", "Triton", "", None, 1], ids=repr)
def test_invalid_name_is_a_value_error_naming_it(name):
    expected = rf"name must be one of .*'triton'.*got name={name!r}"
    with pytest.raises(ValueError, match=expected), unfoldconv.backend(name):
        pass
    assert _backend.current_backend() == "auto"


def test_invalid_environment_variable_is_a_value_error_naming_it(monkeypatch):
    monkeypatch.setenv("UNFOLDCONV_BACKEND", "gpu")
    with pytest.raises(
        ValueError, match=r"UNFOLDCONV_BACKEND must be one of .*UNFOLDCONV_BACKEND='gpu'"
    ):
        unfold(X, 3)


def test_auto_and_torch_take_the_torch_route_on_cpu(monkeypatch, kernel_calls):
    monkeypatch.setenv("TRITON_INTERPRET", "1")  # even with the interpreter available
    for name in ("auto", "torch"):
        with unfoldconv.backend(name):
            assert torch.equal(unfold(X, 3), F.unfold(X, 3))
    assert kernel_calls == []


def test_forced_triton_on_cpu_needs_the_interpreter(monkeypatch, kernel_calls):
    with unfoldconv.backend("triton"), pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        unfold(X, 3)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with unfoldconv.backend("triton"):
        assert torch.equal(unfold(X, 3), F.unfold(X, 3))
    assert kernel_calls == ["unfold"]


def test_forced_triton_through_the_environment_variable(monkeypatch, kernel_calls):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv("UNFOLDCONV_BACKEND", "triton")
    columns = unfold(X, 3, padding=1)
    torch.testing.assert_close(
        unfoldconv.fold(columns, (6, 6), 3, padding=1), F.fold(columns, (6, 6), 3, padding=1)
    )
    assert kernel_calls == ["unfold", "fold"]


def test_forced_triton_without_triton_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(_backend, "triton_available", lambda: False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with (
        unfoldconv.backend("triton"),
        pytest.raises(RuntimeError, match="needs the triton package"),
    ):
        unfold(X, 3)
    with unfoldconv.backend("auto"):  # auto just takes the torch route
        assert torch.equal(unfold(X, 3), F.unfold(X, 3))


def test_forced_triton_on_another_device_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    with unfoldconv.backend("triton"), pytest.raises(RuntimeError, match="got a tensor on meta"):
        _backend.use_triton(torch.empty(2, device="meta"))


def test_interpreter_flag_reads_like_triton(monkeypatch):
    for value, expected in [("1", True), ("true", True), ("ON", True), ("0", False), ("", False)]:
        monkeypatch.setenv("TRITON_INTERPRET", value)
        assert _backend.triton_interpreting() is expected


def test_compiled_graphs_take_the_torch_route_on_every_backend(monkeypatch, kernel_calls):
    """fullgraph compile traces the torch route, even with "triton" forced and no interpreter."""
    op = lambda x: unfold(x, 3, padding=1, stride=2)  # noqa: E731
    for name in ("auto", "torch", "triton"):
        torch._dynamo.reset()
        compiled = torch.compile(op, fullgraph=True, backend="aot_eager")
        x = torch.randn(2, 3, 8, 8, requires_grad=True)
        with unfoldconv.backend(name):
            result = compiled(x)
            (grad,) = torch.autograd.grad(result.square().sum(), x)
        expected = F.unfold(x, 3, padding=1, stride=2)
        assert torch.equal(result, expected)
        torch.testing.assert_close(grad, torch.autograd.grad(expected.square().sum(), x)[0])
    assert kernel_calls == []


def test_torch_func_wrappers_take_the_torch_route(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    seen = []

    def record(t):
        seen.append(_backend.use_triton(t))
        return t * 2

    with unfoldconv.backend("triton"):
        torch.func.vmap(record)(torch.randn(3, 2))
        torch.func.grad(lambda t: record(t).sum())(torch.randn(2))
        assert _backend.use_triton(torch.randn(2))
    assert seen == [False, False]


def test_blocks_are_process_wide():
    """autograd runs CUDA backward in its own threads: they must see the same backend."""
    seen = []
    with unfoldconv.backend("torch"):
        thread = threading.Thread(target=lambda: seen.append(_backend.current_backend()))
        thread.start()
        thread.join()
    assert seen == ["torch"]


def test_supports():
    for dtype in (
        torch.float16,
        torch.bfloat16,
        torch.float32,
        torch.float64,
        torch.int64,
        torch.bool,
    ):
        assert kernels.supports(dtype)
    for dtype in (torch.complex64, torch.complex128, torch.float8_e4m3fn, torch.uint32):
        assert not kernels.supports(dtype)
