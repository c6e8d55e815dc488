"""SIGINT and SIGTERM as stop requests that are never lost.

Python raises `KeyboardInterrupt` from a signal handler in whatever the main thread
is running at that moment. When that is a finalizer (a `__del__` or a weakref
callback, which TensorFlow and h5py objects have), the exception is printed as
"Exception ignored in ..." and dropped, and training goes on to its last epoch. So
the handler also records the request, and `raise_if_requested` (called after every
training batch and at every stage's end by `workflow.training`) raises it again.

SIGINT is installed explicitly, not left to Python: a shell starts background jobs
(`python train.py ... &`, CI runners) with SIGINT ignored, and Python then installs
no handler, so `kill -INT` would do nothing.

>>> with handling_stop_signals():
...     try:
...         request_stop(signal.SIGTERM, None)
...     except Interrupted as stop:
...         print(stop.signum == signal.SIGTERM)
True
"""

import contextlib
import signal


class Interrupted(KeyboardInterrupt):
    """A stop request, raised like Ctrl-C so every `finally` and atomic write cleans up.

    `signum` is the signal that asked for it; the command exits with 128 + signum.
    """

    def __init__(self, signum=signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


_requests = []


def request_stop(signum, frame):
    """The signal handler: records the request, then raises it."""
    _requests.append(int(signum))
    raise Interrupted(signum)


def raise_if_requested():
    """Raises `Interrupted` again if a stop was requested (and swallowed) earlier."""
    if _requests:
        raise Interrupted(_requests[-1])


@contextlib.contextmanager
def handling_stop_signals():
    """SIGINT and SIGTERM raise `Interrupted` inside the block (main thread only)."""
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[signum] = signal.signal(signum, request_stop)
        except ValueError:  # not the main thread: leave the signals alone
            break
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _requests.clear()
