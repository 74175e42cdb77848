"""The --quick versions of studies S0, S1 and S2 on numpy and on array-api-strict device1.

Each case runs ``python -m experiments.reproduce <study> --quick`` in-process and
checks what a reader relies on: results.json / results.md, every figure, accuracies
in range and above chance, falling losses and small gradient-check errors.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("yaml")

from experiments.reproduce.__main__ import main  # noqa: E402

CASES = [
    pytest.param(("numpy", None), id="numpy"),
    pytest.param(("array_api_strict", "device1"), id="strict-device1"),
]

FIGURES = {
    "s0": [
        "pca_reconstruction.png",
        "pca_components_all.png",
        "pca_components_tshirt_ankleboot.png",
        "pca_components_coat_pullover.png",
        "cv_loss_tshirt_ankleboot.png",
        "cv_loss_coat_pullover.png",
        "cv_loss_softmax.png",
    ],
    "s1": [
        "data_samples.png",
        "softmax.png",
        "momentum.png",
        "l2_0.001.png",
        "l1_1e-05.png",
        "activation_sigmoid.png",
        "activation_relu.png",
    ],
    "s2": [
        "default.png",
        "lr_0.01.png",
        "lr_0.05.png",
        "l2_0.001.png",
        "l1_1e-06.png",
        "activation_sigmoid.png",
        "activation_relu.png",
        "topology_64.png",
        "topology_32x32.png",
    ],
}

# Minimum test accuracy (%) a quick run must beat, per claim keyword: clearly above chance.
FLOORS = {"T-shirt vs Ankle boot": 90.0, "Coat vs Pullover": 60.0}
CHANCE_10 = 10.0


def _run(study: str, case, tmp_path: Path) -> Path:
    name, device = case
    out = tmp_path / study
    argv = [study, "--quick", "--out", str(out), "--backend", name]
    if device:
        argv += ["--device", device]
    assert main(argv) == 0
    return out


def _check_common(study: str, out: Path, case) -> list[dict]:
    claims = json.loads((out / "results.json").read_text())
    assert claims, "no claims written"
    for claim in claims:
        assert set(claim) >= {"claim", "paper", "portnet", "unit", "setting"}
        assert claim["backend"] == case[0]
        assert isinstance(claim["portnet"], int | float) and math.isfinite(claim["portnet"])
        if claim["unit"] == "%":
            assert 0.0 <= claim["portnet"] <= 100.0, claim
    md = (out / "results.md").read_text()
    assert f"{study.upper()}: paper vs portnet" in md
    for figure in FIGURES[study]:
        path = out / figure
        assert path.is_file(), f"missing figure {figure}"
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{figure} is not a PNG"
        assert path.stat().st_size > 5000, f"{figure} looks empty"
    return claims


def _accuracy_claims(claims, word="test accuracy"):
    return [c for c in claims if c["unit"] == "%" and word in c["claim"].lower()]


@pytest.mark.parametrize("case", CASES)
def test_s0_quick(case, tmp_path):
    out = _run("s0", case, tmp_path)
    claims = _check_common("s0", out, case)
    accuracies = {c["claim"]: c["portnet"] for c in claims}
    assert len(accuracies) == 3
    for name, value in accuracies.items():
        floor = next((f for key, f in FLOORS.items() if key in name), 3 * CHANCE_10)
        assert value > floor, f"{name}: {value:.2f} % is not above {floor} %"
    curves = json.loads((out / "curves.json").read_text())
    assert len(curves) == 3
    for name, curve in curves.items():
        for key in ("train_loss", "val_loss"):
            folds = curve[key]
            assert len(folds) == 3  # the quick run's folds
            for values in folds:
                assert values[-1] < values[0], f"{name} {key} did not fall: {values}"
    md = (out / "results.md").read_text()
    assert "| 784 | 100.00 % | 0.0000 |" in md  # all components reconstruct exactly


@pytest.mark.parametrize("case", CASES)
def test_s1_quick(case, tmp_path):
    out = _run("s1", case, tmp_path)
    claims = _check_common("s1", out, case)
    by_name = {c["claim"]: c for c in claims}
    assert by_name["Training set size"]["portnet"] + by_name["Validation set size"][
        "portnet"
    ] == pytest.approx(3000)
    assert by_name["Std of one image after normalization"]["portnet"] == pytest.approx(1.0, 1e-4)
    accuracies = [c for c in claims if c["unit"] == "%"]
    assert len(accuracies) >= 6
    for c in accuracies:
        assert c["portnet"] > 4 * CHANCE_10, c
    grad = json.loads((out / "gradient_check.json").read_text())["rows"]
    assert len(grad) == 6
    for row in grad:
        assert row["rel_error"] < 1e-3 or row["abs_diff"] < 1e-8, row
    _check_losses_fall(out)
    md = (out / "results.md").read_text()
    for table in ("Table 3: gradient check", "Regularization sweeps", "Activation experiments"):
        assert table in md


@pytest.mark.parametrize("case", CASES)
def test_s2_quick(case, tmp_path):
    out = _run("s2", case, tmp_path)
    claims = _check_common("s2", out, case)
    tests = [c for c in claims if c["claim"].endswith("test accuracy")]
    # default, learning rates, L2, L1, activations, topologies
    assert len(tests) == 1 + 2 + 1 + 1 + 2 + 2
    for c in tests:
        assert c["portnet"] > 3 * CHANCE_10, c
        assert "KMNIST" in c["setting"] and "fashion_mnist" in c["setting"]
    grad = json.loads((out / "gradient_check.json").read_text())["rows"]
    assert len(grad) == 6
    for row in grad:
        assert row["rel_error"] < 1e-3, row
    _check_losses_fall(out)
    md = (out / "results.md").read_text()
    for table in ("Table 1", "Table 3", "Table 4", "Table 5", "Table 6", "Table 7"):
        assert f"### {table}" in md


def test_s1_quick_compiled_on_jax(tmp_path, monkeypatch):
    """--compile trains every S1 model through the jitted step; the study's checks hold."""
    pytest.importorskip("jax")
    import portnet.training.compiled

    compiled_epochs = []
    original = portnet.training.compiled.train_epoch_compiled

    def counting(*args, **kwargs):
        compiled_epochs.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(portnet.training.compiled, "train_epoch_compiled", counting)
    out = tmp_path / "s1"
    assert (
        main(["s1", "--quick", "--no-plots", "--backend", "jax", "--compile", "--out", str(out)])
        == 0
    )
    assert json.loads((out / "config.json").read_text())["compile"] is True
    curves = json.loads((out / "curves.json").read_text())
    # Every epoch of every model (softmax, momentum, L2, L1, activations) was compiled.
    assert len(compiled_epochs) == sum(len(h["train_loss"]) for h in curves.values())
    _check_losses_fall(out)
    claims = json.loads((out / "results.json").read_text())
    for c in claims:
        if c["unit"] == "%" and "accuracy" in c["claim"].lower():
            assert c["portnet"] > 4 * CHANCE_10, c


def _check_losses_fall(out: Path) -> None:
    curves = json.loads((out / "curves.json").read_text())
    assert curves
    for name, history in curves.items():
        losses = history["train_loss"]
        assert len(losses) >= 2, name
        assert losses[-1] < losses[0], f"{name}: training loss did not fall {losses}"
        assert 0.0 <= history["test"]["accuracy"] <= 1.0


def test_report_cites_every_study_by_authors_and_title(tmp_path):
    from experiments.reproduce.registry import STUDIES
    from experiments.reproduce.results import write_reproduction_report

    report = write_reproduction_report(target=tmp_path / "REPRODUCTION.md").read_text()
    for study in STUDIES.values():
        assert study.citation.count("*") == 2, study.name  # an italic title
        assert f"The study: {study.citation}." in report
    assert "Yuanye Liu, *Rookie: A Three-layer Neural Network" in report
