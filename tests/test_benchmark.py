"""The benchmark's quick mode runs end to end and writes its three reports."""

from __future__ import annotations

import csv

from experiments import benchmark


def test_quick_benchmark_writes_reports(tmp_path):
    paths = benchmark.main(
        ["--quick", "--out", str(tmp_path), "--only", "unfold,fold,unfold_transpose"]
    )
    with paths["csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    impls = {row["impl"] for row in rows}
    assert {"unfoldconv", "torch", "unfoldNd", "floor"} <= impls
    assert {row["mode"] for row in rows} == {"forward", "forward+backward"}
    assert all(float(row["time_ms"]) > 0 for row in rows)
    # peak memory is measured: unfold of a real input allocates its output
    unfold_rows = [r for r in rows if r["group"] == "unfold" and r["impl"] == "unfoldconv"]
    assert all(float(r["peak_mib"]) > 0 for r in unfold_rows)
    markdown = paths["markdown"].read_text()
    assert "unfoldconv/torch" in markdown and "unfoldconv/floor" in markdown
    assert paths["plot"].stat().st_size > 1000
