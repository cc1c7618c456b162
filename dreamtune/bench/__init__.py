"""Benchmarks that train: the DreamBench harness, the method comparison, their CLI commands.
They orchestrate training, sampling and evaluation, so they sit above all three."""
