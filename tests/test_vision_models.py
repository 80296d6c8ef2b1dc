"""install/models.sh installs the detector from a mirror, checked; the appliance refuses a wrong file."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.vision.models import ModelError, load_manifest, model_file, sha256_of
from tests.conftest import REPO, shared_path

SCRIPT = REPO / "install" / "models.sh"


def install(dest: Path, mirror: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MODEL_MIRROR", "MODELS_DIR")}
    env["MODELS_DIR"] = str(dest)
    args = [str(SCRIPT)] + ([str(mirror)] if mirror else [])
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)


def test_the_manifest_describes_the_shared_model_exactly():
    spec = load_manifest()["yolox_nano"]
    shared = shared_path("models", "yolox_nano.onnx")
    assert spec.size == shared.stat().st_size
    assert spec.sha256 == sha256_of(shared)
    assert spec.licence == "Apache-2.0" and spec.source.startswith("https://github.com/Megvii-BaseDetection/")


def test_install_copies_from_a_mirror_then_stays_quiet(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    shutil.copy(shared_path("models", "yolox_nano.onnx"), mirror)
    dest = tmp_path / "models"
    first = install(dest, mirror)
    assert first.returncode == 0, first.stderr
    assert "installed" in first.stderr
    assert sha256_of(dest / "yolox_nano.onnx") == load_manifest()["yolox_nano"].sha256
    mtime = (dest / "yolox_nano.onnx").stat().st_mtime_ns
    again = install(dest, mirror)
    assert again.returncode == 0 and again.stdout == "" and again.stderr == ""
    assert (dest / "yolox_nano.onnx").stat().st_mtime_ns == mtime


def test_install_refuses_a_mirror_file_with_the_wrong_checksum(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    data = bytearray(shared_path("models", "yolox_nano.onnx").read_bytes())
    data[1000] ^= 0xFF  # same size, one flipped byte
    (mirror / "yolox_nano.onnx").write_bytes(bytes(data))
    dest = tmp_path / "models"
    result = install(dest, mirror)
    assert result.returncode != 0
    assert "REFUSED" in result.stderr and "sha256" in result.stderr
    assert not (dest / "yolox_nano.onnx").exists()
    assert list(dest.iterdir()) == []  # no temporary file left behind


def test_a_named_mirror_without_the_file_is_an_error_not_a_download(tmp_path):
    mirror = tmp_path / "empty"
    mirror.mkdir()
    result = install(tmp_path / "models", mirror)
    assert result.returncode != 0
    assert "not in the mirror folder" in result.stderr and "downloading" not in result.stderr


def test_install_replaces_a_corrupted_installed_copy(tmp_path):
    dest = tmp_path / "models"
    dest.mkdir()
    (dest / "yolox_nano.onnx").write_bytes(b"not a model")
    result = install(dest, shared_path("models"))
    assert result.returncode == 0, result.stderr
    assert "replacing" in result.stderr
    assert sha256_of(dest / "yolox_nano.onnx") == load_manifest()["yolox_nano"].sha256


def test_the_appliance_refuses_a_model_file_changed_after_installation(tmp_path):
    (tmp_path / "yolox_nano.onnx").write_bytes(b"x" * load_manifest()["yolox_nano"].size)
    with pytest.raises(ModelError, match="does not match the manifest"):
        model_file("yolox_nano", tmp_path)


def test_a_missing_model_says_how_to_install_it(tmp_path):
    with pytest.raises(ModelError, match=r"missing; install it with \./install/models\.sh"):
        model_file("yolox_nano", tmp_path)


def test_an_unknown_model_name_lists_the_known_ones():
    with pytest.raises(ModelError, match="known: yolox_nano"):
        model_file("yolo_giant")


def test_the_repository_model_is_installed():
    assert model_file("yolox_nano").is_file()
