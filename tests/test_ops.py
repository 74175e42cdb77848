"""One Ops per array library: what it answers, its cached variants, and that it is
the only place in the library that asks which library an array belongs to."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from portnet.backends.ops import Ops, ops_for

import portnet as pn
from portnet.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = {"numpy": "numpy", "torch": "torch", "cupy": "cupy", "jax": "jax"}


def test_each_backend_names_its_library_and_capabilities(backend):
    ops = backend.ops
    assert isinstance(ops, Ops) and ops.xp is backend.xp
    assert ops.library == LIBRARY.get(backend.name, "standard")
    assert ops.inplace is ops.can_mutate is (ops.library in ("numpy", "cupy", "torch"))
    assert ops.can_compile is (backend.name == "jax")
    assert (ops.native is not None) is (ops.library in ("cupy", "torch"))
    assert ops.single_core_passes is (ops.library == "numpy")


def test_ops_are_cached_per_namespace_array_type_and_mode(backend):
    x = backend.asarray(np.arange(3.0), "float32")
    assert ops_for(backend.xp) is backend.ops is ops_for(x)
    rebinding = backend.ops.with_inplace(False)
    assert rebinding is backend.ops.with_inplace(False) is rebinding.with_inplace(False)
    assert rebinding.xp is backend.xp and rebinding.library == backend.ops.library
    assert not rebinding.inplace and rebinding.with_inplace(None) is backend.ops
    if backend.ops.can_mutate:
        assert rebinding is not backend.ops and rebinding.with_inplace(True) is backend.ops


def test_ops_for_refuses_what_is_neither_array_nor_namespace():
    with pytest.raises(InputError, match="neither an array nor an Array API namespace"):
        ops_for(object())


def test_sync_free_spellings_give_the_standard_values(backend):
    """Each library's spelling computes what the plain standard call does."""
    host = np.array([-2.0, -0.5, 0.0, 0.25, 3.0], dtype=np.float32)
    x = backend.asarray(host)
    ops = backend.ops
    expected = {
        "maximum": np.maximum(host, 0.1),
        "minimum": np.minimum(host, 0.1),
        "relu": np.maximum(host, 0.0),
        "clip": np.clip(host, -1.0, 1.0),
        "sign": np.sign(host),
    }
    got = {
        "maximum": ops.maximum(x, 0.1),
        "minimum": ops.minimum(x, 0.1),
        "relu": ops.relu(x),
        "clip": ops.clip(x, -1.0, 1.0),
        "sign": ops.sign(x),
    }
    for name, value in got.items():
        assert str(value.dtype) == str(x.dtype), name
        np.testing.assert_array_equal(backend.to_numpy(value), expected[name], err_msg=name)
    np.testing.assert_allclose(backend.to_numpy(ops.dot(x, x)), host @ host, rtol=1e-6)
    nan = ops.scalar_like(float("nan"), x)
    assert nan.shape == () and str(nan.dtype) == str(x.dtype)
    assert np.isnan(backend.to_numpy(nan))


def test_moving_average_and_descent_follow_the_mode():
    inplace, rebinding = ops_for(np), ops_for(np).with_inplace(False)
    for ops in (inplace, rebinding):
        average, x, p = np.full(3, 2.0), np.array([1.0, 2.0, 4.0]), np.ones(3)
        kept = x.copy()
        result = ops.ema(average, x, 0.75)  # 0.75 * 2 + 0.25 * x
        np.testing.assert_array_equal(result, [1.75, 2.0, 2.5])
        np.testing.assert_array_equal(x, kept)  # not consumed
        assert (result is average) is ops.inplace
        result = ops.ema(np.full(3, 2.0), x, 0.5, consume=True)
        np.testing.assert_array_equal(result, [1.5, 2.0, 3.0])
        assert bool(x[0] == 0.5) is ops.inplace  # consumed: x holds (1 - decay) x
        d = np.array([1.0, -1.0, 2.0])
        stepped = ops.descend(p, d, 0.5)  # p - 0.5 d
        np.testing.assert_array_equal(stepped, [0.5, 1.5, 0.0])
        assert (stepped is p) is ops.inplace


@pytest.mark.parametrize("inplace", [True, False])
def test_fused_products_give_x_times_a_plus_b_in_either_mode(backend, inplace):
    """multiply_add and add_product equal the two-pass formula (torch fuses them, so
    its rounding may differ in the last place); only add_product's accumulator may
    be updated, and only in place mode; the row factors broadcast along the rows."""
    ops = backend.ops
    if inplace and not ops.can_mutate:
        pytest.skip(f"{backend.name} arrays cannot be updated in place")
    ops = ops.with_inplace(inplace)
    rng = np.random.default_rng(0)
    x_h, acc_h = rng.standard_normal((2, 4, 6)).astype(np.float32)
    a_h, b_h = rng.standard_normal((2, 6)).astype(np.float32)
    x, a, b, acc = (backend.asarray(v.copy()) for v in (x_h, a_h, b_h, acc_h))  # unshared
    y = ops.multiply_add(x, a, b)
    np.testing.assert_allclose(backend.to_numpy(y), x_h * a_h + b_h, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(backend.to_numpy(x), x_h)  # nothing was changed
    np.testing.assert_array_equal(backend.to_numpy(b), b_h)
    z = ops.add_product(acc, x, a)
    np.testing.assert_allclose(backend.to_numpy(z), acc_h + x_h * a_h, rtol=1e-6, atol=1e-6)
    assert (z is acc) is inplace
    if not inplace:
        np.testing.assert_array_equal(backend.to_numpy(acc), acc_h)
    assert str(y.dtype) == str(z.dtype) == str(x.dtype)


@pytest.mark.parametrize("inplace", [True, False])
def test_relu_backprop_masks_where_the_output_is_positive(backend, inplace):
    """Each library's mask (torch's sign of the output) gives dy [y > 0], zeros and
    NaN outputs masked off, with dy consumed in place mode only."""
    ops = backend.ops
    if inplace and not ops.can_mutate:
        pytest.skip(f"{backend.name} arrays cannot be updated in place")
    ops = ops.with_inplace(inplace)
    y_h = np.array([[0.0, 2.5, float("nan")], [1e-30, 0.0, 7.0]], dtype=np.float32)
    dy_h = np.array([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]], dtype=np.float32)
    y, dy = backend.asarray(y_h.copy()), backend.asarray(dy_h.copy())
    dx = ops.relu_backprop(dy, y)
    assert str(dx.dtype).endswith("float32")  # "torch.float32" on torch
    np.testing.assert_array_equal(backend.to_numpy(dx), [[0.0, -2.0, 0.0], [4.0, 0.0, -6.0]])
    assert (dx is dy) is inplace


def test_ops_is_a_leaf_that_imports_only_errors():
    tree = ast.parse((ROOT / "backends" / "ops.py").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert imported - {"__future__", "dataclasses", "importlib", "types", "typing"} == {
        "array_api_compat",
        "..errors",
    }


# -- ops_for is the one place that asks which library it is ------------------------------
LIBRARY_NAMES = {"numpy", "cupy", "torch", "jax", "array_api_strict", "standard"}


def library_checks(source: str) -> list[tuple[int, str]]:
    """Lines that ask which array library something is: array-api-compat's
    ``is_<library>_namespace`` / ``is_<library>_array``, or a ``.name`` / ``.library``
    compared with a library's name."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name.startswith("is_") and name.endswith(("_namespace", "_array")):
                found.append((node.lineno, name))
        elif isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            named = any(
                isinstance(s, ast.Attribute) and s.attr in ("name", "library") for s in sides
            )
            literals = {
                s.value
                for side in sides
                for s in ast.walk(side)
                if isinstance(s, ast.Constant) and isinstance(s.value, str)
            }
            if named and literals & LIBRARY_NAMES:
                found.append((node.lineno, "compares a library name"))
    return found


def test_the_library_check_finder_finds_each_kind():
    source = (
        "import array_api_compat\n"
        "array_api_compat.is_torch_namespace(xp)\n"
        "is_numpy_array(x)\n"
        "if backend.name != 'jax': pass\n"
        "flag = ops.library in ('numpy', 'cupy')\n"
        "ok = backend.name == other.name\n"
    )
    assert [line for line, _ in library_checks(source)] == [2, 3, 4, 5]


def test_ops_for_is_the_only_library_check_in_the_library():
    """Outside backends/ (the adapters and ops.py) and portnet/testing, no module asks
    which array library it is: each asks the library's Ops what it needs."""
    offenders = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path in sorted((ROOT / "portnet").rglob("*.py"))
        if "testing" not in path.relative_to(ROOT / "portnet").parts
        for line, what in library_checks(path.read_text())
    ]
    assert offenders == []
    assert library_checks((ROOT / "backends" / "ops.py").read_text())  # the one place


def test_forcing_in_place_is_refused_through_the_optimizer_too():
    pytest.importorskip("array_api_strict")
    strict = pn.get_backend("array_api_strict")
    with pytest.raises(pn.ConfigError, match="cannot be updated in place"):
        pn.SGD(0.1, inplace=True).ops_for(strict.xp)
    assert pn.SGD(0.1, inplace=False).ops_for(np).inplace is False
    assert pn.SGD(0.1).ops_for(np) is ops_for(np)
