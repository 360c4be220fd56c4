"""Makes one import slow in a command test_signals.py starts (on its PYTHONPATH): the import of
`SLOW_IMPORT` writes the file `SLOW_IMPORT_MARK`, then sleeps `SLOW_IMPORT_SECONDS`, so a test
can signal the command at a known point while it loads."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType


class SlowImport(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname == os.environ.get("SLOW_IMPORT"):
            Path(os.environ["SLOW_IMPORT_MARK"]).write_text(fullname)
            time.sleep(float(os.environ["SLOW_IMPORT_SECONDS"]))
        return None  # the import itself goes on as ever


sys.meta_path.insert(0, SlowImport())
