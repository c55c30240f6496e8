"""The performance benchmark (issue 5): `python benchmarks/bench.py [--smoke]`; see docs/benchmarks.md."""
