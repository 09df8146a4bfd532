"""``--load``: one busy process beside the benchmark, started with it and always ended with it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

# The child asks Linux to kill it when its parent dies (PR_SET_PDEATHSIG = 1), so not even a
# SIGKILLed benchmark leaves it spinning; then it spins.
BUSY_LOOP = """
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
except (OSError, AttributeError):
    pass  # not Linux: the benchmark's own clean-up still ends it
if os.getppid() != int(sys.argv[1]):
    sys.exit()  # the parent died before prctl took effect
while True:
    pass
"""


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def busy_process() -> Iterator[subprocess.Popen]:
    """Run ``while True: pass`` in a child process for the duration of the block.

    The child is killed and reaped when the block exits, on an exception, Ctrl-C or SIGTERM (turned
    into ``SystemExit`` while the block runs in the main thread); on Linux also when this process
    dies without clean-up.
    """
    child = subprocess.Popen([sys.executable, "-c", BUSY_LOOP, str(os.getpid())])
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm) if main_thread else None
    try:
        yield child
    finally:
        child.kill()
        child.wait()
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
