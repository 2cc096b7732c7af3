"""Benchmarks: figures measured against baselines in the same run (``python -m bench``).

Nothing here asserts on time: every figure is printed with its baseline, its ratio and its
target, and whether the target was met. See ``bench/README.md``.
"""
