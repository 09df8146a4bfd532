"""Every engine route, forced on purpose, against independent references: one table of
routes x cases, values and gradients.

Routes (the ways one op can be computed; :data:`ROUTES`):

- ``torch``: ``unfoldconv.backend("torch")``, the pure-torch gather and scatter; it also turns
  the compiled CPU fold off.
- ``numba``: the compiled CPU fold (:mod:`unfoldconv._cpu_fold`) forced on for every shape (its
  size rule patched to always say yes); skipped without numba.
- ``triton``: the Triton kernels through Triton's interpreter (``TRITON_INTERPRET=1``, CPU
  tensors, ``backend("triton")``); slow, so the default suite runs the :data:`QUICK` cases and
  ``-m slow`` the rest.
- batch strategies of the chunked engines (conv, locally connected): ``whole`` (the default
  workspace holds the batch), ``samples`` (a workspace of two samples: N = 3 gives chunks of 2
  and 1), ``positions`` (a workspace of a third of one sample: slabs of output rows; the
  route is detected at import, by the matmuls one sample takes, and skipped with "not in this
  branch yet" where the engine cannot split a sample), ``func`` (values and gradients through
  ``torch.func.vjp``: the plain whole-batch forms).

Cases (:data:`CASES`) are small and asymmetric (stride > 1, dilation, uneven padding, "same"
with even kernels, stride > kernel, d = 1..4) so that an index off by one in any route changes a
value; the non-overlapping cases (kernel == stride, 1x1) take the conv's rearrange + GEMM route,
with groups > 1 and d = 1..3. Each test checks that the route it names really ran (spies on the
kernels' launchers and the compiled fold, a count of the matmuls).

References, none of them the package: the loops of ``tests/reference.py`` for every case, and
torch's own ops where they apply (``F.unfold`` / ``F.fold`` for d = 2, ``F.conv*d`` and
``F.conv_transpose*d`` for d <= 3). Everything is float64, compared with the default tolerances.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close
from torch.utils._python_dispatch import TorchDispatchMode

import unfoldconv
from tests.reference import (
    conv_loop,
    conv_transpose_loop,
    fold_loop,
    locally_connected_loop,
    output_size,
    unfold_loop,
    unfold_transpose_loop,
)
from unfoldconv import _chunked, _cpu_fold, kernels

DTYPE = torch.float64
TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TORCH_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
BATCH = 3  # a workspace of two samples gives chunks of 2 and 1: the last one is short


@dataclass(frozen=True)
class Case:
    """One geometry: input ``(N, C_in, *spatial)``; ``C_out`` and ``groups`` for the convs."""

    shape: tuple[int, ...]
    kernel_size: tuple[int, ...]
    stride: int | tuple[int, ...] = 1
    padding: int | str | tuple[int, ...] = 0
    dilation: int | tuple[int, ...] = 1
    output_padding: int | tuple[int, ...] = 0  # transposed ops only
    out_channels: int = 6
    groups: int = 1

    @property
    def dim(self) -> int:
        return len(self.kernel_size)

    @property
    def window(self) -> dict:
        """The unfold / fold / conv keyword arguments."""
        return {
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
        }

    @property
    def out_size(self) -> tuple[int, ...]:
        """The conv's (and locally connected layer's) output positions per dim."""
        return output_size(self.shape[2:], **self.window)

    @property
    def conv_kwargs(self) -> dict:
        """conv / locally_connected keyword arguments (the kernel is the weight's)."""
        return {
            "stride": self.stride,
            "padding": self.padding,
            "dilation": self.dilation,
            "groups": self.groups,
        }

    @property
    def transposed_kwargs(self) -> dict:
        """conv_transpose / unfold_transpose keyword arguments, less the kernel and groups."""
        return {
            "stride": self.stride,
            "padding": self.padding,
            "output_padding": self.output_padding,
            "dilation": self.dilation,
        }

    @property
    def transposable(self) -> bool:
        return not isinstance(self.padding, str)

    @property
    def non_overlapping(self) -> bool:
        stride = (self.stride,) * self.dim if isinstance(self.stride, int) else self.stride
        return (
            self.kernel_size == tuple(stride)
            and self.padding in (0, "valid")
            and self.dilation == 1
        )


# (id, case); every input has N = BATCH samples
CASES = [
    ("1d-k3-s2-p1-d2-g2", Case((BATCH, 4, 11), (3,), 2, 1, 2, output_padding=1, groups=2)),
    ("2d-k3-p1", Case((BATCH, 4, 6, 5), (3, 3), 1, 1)),
    (
        "2d-asymmetric-g2",
        Case((BATCH, 4, 7, 6), (3, 2), (2, 1), (1, 2), (2, 1), output_padding=(1, 0), groups=2),
    ),
    ("2d-k2-s3", Case((BATCH, 4, 8, 7), (2, 2), 3)),
    ("2d-same-even", Case((BATCH, 4, 5, 6), (4, 3), 1, "same", (1, 2))),
    ("2d-k1-s2", Case((BATCH, 4, 5, 6), (1, 1), 2, output_padding=1)),
    (
        "3d-g2",
        Case(
            (BATCH, 4, 5, 4, 6), (2, 3, 2), (2, 1, 2), (1, 0, 1), output_padding=(1, 0, 0), groups=2
        ),
    ),
    ("4d", Case((BATCH, 2, 2, 3, 2, 3), (2, 2, 2, 2), (1, 2, 1, 2), (1, 0, 0, 1), out_channels=3)),
    # non-overlapping: kernel == stride (patches, with a remainder to drop) and 1x1
    ("1d-patches-g2", Case((BATCH, 4, 13), (3,), 3, groups=2)),
    ("2d-patches", Case((BATCH, 4, 6, 8), (2, 2), 2)),
    ("2d-patches-g2-remainder", Case((BATCH, 4, 7, 9), (2, 3), (2, 3), groups=2)),
    ("3d-patches-g4", Case((BATCH, 4, 4, 6, 5), (2, 3, 2), (2, 3, 2), out_channels=8, groups=4)),
    ("2d-1x1", Case((BATCH, 4, 5, 6), (1, 1))),
    ("2d-1x1-g2", Case((BATCH, 4, 5, 6), (1, 1), groups=2)),
]

#: the cases the Triton interpreter runs in the default suite (every case with ``-m slow``)
QUICK = {
    "1d-k3-s2-p1-d2-g2",
    "2d-asymmetric-g2",
    "2d-same-even",
    "2d-patches-g2-remainder",
}


class MatmulCount(TorchDispatchMode):
    """Counts the matrix products torch runs inside the block (one per chunk of a GEMM loop)."""

    NAMES = frozenset({"mm", "bmm", "addmm", "baddbmm"})

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += func.overloadpacket.__name__ in self.NAMES
        return func(*args, **(kwargs or {}))


def _chunks_positions() -> bool:
    """Whether conv splits one sample's columns over positions when the workspace is smaller
    than they are (more than one matmul for one sample)."""
    x, weight = torch.randn(1, 2, 8, 8), torch.randn(3, 2, 3, 3)
    with MatmulCount() as counter:
        unfoldconv.conv(x, weight, workspace_bytes=1)
    return counter.count > 1


POSITION_CHUNKING = _chunks_positions()


@dataclass(frozen=True)
class Route:
    """How an op is forced through one route: the engine backend and the batch strategy."""

    backend: str  # "torch", "numba" (the compiled CPU fold), "triton" (interpreter)
    batch: str = "whole"  # "whole", "samples", "positions", "func"
    marks: tuple = field(default=())

    def workspace_bytes(self, case: Case) -> int | None:
        """The workspace that forces this batch strategy for ``case``'s columns."""
        sample = _sample_columns(case) * torch.finfo(DTYPE).bits // 8
        return {"samples": 2 * sample, "positions": max(1, sample // 3)}.get(self.batch)


def _sample_columns(case: Case) -> int:
    """Elements of one sample's columns ``C * K * L``."""
    return case.shape[1] * math.prod(case.kernel_size) * math.prod(case.out_size)


needs_numba = pytest.mark.skipif(
    not _cpu_fold.numba_available(), reason="numba is not installed (the compiled CPU fold)"
)
needs_triton = pytest.mark.skipif(
    not unfoldconv._backend.triton_available(), reason="triton is not installed"
)
no_position_chunks = pytest.mark.skipif(
    not POSITION_CHUNKING, reason="chunking over positions: not in this branch yet"
)

# (id, route): every op runs on each route that applies to it (only those with a workspace on
# the samples / positions routes). Position chunking, once it exists, needs no change here.
ROUTES = [
    ("torch", Route("torch")),
    ("torch-samples", Route("torch", "samples")),
    ("torch-positions", Route("torch", "positions", (no_position_chunks,))),
    ("torch-func", Route("torch", "func")),
    ("numba", Route("numba", marks=(needs_numba,))),
    ("numba-samples", Route("numba", "samples", (needs_numba,))),
    ("numba-positions", Route("numba", "positions", (needs_numba, no_position_chunks))),
    ("triton", Route("triton", marks=(needs_triton,))),
    ("triton-samples", Route("triton", "samples", (needs_triton,))),
]


@dataclass(frozen=True)
class Op:
    """One op of the table: its inputs, our call, and the references it is checked against."""

    inputs: Callable[[Case, Callable], list[torch.Tensor]]  # (case, random) -> the operands
    ours: Callable[[Case, int | None], Callable]  # (case, workspace_bytes) -> op(*operands)
    references: Callable[[Case], list[tuple[str, Callable]]]  # (name, reference(*operands))
    chunked: bool = False  # takes workspace_bytes (the conv engines)
    transposed: bool = False  # a transposed op: no string padding
    engine_free: Callable[[Case], bool] = lambda case: False  # runs no gather nor scatter


def _torch_or_loop(table: dict, dim: int, loop: Callable) -> list[tuple[str, Callable]]:
    """Torch's op where torch has one for ``dim``, else the loop reference (the transposed
    loops, a vjp through the conv's loops, take minutes on the bigger d <= 3 cases;
    :func:`test_transposed_loops_agree_with_torch` checks them against torch)."""
    return [("torch", table[dim])] if dim in table else [("loops", loop)]


def _one_hot_transposed_weight(case: Case) -> torch.Tensor:
    """``(C, C*K, *kernel)`` with ``W^T`` flattened the identity: output channel ``c*K + k`` of
    the transposed conv is row ``c*K + k`` of ``unfold_transpose``'s columns."""
    c, k = case.shape[1], math.prod(case.kernel_size)
    return torch.eye(c * k, dtype=DTYPE).reshape(c * k, c, *case.kernel_size).transpose(0, 1)


def _unfold_transpose_references(case: Case) -> list[tuple[str, Callable]]:
    kwargs = case.transposed_kwargs
    if case.dim not in TORCH_CONV_TRANSPOSE:  # as _torch_or_loop
        return [("loops", lambda x: unfold_transpose_loop(x, case.kernel_size, **kwargs))]
    one_hot, torch_op = _one_hot_transposed_weight(case), TORCH_CONV_TRANSPOSE[case.dim]
    return [("torch", lambda x: torch_op(x, one_hot, **kwargs).flatten(2))]


def _conv_transpose_op(route: str) -> Op:
    def kwargs(case):
        return {**case.transposed_kwargs, "groups": case.groups}

    return Op(
        inputs=lambda case, random: [
            random(*case.shape),
            random(case.shape[1], case.out_channels // case.groups, *case.kernel_size),
            random(case.out_channels),
        ],
        ours=lambda case, _: lambda *t: unfoldconv.conv_transpose(*t, **kwargs(case), route=route),
        references=lambda case: [
            (name, lambda *t, op=op: op(*t, **kwargs(case)))
            for name, op in _torch_or_loop(TORCH_CONV_TRANSPOSE, case.dim, conv_transpose_loop)
        ],
        transposed=True,
    )


def _torch_folds(case: Case) -> bool:
    """Whether ``F.unfold`` / ``F.fold`` take ``case`` (d = 2, no padding string)."""
    return case.dim == 2 and case.transposable


OPS = {
    "unfold": Op(
        inputs=lambda case, random: [random(*case.shape)],
        ours=lambda case, _: lambda x: unfoldconv.unfold(x, **case.window),
        references=lambda case: (
            [("loops", lambda x: unfold_loop(x, **case.window))]
            + ([("torch", lambda x: F.unfold(x, **case.window))] if _torch_folds(case) else [])
        ),
    ),
    "fold": Op(
        inputs=lambda case, random: [
            random(
                BATCH, _sample_columns(case) // math.prod(case.out_size), *case.out_size
            ).flatten(2)
        ],
        ours=lambda case, _: lambda c: unfoldconv.fold(c, case.shape[2:], **case.window),
        references=lambda case: (
            [("loops", lambda c: fold_loop(c, case.shape[2:], **case.window))]
            + (
                [("torch", lambda c: F.fold(c, case.shape[2:], **case.window))]
                if _torch_folds(case)
                else []
            )
        ),
    ),
    "unfold_transpose": Op(
        inputs=lambda case, random: [random(*case.shape)],
        ours=lambda case, _: (
            lambda x: unfoldconv.unfold_transpose(x, case.kernel_size, **case.transposed_kwargs)
        ),
        references=_unfold_transpose_references,
        transposed=True,
    ),
    "conv_transpose-fold": _conv_transpose_op("fold"),
    "conv_transpose-unfold": _conv_transpose_op("unfold"),
    "conv": Op(
        inputs=lambda case, random: [
            random(*case.shape),
            random(case.out_channels, case.shape[1] // case.groups, *case.kernel_size),
            random(case.out_channels),
        ],
        ours=lambda case, workspace: (
            lambda *t: unfoldconv.conv(*t, **case.conv_kwargs, workspace_bytes=workspace)
        ),
        references=lambda case: (
            [("loops", lambda *t: conv_loop(*t, **case.conv_kwargs))]
            + (
                [("torch", lambda *t: TORCH_CONV[case.dim](*t, **case.conv_kwargs))]
                if case.dim in TORCH_CONV
                else []
            )
        ),
        chunked=True,
        engine_free=lambda case: case.non_overlapping,  # a rearrange and one GEMM
    ),
    "locally_connected": Op(
        inputs=lambda case, random: [
            random(*case.shape),
            random(
                *case.out_size,
                case.out_channels,
                case.shape[1] // case.groups,
                *case.kernel_size,
            ),
            random(case.out_channels, *case.out_size),
        ],
        ours=lambda case, workspace: (
            lambda *t: unfoldconv.locally_connected(
                *t, **case.conv_kwargs, workspace_bytes=workspace
            )
        ),
        references=lambda case: [
            ("loops", lambda *t: locally_connected_loop(*t, **case.conv_kwargs))
        ],
        chunked=True,
    ),
}


def table():
    """Ops x routes x cases as ``pytest.param(op_name, route, case)``, readable ids."""
    rows = []
    for op_name, op in OPS.items():
        for route_id, route in ROUTES:
            if not op.chunked and route.batch in ("samples", "positions"):
                continue
            for case_id, case in CASES:
                if op.transposed and not case.transposable:
                    continue
                marks = list(route.marks)
                if route.backend == "triton" and case_id not in QUICK:
                    marks.append(pytest.mark.slow)
                param_id = f"{op_name}-{route_id}-{case_id}"
                rows.append(pytest.param(op_name, route, case, id=param_id, marks=marks))
    return rows


@functools.cache
def expected(op_name: str, case: Case):
    """Operands, an output gradient and every reference's ``(output, gradients)`` for ``op_name``
    on ``case``; computed once per process (the loops are slow), the same for every route."""
    op = OPS[op_name]
    generator = torch.Generator().manual_seed(0)

    def random(*shape):
        return torch.randn(shape, dtype=DTYPE, generator=generator)

    operands = op.inputs(case, random)
    references = op.references(case)
    grad_output = random(*references[0][1](*operands).shape)
    results = {
        name: values_and_grads(reference, operands, grad_output) for name, reference in references
    }
    return operands, grad_output, results


def values_and_grads(op, operands, grad_output, use_func=False):
    """``op(*operands)`` and the gradients of ``<op(*operands), grad_output>`` (through
    ``torch.func.vjp`` with ``use_func``, autograd otherwise)."""
    if use_func:
        output, vjp = torch.func.vjp(op, *operands)
        return output, vjp(grad_output)
    leaves = [t.detach().requires_grad_(True) for t in operands]
    output = op(*leaves)
    return output.detach(), torch.autograd.grad(output, leaves, grad_output)


@pytest.fixture
def spies(monkeypatch):
    """Counts of the kernels' launches and of the compiled fold's calls."""
    counts = {"triton": 0, "numba": 0, "implicit_gemm": 0}

    def spy(module, name, *keys):
        original = getattr(module, name)

        def counted(*args, **kwargs):
            for key in keys:
                counts[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)

    spy(kernels, "unfold", "triton")
    spy(kernels, "fold", "triton")
    # the implicit-GEMM convolution (kernels/_conv.py): a Triton route without a chunk loop
    spy(kernels, "conv", "triton", "implicit_gemm")
    spy(kernels, "conv_transpose", "triton", "implicit_gemm")
    spy(_cpu_fold, "fold", "numba")
    return counts


@contextlib.contextmanager
def forced(route: Route, monkeypatch):
    """Inside the block every engine op takes ``route``'s backend."""
    monkeypatch.delenv("UNFOLDCONV_BACKEND", raising=False)
    if route.backend == "triton":
        monkeypatch.setenv("TRITON_INTERPRET", "1")
        # whole batch: convolutions take the implicit-GEMM kernel; chunked routes: the chunk
        # loop of unfold + GEMM with the Triton gather and fold (the documented switch)
        conv_route = "unfold" if route.batch in ("samples", "positions") else "auto"
        monkeypatch.setenv("UNFOLDCONV_CONV_ROUTE", conv_route)
        name = "triton"
    elif route.backend == "numba":
        # every fold shape, not only those the measured size rule picks
        monkeypatch.setattr(_cpu_fold, "kernel_pays_off", lambda input_size, geometry: True)
        # the conv backward's folds too (off by default there: numba's RSS, see _chunked)
        monkeypatch.setattr(_chunked, "CHUNKED_CONV_COMPILED_FOLD", True)
        name = "auto"
    else:
        name = "torch"
    with unfoldconv.backend(name):
        yield


def check_route_ran(route: Route, spies, engine_free: bool) -> None:
    """The backend the route names did the engine's work, and no other one did."""
    if route.batch == "func" or route.backend == "torch":  # torch.func: the torch route inside
        assert not any(spies.values()), spies
    elif route.backend == "numba":  # every op here has a fold in its forward or its backward
        assert spies["triton"] == 0 and (spies["numba"] > 0) != engine_free, spies
    else:
        assert spies["numba"] == 0 and (spies["triton"] > 0) != engine_free, spies


@pytest.mark.parametrize(("op_name", "route", "case"), table())
def test_route_matches_references(op_name, route, case, spies, monkeypatch):
    """Values and gradients of every operand against every reference, the route checked."""
    op = OPS[op_name]
    operands, grad_output, references = expected(op_name, case)
    ours = op.ours(case, route.workspace_bytes(case))
    with forced(route, monkeypatch):
        if op.chunked:
            with MatmulCount() as counter, torch.no_grad():
                ours(*operands)
        actual = values_and_grads(ours, operands, grad_output, use_func=route.batch == "func")
    check_route_ran(route, spies, op.engine_free(case))
    if op.chunked and op.engine_free(case):  # the non-overlapping conv: one GEMM, no chunks
        assert counter.count == 1, counter.count
    elif op.chunked and route.batch in ("samples", "positions") and not spies["implicit_gemm"]:
        assert counter.count > 1, f"{route.batch}: a single matmul, so no chunks"
    output, grads = actual
    for name, (expected_output, expected_grads) in references.items():
        assert_close(output, expected_output, msg=lambda m, name=name: f"output vs {name}: {m}")
        for index, (grad, expected_grad) in enumerate(zip(grads, expected_grads)):
            assert_close(
                grad,
                expected_grad,
                msg=lambda m, name=name, index=index: f"grad of operand {index} vs {name}: {m}",
            )
    if op_name == "unfold" and "torch" in references:  # unfold only copies: bit for bit
        assert torch.equal(output, references["torch"][0])


@pytest.mark.parametrize(
    "case", [c for _, c in CASES if c.dim <= 3], ids=[i for i, c in CASES if c.dim <= 3]
)
def test_loops_agree_with_torch(case):
    """The loop references of the table against torch's ops (values and gradients)."""
    for op_name, op in OPS.items():
        if op.transposed and not case.transposable:
            continue
        _, _, references = expected(op_name, case)
        if "torch" in references and "loops" in references:
            loops, torch_result = references["loops"], references["torch"]
            assert_close(loops[0], torch_result[0])
            for grad, torch_grad in zip(loops[1], torch_result[1]):
                assert_close(grad, torch_grad)


@pytest.mark.parametrize("case_id", ["1d-k3-s2-p1-d2-g2", "2d-asymmetric-g2"])
def test_transposed_loops_agree_with_torch(case_id):
    """The transposed loops (the references for d > 3) against torch's transposed conv."""
    case = dict(CASES)[case_id]
    x = torch.randn(case.shape, dtype=DTYPE)
    weight = torch.randn(case.shape[1], case.out_channels // case.groups, *case.kernel_size)
    weight, bias = weight.to(DTYPE), torch.randn(case.out_channels, dtype=DTYPE)
    kwargs = {**case.transposed_kwargs, "groups": case.groups}
    torch_op = TORCH_CONV_TRANSPOSE[case.dim]
    assert_close(
        conv_transpose_loop(x, weight, bias, **kwargs), torch_op(x, weight, bias, **kwargs)
    )
    one_hot = _one_hot_transposed_weight(case)
    assert_close(
        unfold_transpose_loop(x, case.kernel_size, **case.transposed_kwargs),
        torch_op(x, one_hot, **case.transposed_kwargs).flatten(2),
    )
