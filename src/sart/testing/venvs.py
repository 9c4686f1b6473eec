"""Virtual environments the packaging checks install sart into, cached outside the work tree
under ``${SART_CACHE_DIR:-~/.cache/sart}/venvs``, one directory per content they depend on.

- `build_wheel(out)`: sart's wheel (``pip wheel --no-deps``) from a copy of pyproject.toml,
  README.md and src/ (what the Dockerfile copies), so nothing is built inside the shared tree.
- `cached_venv(name, key, install)`: a venv made and filled once per key; later calls find it.
  The venvs have no pip of their own: this interpreter's pip installs into them (``--python``).
- `lowest_pins(pyproject)`: every declared minimum as ``name==version``.

``python -m sart.testing.venvs lowest`` makes (or finds) the venv with every dependency at its
declared minimum, sart installed editable with all extras and the test group, and prints its
path: ``scripts/test-lowest`` runs the unit, property and API tests with it, and a selection of
the tests against the real apiserver and kernel.
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[3]


def cache_root() -> Path:
    base = os.environ.get("SART_CACHE_DIR") or Path.home() / ".cache" / "sart"
    return Path(base) / "venvs"


def content_key(*parts: str | bytes) -> str:
    digest = hashlib.sha256(f"{sys.version_info[:3]}".encode())
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def pip_into(venv: Path, *args: str) -> None:
    """Run this interpreter's pip against `venv`'s interpreter."""
    command = [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python")]
    subprocess.run(
        [*command, "install", "--quiet", "--disable-pip-version-check", *args],
        check=True,
        cwd=ROOT,
        stdout=sys.stderr,  # `python -m sart.testing.venvs lowest` prints only the venv's path
    )


def cached_venv(name: str, key: str, install: Callable[[Path], None]) -> Path:
    """The venv ``<name>-<key>``, made and filled by `install` when it is not there yet
    (the other keys' venvs of that name are removed then). A lock makes concurrent callers
    wait for one build; a build that failed is redone."""
    venv = cache_root() / f"{name}-{key}"
    done = venv / ".done"
    if done.exists():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(venv, ignore_errors=True)
            # Made in place: a venv's scripts name their interpreter by absolute path.
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
            install(venv)
            done.touch()
            for old in venv.parent.glob(f"{name}-*"):  # made for an older pyproject.toml
                if old != venv:
                    shutil.rmtree(old, ignore_errors=True)
    return venv


def build_wheel(out: Path) -> Path:
    """Build sart's wheel into `out` from a copy of the tree; its path."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp, "sart")
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(ROOT / name, source / name)
        shutil.copytree(
            ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
        )
        command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*command, "--no-deps", "--wheel-dir", str(out), str(source)], check=True)
    (wheel,) = out.glob("sart-*.whl")
    return wheel


def declared_requirements(pyproject: dict[str, Any]) -> Iterable[Requirement]:
    """The core's and the extras' requirements (an extra naming sart's other extras aside)."""
    project = pyproject["project"]
    extras = project["optional-dependencies"].values()
    for text in itertools.chain(project["dependencies"], *extras):
        requirement = Requirement(text)
        if requirement.name != project["name"]:
            yield requirement


def lowest_pins(pyproject: dict[str, Any]) -> list[str]:
    """``name==version`` for every requirement of the core and the extras, at its declared
    minimum (its ``>=`` bound)."""
    pins = []
    for requirement in declared_requirements(pyproject):
        minimums = [spec.version for spec in requirement.specifier if spec.operator == ">="]
        if len(minimums) != 1:
            raise ValueError(
                f"pyproject.toml: {requirement} needs exactly one '>=' bound (its declared minimum)"
            )
        pins.append(f"{requirement.name}=={minimums[0]}")
    return sorted(pins)


def lowest_venv() -> Path:
    text = (ROOT / "pyproject.toml").read_bytes()
    pins = lowest_pins(tomllib.loads(text.decode()))

    def install(venv: Path) -> None:
        constraints = venv / "lowest.txt"
        constraints.write_text("".join(f"{pin}\n" for pin in pins))
        pip_into(venv, "-c", str(constraints), "-e", f"{ROOT}[all]", "--group", "test")

    # pyproject.toml is the key, not only the pins: the editable install's entry points and
    # the test group come from it too.
    return cached_venv("lowest", content_key(text), install)


def main() -> None:
    if sys.argv[1:] != ["lowest"]:
        sys.exit("usage: python -m sart.testing.venvs lowest")
    print(lowest_venv())


if __name__ == "__main__":
    main()
