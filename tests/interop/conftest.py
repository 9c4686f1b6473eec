"""Fixtures for the interop lab: network namespaces, veth links and real BGP daemons (FRR, BIRD,
GoBGP from sart.testing), all removed after the test or module even when it fails.

- `lab` / `module_lab`: a `sart.testing.peers.Lab` (function / module scope) to make
  namespaces, links and peers;
- `line3` (module scope, in `module_lab`): a router namespace in the middle with a left and a
  right neighbor, as in ../shared/docs/lab.md, with addresses but no daemons, so any speaker
  (sartd included) can go in any place;
- every test under tests/interop is marked `interop`; when one fails, the logs of the daemons
  still running are printed in its report.

Needs root (namespaces) and the daemons (scripts/setup installs them).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from sart.testing.netns import LabError, remove_stale
from sart.testing.peers import Lab, Line3, remove_stale_workdirs

# Labs alive right now, so a failing test can print their daemons' logs.
_ACTIVE: list[Lab] = []


def _open_lab(tag: str) -> Iterator[Lab]:
    lab = Lab(tag)
    _ACTIVE.append(lab)
    try:
        yield lab
    finally:
        _ACTIVE.remove(lab)
        lab.close()


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.interop)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.failed and _ACTIVE and item.path.is_relative_to(HERE):
        report.sections.append(("lab daemon logs", "\n".join(lab.log_tails() for lab in _ACTIVE)))
    return report


@pytest.fixture(scope="session", autouse=True)
def _lab_preflight() -> None:
    if os.geteuid() != 0:
        pytest.skip("the interop lab needs root (network namespaces)")
    missing = [b for b in ("ip", "vtysh", "bird", "gobgpd") if shutil.which(b) is None]
    if missing:
        raise LabError(f"{missing} not installed: run scripts/setup as root")
    remove_stale()
    remove_stale_workdirs()


@pytest.fixture
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A Lab for one test."""
    yield from _open_lab(request.node.name)


@pytest.fixture(scope="module")
def module_lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    """A Lab shared by the tests of one module."""
    yield from _open_lab(request.node.name)


@pytest.fixture(scope="module")
def line3(module_lab: Lab) -> Line3:
    """Three namespaces in a line, the middle one forwarding; no daemons yet."""
    return module_lab.line3()
