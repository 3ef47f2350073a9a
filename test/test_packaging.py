"""pip packaging: the licence, and what a wheel and an sdist built from setup.py carry (the
embedded default model among them, where default_model_candidates looks for it)."""
from __future__ import annotations

import email
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

from conftest import REPO
from mpvss_ros.ros import params as P

# sha256 of the Apache License 2.0 as apache.org publishes it (LICENSE-2.0.txt)
APACHE_2_0_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"
DIST = "mpvss_ros-0.1.0"
MODEL_IN_WHEEL = f"{DIST}.data/data/share/mpvss_ros/models/default/"
# What setup.py and MANIFEST.in read; copied so that the build's egg-info / build/ stay out of
# the checkout (and other model directories under models/ out of the copy).
BUILD_INPUTS = ("setup.py", "MANIFEST.in", "LICENSE", "README.md", "package.xml", "CMakeLists.txt",
                "mpvss_ros", "msg", "launch", "config", "tools/mpvss_node", "models/README.md",
                "models/default")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pip_wheel(source, out):
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "-w", str(out), str(source)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (path,) = out.glob("*.whl")
    return path


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    src = tmp_path_factory.mktemp("pack") / "src"
    for name in BUILD_INPUTS:
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(REPO / name, src / name)
    return src


@pytest.fixture(scope="module")
def wheel(src):
    return _pip_wheel(src, src.parent / "wheels")


def _model_files() -> dict[str, str]:
    """{file name: sha256} of the repository's models/default (hidden files stay out, as in setup.py)."""
    return {p.name: _sha256(p.read_bytes()) for p in (REPO / "models" / "default").iterdir()
            if p.is_file() and not p.name.startswith(".")}


def _model_in_wheel(path) -> dict[str, str]:
    with zipfile.ZipFile(path) as zf:
        return {n[len(MODEL_IN_WHEEL):]: _sha256(zf.read(n)) for n in zf.namelist() if n.startswith(MODEL_IN_WHEEL)}


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


def test_wheel_carries_the_default_model_byte_for_byte(wheel):
    expected = _model_files()
    assert {"model.json", "segmentor.onnx", "flow.onnx"} <= set(expected)
    assert _model_in_wheel(wheel) == expected
    with zipfile.ZipFile(wheel) as zf:  # nothing else under share/: no ament index marker
        assert [n for n in zf.namelist() if ".data/" in n and not n.startswith(MODEL_IN_WHEEL)] == []


def test_sdist_holds_the_ros_package_and_builds_a_wheel_with_the_model(src):
    out = src.parent / "sdist"
    done = subprocess.run([sys.executable, "-c", "import sys; from setuptools import build_meta as b; "
                           "b.build_sdist(sys.argv[1])", str(out)],
                          cwd=src, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (sdist,) = out.glob("*.tar.gz")
    with tarfile.open(sdist) as tf:
        names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
    assert {"LICENSE", "package.xml", "CMakeLists.txt", "msg/ClassStats.msg", "launch/segment.launch.py",
            "config/segment.yaml", "tools/mpvss_node", "models/README.md"} <= names
    assert {f"models/default/{n}" for n in _model_files()} <= names
    assert _model_in_wheel(_pip_wheel(sdist, src.parent / "from_sdist")) == _model_files()


def test_default_model_candidates_end_with_the_wheel_share_under_sys_prefix(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "prefix", str(tmp_path))
    candidates = P.default_model_candidates()
    assert candidates[0] == REPO / "models" / "default"  # the source tree comes first
    assert candidates[-1] == tmp_path / "share" / "mpvss_ros" / "models" / "default"
    assert P.default_model_dir() == REPO / "models" / "default"


@pytest.mark.parametrize("ament", ["no mpvss_ros in the index", "ROS not sourced"])
def test_an_installed_wheel_finds_its_model_under_sys_prefix(monkeypatch, tmp_path, ament):
    """Outside a source tree and without an ament index entry: the wheel's share/ is used, and
    when it is missing too the error names every place looked at."""
    site = tmp_path / "prefix" / "lib" / "python3" / "site-packages"
    monkeypatch.setattr(P, "__file__", str(site / "mpvss_ros" / "ros" / "params.py"))
    if ament == "ROS not sourced":
        monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    else:
        monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "empty"))
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "prefix"))
    share = tmp_path / "prefix" / "share" / "mpvss_ros" / "models" / "default"
    assert P.default_model_candidates() == [share]
    with pytest.raises(FileNotFoundError, match=re.escape(f"looked in {share};")):
        P.default_model_dir()
    share.mkdir(parents=True)
    assert P.default_model_dir() == share
    assert P.resolve_model_dir("") == share


def test_a_wheel_installed_under_another_prefix_finds_its_model(wheel, tmp_path):
    """pip --prefix / --user put share/ elsewhere than sys.prefix: the installed file list says where."""
    prefix = tmp_path / "elsewhere"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed",
                           "--prefix", str(prefix), str(wheel)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (site,) = prefix.glob("lib/python*/site-packages")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "AMENT_PREFIX_PATH")}
    env["PYTHONPATH"] = str(site)  # this install first, no source tree, ROS not sourced
    code = "import mpvss_ros.ros.params as p; print(p.__file__); print(p.default_model_dir())"
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stderr
    module, model = run.stdout.split()
    assert module.startswith(str(site))
    assert model == str(prefix / "share" / "mpvss_ros" / "models" / "default")
    assert {p.name for p in Path(model).iterdir()} == set(_model_files())
