"""What training shows on a terminal: a progress line that fits the terminal and is
erased at each epoch's end, and log lines wrapped to its width (pairs kept whole).
Driven on a real pseudo-terminal, replayed through a terminal emulator (pyte)."""

import logging
import os

import pytest

from sgma_keras.workflow.logs import StepProgress, fit_verbosity
from sgma_keras.workflow.terminal import TerminalFormatter, terminal_width, wrap_line
from tests.terminal_helpers import drain, open_pty, screen_rows, written_lines

pyte = pytest.importorskip("pyte")


@pytest.fixture
def tty80():
    master, slave = open_pty(80)
    stream = os.fdopen(slave, "w", encoding="utf-8", closefd=True)
    yield master, stream
    stream.close()
    os.close(master)


def _logs(step):
    # Every term and metric a joint epoch logs, as Keras hands them over.
    return {"loss": 5.0 - step / 10, "loss_cls": 1.5, "loss_cct": 3.25, "loss_cpt": 0.35,
            "loss_div": 0.46, "gzsl_h": 0.0, "zsl_acc": 0.5}


def test_progress_line_fits_the_terminal_and_is_erased(tty80):
    master, stream = tty80
    progress = StepProgress("warmup", 2, terms=("loss_cls",), stream=stream)
    progress.set_params({"steps": 30, "epochs": 2})
    for epoch in range(2):
        progress.on_epoch_begin(epoch)
        for step in range(30):
            progress.on_train_batch_end(step, _logs(step))
        progress.on_test_begin()
        progress.on_epoch_end(epoch, {**_logs(29), "val_zsl_acc": 0.4125, "val_loss": 2.0})
        stream.flush()
    data = drain(master)
    lines = [line for line in written_lines(data) if line.strip()]
    assert any("warmup epoch 1/2 step 0/30" in line for line in lines), lines
    assert any("warmup epoch 2/2 validating step 30/30" in line for line in lines), lines
    assert any("loss 2.1 cls 1.5 val zsl 41.2" in line for line in lines)  # epoch 1's val
    assert all(len(line) <= 80 for line in lines), max(lines, key=len)
    assert not any(term in line for line in lines for term in ("cct", "cpt", "div"))
    assert screen_rows(data, 80) == []  # nothing left behind on the screen


def test_progress_line_is_erased_when_fit_stops_mid_epoch(tty80):
    master, stream = tty80
    progress = StepProgress("joint", 5, stream=stream)
    progress.set_params({"steps": 10})
    progress.on_epoch_begin(0)
    progress.on_train_batch_end(0, _logs(0))
    progress.close()  # what _fit_stage does when fit raises
    stream.write("interrupted\n")
    stream.flush()
    assert screen_rows(drain(master), 80) == ["interrupted"]


def test_fit_verbosity():
    class Tty:
        def isatty(self):
            return True

    assert fit_verbosity("auto", Tty()) == (True, True)
    assert fit_verbosity("auto", open(os.devnull, "w")) == (False, True)
    assert fit_verbosity(0) == (False, False)
    assert fit_verbosity(2) == (False, True)


def test_wrap_line_keeps_name_value_pairs_whole():
    text = ("joint epoch 4/6 19s | loss 4.151 loss_cct 2.132 loss_cls 1.256 | val_zsl_acc "
            "0.5933 val_loss nan | gamma_cc = 0.5 | path /a/very/long/path/to/a/file.keras")
    lines = wrap_line(text, 22)
    assert all(len(line) <= 22 for line in lines), lines
    for pair in ["loss 4.151", "loss_cct 2.132", "val_zsl_acc 0.5933", "val_loss nan",
                 "gamma_cc = 0.5"]:
        assert any(pair in line for line in lines), (pair, lines)
    assert "".join(lines).replace(" ", "").endswith("/a/very/long/path/to/a/file.keras")
    assert wrap_line("short", 40) == ["short"]


def test_log_lines_are_wrapped_on_a_terminal_only(tty80):
    master, stream = tty80
    assert terminal_width(stream) == 80
    record = logging.LogRecord("sgma_keras", logging.INFO, __file__, 1,
                               "Selection: %d training images of %d classes, %s", (
                                   45, 5, "15 validation images of 1 validation classes "
                                   "(data builtin, images in /tmp/cache/builtin/c8_n96)"), None)
    text = TerminalFormatter(stream).format(record)
    rows = text.split("\n")
    assert len(rows) > 1 and all(len(row) <= 80 for row in rows), rows
    indent = len(rows[0]) - len(rows[0].lstrip("0123456789-:, "))
    assert all(row.startswith(" " * indent) for row in rows[1:])
    assert " ".join(" ".join(row.split()) for row in rows).endswith(record.getMessage())
    with open(os.devnull, "w") as file:
        assert "\n" not in TerminalFormatter(file).format(record)
