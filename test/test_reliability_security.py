"""Security checks without ROS: no unpickling, eval/exec or shell anywhere in the package and its
tools (read from the syntax tree, so ``module.eval()`` or a docstring mentioning pickle does not
count), and model paths that cannot leave the model directory."""
from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import pytest
from mpvss_ros.runtime.model_checks import member_path, read_model_json

from conftest import REPO

SOURCES = sorted([*REPO.glob("mpvss_ros/**/*.py"), *REPO.glob("tools/*.py"), *REPO.glob("launch/*.py")])
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}
SHELL_CALLS = {("os", "system"), ("os", "popen"), ("subprocess", "getoutput"), ("subprocess", "getstatusoutput")}
SUBPROCESS = {"run", "call", "check_call", "check_output", "Popen"}


def _kw(call: ast.Call, name: str):
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def problems_in(source: str, name: str = "<src>") -> list[str]:
    """Unsafe constructs in one Python source, as 'file:line: what'."""
    out = []
    for node in ast.walk(ast.parse(source)):
        where = f"{name}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            out += [f"{where}: imports {m}" for m in mods if m.split(".")[0] in UNSAFE_MODULES]
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        if isinstance(f, ast.Name) and f.id in ("eval", "exec", "__import__"):
            out.append(f"{where}: {f.id}()")
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
            owner, attr = f.value.id, f.attr
            if (owner, attr) in SHELL_CALLS:
                out.append(f"{where}: {owner}.{attr}() runs a shell")
            if owner == "torch" and attr == "load" and not _is_true(_kw(node, "weights_only")):
                out.append(f"{where}: torch.load without weights_only=True")
            if owner in ("np", "numpy") and attr == "load" and _is_true(_kw(node, "allow_pickle")):
                out.append(f"{where}: np.load(allow_pickle=True)")
            if owner == "yaml" and attr in ("load", "unsafe_load", "full_load") and \
                    not (attr == "load" and "Safe" in ast.unparse(_kw(node, "Loader") or ast.Constant(""))):
                out.append(f"{where}: yaml.{attr} without SafeLoader")
            if owner == "subprocess" and attr in SUBPROCESS:
                if _is_true(_kw(node, "shell")):
                    out.append(f"{where}: subprocess.{attr}(shell=True)")
                if node.args and isinstance(node.args[0], (ast.Constant, ast.JoinedStr, ast.BinOp)):
                    out.append(f"{where}: subprocess.{attr} with a command string")
    return out


def test_scanner_finds_each_unsafe_construct():
    bad = ("import pickle\nfrom dill import loads\nimport numpy as np, torch, os, subprocess, yaml\n"
           "eval('1')\nexec('x=1')\ntorch.load('f')\ntorch.load('f', weights_only=False)\n"
           "np.load('f', allow_pickle=True)\nos.system('ls')\nsubprocess.run('ls -l', shell=True)\n"
           "subprocess.Popen(f'ls {x}')\nyaml.load(s)\nyaml.load(s, Loader=yaml.Loader)\n")
    found = problems_in(bad)
    assert len(found) == 13, found
    safe = ("model.eval()\ntorch.load('f', weights_only=True)\nnp.load('f')\n"
            "subprocess.run(['ls', path])\nyaml.safe_load(s)\nyaml.load(s, Loader=yaml.SafeLoader)\n"
            "'''pickle, eval(), shell=True in a docstring'''\n")
    assert problems_in(safe) == []


def test_package_and_tools_have_no_unpickling_eval_or_shell():
    assert len(SOURCES) > 50  # the package was found
    found = [p for path in SOURCES for p in problems_in(path.read_text(), str(path.relative_to(REPO)))]
    assert found == []


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "graph.onnx").write_bytes(b"x")
    (d / "sub").mkdir()
    (d / "sub" / "w.bin").write_bytes(b"x")
    (tmp_path / "secret").write_text("x")
    return d


@pytest.mark.parametrize("name,reason", [
    ("../../etc/passwd", "must be a relative name inside the model directory"),
    ("/etc/passwd", "must be a relative name inside the model directory"),
    ("sub/../../secret", "must be a relative name inside the model directory"),
    ("", "must be a relative name inside the model directory"),
    ("link_out", "outside the model directory"),
    ("missing.onnx", "is missing from"),
])
def test_file_names_from_model_json_stay_inside_the_directory(model_dir, name, reason):
    os.symlink(model_dir.parent / "secret", model_dir / "link_out")
    with pytest.raises((ValueError, FileNotFoundError), match=reason):
        member_path(model_dir, name, "graph")


def test_names_inside_the_directory_resolve(model_dir):
    os.symlink(model_dir / "graph.onnx", model_dir / "link_in")
    assert member_path(model_dir, "graph.onnx", "graph") == (model_dir / "graph.onnx").resolve()
    assert member_path(model_dir, "sub/w.bin", "weights") == (model_dir / "sub" / "w.bin").resolve()
    assert member_path(model_dir, "link_in", "graph") == (model_dir / "graph.onnx").resolve()
    # the directory itself may be reached through a symlink
    os.symlink(model_dir, model_dir.parent / "current")
    assert member_path(model_dir.parent / "current", "graph.onnx", "graph") == (model_dir / "graph.onnx").resolve()


def test_model_json_refuses_oversized_and_malformed_descriptions(tmp_path):
    (tmp_path / "model.json").write_text(" " * (1 << 20) + "{}")
    with pytest.raises(ValueError, match="more than a model description can be"):
        read_model_json(tmp_path)
    for text, reason in [("[1, 2]", "not an mpvss-model description"),
                         ('{"format": "mpvss-model", "version": 3}', "unsupported version 3"),
                         ('{"format": "mpvss-model", "version": 1}',
                          r"unsupported version 1 \(this code reads version 2; re-export it with `mpvss export"),
                         ('{"format": "mpvss-model", "version": 2, "input_size": [64, 128], "num_queries": 8, '
                          '"class_names": ["a"], "graphs": {"segmentor": "s.onnx", "flow": 3}}',
                          "graphs must name the segmentor and flow files")]:
        (tmp_path / "model.json").write_text(text)
        with pytest.raises(ValueError, match=reason):
            read_model_json(tmp_path)


def test_torch_runner_refuses_weights_outside_the_directory(tmp_path):
    from mpvss_ros.runtime.runners import TorchRunner

    (tmp_path / "model").mkdir()
    info = {"format": "mpvss-model", "version": 2, "input_size": [64, 128], "num_queries": 8,
            "class_names": ["road"], "graphs": {"segmentor": "s.onnx", "flow": "f.onnx"},
            "weights": "../outside.safetensors"}
    (tmp_path / "model" / "model.json").write_text(json.dumps(info))
    shutil.copy(REPO / "pytest.ini", tmp_path / "outside.safetensors")
    with pytest.raises(ValueError, match="weights file name '../outside.safetensors' in model.json must be a relative"):
        TorchRunner(tmp_path / "model")
