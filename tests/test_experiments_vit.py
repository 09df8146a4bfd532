"""The ViT entry script (experiments/vit.py): every ViT config through the LightningCLI on its
own base (configs/vit/base.yaml), --print_config, the MAE option's figure, the aligned stems,
and the default comparison's report."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from torch.testing import assert_close

import vit
from tests.helpers import run_script
from training.cli import cli_main
from training.compare import COLUMNS
from training.fake_cifar100 import cli_overrides
from training.lit_classifier import LitClassifier
from training.lit_mae import LitMAE
from training.vit_net import ConvStem, build_vit
from unfoldconv.layers import PatchEmbed

pytestmark = [
    # cli_main(args) under pytest: Lightning warns that sys.argv holds pytest's own arguments.
    pytest.mark.filterwarnings("ignore:LightningCLI's args parameter"),
]

SCRIPT = Path(vit.__file__)
BASE = vit.BASE_CONFIG
CONFIGS = sorted(vit.VIT_CONFIGS.glob("*.yaml"))
TINY_DATA = ["--data.train_size=8", "--data.val_size=8", "--data.batch_size=4"]
TINY_NET = [f"--model.init_args.net.init_args.{k}" for k in ("embed_dim=16", "depth=1")]
TINY_NET += ["--model.init_args.net.init_args.num_heads=2"]
# config -> (stem class, spatial dims of its input, LightningModule)
EXPECTED = {
    "base": (PatchEmbed, 2, LitClassifier),
    "patch": (PatchEmbed, 2, LitClassifier),
    "overlap": (PatchEmbed, 2, LitClassifier),
    "conv": (ConvStem, 2, LitClassifier),
    "video": (PatchEmbed, 3, LitClassifier),
    "mae": (PatchEmbed, 2, LitMAE),
    "cifar100": (PatchEmbed, 2, LitClassifier),
}


def test_every_config_is_listed():
    assert sorted(c.stem for c in CONFIGS) == sorted(EXPECTED)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_fast_dev_run_every_config(config, tmp_path, monkeypatch):
    """In-process, on top of configs/vit/base.yaml, with a smaller net and data."""
    monkeypatch.chdir(tmp_path)
    stem_class, d, module_class = EXPECTED[config.stem]
    real_data = "training.data.CIFAR100DataModule" in config.read_text()
    extra = cli_overrides(tmp_path) if real_data else TINY_DATA
    if module_class is LitClassifier:
        extra = [*extra, "--trainer.callbacks.min_run_time=0.01"]  # StemTiming's
    cli = cli_main(
        ["fit", f"--config={config}", "--trainer.fast_dev_run=true", *TINY_NET, *extra],
        default_config=BASE,
    )
    assert cli.trainer.state.finished
    assert type(cli.model) is module_class
    stem = cli.model.net.stem
    assert type(stem) is stem_class and stem.proj.weight.dim() == 2 + d
    overlapping = tuple(stem.proj.kernel_size) != tuple(stem.stride)
    assert overlapping == (config.stem == "overlap")
    assert torch.isfinite(cli.trainer.callback_metrics["train_loss"])
    if module_class is LitClassifier:
        assert cli.trainer.callback_metrics["stem_fwd_bwd_ms"] > 0
    else:
        figure = Path(cli.trainer.default_root_dir) / "reconstruction.png"  # no logger
        assert figure.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_print_config(config, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", f"--config={config}", "--print_config"], default_config=BASE)
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    module_class = EXPECTED[config.stem][2]
    assert printed["model"]["class_path"] == f"{module_class.__module__}.{module_class.__name__}"
    net = printed["model"]["init_args"]["net"]
    assert net["class_path"] == "training.vit_net.build_vit"
    assert net["init_args"]["stem"] == {"conv": "conv", "overlap": "overlap"}.get(
        config.stem, "patch"
    )
    assert printed["data"]["class_path"].startswith("training.")


def test_video_config_is_tubelets(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [f"--config={vit.VIT_CONFIGS / 'video.yaml'}", "--trainer.logger=false"]
    cli = cli_main(args, default_config=BASE, run=False)
    assert cli.model.net.stem.patch_size == (2, 4, 4)
    assert cli.model.net.grid_size == (4, 8, 8)
    assert cli.datamodule.shape == (3, 8, 32, 32)


@pytest.mark.parametrize(
    "img_size, patch", [((32, 32), 4), ((8, 32, 32), (2, 4, 4))], ids=["image", "video"]
)
def test_align_makes_the_overlapping_stem_the_patch_stem(img_size, patch):
    """The overlapping stem with the patch kernel in its middle (zeros around) computes the
    non-overlapping embedding: outputs of the aligned ViTs agree, forward and backward."""
    small = {"embed_dim": 16, "depth": 1, "num_heads": 2}
    torch.manual_seed(0)
    reference = LitClassifier(build_vit("patch", img_size, patch, **small), torch.optim.SGD)
    model = LitClassifier(build_vit("overlap", img_size, patch, **small), torch.optim.SGD)
    vit.align(reference, model)
    x = torch.randn(2, 3, *img_size)
    assert_close(model.net.stem(x), reference.net.stem(x))
    assert_close(model(x), reference(x))
    model(x).square().sum().backward()
    reference(x).square().sum().backward()
    grads = dict(model.named_parameters())
    for name, parameter in reference.named_parameters():
        grad = grads[name].grad
        if name == "net.stem.proj.weight":  # the patch kernel sits in the middle of the larger one
            margins = [(k - p) // 2 for p, k in zip(parameter.shape[2:], grad.shape[2:])]
            grad = grad[(..., *(slice(m, m + p) for m, p in zip(margins, parameter.shape[2:])))]
        # float32 sums in another order; the class token's gradient is ~1e3 (the first
        # LayerNorm of a 1e-6 vector), so the tolerance follows each gradient's scale
        scale = parameter.grad.abs().max().item()
        assert_close(grad, parameter.grad, rtol=1e-5, atol=1e-6 * scale, msg=name)
    torch.manual_seed(0)
    unaligned = build_vit("overlap", img_size, patch, **small)
    assert (unaligned(x) - reference(x)).abs().max() > 1e-3  # so the checks above can fail


def test_mae_subcommand_writes_the_figure(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    vit.main(
        ["mae", "--trainer.max_epochs=1", "--trainer.enable_progress_bar=false",
         f"--trainer.logger.init_args.save_dir={tmp_path / 'out'}", *TINY_DATA, *TINY_NET]
    )  # fmt: skip
    figure = tmp_path / "out" / "mae" / "logs" / "reconstruction.png"
    assert figure.read_bytes()[:4] == b"\x89PNG" and figure.stat().st_size > 1000
    with open(figure.parent / "metrics.csv") as f:
        assert any(r["val_loss"] for r in csv.DictReader(f))


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) in pixels from a PNG's IHDR chunk."""
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def test_default_run_report(tmp_path, monkeypatch, capsys):
    """The three stems through the same CLI and YAML as ``fit``: the table, plots and logs.

    In-process for speed: each variant's command (``python experiments/vit.py fit --config
    ...``) runs through ``vit.main`` instead of a new interpreter; the subprocess route itself
    is what test_experiments_cli's default-run test and the slow test below exercise."""
    commands = []

    def run_in_process(command, check):
        assert command[:2] == [sys.executable, str(SCRIPT)] and check
        commands.append(command[2:])
        vit.main(command[2:])
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr("training.compare.subprocess.run", run_in_process)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results"
    tiny = ["--trainer.max_epochs=1", "--trainer.callbacks.min_run_time=0.01"]
    vit.main(["--out", str(out), "--trainer.enable_progress_bar=false", *tiny, *TINY_DATA,
              *TINY_NET])  # fmt: skip
    assert [c[:5] for c in commands] == [
        ["fit", "--config", str(BASE), "--config", str(vit.VIT_CONFIGS / f"{v}.yaml")]
        for v in vit.VARIANTS
    ]
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    columns = (*COLUMNS[:4], "stem_fwd_bwd_ms", *COLUMNS[4:])
    assert tuple(rows[0]) == columns
    assert "| " + " | ".join(columns) + " |" in capsys.readouterr().out
    assert [r["variant"] for r in rows] == list(vit.VARIANTS)
    for r in rows:
        assert float(r["time_per_epoch_s"]) > 0 and float(r["peak_mem_mib"]) > 0
        assert float(r["stem_fwd_bwd_ms"]) > 0
        assert 0 <= float(r["train_acc"]) <= 1 and 0 <= float(r["val_acc"]) <= 1
        assert float(r["max_abs_diff_init"]) < 1e-4  # float32 logits of ~1 agree to ~1e-6
    assert (out / "results.md").read_text().count("\n| ") == 4  # header + 3 rows
    png_size(out / "curves.png")
    # three bar charts (time per epoch, peak memory, stem forward+backward), 450 px each
    assert png_size(out / "resources.png")[0] == 3 * 450
    base = yaml.safe_load(BASE.read_text())
    for variant in vit.VARIANTS:
        ran = yaml.safe_load((out / variant / "logs" / "config.yaml").read_text())
        assert ran["model"]["init_args"]["net"]["init_args"]["stem"] == variant
        assert ran["model"]["init_args"]["net"]["init_args"]["depth"] == 1  # the override
        assert ran["seed_everything"] == base["seed_everything"]
        assert ran["data"]["init_args"]["seed"] == base["data"]["init_args"]["seed"]
        with open(out / variant / "logs" / "metrics.csv") as f:
            assert any(r["val_acc"] for r in csv.DictReader(f))


@pytest.mark.slow
def test_default_run_learns_with_every_stem(tmp_path):
    """The real default (no overrides): every stem well above chance (10 classes)."""
    out = tmp_path / "results"
    run_script(SCRIPT, ["--out", str(out), "--trainer.enable_progress_bar=false"], tmp_path)
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == list(vit.VARIANTS)
    for r in rows:
        assert float(r["val_acc"]) > 0.5, r


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    """Classifier and MAE (its figure written by rank 0 only) on two CPU processes."""
    common = ["--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.max_epochs=1",
              "--trainer.enable_progress_bar=false", *TINY_DATA, *TINY_NET]  # fmt: skip
    save = f"--trainer.logger.init_args.save_dir={tmp_path}"
    proc = run_script(SCRIPT, ["fit", "--trainer.strategy=ddp", save, *common], tmp_path)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stdout + proc.stderr
    with open(tmp_path / "vit" / "version_0" / "metrics.csv") as f:
        assert any(r["val_acc"] for r in csv.DictReader(f))
    strategy = "--trainer.strategy=ddp_find_unused_parameters_true"
    proc = run_script(SCRIPT, ["mae", strategy, save, *common], tmp_path)
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stdout + proc.stderr
    assert (tmp_path / "mae" / "logs" / "reconstruction.png").stat().st_size > 1000
