"""
The benchmark on this machine, read aloud
=========================================

``python experiments/benchmark.py`` times every op and layer against torch, ``unfoldNd`` and a
plain copy of the same bytes (see :doc:`/guide/benchmark`). This example runs a small subset of
the same cases with the benchmark's own code, on the machine that builds these docs, while it
builds them: All-CNN-C's ``conv7`` layer at batch 8 (``unfold``, ``fold`` and ``Conv2d``)
and a small 3-d volume (``unfold``, ``fold``), short timing. It writes the benchmark's CSV and
Markdown, draws the benchmark's figure from them, and reads the figure out in sentences. The
numbers are whatever this run measured (a docs build on a busy machine is a noisy place to
time things): for real figures run the benchmark itself.
"""

import csv
import sys
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import torch

# the benchmark's packages live in experiments/ (its entry script puts them on sys.path)
root = Path.cwd()
while not (root / "experiments" / "benchmarking").is_dir():
    root = root.parent
sys.path.insert(0, str(root / "experiments"))

from benchmarking.cases import OURS, conv_case, window_cases
from benchmarking.plots import plot_ratios
from benchmarking.run import device_name
from benchmarking.tables import write_tables
from benchmarking.timing import run_case

device = torch.device("cpu")
torch.set_num_threads(2)
torch.manual_seed(0)
# All-CNN-C's conv7: batch 8, 192 -> 192 channels, 8x8, kernel 3, stride 1, no padding
cases = window_cases("conv7 b8", "b8", (8, 192, 8, 8), 3, 1, 0, device, transpose=False)
cases.append(conv_case("conv7", "b8", 8, 192, 192, (8, 8), 3, 1, 0, device))
# a 3-d case: 2 volumes of 4 channels, 8x8x8, kernel 3, padding 1 (no torch op to compare with)
cases += window_cases("3d", "3d", (2, 4, 8, 8, 8), 3, 1, 1, device, transpose=False)

rows = []
for case in cases:
    rows += run_case(case, device, min_run_time=0.01, num_threads=2, memory=False)

meta = {"device": "cpu", "device_name": device_name(device), "torch": torch.__version__}
out_dir = Path(tempfile.mkdtemp(prefix="unfoldconv-benchmark-"))
paths, records, overview = write_tables(rows, out_dir, "benchmark-docs", "# docs subset", meta)
print("wrote", ", ".join(path.name for path in paths.values()), "on", meta["device_name"])

# %%
# The raw CSV, as the benchmark writes it (one row per implementation, case and mode):
with open(paths["csv"]) as file:
    table = list(csv.DictReader(file))
for row in table[:6]:
    print(f"{row['group']:7} {row['case']:34} {row['mode']:16} {row['impl']:17} "
          f"{float(row['time_ms']):8.3f} ms")  # fmt: skip

# %%
# The benchmark's figure, drawn by its own plotting code from these records: one panel per
# op and mode, one bar per competitor, the height ``unfoldconv time / their time`` on a log
# scale; **below the line at 1, unfoldconv is faster**.
figure_path = plot_ratios(records, out_dir / "benchmark-docs.png")
image = plt.imread(figure_path)
fig, ax = plt.subplots(figsize=(12, 12 * image.shape[0] / image.shape[1]))
ax.imshow(image)
ax.axis("off")
fig.tight_layout()

# %%
# Read aloud
# ----------
# Each bar of the figure, as a sentence:
for record in records:
    ours = record[f"{OURS} ms"]
    for key, ratio in record.items():
        if not key.startswith(f"{OURS}/"):
            continue
        other = key.split("/", 1)[1]
        verdict = "faster" if ratio < 1 else "slower"
        factor = 1 / ratio if ratio < 1 else ratio
        layer = record["case"].split()[0]  # "conv7" or "3d"
        print(f"{record['group']} {record['mode']} ({layer}): {ours:.2f} ms, "
              f"{factor:.2f}x {verdict} than {other} ({record[other + ' ms']:.2f} ms)")  # fmt: skip
