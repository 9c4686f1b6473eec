"""The container image built without a container engine (scripts/build-image, cached): a valid
OCI image layout (every blob's digest and size as the index, manifest and config say, the
layers' diff_ids, the docker-archive manifest.json naming the same blobs), and the image itself
runs: its layers unpacked in order into a directory, `chroot` runs the entry points as the
image's user with the image's environment, and the CNI installer writes the plugin."""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

import sart

pytestmark = pytest.mark.image

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "scripts" / "build-image"


@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest) -> Path:
    """The directory scripts/build-image prints (its progress and times shown live: minutes
    the first time, about a second when cached)."""
    began = time.monotonic()
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\nscripts/build-image", flush=True)
        built = subprocess.run([BUILD], stdout=subprocess.PIPE, text=True, check=True)
        print(f"image ready in {time.monotonic() - began:.1f} s", flush=True)
    return Path(built.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def tag() -> str:
    return subprocess.run(
        [BUILD, "--print-tag"], capture_output=True, text=True, check=True
    ).stdout.strip()


def blob(layout: Path, digest: str) -> Path:
    algorithm, _, hexdigest = digest.partition(":")
    assert algorithm == "sha256"
    return layout / "blobs" / "sha256" / hexdigest


def checked(layout: Path, descriptor: dict[str, Any]) -> bytes:
    """The blob a descriptor names, after checking its size and digest."""
    data = blob(layout, descriptor["digest"]).read_bytes()
    assert len(data) == descriptor["size"]
    assert f"sha256:{hashlib.sha256(data).hexdigest()}" == descriptor["digest"]
    return data


def read_image(layout: Path) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    index = json.loads((layout / "index.json").read_text())
    [descriptor] = index["manifests"]
    manifest = json.loads(checked(layout, descriptor))
    config = json.loads(checked(layout, manifest["config"]))
    return descriptor, manifest, config


def test_the_layout_is_a_valid_oci_image(image: Path, tag: str) -> None:
    layout = image / "layout"
    assert json.loads((layout / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((layout / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    descriptor, manifest, config = read_image(layout)
    assert descriptor["mediaType"] == manifest["mediaType"]
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    name, _, version = tag.partition(":")
    assert version == sart.__version__  # the tag is the package's version
    assert descriptor["annotations"] == {
        "io.containerd.image.name": f"docker.io/library/{name}:{version}",
        "org.opencontainers.image.ref.name": version,
    }
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    diff_ids = []
    for layer in manifest["layers"]:
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        plain = gzip.decompress(checked(layout, layer))
        diff_ids.append(f"sha256:{hashlib.sha256(plain).hexdigest()}")
    assert len(diff_ids) == 2  # the Debian root filesystem, then /opt/sart
    assert config["rootfs"] == {"type": "layers", "diff_ids": diff_ids}
    assert (config["architecture"], config["os"]) == ("amd64", "linux")
    run = config["config"]
    assert run["Entrypoint"] == ["sartd"]
    assert run["Cmd"] == ["--help"]
    assert run["User"] == "65532:65532"
    env = dict(e.split("=", 1) for e in run["Env"])
    assert env["PATH"].split(":")[0] == "/opt/sart/bin"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert run["Labels"]["org.opencontainers.image.version"] == version
    # Nothing but what the index reaches.
    reached = {descriptor["digest"], manifest["config"]["digest"]}
    reached |= {layer["digest"] for layer in manifest["layers"]}
    stored = {f"sha256:{p.name}" for p in (layout / "blobs" / "sha256").iterdir()}
    assert stored == reached


def test_the_tarball_is_the_layout_and_a_docker_archive(image: Path, tag: str) -> None:
    """What `ctr images import` and `docker load` read: the OCI layout's files, plus
    manifest.json naming the same config and layers."""
    layout = image / "layout"
    [archive] = image.glob("*.tar")
    with tarfile.open(archive) as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
        docker = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    files = {p.relative_to(layout).as_posix() for p in layout.rglob("*") if p.is_file()}
    assert names == files
    _, manifest, _ = read_image(layout)
    [entry] = docker
    assert entry["RepoTags"] == [tag]
    assert (
        entry["Config"] == blob(layout, manifest["config"]["digest"]).relative_to(layout).as_posix()
    )
    assert entry["Layers"] == [
        blob(layout, layer["digest"]).relative_to(layout).as_posix() for layer in manifest["layers"]
    ]


@pytest.fixture(scope="module")
def rootfs(image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image's layers unpacked in order, as a runtime would (there are no whiteouts)."""
    layout = image / "layout"
    _, manifest, _ = read_image(layout)
    root = tmp_path_factory.mktemp("rootfs")
    root.chmod(0o755)  # as a runtime makes it (pytest's are 0700): the image's user enters it
    for layer in manifest["layers"]:
        with tarfile.open(blob(layout, layer["digest"]), "r:gz") as tar:
            tar.extractall(root, filter="fully_trusted")
    return root


def run_in(
    rootfs: Path, image: Path, *command: str, user: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`command` in the unpacked image with its environment, as its user unless told."""
    _, _, config = read_image(image / "layout")
    run = config["config"]
    return subprocess.run(
        ["env", "-i", *run["Env"], "chroot", f"--userspec={user or run['User']}", rootfs,
         *command],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (("sartd", "--help"), "sartd: the sart daemons."),
        (("sartd", "bgp", "--help"), "Run the BGP speaker."),
        (("sart-controller", "--help"), "--lease-namespace"),
        (("sart", "--help"), "Usage: sart"),
        (("python", "-m", "sart.cni.install", "--help"), "--bin-dir"),
    ],
)
def test_the_entry_points_run_in_the_image(
    rootfs: Path, image: Path, command: tuple[str, ...], expected: str
) -> None:
    ran = run_in(rootfs, image, *command)
    assert ran.returncode == 0, ran.stderr
    assert expected in ran.stdout


def test_the_image_user_is_not_root(rootfs: Path, image: Path) -> None:
    ran = run_in(rootfs, image, "id")
    assert ran.stdout.split()[:2] == ["uid=65532(sart)", "gid=65532(sart)"]


def test_the_cni_installer_writes_the_plugin_from_the_image(rootfs: Path, image: Path) -> None:
    """As the DaemonSet's init container runs it (as root, the host's directories mounted);
    the launcher runs the plugin with the node's python3 (here the image's own)."""
    for host_path in ("opt/cni/bin", "etc/cni/net.d"):  # hostPath type DirectoryOrCreate
        (rootfs / "tmp/host" / host_path).mkdir(parents=True, exist_ok=True)
    ran = run_in(
        rootfs, image, "python", "-m", "sart.cni.install", "--bin-dir", "/tmp/host/opt/cni/bin",
        "--conf-dir", "/tmp/host/etc/cni/net.d", user="0:0",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    conf = json.loads((rootfs / "tmp/host/etc/cni/net.d/10-sart.conflist").read_text())
    assert conf["plugins"] == [{"type": "sart-cni"}]
    version = run_in(
        rootfs, image, "sh", "-c",
        "echo '{\"cniVersion\": \"1.0.0\"}' | CNI_COMMAND=VERSION /tmp/host/opt/cni/bin/sart-cni",
        user="0:0",
    )  # fmt: skip
    assert version.returncode == 0, version.stderr
    assert "1.1.0" in json.loads(version.stdout)["supportedVersions"]
