"""Moved to lakehouse.stream.realtime; this name stays, as the same module, for existing imports."""

import sys

from lakehouse.stream import realtime as _module

sys.modules[__name__] = _module
