"""The entry script: every config through the LightningCLI, DDP on two CPU processes, and
the default comparison's report."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # plain `pytest` (not `python -m pytest`) from anywhere
    sys.path.insert(0, str(ROOT))

from experiments.cli import cli_main  # noqa: E402
from experiments.compare import COLUMNS  # noqa: E402
from experiments.fake_cifar100 import make_archive  # noqa: E402

pytestmark = [
    # cli_main(args) under pytest: Lightning warns that sys.argv holds pytest's own arguments.
    pytest.mark.filterwarnings("ignore:LightningCLI's args parameter"),
    # lightning 2.6 on torch 2.13 uses a deprecated pytree class (not ours to fix).
    pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning"),
]

SCRIPT = ROOT / "experiments" / "allcnnc.py"
CONFIGS = sorted((ROOT / "configs").glob("*.yaml"))
TINY_SYNTHETIC = [
    "--data=experiments.data.SyntheticCIFAR100DataModule",
    "--data.n_train=8",
    "--data.n_val=4",
    "--data.n_test=4",
    "--data.batch_size=4",
]


def run_script(args: list[str], cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_there_are_all_the_configs():
    names = {c.stem for c in CONFIGS}
    assert names == {"synthetic", "deepobs_cifar100", "native", "unfold", "lc", "ddp_cpu"}


@pytest.mark.parametrize(
    "config",
    [c for c in CONFIGS if c.stem != "ddp_cpu"],
    ids=lambda c: c.stem,
)
def test_fast_dev_run_every_config(config, tmp_path, monkeypatch):
    """In-process; the DDP config runs in a subprocess in test_ddp_two_cpu_processes."""
    monkeypatch.chdir(tmp_path)
    cli = cli_main(["fit", f"--config={config}", "--trainer.fast_dev_run=true", *TINY_SYNTHETIC])
    assert cli.trainer.state.finished
    impl = config.stem if config.stem in ("native", "unfold", "lc") else "native"
    assert cli.model.hparams.conv_impl == impl


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.stem)
def test_print_config(config, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", f"--config={config}", "--print_config"])
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert "class_path: experiments.lit_classifier.LitClassifier" in out
    assert "class_path: experiments.data." in out


def test_deepobs_config_is_the_deepobs_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = cli_main([f"--config={ROOT / 'configs/deepobs_cifar100.yaml'}"], run=False)
    cfg = cli.config
    assert cfg.trainer.max_epochs == 350
    assert cfg.data.class_path == "experiments.data.CIFAR100DataModule"
    assert cfg.data.init_args.batch_size == 256
    hp = cfg.model.init_args
    assert (hp.lr, hp.momentum, hp.weight_decay, hp.gamma) == (0.05, 0.9, 5e-4, 0.1)
    assert list(hp.milestones) == [200, 250, 300]


def test_real_data_config_on_a_fabricated_archive(tmp_path, monkeypatch):
    """The real CIFAR-100 DataModule (download, md5, augmentation) inside a Trainer."""
    monkeypatch.chdir(tmp_path)
    archive = tmp_path / "served" / "cifar-100-python.tar.gz"
    md5 = make_archive(archive, n_train=24, n_test=8)
    cli = cli_main(
        [
            "fit",
            f"--config={ROOT / 'configs/deepobs_cifar100.yaml'}",
            "--trainer.fast_dev_run=2",
            f"--data.url={archive.as_uri()}",
            f"--data.md5={md5}",
            f"--data.data_dir={tmp_path / 'data'}",
            "--data.val_size=8",
            "--data.batch_size=4",
            "--data.num_workers=0",
        ]
    )
    assert cli.trainer.state.finished
    assert torch.isfinite(cli.trainer.callback_metrics["train_loss_epoch"])


def test_ddp_two_cpu_processes(tmp_path):
    proc = run_script(
        [
            "fit",
            f"--config={ROOT / 'configs/ddp_cpu.yaml'}",
            "--trainer.max_epochs=1",
            "--trainer.enable_progress_bar=false",
            f"--trainer.logger.init_args.save_dir={tmp_path}",
            *TINY_SYNTHETIC,
        ],
        cwd=tmp_path,
    )
    log = proc.stdout + proc.stderr
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in log
    with open(tmp_path / "ddp_cpu" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert any(r["val_acc"] for r in rows)


def test_default_run_report(tmp_path):
    out = tmp_path / "results"
    args = ["--variants", "native", "unfold", "lc", "--epochs", "1", "--n-train", "8"]
    args += ["--n-val", "4", "--batch-size", "4", "--out", str(out), "--no-progress-bar"]
    proc = run_script(args, cwd=tmp_path)
    assert "| variant | time_per_epoch_s |" in proc.stdout
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    assert [r["variant"] for r in rows] == ["native", "unfold", "lc"]
    for r in rows:
        assert float(r["time_per_epoch_s"]) > 0 and float(r["peak_mem_mib"]) > 0
        assert 0 <= float(r["val_acc"]) <= 1
        assert float(r["max_abs_diff_init"]) < 1e-4  # float32 outputs of ~0.1 agree to ~1e-7
    assert (out / "results.md").read_text().count("\n| ") == 4  # header + 3 rows
    for name in ("curves.png", "resources.png", "native/logs/metrics.csv"):
        assert (out / name).stat().st_size > 0


@pytest.mark.parametrize(
    ("args", "match"),
    [
        pytest.param(["--variants", "cuda"], "invalid choice: 'cuda'", id="variant"),
        pytest.param(["--epochs", "0"], "expected a positive int, got '0'", id="epochs"),
        pytest.param(["--n-train", "-5"], "expected a positive int, got '-5'", id="n-train"),
    ],
)
def test_default_run_bad_arguments(args, match, capsys):
    from experiments.compare import main

    with pytest.raises(SystemExit):
        main(args)
    assert match in capsys.readouterr().err
