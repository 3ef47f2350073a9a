"""pip packaging: the licence, and what a wheel built from setup.py carries."""
from __future__ import annotations

import email
import hashlib
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile

import pytest

from conftest import REPO

# sha256 of the Apache License 2.0 as apache.org publishes it (LICENSE-2.0.txt)
APACHE_2_0_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
DIST = "mpvss_ros-0.1.0"
# What setup.py reads; copied so that the build's egg-info / build/ stay out of the checkout.
BUILD_INPUTS = ("setup.py", "LICENSE", "README.md", "mpvss_ros")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    pytest.importorskip("setuptools")
    root = tmp_path_factory.mktemp("pack")
    src = root / "src"
    for name in BUILD_INPUTS:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    out = root / "wheels"
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(out), str(src)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = out.glob("*.whl")
    return path


def test_license_is_the_verbatim_apache_2_0_text_and_matches_package_xml():
    text = (REPO / "LICENSE").read_bytes()
    assert _sha256(text) == APACHE_2_0_SHA256
    assert ET.parse(REPO / "package.xml").getroot().findtext("license") == "Apache-2.0"


def test_wheel_metadata_names_the_license_and_carries_its_text(wheel):
    with zipfile.ZipFile(wheel) as zf:
        meta = email.message_from_bytes(zf.read(f"{DIST}.dist-info/METADATA"))
        license_text = zf.read(f"{DIST}.dist-info/licenses/LICENSE")
    assert meta["License"] == "Apache-2.0"
    assert meta.get_all("License-File") == ["LICENSE"]
    assert _sha256(license_text) == APACHE_2_0_SHA256
