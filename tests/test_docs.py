"""The docs name only what exists: every `sartd`, `sart`, `sart-controller` and `python -m
sart.cni.install` flag written in docs/*.md and README.md (in backticks or a fenced code block)
is in that command's --help, and every repository path written in backticks is there.

Only clear patterns are read: a command is the program's name followed by its subcommands, its
flags the `--long-options` after it up to a comment, a pipe, `&&` or `;`."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sart.cli import reference

ROOT = Path(__file__).resolve().parent.parent
DOCS = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]
PROGRAMS: dict[str, click.Command] = dict(reference.PROGRAMS)
INSTALLER = "python -m sart.cni.install"
COMMAND = re.compile(
    r"(?:^|(?<=[\s/(\[]))(sartd|sart-controller|sart|python -m sart\.cni\.install)(?=\s|$)"
)
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
SEPARATOR = re.compile(r"\s#|\s\|\s|&&|;")
# `helm install sart charts/sart ...`: a release's name and the chart's path, no sart command.
HELM = re.compile(r"(?:^|\s)helm\s")
PATH = re.compile(
    r"(?<![\w./-])((?:manifests|charts|scripts|src|benchmarks|docs|tests)(?:/[A-Za-z0-9_.-]+)*/?)"
    r"(?=[\s`),:'\"]|$)"
)


def _code(text: str) -> list[str]:
    """The backticked spans and the lines of fenced code blocks."""
    pieces: list[str] = []
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            pieces.append(line)
        else:
            pieces.extend(re.findall(r"`([^`\n]+)`", line))
    return pieces


def _commands() -> list[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    """(doc, program, subcommands, flags) for every command written in the docs."""
    found = []
    for doc in DOCS:
        for piece in _code(doc.read_text()):
            for segment in SEPARATOR.split(piece):
                for match in COMMAND.finditer(segment):
                    if HELM.search(segment[: match.start()]):
                        continue
                    program = match.group(1)
                    rest = segment[match.end() :].split()
                    path: list[str] = []
                    command = PROGRAMS.get(program)
                    while rest and isinstance(command, click.Group) and rest[0] in command.commands:
                        path.append(rest[0])
                        command = command.commands[rest.pop(0)]
                    following = " ".join(rest)
                    nxt = COMMAND.search(following)
                    if nxt is not None:
                        following = following[: nxt.start()]
                    flags = tuple(FLAG.findall(following))
                    if flags:
                        found.append((doc.name, program, tuple(path), flags))
    return found


@cache
def _help(program: str, path: tuple[str, ...]) -> str:
    if program == INSTALLER:
        return subprocess.run(
            [sys.executable, "-m", "sart.cni.install", "--help"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    result = CliRunner().invoke(PROGRAMS[program], [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


COMMANDS = _commands()


def test_the_docs_name_commands() -> None:
    programs = {program for _, program, _, _ in COMMANDS}
    assert {"sartd", "sart", "sart-controller", INSTALLER} <= programs


@pytest.mark.parametrize(
    ("doc", "program", "path", "flags"),
    COMMANDS,
    ids=[f"{d}:{p} {' '.join(s)} {' '.join(f)}" for d, p, s, f in COMMANDS],
)
def test_every_flag_in_the_docs_is_in_the_help(
    doc: str, program: str, path: tuple[str, ...], flags: tuple[str, ...]
) -> None:
    text = _help(program, path)
    missing = [f for f in flags if not re.search(rf"(?<![\w-]){re.escape(f)}(?![\w-])", text)]
    assert not missing, f"{doc}: `{program} {' '.join(path)}` has no {missing}"


def _paths() -> list[tuple[str, str]]:
    found = set()
    for doc in DOCS:
        for line in doc.read_text().splitlines():
            for span in re.findall(r"`([^`\n]+)`", line):
                found.update((doc.name, p) for p in PATH.findall(span))
    return sorted(found)


PATHS = _paths()


def test_the_docs_name_paths() -> None:
    assert len(PATHS) > 20


@pytest.mark.parametrize(("doc", "path"), PATHS, ids=[f"{d}:{p}" for d, p in PATHS])
def test_every_path_in_the_docs_exists(doc: str, path: str) -> None:
    assert (ROOT / path.rstrip("/")).exists(), f"{doc} names {path}, which is not there"
