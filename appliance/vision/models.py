"""The model manifest (models/manifest.toml): which model files the box runs and how to check them.

`install/models.sh` installs the files; loading checks size and sha256 again, so a file changed
after installation is refused rather than run.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path


class ModelError(RuntimeError):
    """A model that is missing, unlisted or not the file the manifest names."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """One manifest entry."""

    name: str
    file: str
    sha256: str
    size: int
    licence: str
    source: str


def models_dir() -> Path:
    """Where installed models live: $APPLIANCE_MODELS, else models/ beside the appliance package."""
    env = os.environ.get("APPLIANCE_MODELS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "models"


def manifest_path() -> Path:
    """The manifest shipped with the code (always the repository's, even when models live elsewhere)."""
    return Path(__file__).resolve().parents[2] / "models" / "manifest.toml"


def load_manifest(path: Path | None = None) -> dict[str, ModelSpec]:
    """Read the manifest; raises ModelError naming the entry and field that is wrong."""
    path = path or manifest_path()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ModelError(f"{path}: cannot read the model manifest: {err}") from err
    out: dict[str, ModelSpec] = {}
    for name, entry in raw.items():
        try:
            out[name] = ModelSpec(name, str(entry["file"]), str(entry["sha256"]), int(entry["size"]),
                                  str(entry.get("licence", "")), str(entry.get("source", "")))
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"{path}: [{name}] needs file, sha256 and size ({err})") from err
    return out


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def model_file(name: str, folder: Path | None = None) -> Path:
    """The installed, checked file of model `name`.

    Raises:
        ModelError: the name is not in the manifest, the file is missing (run install/models.sh),
            or its size or checksum differs from the manifest.
    """
    specs = load_manifest()
    if name not in specs:
        raise ModelError(f"model {name!r} is not in {manifest_path()} (known: {', '.join(sorted(specs))})")
    spec = specs[name]
    path = (folder or models_dir()) / spec.file
    if not path.is_file():
        raise ModelError(f"model file {path} is missing; install it with ./install/models.sh")
    if path.stat().st_size != spec.size or sha256_of(path) != spec.sha256:
        raise ModelError(f"model file {path} does not match the manifest's size and sha256; reinstall it with "
                         "./install/models.sh")
    return path
