"""Benchmarks: each bench_*.py module has a main() that prints figures as ratios against a baseline of the same run."""
