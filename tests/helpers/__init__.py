"""Helpers shared by several test modules; pytest's fixtures and hooks stay in conftest.py.

- :mod:`helpers.arrays`: checks of arrays on a backend, host copies, tolerances, a
  small classification problem;
- :mod:`helpers.cases`: the emulated CuPy and GPU case ids of the backend matrix;
- :mod:`helpers.data`: a fake pooch, the offline ``isolated`` fixture, a small release;
- :mod:`helpers.gpu_fakes`: stand-in ``nvidia-smi`` and ``pytest`` programs;
- :mod:`helpers.ops`: inputs and float64 oracles for layers, losses and regularizers;
- :mod:`helpers.optim`: the optimizers tested, a small problem, tree helpers.

pytest puts ``tests/`` on ``sys.path`` (it has no ``__init__.py``), so a test
imports ``from helpers.ops import ...``.
"""
