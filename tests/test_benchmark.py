"""The benchmark: a tiny ``--quick`` run (quiet and under ``--load``), its tables' columns and
arithmetic, the busy process's clean-up, and runs without the optional comparators."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmarking.load import busy_process
from benchmarking.run import main
from benchmarking.tables import ratio_records, raw_records
from benchmarking.timing import Row

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--quick", "--batches", "2", "--shapes", "conv7,conv8", "--min-run-time", "0.01"]
RAW_COLUMNS = [
    "group", "series", "case", "mode", "impl", "time_ms", "peak_mib", "bytes", "gb_per_s",
    "copy_share", "device", "device_name", "torch", "threads", "backend", "load", "quick",
    "unfoldNd",
]  # fmt: skip


def read_csv(path: Path) -> list[dict]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("bench")
    groups = ["--only", "unfold,fold,unfold_transpose,Conv2d", "--match", "conv"]
    return main([*TINY, *groups, "--out", str(out)])


def test_quick_run_writes_csv_markdown_and_plot(quick_run):
    assert {p.name for p in quick_run.values()} == {
        "benchmark-quick.csv",
        "benchmark-quick.md",
        "benchmark-quick.png",
    }
    assert quick_run["plot"].stat().st_size > 1000
    rows = read_csv(quick_run["csv"])
    assert list(rows[0]) == RAW_COLUMNS
    assert {r["device"] for r in rows} == {"cpu"} and {r["load"] for r in rows} == {"quiet"}
    assert {r["torch"] for r in rows} == {torch.__version__} and {r["threads"] for r in rows} == {
        "2"
    }
    impls = {(r["group"], r["impl"]) for r in rows}
    for group in ("unfold", "fold"):
        assert {(group, i) for i in ("unfoldconv", "torch", "unfoldNd", "copy")} <= impls
    assert {("Conv2d", i) for i in ("unfoldconv", "torch", "F.unfold+matmul")} <= impls
    assert {r["mode"] for r in rows} == {"forward", "forward+backward"}
    assert {r["case"] for r in rows if r["group"] == "Conv2d"} == {
        "conv7 b2 192->192 8x8 k3 s1 p0",
        "conv8 b2 192->192 6x6 k1 s1 p0",
    }
    assert all(float(r["time_ms"]) > 0 for r in rows)
    # peak memory is measured: unfold of a real input allocates its output
    assert all(float(r["peak_mib"]) > 0 for r in rows if r["group"] == "unfold")


def test_quick_run_bandwidth_is_bytes_over_time(quick_run):
    rows = read_csv(quick_run["csv"])
    x = torch.randn(2, 192, 8, 8)
    least_bytes = (x.numel() + F.unfold(x, 3).numel()) * 4  # read x, write the columns
    conv7 = [r for r in rows if r["group"] == "unfold" and r["case"].startswith("conv7")]
    for r in conv7:
        passes = 1 if r["mode"] == "forward" else 2
        assert int(r["bytes"]) == passes * least_bytes
        torch.testing.assert_close(
            float(r["gb_per_s"]), int(r["bytes"]) / float(r["time_ms"]) / 1e6, rtol=1e-6, atol=0
        )
    copy = {r["mode"]: float(r["time_ms"]) for r in conv7 if r["impl"] == "copy"}
    for r in conv7:
        expected = copy[r["mode"]] / float(r["time_ms"])
        torch.testing.assert_close(float(r["copy_share"]), expected, rtol=1e-6, atol=0)
    assert all(r["bytes"] == "" for r in rows if r["group"] == "Conv2d")


def test_quick_run_markdown_tables(quick_run):
    text = quick_run["markdown"].read_text()
    assert "device: cpu" in text and f"torch: {torch.__version__}" in text
    assert "threads: 2" in text and "load: quiet" in text and "backend: auto" in text
    assert "| group | series | mode | ratio | median | worst | best | cases |" in text
    for ratio in ("unfoldconv/torch", "unfoldconv/unfoldNd", "unfoldconv/copy"):
        assert f"| unfold | b2 | forward | {ratio} |" in text
    assert "| Conv2d | b2 | forward+backward | unfoldconv/F.unfold+matmul |" in text
    assert "unfoldconv GB/s | copy GB/s | unfoldconv % of copy |" in text


def test_ratio_records_arithmetic():
    def row(impl, ms, bytes_moved=400_000):
        return Row("fold", "b2", "s", "forward", impl, ms, 1.0, bytes_moved)

    rows = [row("unfoldconv", 2.0), row("torch", 4.0), row("copy", 0.5)]
    (record,) = ratio_records(rows)
    assert list(record)[:4] == ["group", "series", "case", "mode"]
    assert record["unfoldconv/torch"] == 2.0 / 4.0 and record["unfoldconv/copy"] == 2.0 / 0.5
    assert record["unfoldconv GB/s"] == 400_000 / 2.0 / 1e6
    assert record["copy GB/s"] == 400_000 / 0.5 / 1e6
    assert record["unfoldconv % of copy"] == 100 * 0.5 / 2.0
    raw = raw_records(rows, {"load": "quiet"})
    assert [r["copy_share"] for r in raw] == [0.25, 0.125, 1.0]


def test_load_run_records_the_busy_process(tmp_path):
    one_case = ["--only", "fold", "--match", "conv8", "--load", "--out", str(tmp_path)]
    paths = main([*TINY, *one_case])
    rows = read_csv(paths["csv"])
    assert paths["csv"].name == "benchmark-quick-load.csv"
    assert {r["load"] for r in rows} == {"1 busy process"}
    assert {r["case"] for r in rows} == {"conv8 b2 2x192x6x6 k1 s1 p0"}
    assert "load: 1 busy process" in paths["markdown"].read_text()


def test_busy_process_spins_and_is_killed_on_error():
    with pytest.raises(KeyboardInterrupt), busy_process() as child:
        time.sleep(0.3)
        assert child.poll() is None  # still spinning
        raise KeyboardInterrupt
    assert child.returncode == -signal.SIGKILL


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_busy_process_dies_with_a_killed_benchmark(tmp_path):
    """SIGKILL leaves no clean-up to run: the child must still go (it asked Linux to kill it)."""
    code = "from benchmarking.load import busy_process\nimport time\n"
    code += "with busy_process() as c:\n    print(c.pid, flush=True)\n    time.sleep(60)\n"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "experiments"), str(ROOT)])}
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    child_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    try:
        assert _gone(child_pid, timeout=10)
    finally:  # a failed check must not leave the child spinning
        if not _gone(child_pid, timeout=0):
            os.kill(child_pid, signal.SIGKILL)


def _gone(pid: int, timeout: float) -> bool:
    """Whether process ``pid`` has ended (or is a zombie) within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split()[2]
        except FileNotFoundError:
            return True
        if state == "Z":  # dead, waiting to be reaped
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def test_runs_without_unfoldnd_and_matplotlib(tmp_path, monkeypatch, capsys):
    """A GPU machine may have neither: their columns and the plot are skipped with a note."""
    monkeypatch.setitem(sys.modules, "unfoldNd", None)  # `import unfoldNd` raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    paths = main([*TINY, "--only", "unfold", "--match", "conv8", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "note: unfoldNd is not installed" in out and "note: matplotlib is not installed" in out
    assert set(paths) == {"csv", "markdown"}
    rows = read_csv(paths["csv"])
    assert {r["impl"] for r in rows} == {"unfoldconv", "torch", "copy"}
    assert {r["unfoldNd"] for r in rows} == {"absent"}


@pytest.mark.parametrize(
    ("args", "match"),
    [
        pytest.param(["--backend", "triton"], "needs TRITON_INTERPRET=1", id="triton-on-cpu"),
        pytest.param(["--shapes", "conv5"], "--shapes: expected names from", id="shape"),
        pytest.param(["--batches", "0"], "--batches: expected positive ints, got [0]", id="batch"),
        pytest.param(["--threads", "0"], "--threads: expected a positive int, got 0", id="threads"),
    ],
)
def test_bad_arguments(args, match, capsys, monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(SystemExit):
        main(args)
    assert match in capsys.readouterr().err
