"""The code itself: ruff (style, likely bugs) and mypy (types) have nothing to say; the installed
packages are the ones constraints.txt pins."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from oscarvt.arches import ARCHES

ROOT = Path(__file__).parent.parent


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "oscarvt", "oscarvt_master", "oscarvt_steps",
                             "oscarvt_dev", "tests", "bench", "scripts"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_oscar_mini_shell_scripts_parse():
    scripts = [ROOT / "examples/oscar-mini/install_cluster", ROOT / "examples/oscar-mini/lib/common.sh",
               ROOT / "scripts/demo-run.sh", ROOT / "workers/setup-worker.sh",
               ROOT / "examples/oscar-mini/share/installer",
               ROOT / "examples/oscar-mini/share/rcS",
               *sorted((ROOT / "examples/oscar-mini/scripts").rglob("*")),
               ROOT / "examples/oscar-mini/testing/test_cluster"]
    for script in (path for path in scripts if path.is_file()):
        result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
        assert result.returncode == 0, f"{script}: {result.stderr}"
    result = subprocess.run(["perl", "-c", str(ROOT / "examples/oscar-mini/share/si_monitor")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_make_installs_every_package_setup_worker_needs():
    """`make test` runs setup-worker.sh for real (test_worker_host) with no network: the Makefile
    must already have installed every Debian package the script wants."""
    makefile = (ROOT / "Makefile").read_text().replace("\\\n", " ")
    lists = dict(re.findall(r"^(APT_\w*PACKAGES) := (.*)$", makefile, re.M))
    make = {package for packages in lists.values() for package in packages.split()}
    # the demo installs only APT_PACKAGES, a worker's base: the arm64 ones come with arm64 templates
    assert set(re.search(r'^PACKAGES="([^"]*)"', (ROOT / "workers/setup-worker.sh").read_text(), re.M)
               .group(1).split()) <= set(lists["APT_PACKAGES"].split())
    text = (ROOT / "workers/setup-worker.sh").read_text()
    script = " ".join(re.findall(r'^PACKAGES(?:_arm64)?="([^"]*)"', text, re.M)).split()
    assert "qemu-efi-aarch64" in script  # arm64's too: the test's host may set up either
    assert set(script) - make == set()
    arm64 = re.search(r'^PACKAGES_arm64="([^"]*)"', text, re.M).group(1).split()
    assert set(arm64) == set(ARCHES["arm64"].host_packages())  # the script and oscarvt/arches.py agree


def pins() -> dict[str, str]:
    """constraints.txt's pins: name -> version."""
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and " " not in line, f"constraints.txt: {line!r} is not NAME==VERSION"
            found[canonicalize_name(name)] = version
    return found


def test_the_installed_packages_are_the_ones_constraints_txt_pins():
    """Every package of the environment the suite runs in (make's .venv, CI's) at the version
    constraints.txt pins, and nothing pinned missing: so a user next year installs what passed here."""
    own = {"oscarvt", "pip", "setuptools"}  # the checkout itself, and what the venv came with
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()
                 if canonicalize_name(d.metadata["Name"]) not in own}
    assert installed == pins()


def test_setup_pins_agree_with_constraints_txt():
    setup = (ROOT / "setup.py").read_text()
    direct = [Requirement(text) for text in re.findall(r'"([A-Za-z0-9_.\-]+==[^"]+)"', setup)]
    assert direct and {canonicalize_name(r.name): str(r.specifier)[2:] for r in direct}.items() <= pins().items()
