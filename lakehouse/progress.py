"""Moved to lakehouse.stream.progress; this name stays, as the same module, for existing imports."""

import sys

from lakehouse.stream import progress as _module

sys.modules[__name__] = _module
