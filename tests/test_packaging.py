"""The distribution ships what OMERO.web needs, and no top-level `backends` module."""
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: build with the setuptools of this environment, offline.
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--no-isolation",
         "--outdir", str(out), str(REPO)],
        capture_output=True, text=True)
    assert proc.returncode == 0, f"python -m build failed:\n{proc.stdout}\n{proc.stderr}"
    return out


def test_sdist_contains_templates_static_migrations_and_backends(dist):
    [sdist] = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    expected = {
        "omero_storagemanager/templates/omero_storagemanager/index.html",
        "omero_storagemanager/static/omero_storagemanager/css/storagemanager.css",
        "omero_storagemanager/migrations/0001_initial.py",
        "backends/__init__.py",
        "omero_storagemanager/engine/_statrows.c",
        "setup.py",
        "README.md",
    }
    assert expected <= names, f"missing from sdist: {sorted(expected - names)}"
    assert not [name for name in names if name.endswith(".so")], "a built module in the sdist"


def test_wheel_ships_backends_inside_the_package(dist):
    [wheel] = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as whl:
        names = set(whl.namelist())
    assert "omero_storagemanager/backends/__init__.py" in names
    assert "omero_storagemanager/templates/omero_storagemanager/index.html" in names
    assert "omero_storagemanager/migrations/0001_initial.py" in names
    # The stat scan's C loop, compiled for this Python (engine/_statrows.c).
    assert [name for name in names if name.startswith("omero_storagemanager/engine/_statrows.")
            and name.endswith(".so")], "the wheel has no compiled _statrows"
    top_level = {name.split("/")[0] for name in names}
    assert "backends" not in top_level
    assert "testbed" not in top_level and "tests" not in top_level
