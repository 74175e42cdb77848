"""Benchmarks for portnet: timed side by side with the alternatives, never in tests.

``python -m benchmarks.epoch_time --help`` describes the epoch-time benchmark;
benchmarks/README.md ("Reading the numbers") the method.
"""
