"""napari_instseg.core never imports napari or Qt: it must import with them absent."""

import subprocess
import sys

_PROBE = """
import importlib, pkgutil, sys

BLOCKED = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt")

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Block())
import napari_instseg.core as core
names = [m.name for m in pkgutil.walk_packages(core.__path__, prefix="napari_instseg.core.")]
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def test_every_core_module_imports_with_napari_and_qt_blocked():
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 10
