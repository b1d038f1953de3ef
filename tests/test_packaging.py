"""The package installs as a napari plugin: a valid manifest, shipped inside the wheel."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_validates_and_is_discovered():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_distribution("napari-instseg")
    assert manifest.name == "napari-instseg"
    keys = {s.key for s in manifest.contributions.sample_data}
    assert keys == {"ihc", "overlapping_cells"}
    assert manifest.contributions.readers and manifest.contributions.writers
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-instseg"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_root_manifest_is_the_packaged_one():
    assert (ROOT / "napari.yaml").resolve() == (ROOT / "src" / "napari_instseg" / "napari.yaml").resolve()


@pytest.mark.slow
def test_wheel_ships_the_manifest_inside_the_package(tmp_path):
    pytest.importorskip("hatchling")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(tmp_path),
        str(ROOT),
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    (wheel,) = tmp_path.glob("napari_instseg-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        manifest = archive.read("napari_instseg/napari.yaml").decode()
        entry_points = next(n for n in archive.namelist() if n.endswith("entry_points.txt"))
        assert "napari-instseg = napari_instseg:napari.yaml" in archive.read(entry_points).decode()
    assert manifest == (ROOT / "napari.yaml").read_text()


def test_metadata_licence_extras_and_changelog():
    import napari_instseg

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "BSD-3-Clause" and project["license-files"] == ["LICENSE"]
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text()
    assert {"Framework :: napari", "Operating System :: OS Independent", "Typing :: Typed"} <= set(
        project["classifiers"]
    )
    assert {f"Programming Language :: Python :: 3.{v}" for v in (10, 11, 12)} <= set(project["classifiers"])
    assert {"Source", "Bug Tracker", "Changelog"} <= set(project["urls"])
    heavy = ("torch", "sam2")
    assert not [d for d in project["dependencies"] if d.split(">")[0].split("=")[0].strip() in heavy]  # light install
    assert {d.split(">")[0].split("=")[0] for d in project["optional-dependencies"]["sam2"]} == set(heavy)
    assert (ROOT / "src" / "napari_instseg" / "py.typed").is_file()
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{napari_instseg.__version__}]" in changelog and "vMAJOR.MINOR.PATCH" in changelog
