"""The scikit-learn demos: the defaults table and the grid search, locally and on Dask."""

from __future__ import annotations

import pytest

pytest.importorskip("sklearn")

from experiments import sklearn_defaults, sklearn_demo  # noqa: E402

QUICK = ["--train-size", "200", "--max-iter", "2", "--folds", "2"]


def test_the_defaults_table_compares_both_libraries_row_by_row(capsys):
    assert sklearn_defaults.main(["--seeds", "1", "--data", "iris,diabetes"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")][1:]
    assert [row.split("|")[1].strip() for row in rows] == ["iris", "diabetes"]
    for row in rows:
        cells = [cell.strip() for cell in row.split("|")[1:-1]]
        ours, theirs = float(cells[3]), float(cells[4])
        assert abs(ours - theirs) < 1e-9, row  # the same draws give the same training
    with pytest.raises(SystemExit, match="unknown data set"):
        sklearn_defaults.main(["--data", "mnist"])


def test_the_grid_search_on_a_dask_cluster_picks_what_one_machine_picks(capsys):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=True, dashboard_address=":0"
    ) as cluster:
        assert sklearn_demo.main([*QUICK, "--scheduler", cluster.scheduler_address]) == 0
    out = capsys.readouterr().out
    assert "16 fits, Dask at" in out and "(1 workers)" in out
    assert "Dask and n_jobs=2 picked the same parameters" in out
    assert "fold accuracies" in out


def test_an_unreachable_scheduler_says_how_to_start_one():
    with pytest.raises(SystemExit, match="dask scheduler"):
        sklearn_demo.main([*QUICK, "--scheduler", "tcp://127.0.0.1:9"])
