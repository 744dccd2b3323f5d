"""Evaluation and benchmarks of routing (run as `greenserv bench <name>`; results go to BENCHMARKS.md)."""
