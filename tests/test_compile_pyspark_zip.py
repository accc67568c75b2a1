"""scripts/compile_pyspark_zip.py: bytecode added to a zip of modules, used
by zipimport, source kept for tracebacks, idempotent."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "compile_pyspark_zip.py"


def load_script():
    spec = importlib.util.spec_from_file_location("compile_pyspark_zip", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_modules_in_the_zip_get_bytecode_that_zipimport_uses(tmp_path):
    zpath = tmp_path / "pkg.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("pkg/__init__.py", "")
        z.writestr("pkg/mod.py", "def boom():\n    raise ValueError('from the zip')\n")
        z.writestr("pkg/data.txt", "kept")
    script = load_script()
    assert script.compile_zip(zpath) == 2
    assert script.compile_zip(zpath) == 0  # idempotent
    with zipfile.ZipFile(zpath) as z:
        assert {"pkg/__init__.pyc", "pkg/mod.pyc", "pkg/mod.py", "pkg/data.txt"} <= set(z.namelist())
    probe = ("import pkg.mod, traceback\n"
             "print(pkg.mod.__file__)\n"
             "try:\n    pkg.mod.boom()\n"
             "except ValueError:\n    traceback.print_exc(file=__import__('sys').stdout)\n")
    out = subprocess.run([sys.executable, "-c", probe], env={"PYTHONPATH": str(zpath)},
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0].endswith("pkg/mod.pyc")  # loaded from bytecode
    assert "raise ValueError('from the zip')" in out  # the source line is still there
