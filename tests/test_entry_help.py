"""What the command lines tell a newcomer: ``--help`` of the three entry scripts (subcommands,
config folders, what the default run does), the benchmark's ``--only`` groups, one default per
option, and no warning printed on the way."""

from __future__ import annotations

import importlib.util
import re
import warnings
from pathlib import Path

import pytest

from benchmarking import run as benchmark_run
from training.cli import CONFIGS

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"


def _entry_script(name: str):
    """The entry script ``experiments/<name>.py`` as a module (its ``main`` runs in-process)."""
    spec = importlib.util.spec_from_file_location(f"entry_{name}", EXPERIMENTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _help_of(script: str, args: list[str], capsys) -> str:
    """What ``python experiments/<script>.py <args>`` prints; no warning may be raised."""
    main = _entry_script(script).main if script != "benchmark" else benchmark_run.main
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SystemExit) as info:
            main(args)
            raise SystemExit(0)  # the comparison's help returns instead of exiting
    assert info.value.code in (0, None)
    assert [str(w.message) for w in caught] == []
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("script", "args", "expected"),
    [
        pytest.param(
            "vit", ["--help"],
            ["fit, validate, test, predict", "mae", "configs/vit/", "mae.yaml", "video.yaml",
             "synthetic", "on the CPU", "about a minute", "configs/vit/NAME.yaml", "results/vit",
             *(config.name for config in (CONFIGS / "vit").glob("*.yaml"))],
            id="vit",
        ),
        pytest.param(
            "allcnnc", ["-h"],
            ["fit, validate, test, predict", "configs/", "synthetic.yaml", "lc.yaml",
             "synthetic CIFAR-100-shaped", "on the CPU", "a few minutes", "configs/NAME.yaml"],
            id="allcnnc",
        ),
        pytest.param("vit", ["mae", "--help"], ["--trainer.max_epochs"], id="vit-mae"),
        pytest.param("benchmark", ["--help"], ["--only", "--device"], id="benchmark"),
    ],
)  # fmt: skip
def test_help_says_what_runs_and_warns_nothing(script, args, expected, capsys):
    out = _help_of(script, args, capsys)
    for text in expected:
        assert text in out, text
    assert "(default: None)" not in out


def _benchmark_help(capsys) -> str:
    with pytest.raises(SystemExit) as info:
        benchmark_run.parse_args(["--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_benchmark_help_lists_the_groups_and_one_default_per_option(capsys):
    text = " ".join(_benchmark_help(capsys).split())  # argparse wraps lines
    groups = benchmark_run.known_groups()
    assert {"unfold", "fold", "Conv2d"} <= set(groups)
    assert "the groups: " + ", ".join(groups) in text
    assert "where every case runs: cpu, or cuda" in text
    # each option's help says its default at most once
    for option_help in re.split(r" (?=--[a-z])", text.split("options:")[1]):
        assert option_help.count("default") <= 1, option_help


@pytest.mark.slow  # builds every case of the full benchmark (tens of seconds on a busy machine)
def test_benchmark_groups_are_those_of_the_cases():
    """The list is read from the cases module, so a group another session adds is listed."""
    import torch

    from benchmarking.cases import ALLCNNC_LAYERS, allcnnc_cases, other_cases

    cpu = torch.device("cpu")
    full = allcnnc_cases(cpu, [32, 256], ALLCNNC_LAYERS) + other_cases(cpu, quick=False)
    assert {case.group for case in full} <= set(benchmark_run.known_groups())


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--only", "bogus"], r"--only: unknown group\(s\) \['bogus'\]; the groups are .*Conv2d"),
        (["--only", "unfold,Conv9d"], r"unknown group\(s\) \['Conv9d'\]"),
        (["--only", ","], r"--only: unknown group"),
    ],
    ids=["unknown", "one-of-two-unknown", "empty"],
)
def test_benchmark_only_is_checked(args, match, capsys):
    with pytest.raises(SystemExit) as info:
        benchmark_run.parse_args(args)
    assert info.value.code == 2
    assert re.search(match, capsys.readouterr().err)


def test_benchmark_with_no_case_left_writes_nothing(tmp_path):
    with pytest.raises(SystemExit, match="no case matches --only=unfold --match=no-such-case"):
        benchmark_run.main(["--quick", "--shapes", "conv1", "--only", "unfold", "--match",
                            "no-such-case", "--out", str(tmp_path)])  # fmt: skip
    assert list(tmp_path.iterdir()) == []
