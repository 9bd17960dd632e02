"""Lets the scripts in tools/ import the project's package straight from python/.

The build tools run before the package is installed (they are what installs it), so they import
it from the checkout.
"""
import sys
from pathlib import Path

import _ctrl_c  # noqa: F401  (Ctrl-C: one line, status 130)

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "python") not in sys.path:
    sys.path.insert(0, str(REPO / "python"))
