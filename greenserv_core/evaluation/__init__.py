"""Evaluation and benchmarks of routing (run as modules; results go to BENCHMARKS.md)."""
