"""An OCI image from directories, without a container engine (used by scripts/build-image).

Each directory becomes one layer: a tar of its tree (sorted, times clamped to one epoch, owners
kept numeric, hard links kept) compressed with gzip. The image is written as an OCI image layout
(image-spec v1.1: ``oci-layout``, ``index.json``, ``blobs/sha256/``), and the same files plus a
docker-archive ``manifest.json`` as one tarball, which ``ctr images import`` and ``docker load``
both take. Layers are content-addressed: the same tree gives the same digests.

    python -m sart.testing.oci --layer ROOTFS --layer APP --tag sart:0.1.0 \\
        --entrypoint sartd --cmd --help --env PATH=... --user 65532:65532 \\
        --exclude 'dev/*' --out DIR --archive FILE.tar
"""

from __future__ import annotations

import argparse
import datetime
import fnmatch
import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Final

import attrs

__all__ = ["ImageConfig", "Layer", "build_image", "write_archive", "write_layer"]

MANIFEST_TYPE: Final = "application/vnd.oci.image.manifest.v1+json"
INDEX_TYPE: Final = "application/vnd.oci.image.index.v1+json"
CONFIG_TYPE: Final = "application/vnd.oci.image.config.v1+json"
LAYER_TYPE: Final = "application/vnd.oci.image.layer.v1.tar+gzip"
CHUNK: Final = 1 << 20


@attrs.frozen(kw_only=True)
class ImageConfig:
    """What runs: the image config's ``config`` object (image-spec config.md)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = "/"
    labels: Mapping[str, str] = attrs.field(factory=dict)

    def to_json(self) -> dict[str, Any]:
        config: dict[str, Any] = {"Env": list(self.env), "WorkingDir": self.working_dir}
        if self.user:
            config["User"] = self.user
        if self.entrypoint:
            config["Entrypoint"] = list(self.entrypoint)
        if self.cmd:
            config["Cmd"] = list(self.cmd)
        if self.labels:
            config["Labels"] = dict(self.labels)
        return config


@attrs.frozen
class Layer:
    """A layer blob: ``digest`` of the gzip stream, ``diff_id`` of the tar inside."""

    digest: str
    diff_id: str
    size: int


@attrs.frozen
class Descriptor:
    media_type: str
    digest: str
    size: int

    def to_json(self, annotations: Mapping[str, str] | None = None) -> dict[str, Any]:
        json_: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if annotations:
            json_["annotations"] = dict(annotations)
        return json_


class _Hashing(io.RawIOBase):
    """A write-only stream passing bytes on while hashing and counting them."""

    def __init__(self, target: IO[bytes]) -> None:
        self.target = target
        self.sha = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.sha.update(view)
        self.size += view.nbytes
        self.target.write(view)
        return view.nbytes


def _tree(root: Path, exclude: Sequence[str]) -> Iterator[tuple[Path, str]]:
    """(path, name in the layer) of every entry under `root`, parents first, sorted; an
    excluded directory's contents are skipped, not the directory itself unless it matches."""
    for directory, dirs, files in os.walk(root):
        dirs.sort()
        base = Path(directory)
        entries = sorted([*dirs, *files])
        kept_dirs = []
        for name in entries:
            path = base / name
            relative = path.relative_to(root).as_posix()
            if any(fnmatch.fnmatchcase(relative, pattern) for pattern in exclude):
                continue
            if name in dirs:
                kept_dirs.append(name)
            yield path, relative
        dirs[:] = kept_dirs


def write_layer(root: Path, blobs: Path, *, exclude: Sequence[str] = (), epoch: int = 0) -> Layer:
    """Tar and gzip the tree under `root` into `blobs` (named by its digest)."""
    blobs.mkdir(parents=True, exist_ok=True)
    partial = blobs / f".layer-{os.getpid()}.partial"

    def clamp(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime = min(int(info.mtime), epoch)
        info.uname = info.gname = ""
        return info

    with partial.open("wb") as raw:
        compressed = _Hashing(raw)
        with gzip.GzipFile(fileobj=compressed, mode="wb", mtime=0, compresslevel=6) as zipped:
            plain = _Hashing(zipped)  # type: ignore[arg-type]
            with tarfile.open(fileobj=plain, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for path, name in _tree(root, exclude):
                    info = tar.gettarinfo(str(path), name)
                    if info is None:  # a socket: nothing to keep
                        continue
                    info = clamp(info)
                    if info.isreg():
                        with path.open("rb") as content:
                            tar.addfile(info, content)
                    else:
                        tar.addfile(info)
    digest = compressed.sha.hexdigest()
    partial.rename(blobs / digest)
    return Layer(f"sha256:{digest}", f"sha256:{plain.sha.hexdigest()}", compressed.size)


def _put_json(blobs: Path, value: Any, media_type: str) -> Descriptor:
    data = json.dumps(value, indent=None, separators=(",", ":"), sort_keys=True).encode()
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return Descriptor(media_type, f"sha256:{digest}", len(data))


def _created(epoch: int) -> str:
    moment = datetime.datetime.fromtimestamp(epoch, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def build_image(
    layers: Sequence[Path],
    out: Path,
    *,
    tag: str,
    config: ImageConfig,
    exclude: Sequence[str] = (),
    epoch: int = 0,
    architecture: str = "amd64",
) -> Descriptor:
    """Write an OCI image layout of `layers` (directories, lowest first) into `out`; returns
    the manifest's descriptor. `tag` is ``name:tag`` as ``docker images`` shows it."""
    blobs = out / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    written = [write_layer(root, blobs, exclude=exclude, epoch=epoch) for root in layers]
    created = _created(epoch)
    image_config = {
        "architecture": architecture,
        "os": "linux",
        "created": created,
        "config": config.to_json(),
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in written]},
        "history": [
            {"created": created, "created_by": f"sart.testing.oci: layer of {root.name}/"}
            for root in layers
        ],
    }
    config_blob = _put_json(blobs, image_config, CONFIG_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": config_blob.to_json(),
        "layers": [Descriptor(LAYER_TYPE, x.digest, x.size).to_json() for x in written],
    }
    manifest_blob = _put_json(blobs, manifest, MANIFEST_TYPE)
    annotations = {
        "io.containerd.image.name": _full_reference(tag),
        "org.opencontainers.image.ref.name": tag.rpartition(":")[2],
    }
    index = {
        "schemaVersion": 2,
        "mediaType": INDEX_TYPE,
        "manifests": [manifest_blob.to_json(annotations)],
    }
    (out / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}) + "\n")
    docker = [
        {
            "Config": f"blobs/sha256/{config_blob.digest.removeprefix('sha256:')}",
            "RepoTags": [tag],
            "Layers": [f"blobs/sha256/{x.digest.removeprefix('sha256:')}" for x in written],
        }
    ]
    (out / "manifest.json").write_text(json.dumps(docker, indent=2) + "\n")
    _drop_stale_blobs(
        blobs, {config_blob.digest, manifest_blob.digest, *(x.digest for x in written)}
    )
    return manifest_blob


def _full_reference(tag: str) -> str:
    """``sart:0.1.0`` as containerd (and the kubelet) name it: docker.io/library/sart:0.1.0."""
    first, _, rest = tag.partition("/")
    if not rest:
        return f"docker.io/library/{tag}"
    if "." in first or ":" in first or first == "localhost":
        return tag
    return f"docker.io/{tag}"


def _drop_stale_blobs(blobs: Path, keep: set[str]) -> None:
    for blob in blobs.iterdir():
        if f"sha256:{blob.name}" not in keep:
            blob.unlink()


def write_archive(layout: Path, archive: Path) -> None:
    """One tarball of the layout (OCI layout and docker-archive at once), for ``ctr images
    import`` or ``docker load``."""
    partial = archive.with_name(archive.name + ".partial")
    with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("oci-layout", "index.json", "manifest.json"):
            tar.add(layout / name, name)
        tar.add(layout / "blobs", "blobs", recursive=False)
        tar.add(layout / "blobs" / "sha256", "blobs/sha256", recursive=False)
        for blob in sorted((layout / "blobs" / "sha256").iterdir()):
            tar.add(blob, f"blobs/sha256/{blob.name}")
    partial.rename(archive)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sart.testing.oci", description=__doc__)
    parser.add_argument(
        "--layer",
        type=Path,
        action="append",
        required=True,
        help="a directory whose tree is one layer (lowest first; repeatable)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        help="leave out paths matching this glob, relative to a layer's root",
    )
    parser.add_argument("--tag", required=True, help="name:tag")
    parser.add_argument("--entrypoint", action="append", default=[])
    parser.add_argument("--cmd", action="append", default=[])
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE (repeatable)")
    parser.add_argument("--user", default="")
    parser.add_argument("--label", action="append", default=[], help="KEY=VALUE (repeatable)")
    parser.add_argument(
        "--epoch",
        type=int,
        default=int(os.environ.get("SOURCE_DATE_EPOCH", "0")),
        help="latest file time in the layers and the image's creation time",
    )
    parser.add_argument("--out", type=Path, required=True, help="the OCI layout directory")
    parser.add_argument("--archive", type=Path, help="also write the layout as this tarball")
    args = parser.parse_args(argv)  # fmt: skip
    config = ImageConfig(
        entrypoint=tuple(args.entrypoint),
        cmd=tuple(args.cmd),
        env=tuple(args.env),
        user=args.user,
        labels=dict(label.split("=", 1) for label in args.label),
    )
    manifest = build_image(
        args.layer, args.out, tag=args.tag, config=config, exclude=args.exclude, epoch=args.epoch
    )
    if args.archive is not None:
        write_archive(args.out, args.archive)
    print(manifest.digest)


if __name__ == "__main__":
    main()
