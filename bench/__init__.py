"""Benchmarks of canary_stats: operating characteristics against baselines, and speed.

Run everything with ``make bench`` (or ``python -m bench.run_all [--quick]``);
the results go to ``docs/benchmarks.md``.
"""
