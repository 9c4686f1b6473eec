"""Install `sart-cni` on a node, as the DaemonSet's init container does (the original sart's
installer did the same): the plugin into the runtime's CNI bin directory and the network list
into its configuration directory.

The runtime executes the plugin on the host, with the host's Python, not in the container: so
the plugin goes over as a directory of its own (`sart-cni.d/`, holding only the standard-library
modules it runs: `sart.cni.plugin`, `wire`, `spec` and `sart.errors`) and a launcher `sart-cni`
that puts that directory first on the path. The launcher runs the interpreter with `-IS` (one
argument: a shebang passes one): no
site directories, no environment, nothing of the host's Python packages, and a few
milliseconds less start-up on every pod. The node needs Python 3.11 or later at `--python`.

Every file is written to a temporary name and renamed into place, so a runtime reading the
directory never sees half a file; an existing network list of another name is left alone (the
runtime takes the first in lexical order, so `10-sart.conflist` wins over most defaults).

    python -m sart.cni.install --bin-dir /host/opt/cni/bin --conf-dir /host/etc/cni/net.d
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import sart
from sart.cni import wire

BUNDLE = ("sart/__init__.py", "sart/errors.py", "sart/cni/__init__.py", "sart/cni/plugin.py",
          "sart/cni/spec.py", "sart/cni/wire.py")  # fmt: skip
CONFLIST = "10-sart.conflist"
LAUNCHER = """#!{python} -IS
# sart-cni {version}, installed by `python -m sart.cni.install`.
# The bundle beside this file: installed from a container (/host/opt/cni/bin), run on the host
# (/opt/cni/bin), so no path of the installer's is written here.
import sys
sys.path.insert(0, __file__ + ".d")
from sart.cni.plugin import main
main()
"""


def network_list(socket: str, *, name: str = "sart", mtu: int | None = None) -> dict[str, object]:
    """The network configuration list the runtime reads: sart-cni alone (chaining `portmap`
    or `bandwidth` after it is the operator's choice)."""
    plugin: dict[str, object] = {"type": "sart-cni"}
    if socket != wire.DEFAULT_SOCKET:
        plugin["socket"] = socket  # the default keeps the plugin on its fast path
    if mtu is not None:
        plugin["mtu"] = mtu
    return {"cniVersion": "1.0.0", "name": name, "plugins": [plugin]}


def _write(path: Path, data: bytes, mode: int) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def install(
    bin_dir: Path,
    conf_dir: Path | None,
    *,
    python: str = "/usr/bin/python3",
    socket: str = wire.DEFAULT_SOCKET,
    mtu: int | None = None,
) -> list[Path]:
    """Install the plugin (and, with `conf_dir`, the network list); returns what was written."""
    source = Path(sart.__file__).resolve().parent.parent
    bundle = bin_dir / "sart-cni.d"
    staged = Path(tempfile.mkdtemp(dir=bin_dir, prefix=".sart-cni.d."))
    try:
        for relative in BUNDLE:
            target = staged / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source / relative, target)
        old = bin_dir / ".sart-cni.d.old"
        shutil.rmtree(old, ignore_errors=True)
        if bundle.exists():
            os.replace(bundle, old)
        os.replace(staged, bundle)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    launcher = LAUNCHER.format(python=python, version=sart.__version__)
    written = [bundle, bin_dir / "sart-cni"]
    _write(written[1], launcher.encode(), 0o755)
    if conf_dir is not None:
        document = json.dumps(network_list(socket, mtu=mtu), indent=2) + "\n"
        _write(conf_dir / CONFLIST, document.encode(), 0o644)
        written.append(conf_dir / CONFLIST)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m sart.cni.install", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--bin-dir", type=Path, default=Path("/opt/cni/bin"))
    parser.add_argument("--conf-dir", type=Path, default=Path("/etc/cni/net.d"))
    parser.add_argument("--no-conf", action="store_true", help="install the plugin only")
    parser.add_argument("--python", default="/usr/bin/python3", help="the node's interpreter")
    parser.add_argument("--socket", default=wire.DEFAULT_SOCKET, help="the agent's socket")
    parser.add_argument("--mtu", type=int, default=None, help="MTU of the pods' interfaces")
    args = parser.parse_args(argv)
    for directory in (args.bin_dir, None if args.no_conf else args.conf_dir):
        if directory is not None and not directory.is_dir():
            parser.error(f"{directory} is not a directory (is the host path mounted?)")
    if not args.python.startswith("/"):
        parser.error(f"--python {args.python!r}: an absolute path on the node is needed")
    if args.mtu is not None and not 576 <= args.mtu <= 65535:
        parser.error(f"--mtu {args.mtu}: not 576..65535")
    written = install(
        args.bin_dir,
        None if args.no_conf else args.conf_dir,
        python=args.python,
        socket=args.socket,
        mtu=args.mtu,
    )
    for path in written:
        print(f"installed {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
