"""Benchmarks: every stage next to its raw baseline, in one run (``python -m bench [--full]``).

See docs/performance.md for what is measured, how, and what the numbers mean.
"""
