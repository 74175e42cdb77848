"""Runnable studies built on portnet: ``python -m experiments.fashion`` and the reproductions."""
