"""The installed package is one namespace: only ``hil`` lands in site-packages."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_checkout_folders_import_as_hil_subpackages():
    import hil.boards.factory
    import hil.drivers.registry

    assert Path(hil.drivers.registry.__file__).parent.name == "drivers"
    assert Path(hil.boards.factory.__file__).parent.name == "boards"
    for info in hil.drivers.registry.DRIVERS.values():
        assert info.target.startswith("hil.drivers."), info.target


def test_no_generic_top_level_packages_importable_from_checkout():
    """Nothing in the code imports a bare ``drivers`` or ``boards`` package."""
    offenders = []
    for path in list(ROOT.glob("hil/**/*.py")) + list(ROOT.glob("drivers/**/*.py")) + \
            list(ROOT.glob("boards/**/*.py")) + list(ROOT.glob("tests/**/*.py")) + list(ROOT.glob("benchmarks/*.py")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            s = line.strip()
            if s.startswith(("from drivers", "import drivers", "from boards", "import boards")):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {s}")
    assert not offenders, "\n".join(offenders)


def test_wheel_holds_only_the_hil_namespace(tmp_path):
    out = tmp_path / "wheel"
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(out.glob("hil-*.whl"))
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    tops = {t for t in tops if not t.endswith((".dist-info", ".data"))}
    assert tops == {"hil"}
    names = set(zipfile.ZipFile(wheel).namelist())
    for must in ("hil/drivers/registry.py", "hil/boards/simulated.py", "hil/configs/sim-digits.yaml",
                 "hil/drivers/sim/keithley2450.yaml", "hil/emulate/world.py", "hil/bench/schema.py",
                 "hil/configs/benches/scpi-xor.yaml"):
        assert must in names


def test_wheel_packages_cover_every_source_package():
    """Every folder with an __init__.py is shipped: a module missing from the wheel breaks `pip install .`."""
    tomllib = pytest.importorskip("tomllib")

    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    mapping = {"drivers": "hil.drivers", "boards": "hil.boards", "configs": "hil.configs"}
    found = set()
    for init in ROOT.glob("**/__init__.py"):
        rel = init.parent.relative_to(ROOT).parts
        if not rel or rel[0] not in ("hil", *mapping):
            continue
        name = ".".join(rel)
        if rel[0] in mapping:
            name = mapping[rel[0]] + name[len(rel[0]):]
        found.add(name)
    assert found - declared == set(), f"packages missing from pyproject.toml: {sorted(found - declared)}"
