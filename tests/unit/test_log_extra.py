"""No log call names a LogRecord attribute in its `extra`: logging refuses it with KeyError
("Attempt to overwrite 'name' in LogRecord") only when the record is made, that is only at a
level that is enabled. Found on two real nodes (tests/k8s/test_real_node.py): sart-controller at
its default level (info) crashed each time its ClusterBGP part created a NodeBGP or BGPPeer,
while every test running it at warning passed."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "sart"
RESERVED = {*logging.makeLogRecord({}).__dict__, "message", "asctime"}


def extra_keys() -> list[tuple[str, int, str]]:
    """(file, line, key) of every constant key of a dict literal given as `extra=`."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            for keyword in node.keywords:
                if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                    for key in keyword.value.keys:
                        if isinstance(key, ast.Constant) and isinstance(key.value, str):
                            found.append((str(path.relative_to(SRC)), node.lineno, key.value))
    return found


def test_the_scan_finds_the_log_calls() -> None:
    assert len(extra_keys()) > 20


def test_no_log_extra_overwrites_a_record_attribute() -> None:
    clashes = [(f, line, key) for f, line, key in extra_keys() if key in RESERVED]
    assert not clashes, f"extra keys that LogRecord owns: {clashes}"
