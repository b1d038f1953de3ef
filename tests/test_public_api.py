"""The declared public API: every package states ``__all__`` (and each name resolves), and no
module imports another module's underscored names."""

import ast
import importlib
import pkgutil
from pathlib import Path

import pytest

import napari_instseg

SRC = Path(napari_instseg.__file__).parent
PACKAGES = [
    "napari_instseg.core",
    "napari_instseg.core.coco",
    "napari_instseg.core.prompting",
    "napari_instseg.core.qa",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_packages_declare_all_and_every_name_resolves(name):
    package = importlib.import_module(name)
    assert isinstance(package.__all__, (list, tuple)) and package.__all__
    for public in package.__all__:
        assert getattr(package, public) is not None, f"{name}.{public}"


def test_every_core_module_declares_all():
    core = importlib.import_module("napari_instseg.core")
    missing = []
    for info in pkgutil.walk_packages(core.__path__, "napari_instseg.core."):
        tree = ast.parse(Path(importlib.util.find_spec(info.name).origin).read_text())
        if not any(
            isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets) for n in tree.body
        ):
            missing.append(info.name)
    assert not missing


def test_no_module_imports_underscored_names_of_another():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("napari_instseg"):
                offenders += [
                    f"{path.relative_to(SRC)}: {node.module}.{a.name}"
                    for a in node.names
                    if a.name.startswith("_") and a.name != "__version__"
                ]
    assert not offenders


def test_core_import_is_cheap():
    import subprocess
    import sys

    code = "import sys, napari_instseg.core; print(sorted(m for m in ('pandas', 'zarr', 'torch', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
