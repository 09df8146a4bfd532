"""The benchmark behind ``experiments/benchmark.py``.

``cases`` (what is compared, on which shapes), ``timing`` (time and peak memory of one case),
``load`` (the busy process of ``--load``), ``tables`` (CSV and Markdown), ``plots``, ``run``
(the command line).
"""
