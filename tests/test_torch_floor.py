"""The torch floor (``torch>=2.11`` in pyproject.toml) checked by reading the code.

torch 2.11 cannot be installed here (CI runs 2.13), but the GPU machines this project is
measured on run torch 2.11 + Triton 3.6. So every ``torch.*`` name the package, the experiments
and the tests reach (found in the syntax tree: ``torch.x.y``, ``F.x``, ``from torch.x import
y``) must be in :data:`REVIEWED`, the list of names checked to exist in torch 2.11; a new name
fails here until someone checks it and adds it. :data:`NEWER_THAN_FLOOR` lists APIs known to be
newer than 2.11 (from the 2.12 release notes), refused outright.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ["unfoldconv", "experiments", "tests"]

# Every torch name the code uses, each present in torch 2.11. Most are torch 1.x or 2.0; the
# newer ones say since when: all well before 2.11.
REVIEWED = frozenset(
    """
    torch.baddbmm torch.enable_grad torch.func.vjp torch.mm torch.relu_
    torch.inference_mode torch.is_inference_mode_enabled torch.set_grad_enabled
    torch.utils._python_dispatch.TorchDispatchMode
    torch._dynamo.testing.CompileCounterWithBackend torch.distributed.all_reduce
    torch.distributed.destroy_process_group torch.distributed.init_process_group
    torch.distributed.is_available torch.distributed.is_initialized torch.multiprocessing.spawn
    torch.nn.LazyConv2d torch.nn.ModuleDict torch.nn.ModuleList
    torch.nn.parameter.UninitializedParameter torch.nn.utils.parametrizations.weight_norm
    torch.nn.utils.parametrize.is_parametrized torch.nn.utils.weight_norm torch.sum
    torch.Generator torch.Size torch.Tensor torch.__version__
    torch._C._are_functorch_transforms_active torch._C._functorch.is_functorch_wrapped_tensor
    torch._dynamo.reset torch.arange torch.as_tensor torch.autocast
    torch.autograd.Function.jvp torch.autograd.forward_ad.dual_level
    torch.autograd.forward_ad.make_dual torch.autograd.forward_ad.unpack_dual
    torch.autograd.grad torch.autograd.gradcheck torch.autograd.gradgradcheck
    torch.backends.cuda.matmul.allow_tf32 torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.flags torch.bfloat16 torch.bincount torch.bmm torch.bool torch.cat
    torch.cdist torch.channels_last torch.channels_last_3d torch.compile
    torch.compiler.is_compiling torch.complex128 torch.complex64 torch.contiguous_format
    torch.cos torch.cuda.current_device torch.cuda.device torch.cuda.get_device_name
    torch.cuda.is_available
    torch.cuda.max_memory_allocated torch.cuda.memory_allocated
    torch.cuda.reset_peak_memory_stats torch.cuda.synchronize torch.device torch.dtype
    torch.einsum torch.empty torch.empty_like torch.empty_strided torch.equal torch.eye
    torch.finfo torch.float16 torch.float32 torch.float64 torch.float8_e4m3fn torch.full
    torch.full_like torch.func.functional_call torch.func.grad torch.func.jacrev torch.func.jvp
    torch.func.vmap torch.get_autocast_dtype torch.get_num_threads torch.get_rng_state
    torch.int16 torch.int32 torch.int64 torch.int8 torch.is_autocast_enabled
    torch.is_grad_enabled torch.isfinite torch.kron torch.linalg.pinv torch.load torch.long
    torch.manual_seed torch.matmul torch.memory_format torch.meshgrid
    torch.nn.Conv1d torch.nn.Conv2d torch.nn.Conv3d torch.nn.ConvTranspose1d
    torch.nn.ConvTranspose2d torch.nn.ConvTranspose3d torch.nn.Dropout torch.nn.Flatten
    torch.nn.Identity torch.nn.LayerNorm torch.nn.Linear torch.nn.Module torch.nn.Parameter
    torch.nn.ReLU torch.nn.Sequential torch.nn.TransformerEncoderLayer torch.nn.ZeroPad2d
    torch.nn.functional.avg_pool2d torch.nn.functional.conv1d torch.nn.functional.conv2d
    torch.nn.functional.conv3d torch.nn.functional.conv_transpose1d
    torch.nn.functional.conv_transpose2d torch.nn.functional.conv_transpose3d
    torch.nn.functional.cross_entropy torch.nn.functional.fold torch.nn.functional.interpolate
    torch.nn.functional.layer_norm torch.nn.functional.linear torch.nn.functional.pad
    torch.nn.functional.unfold torch.nn.grad.conv2d_weight torch.nn.init.constant_
    torch.nn.init.normal_ torch.nn.init.trunc_normal_ torch.nn.init.uniform_
    torch.nn.init.xavier_normal_ torch.nn.modules.conv._ConvNd.__init__
    torch.nn.modules.conv._ConvNd.extra_repr torch.nn.modules.conv._ConvTransposeNd.__init__
    torch.no_grad torch.ones torch.ones_like torch.optim.Adam torch.optim.AdamW
    torch.optim.Optimizer torch.optim.SGD torch.optim.lr_scheduler.LRScheduler
    torch.optim.lr_scheduler.MultiStepLR torch.optim.lr_scheduler.StepLR
    torch.profiler.ProfilerActivity.CPU torch.profiler.ProfilerActivity.CUDA
    torch.profiler.profile torch.rand torch.randint torch.randn torch.randn_like torch.randperm
    torch.roll torch.save torch.set_num_threads torch.stack torch.strided
    torch.testing._internal.common_methods_invocations.op_db
    torch.testing._internal.common_modules.module_db torch.testing.assert_close torch.tensor
    torch.uint32 torch.uint8 torch.utils.benchmark.Timer torch.utils.data.DataLoader
    torch.utils.data.TensorDataset torch.where torch.zeros torch.zeros_like
    """.split()  # noqa: SIM905 (a word list reads better than 150 quoted strings)
)
# Since: torch.func.* 2.0, torch.compiler.is_compiling 2.3, get_autocast_dtype and
# is_autocast_enabled(device_type) 2.4, torch.uint32 2.3, float8_e4m3fn 2.1,
# lr_scheduler.LRScheduler 2.0.

# APIs newer than 2.11 (torch 2.12's release notes): name (or source pattern) -> why refused
NEWER_THAN_FLOOR = {
    "torch.accelerator.Graph": "torch 2.12 (device-agnostic graph capture)",
    "torch.Stream.is_capturing": "torch 2.12",
}
NEWER_PATTERNS = {
    r"\.is_capturing\(": "Stream.is_capturing() is torch 2.12",
    r"Adagrad\([^)]*fused": "Adagrad(fused=True) is torch 2.12",
}


def _torch_names(path: Path) -> set[str]:
    """The ``torch.*`` names ``path`` reaches, through any alias of torch or its modules."""
    tree = ast.parse(path.read_text())
    aliases, names = {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "torch":
                    aliases[alias.asname or "torch"] = alias.name if alias.asname else "torch"
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "torch":
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                names.add(f"{node.module}.{alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain, base = [], node
            while isinstance(base, ast.Attribute):
                chain.append(base.attr)
                base = base.value
            if isinstance(base, ast.Name) and base.id in aliases:
                names.add(".".join([aliases[base.id], *reversed(chain)]))
    return names


def _sources() -> list[Path]:
    return sorted(p for folder in SOURCES for p in (ROOT / folder).rglob("*.py"))


def _used() -> dict[str, list[str]]:
    """Each longest name used -> the files using it (a prefix of a longer one is implied)."""
    used: dict[str, list[str]] = {}
    for path in _sources():
        for name in _torch_names(path):
            used.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return {n: f for n, f in used.items() if not any(m.startswith(n + ".") for m in used)}


def test_every_torch_name_is_reviewed_for_torch_2_11():
    unreviewed = {name: files for name, files in _used().items() if name not in REVIEWED}
    assert not unreviewed, (
        "torch names not yet checked to exist in torch 2.11 (the GPU machines' torch): "
        f"{unreviewed}; check each in torch 2.11's docs and add it to REVIEWED"
    )


def test_no_api_newer_than_the_floor():
    used = _used()
    newer = {name: why for name, why in NEWER_THAN_FLOOR.items() if name in used}
    for path in _sources():
        if path.name == Path(__file__).name:
            continue
        for pattern, why in NEWER_PATTERNS.items():
            if re.search(pattern, path.read_text()):
                newer[str(path.relative_to(ROOT))] = why
    assert not newer, f"APIs newer than torch 2.11: {newer}"


def test_the_scanner_sees_aliases():
    """The scan is what the two tests above rest on: it must see through F, nn and imports."""
    source = ROOT / "unfoldconv" / "kernels" / "_conv_function.py"
    names = _torch_names(source)
    assert "torch.autograd.Function" in names and "torch.channels_last_3d" in names
    assert "torch.nn.functional.conv2d" in _torch_names(ROOT / "tests" / "test_kernels_conv.py")


def test_declared_floors():
    pyproject = (ROOT / "pyproject.toml").read_text()  # no tomllib: Python 3.9 is supported
    (dependencies,) = re.findall(r"^dependencies = \[(.*?)\]", pyproject, flags=re.M | re.S)
    assert '"torch>=2.11"' in dependencies
    # tuple kernel arguments (the window d-tuples) need Triton 3.3; the GPU machines run 3.6
    assert re.search(r'^\s*"triton>=3.3",', pyproject, flags=re.M)


@pytest.mark.parametrize("name", sorted(NEWER_THAN_FLOOR))
def test_newer_names_are_not_reviewed(name):
    assert name not in REVIEWED
