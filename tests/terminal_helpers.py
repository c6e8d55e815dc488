"""A pseudo-terminal of a given width, and what a terminal shows after given output."""

import fcntl
import os
import pty
import select
import struct
import subprocess
import termios


def open_pty(columns, rows=50):
    """(master fd, slave fd) of a new pseudo-terminal `columns` wide."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    return master, slave


def drain(master, timeout=0.0):
    """Everything readable from `master` now (waiting up to `timeout` for the first byte)."""
    data = b""
    while select.select([master], [], [], timeout)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the other end closed (Linux: EIO)
            break
        if not chunk:
            break
        data += chunk
        timeout = 0.0
    return data


def run_on_pty(argv, columns, cwd, env, timeout):
    """(exit code, bytes written) of a command whose stdin, stdout and stderr are a
    terminal `columns` wide."""
    master, slave = open_pty(columns)
    env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                               env=env, close_fds=True)
    os.close(slave)
    data = b""
    try:
        while True:
            chunk = drain(master, timeout=1.0)
            data += chunk
            if not chunk and process.poll() is not None:
                break
        code = process.wait(timeout=timeout)
    finally:
        os.close(master)
    return code, data


def screen_rows(data, columns):
    """The rows a terminal `columns` wide shows (scrolled-off ones included), right
    spaces stripped, after `data` (bytes or text)."""
    import pyte

    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    screen = pyte.HistoryScreen(columns, 50, history=100_000)
    pyte.Stream(screen).feed(text)
    history = ["".join(line[x].data for x in range(columns)) for line in screen.history.top]
    rows = [row.rstrip() for row in history + list(screen.display)]
    while rows and not rows[-1]:
        rows.pop()
    return rows


def written_lines(data):
    """Each line of `data` as a terminal draws it in turn: split at newlines and at
    carriage returns (a progress line redrawn in place is one line per redraw)."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    return [segment for line in text.split("\n") for segment in line.split("\r")]
