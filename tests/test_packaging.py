"""The wheel installs ``backends/`` as ``portnet.backends`` and nothing generic in site-packages."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: use the installed setuptools, so the test needs no network.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(REPO),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (path,) = out.glob("portnet-*.whl")
    return path


def test_wheel_maps_backends_into_the_package(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "portnet/backends/__init__.py" in names
    assert "portnet/backends/numpy_backend.py" in names
    assert "portnet/data/fashion_mnist_sample.npz" in names
    top_level = {name.split("/")[0] for name in names}
    assert top_level <= {
        "portnet",
        f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info",
    }, top_level


def test_wheel_imports_from_outside_the_checkout(wheel, tmp_path):
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    code = (
        "import portnet, portnet.backends, portnet.testing, sys;"
        "assert portnet.__file__.startswith(sys.argv[1]), portnet.__file__;"
        "b = portnet.get_backend('numpy');"
        "m = portnet.Model(portnet.mlp([3, 4, 2]), backend=b);"
        "print(type(b).__module__, m.predict([[0.0, 1.0, 2.0]]).shape)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PORTNET_BACKEND")}
    # -I: isolated mode, so neither the checkout nor an editable install is on sys.path;
    # the standard site-packages (numpy, array-api-compat) are added back explicitly.
    import numpy

    deps = str(Path(numpy.__file__).parents[1])
    result = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path[:0] = [{str(site)!r}, {deps!r}];" + code,
            str(site),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["portnet.backends.numpy_backend", "(1,)"]
