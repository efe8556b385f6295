"""The pieces of the HTTP load tools ``benchmarks/load.py`` and ``benchmarks/compare_reference.py``.

``load.py``: :mod:`.load_config` (command line), :mod:`.model` (presigned ops), :mod:`.measure`
(latencies, percentiles, CPU), :mod:`.target` (HTTP clients), :mod:`.runner` (the phases),
:mod:`.report` (lines and tables), :mod:`.load_main` (one run).

``compare_reference.py``: :mod:`.compare_config` (command line), :mod:`.servers` (ours and the
reference), :mod:`.drive` (a load generator run), :mod:`.comparison` (the table),
:mod:`.compare_main` (both runs).

Shared by both: :mod:`.cli` (argument helpers), :mod:`.net` (loopback, free ports).
"""
