"""Benchmarks for portnet: timed side by side with the alternatives, never in tests.

``python -m benchmarks.epoch_time --help`` describes the epoch-time benchmark. See
the "Benchmarks, not timed tests" section of DESIGN.md for the method.
"""
