"""Speed and memory benchmarks for pydatatask, reported as ratios against lower bounds.

Run ``python -m benchmarks.run`` from the repository root; see ``docs/benchmarks.rst``.
"""
