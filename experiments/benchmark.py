"""Benchmark unfoldconv's engine ops and layers against torch, unfoldNd and a memory copy.

Run from the repository root::

    python experiments/benchmark.py                     # CPU, full (tens of minutes on 2 cores)
    python experiments/benchmark.py --quick             # the 7 All-CNN-C shapes at batch 32, short
    python experiments/benchmark.py --quick --load      # the same beside one busy process
    python experiments/benchmark.py --device cuda       # on a GPU (cuDNN on and off)
    python experiments/benchmark.py --backend torch --only unfold,fold,Conv2d

Cases: :mod:`benchmarking.cases`; measurement: :mod:`benchmarking.timing`; tables:
:mod:`benchmarking.tables`. Writes ``benchmark[-quick][-load][-<backend>].{csv,md,png}`` to
``--out`` (default ``results/benchmark/<device>/``).
"""

from __future__ import annotations

from benchmarking.run import main

if __name__ == "__main__":
    main(description=__doc__.split("\n\n")[0])
