"""Progress output: silent library calls by default, plain lines off a terminal, tqdm on one."""

from __future__ import annotations

import io

import pytest
from helpers.arrays import synthetic_classification

import portnet as pn


def _model():
    return pn.Model(pn.mlp([20, 8, 10], "relu"), backend="numpy", seed=0)


def test_fit_is_silent_unless_asked(capsys):
    X, y = synthetic_classification(n=100, seed=1)
    _model().fit(X, y, epochs=2, batch_size=25, validation_split=0.2)
    assert capsys.readouterr() == ("", "")
    _model().fit(X, y, epochs=2, batch_size=25, validation_split=0.2, verbose=1)
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in out] == [["epoch", "1/2"], ["epoch", "2/2"]]
    assert all("val_loss" in line and "lr " in line for line in out)


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_one_plain_line_per_epoch():
    X, y = synthetic_classification(n=100, seed=2)
    stream = io.StringIO()  # a log file: no isatty
    _model().fit(X, y, epochs=3, batch_size=10, callbacks=[pn.ProgressLogger(3, stream)])
    text = stream.getvalue()
    assert "\r" not in text and "batch" not in text
    assert text.count("\n") == 3 and text.startswith("epoch   1/3  loss ")


def test_in_a_terminal_a_tqdm_bar_per_epoch_then_the_line():
    X, y = synthetic_classification(n=100, seed=3)
    stream = FakeTerminal()
    _model().fit(
        X, y, epochs=2, batch_size=10, callbacks=[pn.ProgressLogger(2, stream, mininterval=0)]
    )
    text = stream.getvalue()
    assert "10/10" in text and "batch" in text  # tqdm's counter and unit
    lines = [line for line in text.replace("\r", "\n").splitlines() if line.startswith("epoch")]
    assert [line.split()[1] for line in lines] == ["1/2", "2/2"]


@pytest.mark.parametrize("bar", [True, False])
def test_the_bar_can_be_forced(bar):
    X, y = synthetic_classification(n=40, seed=4)
    stream = io.StringIO()
    _model().fit(
        X, y, epochs=1, batch_size=10, callbacks=[pn.ProgressLogger(1, stream, bar, mininterval=0)]
    )
    assert ("4/4" in stream.getvalue()) is bar
