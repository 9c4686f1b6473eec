"""The fault-test helpers themselves: `sart.testing.proxy` between a client and the real
apiserver (forwarding, cut, refuse), and components of a `ControlPlane` stopped, restarted and
paused while their ports, data and kubeconfig stay.

The proxy tests use the session's control plane (the proxy only touches its own connections);
the restart and pause tests use a control plane of their own, so that nothing they break can
reach the other tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import ssl
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kubernetes_asyncio import client, watch

from sart.testing.controlplane import ControlPlane, ControlPlaneError, create_namespace
from sart.testing.proxy import ProxyError, TcpProxy, proxied_kubeconfig
from waiting import until

pytestmark = pytest.mark.k8s

# A cut connection shows up in aiohttp as one of these (or as the end of the stream).
CONNECTION_ERRORS = (aiohttp.ClientError, OSError)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _config_map(name: str, data: dict[str, str]) -> Any:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name), data=data)


# --- the proxy ---------------------------------------------------------------------------------


def test_the_kubeconfig_copy_names_the_proxy_and_keeps_the_rest(
    control_plane: ControlPlane, proxy: TcpProxy
) -> None:
    written = proxied_kubeconfig(control_plane.kubeconfig, proxy)
    assert written == control_plane.directory / f"kubeconfig-proxy-{proxy.port}"
    original = yaml.safe_load(control_plane.kubeconfig.read_text())
    copy = yaml.safe_load(written.read_text())
    assert copy["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{proxy.port}"
    copy["clusters"][0]["cluster"]["server"] = control_plane.server
    assert copy == original
    with TcpProxy("127.0.0.1", 9) as elsewhere, pytest.raises(ProxyError, match="no cluster"):
        proxied_kubeconfig(control_plane.kubeconfig, elsewhere)


@pytest.mark.asyncio
async def test_a_client_through_the_proxy_reaches_the_apiserver(
    proxied: Any, k8s: Any, namespace: str, proxy: TcpProxy
) -> None:
    version = await client.VersionApi(proxied).get_code()
    assert version.git_version == "v1.34.4"
    await client.CoreV1Api(proxied).create_namespaced_config_map(
        namespace, _config_map("through", {"via": "proxy"})
    )
    direct = await client.CoreV1Api(k8s).read_namespaced_config_map("through", namespace)
    assert direct.data == {"via": "proxy"}
    seen = proxy.statistics()
    assert seen.connections >= 1
    assert seen.open >= 1  # aiohttp keeps the connection for the next request
    assert (seen.refused, seen.failed, seen.cut) == (0, 0, 0)


def test_the_proxy_serves_synchronous_code(control_plane: ControlPlane, proxy: TcpProxy) -> None:
    # TLS through the proxy: the apiserver's certificate names 127.0.0.1, the proxy's address.
    context = ssl.create_default_context(cafile=str(control_plane.directory / "ca.crt"))
    context.load_cert_chain(
        str(control_plane.directory / "admin.crt"), str(control_plane.directory / "admin.key")
    )
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    with opener.open(f"{proxy.url()}/readyz", timeout=10) as answer:
        assert answer.status == 200
    assert proxy.statistics().connections == 1


@pytest.mark.asyncio
@pytest.mark.parametrize("reset", [True, False], ids=["rst", "fin"])
async def test_cut_breaks_a_running_watch_and_the_next_request_works(
    proxied: Any, k8s: Any, namespace: str, proxy: TcpProxy, reset: bool
) -> None:
    core = client.CoreV1Api(proxied)
    seen: list[str] = []

    async def follow() -> str:
        """Watch until the stream ends ("ended") or fails (the error's type)."""
        try:
            async with watch.Watch() as stream:
                # timeout_seconds: the server never ends it first, and the end is not retried.
                async for event in stream.stream(
                    core.list_namespaced_config_map, namespace, timeout_seconds=600
                ):
                    seen.append(event["object"].metadata.name)
        except CONNECTION_ERRORS as error:
            return type(error).__name__
        return "ended"

    watcher = asyncio.create_task(follow())
    try:
        await client.CoreV1Api(k8s).create_namespaced_config_map(
            namespace, _config_map("before", {})
        )
        await until(lambda: "before" in seen, timeout=10)  # the watch is flowing
        before = proxy.statistics().connections
        assert proxy.cut(reset=reset) >= 1
        outcome = await asyncio.wait_for(watcher, timeout=10)
    finally:
        watcher.cancel()
    print(f"the watch after cut(reset={reset}): {outcome}")  # any other error is raised above
    # A new request opens a new connection through the proxy, and it works.
    found = await core.read_namespaced_config_map("before", namespace)
    assert found.metadata.name == "before"
    after = proxy.statistics()
    assert after.connections > before
    assert after.cut >= 1


@pytest.mark.asyncio
async def test_while_refusing_requests_fail_fast_until_accepting_again(
    proxied: Any, proxy: TcpProxy
) -> None:
    version = client.VersionApi(proxied)
    await version.get_code()
    proxy.refuse()
    assert proxy.refusing
    proxy.cut()  # the pooled keep-alive connection too: every request needs a new one
    for _ in range(3):
        began = time.monotonic()
        with pytest.raises(CONNECTION_ERRORS):
            await version.get_code(_request_timeout=10)
        assert time.monotonic() - began < 2.0  # a reset, not a timeout
    assert proxy.statistics().refused >= 3
    proxy.accept()
    assert (await version.get_code()).git_version == "v1.34.4"
    assert proxy.statistics().open >= 1


# --- stopping, restarting and pausing components ------------------------------------------------


@pytest.fixture(scope="module")
def own_plane(control_plane: ControlPlane) -> Iterator[ControlPlane]:
    """A control plane for these tests alone (the session's binaries, ~4 s to start)."""
    with ControlPlane(control_plane.bin_dir) as plane:
        yield plane


@pytest.mark.asyncio
async def test_restarted_apiserver_and_etcd_keep_objects_ports_and_kubeconfig(
    own_plane: ControlPlane,
) -> None:
    kubeconfig = own_plane.kubeconfig.read_bytes()
    server, etcd_url, before = own_plane.server, own_plane.etcd_url, own_plane.pids
    async with await own_plane.api_client() as api:
        core = client.CoreV1Api(api)
        await core.create_namespaced_config_map("default", _config_map("kept", {"a": "1"}))

        took = await asyncio.to_thread(own_plane.restart, "kube-apiserver", "etcd")

        assert list(took) == ["etcd", "kube-apiserver"]  # start order, whatever the call's
        after = own_plane.pids
        assert after["etcd"] != before["etcd"]
        assert after["kube-apiserver"] != before["kube-apiserver"]
        assert after["kube-controller-manager"] == before["kube-controller-manager"]
        assert not _alive(before["etcd"]) and not _alive(before["kube-apiserver"])
        assert (own_plane.server, own_plane.etcd_url) == (server, etcd_url)
        assert own_plane.kubeconfig.read_bytes() == kubeconfig
        assert own_plane.stopped == () and own_plane.exited() == []
        # The same client object: its old connections died with the apiserver; it reconnects.
        found = await core.read_namespaced_config_map("kept", "default")
        assert found.data == {"a": "1"}
        # The controller-manager, left running, found the new apiserver: a new namespace
        # gets its `default` ServiceAccount.
        await create_namespace(api, "after-restart", timeout=30)


@pytest.mark.asyncio
async def test_a_paused_apiserver_answers_nothing_until_resumed(
    own_plane: ControlPlane,
) -> None:
    async with await own_plane.api_client() as api:
        version = client.VersionApi(api)
        await version.get_code()
        own_plane.pause("kube-apiserver")
        try:
            assert own_plane.paused == ("kube-apiserver",)
            with pytest.raises(TimeoutError):
                await version.get_code(_request_timeout=1)
        finally:
            own_plane.resume("kube-apiserver")
        assert own_plane.paused == ()
        assert (await version.get_code()).git_version == "v1.34.4"
    assert own_plane.exited() == []


def test_component_calls_check_their_arguments(own_plane: ControlPlane) -> None:
    with pytest.raises(ValueError, match="no component kubelet"):
        own_plane.stop_components("kubelet")
    with pytest.raises(ControlPlaneError, match="already running: etcd"):
        own_plane.start_components("etcd")
    own_plane.stop_components("kube-controller-manager")
    own_plane.stop_components("kube-controller-manager")  # already stopped: nothing to do
    assert own_plane.stopped == ("kube-controller-manager",)
    assert "kube-controller-manager" not in own_plane.pids
    with pytest.raises(ControlPlaneError, match="kube-controller-manager is not running"):
        own_plane.pause("kube-controller-manager")
    assert list(own_plane.start_components()) == ["kube-controller-manager"]  # the stopped ones
    assert own_plane.stopped == () and own_plane.exited() == []
    assert own_plane.commands["etcd"][0] == str(own_plane.bin_dir / "etcd")


_OWNER = textwrap.dedent(
    """
    import json, sys
    from sart.testing.controlplane import ControlPlane
    plane = ControlPlane()
    plane.start()
    first = plane.pids
    plane.restart("etcd", "kube-apiserver")
    plane.pause("kube-controller-manager")  # the reaper must kill a stopped group too
    print(json.dumps({"first": first, "now": plane.pids, "directory": str(plane.directory)}))
    sys.stdout.flush()
    sys.stdin.read()
    """
)


def test_the_reaper_kills_restarted_components_when_the_owner_dies(
    own_plane: ControlPlane,
) -> None:
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "SART_K8S_BIN_DIR": str(own_plane.bin_dir)},
    )
    try:
        assert owner.stdout is not None
        printed = json.loads(owner.stdout.readline())
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=30)
    pids = [pid for name, pid in printed["now"].items() if name != "reaper"]
    replaced = [printed["first"][name] for name in ("etcd", "kube-apiserver")]
    assert set(pids).isdisjoint(replaced) and not any(_alive(pid) for pid in replaced)
    directory = Path(printed["directory"])
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in pids) or directory.exists():
        assert time.monotonic() < deadline, [pid for pid in pids if _alive(pid)]
        time.sleep(0.1)
