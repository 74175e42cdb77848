"""benchmarks.sklearn_mlp runs end to end on a small size and writes a well-formed report.

Only the report's shape is checked, never speed (speed is measured in benchmarks/).
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("sklearn")

from benchmarks import sklearn_mlp  # noqa: E402


def test_a_small_run_times_both_libraries_and_names_the_machine(tmp_path, capsys):
    name = tmp_path / "bench"
    args = ["--train-size", "300", "--max-iter", "2", "--repeats", "1", "--dtypes", "float32"]
    assert (
        sklearn_mlp.main(
            [*args, "--libraries", "portnet,scikit-learn,portnet-cupy", "--name", str(name)]
        )
        == 0
    )
    document = json.loads(name.with_suffix(".json").read_text())
    rows = {row["library"]: row for row in document["results"]}
    for library in ("portnet", "scikit-learn"):
        assert rows[library]["status"] == "ok" and rows[library]["median_s"] > 0
        assert 0 <= rows[library]["accuracy"] <= 1
    assert rows["scikit-learn"]["ratio"] == 1.0
    assert rows["portnet"]["ratio"] == pytest.approx(
        rows["portnet"]["median_s"] / rows["scikit-learn"]["median_s"]
    )
    assert rows["portnet-cupy"]["status"] == "skipped" and rows["portnet-cupy"]["reason"]
    text = name.with_suffix(".md").read_text()
    assert "| float32 | portnet |" in text and "CPU:" in text and "Thread pools" in text
    with pytest.raises(SystemExit, match="unknown --libraries"):
        sklearn_mlp.main(["--libraries", "keras"])
