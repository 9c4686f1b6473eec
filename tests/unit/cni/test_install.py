"""`python -m sart.cni.install` puts a plugin on a node that runs with the node's own Python,
outside any virtual environment, and a network list the runtime reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sart.cni.install import CONFLIST, install, main
from sart.testing.cni_lab import node_python


def run(plugin: Path, command: str, config: dict[str, object], cwd: Path) -> tuple[int, dict]:
    env = {"CNI_COMMAND": command, "CNI_CONTAINERID": "c" * 64, "CNI_IFNAME": "eth0",
           "CNI_NETNS": "/run/netns/none", "CNI_PATH": str(plugin.parent)}  # fmt: skip
    done = subprocess.run(
        [str(plugin)], input=json.dumps(config).encode(), env=env, cwd=cwd,
        capture_output=True, check=False, timeout=30,
    )  # fmt: skip
    return done.returncode, json.loads(done.stdout)


def test_the_installed_plugin_runs_on_the_nodes_python_alone(tmp_path: Path) -> None:
    bin_dir, conf_dir = tmp_path / "bin", tmp_path / "net.d"
    bin_dir.mkdir(), conf_dir.mkdir()
    written = install(bin_dir, conf_dir, python=node_python(), socket=str(tmp_path / "a.sock"))
    assert [p.name for p in written] == ["sart-cni.d", "sart-cni", CONFLIST]
    plugin = bin_dir / "sart-cni"
    assert os.access(plugin, os.X_OK)
    assert plugin.read_text().startswith(f"#!{node_python()} -IS\n")
    listed = json.loads((conf_dir / CONFLIST).read_text())
    assert listed["plugins"] == [{"type": "sart-cni", "socket": str(tmp_path / "a.sock")}]
    config = {"cniVersion": "1.0.0", "name": "sart", **listed["plugins"][0]}
    code, version = run(plugin, "VERSION", config, tmp_path)
    assert code == 0 and "1.1.0" in version["supportedVersions"]
    # no agent: the spec's "try again later", naming the socket (the slow path, json and all)
    code, error = run(plugin, "ADD", config, tmp_path)
    assert code == 1 and error["code"] == 11 and "a.sock" in error["msg"]
    # the fast path (default socket): whatever the agent's state, a spec answer
    default = {"cniVersion": "1.0.0", "name": "sart", "type": "sart-cni"}
    code, answer = run(plugin, "ADD", default, tmp_path)
    assert "cniVersion" in answer or "ips" in answer


def test_a_reinstall_replaces_everything_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    install(tmp_path, tmp_path, python=sys.executable, mtu=1450)
    install(tmp_path, tmp_path, python=sys.executable)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [CONFLIST, "sart-cni", "sart-cni.d"]
    listed = json.loads((tmp_path / CONFLIST).read_text())
    assert listed["plugins"] == [{"type": "sart-cni"}]  # the default socket: no field
    bundled = sorted(str(p.relative_to(tmp_path / "sart-cni.d")) for p in
                     (tmp_path / "sart-cni.d").rglob("*.py"))  # fmt: skip
    assert bundled == ["sart/__init__.py", "sart/cni/__init__.py", "sart/cni/plugin.py",
                       "sart/cni/spec.py", "sart/cni/wire.py", "sart/errors.py"]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--bin-dir", "/nonexistent"], "/nonexistent is not a directory"),
        (["--python", "python3", "--no-conf"], "an absolute path on the node is needed"),
        (["--mtu", "70000", "--no-conf"], "not 576..65535"),
    ],
)
def test_bad_flags_say_what_is_wrong(
    tmp_path: Path, argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--bin-dir", str(tmp_path), *argv])
    assert exited.value.code == 2
    assert says in capsys.readouterr().err


def test_the_plugin_runs_from_another_path_than_it_was_installed_at(tmp_path: Path) -> None:
    """The DaemonSet's init container installs into /host/opt/cni/bin; the runtime runs the
    plugin as /opt/cni/bin/sart-cni. Found on a real node (tests/k8s/test_real_node.py): the
    launcher named the installer's path and failed with "No module named 'sart'"."""
    installed = tmp_path / "host" / "opt" / "cni" / "bin"
    installed.mkdir(parents=True)
    install(installed, None, python=node_python())
    moved = tmp_path / "bin"
    installed.rename(moved)
    assert str(installed) not in (moved / "sart-cni").read_text()
    config = {"cniVersion": "1.0.0", "name": "sart", "type": "sart-cni"}
    code, version = run(moved / "sart-cni", "VERSION", config, tmp_path)
    assert code == 0 and "1.1.0" in version["supportedVersions"]
