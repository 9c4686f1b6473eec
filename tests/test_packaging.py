"""sart as users install it: the wheel, built from the tree, in venvs of its own.

- Every third-party module src/ imports is declared, in the core or in the extra that
  sart.cli.entry names for it (read from the import statements: no venv).
- With only the core dependencies, the libraries (sart.bgp, sart.ipam, sart.bfd) import, every
  other module either imports or misses an optional stack that sart.cli.entry knows the extra
  of, and the console scripts say which extra to install instead of a traceback.
- With every extra (`sart[all]`, what the image installs), every console script runs.
- Every test scripts/test-lowest runs against real parts at the declared minimums exists.

The venvs are cached by pyproject.toml (sart.testing.venvs); each run builds the wheel once and
puts it in them without touching their dependencies (a few seconds)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from sart import __version__
from sart.cli.entry import PROVIDER_OF_MODULE
from sart.testing.venvs import ROOT, build_wheel, cached_venv, content_key, pip_into
from test_architecture import SRC, _imports, _modules

LIBRARIES = ("sart.bgp", "sart.ipam", "sart.bfd")
# Library modules that are the daemons' and need their stacks: the speaker's Prometheus
# collector (prometheus-client, the extra `all`).
LIBRARY_MODULES_OF_DAEMONS = {"sart.bgp.metrics"}
# sart.testing is the test harness: it may also need the test group's tools.
TEST_TOOLS = {"packaging", "pytest", "hypothesis"}
# The core's modules and the distributions that hold them.
CORE_PROVIDER_OF_MODULE = {
    "attrs": "attrs",
    "cattrs": "cattrs",
    "netaddr": "netaddr",
    "yaml": "pyyaml",
}

# Import every module of sart; print each one's failure: the missing module or the exception.
IMPORT_ALL = """
import importlib, json, pkgutil, sart
failures = {}
for module in pkgutil.walk_packages(sart.__path__, "sart."):
    try:
        importlib.import_module(module.name)
    except ModuleNotFoundError as error:
        failures[module.name] = ["missing", error.name]
    except Exception as error:
        failures[module.name] = ["error", repr(error)]
print(json.dumps(failures))
"""


def test_every_third_party_import_is_declared() -> None:
    """What src/ imports, pyproject.toml declares: a core module in the core, an optional
    stack's in the extra sart.cli.entry names for it (aiohttp was once imported undeclared)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {"core": {Requirement(text).name for text in project["dependencies"]}}
    for extra, texts in project["optional-dependencies"].items():
        declared[extra] = {Requirement(text).name for text in texts}
    for path in _modules():
        harness = path.relative_to(SRC).parts[0] == "testing"
        for module in {name.partition(".")[0] for name in _imports(path)}:
            if module in sys.stdlib_module_names or module == "sart":
                continue
            if module in CORE_PROVIDER_OF_MODULE:
                assert CORE_PROVIDER_OF_MODULE[module] in declared["core"], path
            elif module in PROVIDER_OF_MODULE:
                distribution, extra = PROVIDER_OF_MODULE[module]
                assert distribution in declared[extra], path
            else:
                assert harness and module in TEST_TOOLS, f"{path} imports {module}: undeclared"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


def installed(name: str, wheel: Path, extras: str) -> Path:
    """The cached venv `name` holding `wheel` with `extras` ("" or "[all]") and their
    dependencies; the wheel itself is put in again on every call."""
    key = content_key((ROOT / "pyproject.toml").read_bytes(), extras)
    venv = cached_venv(name, key, lambda venv: pip_into(venv, f"{wheel}{extras}"))
    pip_into(venv, "--no-deps", "--force-reinstall", str(wheel))
    return venv


@pytest.fixture(scope="module")
def core(wheel: Path) -> Path:
    return installed("core", wheel, "")


@pytest.fixture(scope="module")
def full(wheel: Path) -> Path:
    return installed("all", wheel, "[all]")


def run(
    venv: Path, *command: str, stdin: str = "", environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    # Outside the tree and with a clean environment, so only what the venv holds is found.
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8", **(environment or {})}
    return subprocess.run(
        command,
        check=False,
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        cwd=venv,
        timeout=60,
    )


def cni_version(venv: Path) -> list[str]:
    """The spec versions `sart-cni` answers VERSION with."""
    result = run(venv, "sart-cni", stdin="{}", environment={"CNI_COMMAND": "VERSION"})
    assert result.returncode == 0, result.stderr
    versions: list[str] = json.loads(result.stdout)["supportedVersions"]
    return versions


def test_the_core_install_imports_the_libraries_and_nothing_is_missing_unexplained(
    core: Path,
) -> None:
    result = run(core, "python", "-c", IMPORT_ALL)
    assert result.returncode == 0, result.stderr
    failures = json.loads(result.stdout)
    libraries = {
        name
        for name in failures
        if name.startswith(tuple(f"{library}." for library in LIBRARIES)) or name in LIBRARIES
    }
    assert libraries == LIBRARY_MODULES_OF_DAEMONS
    explained = set(PROVIDER_OF_MODULE)
    unexplained = {
        name: failure
        for name, failure in failures.items()
        if failure[0] != "missing"
        or failure[1].partition(".")[0]
        not in (explained | TEST_TOOLS if name.startswith("sart.testing.") else explained)
    }
    assert unexplained == {}
    # The core really is without the stacks.
    present = "import sys, importlib.util as u; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    assert run(core, "python", "-c", present, *sorted(explained)).stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("command", "extra"),
    [
        (("sart", "--help"), "all"),
        (("sartd", "bgp", "--help"), "all"),
        (("sart-controller", "--help"), "all"),
    ],
)
def test_a_console_script_without_its_stack_names_the_extra(
    core: Path, command: tuple[str, ...], extra: str
) -> None:
    result = run(core, *command)
    assert result.returncode == 1
    assert f"pip install 'sart[{extra}]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_sart_cni_needs_only_the_core(core: Path) -> None:
    assert "1.1.0" in cni_version(core)


@pytest.mark.parametrize(
    "command",
    [
        ("sart", "--help"),
        ("sart", "--version"),
        ("sart", "bgp", "global", "get", "--help"),
        ("sart", "lb", "--help"),
        ("sartd", "--help"),
        ("sartd", "--version"),
        ("sartd", "bgp", "--help"),
        ("sartd", "agent", "--help"),
        ("sartd", "fib", "--help"),
        ("sart-controller", "--help"),
        ("sart-controller", "--version"),
        ("python", "-m", "sart.cni.install", "--help"),
    ],
)
def test_every_console_script_of_the_full_install_runs(
    full: Path, command: tuple[str, ...]
) -> None:
    result = run(full, *command)
    assert result.returncode == 0, result.stderr
    if command[-1] == "--version":
        assert result.stdout.strip().endswith(f"version {__version__}")


def test_sart_cni_of_the_full_install_answers(full: Path) -> None:
    assert "1.1.0" in cni_version(full)


def test_the_lowest_run_names_only_tests_that_exist() -> None:
    """scripts/test-lowest's tests against real parts (its `real` list) all collect: one
    renamed or moved would otherwise fail CI only at its very end, in the lowest venv."""
    script = (ROOT / "scripts" / "test-lowest").read_text()
    listing = script.split("\nreal=(\n", 1)[1].split("\n)\n", 1)[0]
    lines = [line.strip() for line in listing.splitlines()]
    named = [line for line in lines if line and not line.startswith("#")]
    assert len(named) >= 10, named
    command = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*command, *named], check=False, cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
