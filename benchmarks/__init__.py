"""Benchmarks of the real ``python -m bot`` process against loopback fakes (not CI).

Each module measures one figure and its baseline in the same run and prints the ratio:
``overhead`` (press → photo minus GPU and queue time), ``gpu_busy`` (idle GPU between
queued jobs), ``chat_load`` (reply latency while pictures are queued) and ``memory``
(peak RSS with 2 MB pictures). ``python -m benchmarks.run_all`` runs the four and checks
each figure against its target. See ``benchmarks/README.md`` for the definitions.
"""
