"""The All-CNN-C entry script: every config through the LightningCLI, the optimiser recorded in
hparams, DDP on two CPU processes, and the default comparison's report."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import yaml

from tests.helpers import run_script
from training.cli import CONFIGS, cli_main
from training.compare import COLUMNS, compare_main
from training.fake_cifar100 import cli_overrides

pytestmark = [
    # cli_main(args) under pytest: Lightning warns that sys.argv holds pytest's own arguments.
    pytest.mark.filterwarnings("ignore:LightningCLI's args parameter"),
]

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "allcnnc.py"
BASE = CONFIGS / "synthetic.yaml"  # the entry script's default config
TINY_SYNTHETIC = ["--data.n_train=8", "--data.n_val=4", "--data.n_test=4", "--data.batch_size=4"]
CONV_IMPL = {"native": "native", "unfold": "unfold", "lc": "lc"}  # config -> net's conv_impl


# ------------------------------------------------------------------------ the configs


@pytest.mark.parametrize(
    "config",
    [c for c in sorted(CONFIGS.glob("*.yaml")) if c.stem != "ddp_cpu"],
    ids=lambda c: c.stem,
)
def test_fast_dev_run_every_config(config, tmp_path, monkeypatch):
    """In-process, on top of the script's base config; DDP runs in test_ddp_two_cpu_processes."""
    monkeypatch.chdir(tmp_path)
    real_data = "training.data.CIFAR100DataModule" in config.read_text()
    extra = cli_overrides(tmp_path) if real_data else TINY_SYNTHETIC
    cli = cli_main(
        ["fit", f"--config={config}", "--trainer.fast_dev_run=true", *extra], default_config=BASE
    )
    assert cli.trainer.state.finished
    assert cli.model.net.conv_impl == CONV_IMPL.get(config.stem, "native")
    assert torch.isfinite(cli.trainer.callback_metrics["train_loss"])


def test_every_config_folder_has_a_smoke_test():
    """configs/*.yaml run above, configs/vit/*.yaml in test_experiments_vit.py (fast_dev_run and
    --print_config each); a new folder of configs needs its own smoke tests."""
    folders = {c.parent.relative_to(CONFIGS).as_posix() for c in CONFIGS.rglob("*.yaml")}
    assert folders == {".", "vit"}


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda c: c.stem)
def test_print_config(config, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["fit", f"--config={config}", "--print_config"], default_config=BASE)
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"] == "training.lit_classifier.LitClassifier"
    assert printed["model"]["init_args"]["net"]["class_path"] == "training.allcnnc_net.AllCNNC"
    assert printed["data"]["class_path"].startswith("training.data.")


@pytest.mark.parametrize(
    ("configs", "overrides", "optimizer", "lr", "scheduler"),
    [
        pytest.param(["synthetic"], [], torch.optim.Adam, 1e-3, None, id="synthetic-adam"),
        pytest.param(
            ["synthetic", "lc"], ["--model.optimizer.init_args.lr=0.01"], torch.optim.Adam,
            0.01, None, id="override-lr",
        ),
        pytest.param(
            ["deepobs_cifar100", "unfold"], [], torch.optim.SGD, 0.05,
            torch.optim.lr_scheduler.MultiStepLR, id="deepobs-sgd",
        ),
    ],
)  # fmt: skip
def test_hparams_record_the_optimizer_that_runs(configs, overrides, optimizer, lr, scheduler):
    args = [f"--config={CONFIGS / name}.yaml" for name in configs]
    cli = cli_main([*args, *overrides, "--trainer.logger=false"], default_config=BASE, run=False)
    built = cli.model.configure_optimizers()
    built_optimizer = built if scheduler is None else built["optimizer"]
    assert type(built_optimizer) is optimizer
    assert [g["lr"] for g in built_optimizer.param_groups] == [lr, lr]
    assert [g["weight_decay"] for g in built_optimizer.param_groups] == [5e-4, 0.0]
    recorded = cli.model.hparams_initial  # what the logger writes to hparams.yaml
    assert recorded["optimizer"]["class_path"] == f"torch.optim.{optimizer.__name__}"
    assert recorded["optimizer"]["init_args"]["lr"] == lr
    assert "lr" not in recorded  # no learning rate of the module's own that could disagree
    if scheduler is not None:
        assert type(built["lr_scheduler"]["scheduler"]) is scheduler
        assert recorded["lr_scheduler"]["init_args"]["milestones"] == [200, 250, 300]


def test_deepobs_config_is_the_deepobs_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = [f"--config={CONFIGS / 'deepobs_cifar100.yaml'}", "--trainer.logger=false"]
    cfg = cli_main(args, default_config=BASE, run=False).config
    assert cfg.trainer.max_epochs == 350 and cfg.seed_everything == 42
    assert cfg.data.class_path == "training.data.CIFAR100DataModule"
    assert (cfg.data.init_args.batch_size, cfg.data.init_args.augment) == (256, True)
    hp = cfg.model.init_args
    assert (hp.optimizer.init_args.lr, hp.optimizer.init_args.momentum) == (0.05, 0.9)
    assert list(hp.lr_scheduler.init_args.milestones) == [200, 250, 300]
    assert (hp.lr_scheduler.init_args.gamma, hp.weight_decay) == (0.1, 5e-4)


def test_ddp_two_cpu_processes(tmp_path):
    proc = run_script(
        SCRIPT,
        [
            "fit",
            f"--config={CONFIGS / 'ddp_cpu.yaml'}",
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


# ------------------------------------------------------------------------ default comparison


def test_default_run_report(tmp_path):
    """Three variants through the same CLI and YAML as ``fit``: the table, plots and logs."""
    out = tmp_path / "results"
    args = ["--variants", "native", "unfold", "lc", "--out", str(out), "--trainer.max_epochs=1"]
    args = [*args, *TINY_SYNTHETIC, "--trainer.enable_progress_bar=false"]
    proc = run_script(SCRIPT, args, tmp_path)
    assert "| variant | time_per_epoch_s | peak_mem_mib |" in proc.stdout
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0]) == COLUMNS
    assert [r["variant"] for r in rows] == ["native", "unfold", "lc"]
    for r in rows:
        assert float(r["time_per_epoch_s"]) > 0 and float(r["peak_mem_mib"]) > 0
        assert 0 <= float(r["train_acc"]) <= 1 and 0 <= float(r["val_acc"]) <= 1
        assert float(r["max_abs_diff_init"]) < 1e-4  # float32 outputs of ~0.1 agree to ~1e-7
    assert (out / "results.md").read_text().count("\n| ") == 4  # header + 3 rows
    for name in ("curves.png", "resources.png", "native/logs/metrics.csv"):
        assert (out / name).stat().st_size > 1000 or name.endswith(".csv")
    # each variant ran the YAML defaults: the base config, its own file, the overrides
    base = yaml.safe_load(BASE.read_text())
    for variant in ("native", "unfold", "lc"):
        ran = yaml.safe_load((out / variant / "logs" / "config.yaml").read_text())
        assert ran["model"]["init_args"]["net"]["init_args"]["conv_impl"] == variant
        assert ran["data"]["init_args"]["signal"] == 8.0  # the data module's own default
        assert ran["seed_everything"] == base["seed_everything"]
        hparams = yaml.safe_load((out / variant / "logs" / "hparams.yaml").read_text())
        assert hparams["optimizer"]["class_path"] == "torch.optim.Adam"
        assert hparams["optimizer"]["init_args"]["lr"] == 0.001


@pytest.mark.parametrize(
    ("args", "match"),
    [
        pytest.param(["--variants", "cuda"], "invalid choice: 'cuda'", id="variant"),
        pytest.param(["--epochs", "3"], "unrecognized argument '--epochs'", id="not-an-override"),
    ],
)
def test_default_run_bad_arguments(args, match, capsys):
    with pytest.raises(SystemExit):
        compare_main(
            args,
            script=SCRIPT,
            base_config=BASE,
            variant_configs={"native": CONFIGS / "native.yaml"},
            default_variants=["native"],
            out=Path("unused"),
            title="unused",
        )
    assert match in capsys.readouterr().err
