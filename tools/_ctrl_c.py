"""Imported first by every tool (through _package or _repo): a Ctrl-C that the tool does not
handle itself ends it with one line and exit status 130, as the tools do once they run, not with a
KeyboardInterrupt traceback. It matters most while a tool is still loading (numpy, pycaffe and the
package take a second or more) and in the build tools, whose cmake and make a terminal's Ctrl-C
stops as well (the build cache keeps only finished steps).
"""
import atexit
import os
import signal
import sys
from pathlib import Path

TOOL = Path(sys.argv[0]).name or "attention_scale"
_previous_hook = sys.excepthook


def _stopped(kind, value, traceback):
    """sys.excepthook: a KeyboardInterrupt that no part of the tool handled is one line and exit
    status 130; any other exception goes to the previous hook (a traceback)."""
    if not issubclass(kind, KeyboardInterrupt):
        return _previous_hook(kind, value, traceback)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C while this ends it
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        pass
    try:
        print(f"{TOOL}: stopped (Ctrl-C)", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass
    atexit._run_exitfuncs()  # what a normal exit runs; os._exit gives the status 130
    os._exit(130)


sys.excepthook = _stopped
