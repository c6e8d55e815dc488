"""`train.py --local-processes N`: a multi-process launch on this machine, in one command.

Starts N copies of the training command, each with `--num-processes N --process-id i
--coordinator 127.0.0.1:PORT,...` (free ports of this machine), and waits for them.
Process 0 (the chief) writes the run folder and prints as usual; the others' lines
are shown with a `[process i]` prefix.

When one process ends with an error or is killed, the launch is over: the others are
stopped (SIGTERM, then SIGKILL after `STOP_GRACE_S`) and the launcher prints which
process ended and how, then exits 1. Running the same command again resumes from the
last backup. Ctrl-C or SIGTERM to the launcher stop every process the same way.

This module imports no framework (the processes it starts do).
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

# How long stopped processes get to end before they are killed.
STOP_GRACE_S = 10
_POLL_S = 0.1


def free_ports(count, host="127.0.0.1"):
    """`count` distinct TCP ports free on `host` right now."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _relay(stream, prefix, out):
    for line in iter(stream.readline, ""):
        out.write(prefix + line if prefix else line)
        out.flush()
    stream.close()


def _ending(code):
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"ended with exit code {code}"


def _stop(processes, sig=signal.SIGTERM):
    """Sends `sig` to the running processes, waits up to STOP_GRACE_S, then kills."""
    for p in processes:
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except OSError:
                pass
    deadline = time.monotonic() + STOP_GRACE_S
    for p in processes:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def launch_local(commands, env=None, stdout=None, stderr=None):
    """Runs `commands` (one argv per process, process 0 first) to the end of the launch.

    Returns 0 when every process ended with 0; else 1 (or 128 + the signal that
    stopped the launcher), after a line on `stderr` naming the process that ended
    first and how.
    """
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
    count = len(commands)
    processes, threads = [], []
    for index, argv in enumerate(commands):
        p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, errors="replace")
        processes.append(p)
        prefix = "" if index == 0 else f"[process {index}] "
        thread = threading.Thread(target=_relay, args=(p.stdout, prefix, stdout), daemon=True)
        thread.start()
        threads.append(thread)

    received = []

    def on_signal(signum, frame):
        received.append(signum)

    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, on_signal)
        except ValueError:  # not the main thread
            break
    try:
        failed = None
        while True:
            if received:
                _stop(processes, signal.SIGINT if received[0] == signal.SIGINT
                      else signal.SIGTERM)
                stderr.write(f"launch stopped by {signal.Signals(received[0]).name}; every "
                             "process was stopped; run the same command to resume\n")
                return 128 + int(received[0])
            codes = [p.poll() for p in processes]
            ended = [i for i, code in enumerate(codes) if code not in (None, 0)]
            # A killed process ends the others (their collectives fail): name it first.
            failed = min(ended, key=lambda i: (codes[i] >= 0, i)) if ended else None
            if failed is not None or all(code == 0 for code in codes):
                break
            time.sleep(_POLL_S)
        if failed is None:
            return 0
        p = processes[failed]
        stderr.write(f"error: process {failed} of {count} (PID {p.pid}) {_ending(p.returncode)}; "
                     "stopping the other processes of the launch. Run the same command "
                     "again to resume from the last backup.\n")
        stderr.flush()
        _stop(processes)
        return 1
    finally:
        for thread in threads:
            thread.join(timeout=5)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def local_commands(argv, count, python=None, host="127.0.0.1"):
    """One `python -m sgma_keras.workflow.cli train ...` command per process, from the
    launcher's own train arguments `argv` (without --local-processes)."""
    python = python or sys.executable
    ports = free_ports(count, host)
    addresses = ",".join(f"{host}:{port}" for port in ports)
    return [[python, "-m", "sgma_keras.workflow.cli", "train", *argv,
             "--num-processes", str(count), "--process-id", str(index),
             "--coordinator", addresses] for index in range(count)]
