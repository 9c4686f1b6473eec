"""The agent's CNI side: `sart-cni` forwards each call over a unix socket (`sart.cni.wire`),
which this module checks and answers (`sart.cni.spec`), and it gives pods their addresses from
this node's AddressBlocks and their interfaces (`sart.cni.podnet`). The decisions are
`sart.k8s.reconcile.pods`'s; this module watches, calls and writes.

- Watches the AddressPools (type pod) and the AddressBlocks; this node's blocks are where
  addresses come from, every node's tell when a pool is exhausted. Watches this node's pods and
  the namespaces too, for the annotations that choose a pool: an ADD calls the apiserver only
  for a pod (or namespace) the watch has not brought yet.
- ADD: the pod's pool (pod annotation, namespace annotation, autoAssign), the lowest free
  address of the node's blocks of it; when they are full, a BlockRequest (one pending per pool
  at a time, shared by every ADD waiting) and the ADD goes on when the block comes. Then the
  pod's interface. Anything failing after the address was taken gives it back: nothing
  half-made is left.
- DEL gives the address back and releases a block that became empty (not the node's last of
  its pool). DEL of what does not exist succeeds. CHECK compares the kernel with the record.
  GC (CNI 1.1) removes this network's attachments the runtime no longer knows.
- The kernel is the only record: at start, every attachment is read back from the host side
  of its veth (`podnet.list_attachments`) and its address taken again before any call is
  served, so a restart loses nothing.
- Every `gc_interval` seconds, attachments whose pod no longer exists in the API, or whose
  interface is gone (the netns went away without a DEL), are removed and their addresses
  freed. The pods are the watch's; a pod it lacks is read before its attachment goes (404:
  gone), so an idle node makes no request.
- Calls on one container are served one at a time; calls on different containers at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any, TypeVar

from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException
from netaddr import IPAddress, IPNetwork

from sart.cni import podnet, wire
from sart.cni.spec import (
    DEFAULT_SOCKET,
    CniError,
    ErrorCode,
    Request,
    parse_request,
    plugin_output,
)
from sart.errors import IpamError
from sart.k8s.models import GROUP, VERSION
from sart.k8s.reconcile.blocks import BlockView
from sart.k8s.reconcile.pods import (
    NodeBlocks,
    NoPool,
    PodPool,
    choose_pools,
    low_water,
    pool_exhausted,
)
from sart.k8s.runtime.blocks import REQUEST_LABEL, block_view, pod_pool
from sart.k8s.runtime.metrics import AgentMetrics
from sart.k8s.runtime.outcome import API_ERRORS, describe
from sart.k8s.runtime.watch import watch_kind, watch_objects

log = logging.getLogger("sart.cni")

GC_INTERVAL = 60.0
BLOCK_WAIT = 30.0  # how long an ADD waits for a new block before asking to be retried
Key = tuple[str, str]  # (container id, ifname)
T = TypeVar("T")


def cni_result(attachment: podnet.Attachment, version: str) -> dict[str, Any]:
    """The ADD result (1.1.0 shape; sart-cni converts it to the caller's version)."""
    ips, routes = [], []
    for network in attachment.addresses:
        v4 = network.version == 4
        gateway = str(podnet.POD_GATEWAY_V4 if v4 else podnet.POD_GATEWAY_V6)
        ips.append({"address": str(network), "gateway": gateway, "interface": 1})
        routes.append({"dst": "0.0.0.0/0" if v4 else "::/0", "gw": gateway})
    return {
        "cniVersion": version,
        "interfaces": [
            {"name": attachment.host_ifname, "mac": attachment.host_mac},
            {"name": attachment.ifname, "mac": attachment.mac, "sandbox": attachment.netns},
        ],
        "ips": ips,
        "routes": routes,
        "dns": {},
    }


class CniService:
    def __init__(
        self,
        api: ApiClient,
        node: str,
        *,
        socket_path: str = DEFAULT_SOCKET,
        gc_interval: float = GC_INTERVAL,
        block_wait: float = BLOCK_WAIT,
        metrics: AgentMetrics | None = None,
        executor: Executor | None = None,
    ) -> None:
        self.core = CoreV1Api(api)
        # Where the netlink work runs: threads of this process's (the node's) namespace.
        # Tests pass threads that entered a lab node's namespace.
        self.executor = executor or ThreadPoolExecutor(16, thread_name_prefix="podnet")
        self.custom = CustomObjectsApi(api)
        self.node = node
        self.socket_path = socket_path
        self.gc_interval = gc_interval
        self.block_wait = block_wait
        self.metrics = metrics or AgentMetrics()
        self.pools: dict[str, PodPool] = {}
        self.all_blocks: dict[str, BlockView] = {}  # every node's pod blocks
        self.blocks = NodeBlocks()
        self.attachments: dict[Key, podnet.Attachment] = {}
        # The annotations that choose a pod's pool, as the watches have them (this node's pods,
        # every namespace): an ADD reads the apiserver only for what they do not have yet.
        self.pod_annotations: dict[tuple[str, str], dict[str, str]] = {}
        self.namespace_annotations: dict[str, dict[str, str]] = {}
        self.served_requests: set[str] = set()  # BlockRequests an AddressBlock was made for
        self.orphans: set[IPAddress] = set()  # in use, but in no block of ours (reported)
        self.ready = asyncio.Event()
        self.gc_runs = 0
        self._synced: set[str] = set()
        self._listed = asyncio.Event()
        self._locks: dict[Key, asyncio.Lock] = {}
        self._block_came: dict[str, asyncio.Event] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._asking: dict[str, asyncio.Task[None]] = {}  # pool -> the BlockRequest being made
        self._measured: set[str] = set()  # the pools with series

    # --- the watches ------------------------------------------------------------------------

    def _on_pool(self, kind: str, obj: Any) -> None:
        if kind == "SYNCED":
            self._listed_kind("addresspools")
            return
        name = obj["metadata"]["name"]
        found = None if kind == "DELETED" else pod_pool(obj)
        if found is None:
            self.pools.pop(name, None)
        else:
            self.pools[name] = found
        self._adopt_blocks()

    def _on_block(self, kind: str, obj: Any) -> None:
        if kind == "SYNCED":
            self._listed_kind("addressblocks")
            return
        name = obj["metadata"]["name"]
        served = (obj["metadata"].get("labels") or {}).get(REQUEST_LABEL)
        if served:
            self.served_requests.add(served)
        view = None if kind == "DELETED" else block_view(obj)
        if view is None:
            self.all_blocks.pop(name, None)
            orphans = self.blocks.remove_block(name)
            if orphans:
                self.orphans.update(orphans)
                log.warning(
                    "address block removed while pods use it",
                    extra={"block": name, "addresses": [str(a) for a in orphans]},
                )
        else:
            self.all_blocks[name] = view
        self._adopt_blocks()

    def _on_pod(self, kind: str, obj: Any) -> None:
        if kind == "SYNCED":
            return
        key = (obj.metadata.namespace, obj.metadata.name)
        if kind == "DELETED":
            self.pod_annotations.pop(key, None)
        else:
            self.pod_annotations[key] = dict(obj.metadata.annotations or {})

    def _on_namespace(self, kind: str, obj: Any) -> None:
        if kind == "SYNCED":
            return
        if kind == "DELETED":
            self.namespace_annotations.pop(obj.metadata.name, None)
        else:
            self.namespace_annotations[obj.metadata.name] = dict(obj.metadata.annotations or {})

    def _listed_kind(self, plural: str) -> None:
        self._synced.add(plural)
        if self._synced == {"addresspools", "addressblocks"}:
            self._listed.set()

    def _adopt_blocks(self) -> None:
        for view in self.all_blocks.values():
            pool = self.pools.get(view.pool)
            if view.node != self.node or pool is None or view.name in self.blocks:
                continue
            self.blocks.add_block(view, pool)
            for address in sorted(self.orphans):
                if address in view.cidr:
                    self.orphans.discard(address)
                    self.blocks.take(address)
            self._block_came.setdefault(view.pool, asyncio.Event()).set()
        self._measure()

    def _measure(self) -> None:
        """Addresses and blocks per pod pool, the series of pools that are gone removed."""
        metrics = self.metrics
        for name in self.pools:
            metrics.pod_addresses.labels(name).set(self.blocks.used(name))
            metrics.address_blocks.labels(name).set(len(self.blocks.blocks_of(name)))
        for name in self._measured - self.pools.keys():
            metrics.pod_addresses.remove(name)
            metrics.address_blocks.remove(name)
        self._measured = set(self.pools)

    async def _blocking(self, call: Callable[..., T], /, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(call, **kwargs))

    # --- running ----------------------------------------------------------------------------

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tasks:
            tasks.create_task(watch_kind(self.custom, "addresspools", self._on_pool))
            tasks.create_task(watch_kind(self.custom, "addressblocks", self._on_block))
            tasks.create_task(
                watch_objects(
                    self.core.list_pod_for_all_namespaces,
                    self._on_pod,
                    "pods",
                    field_selector=f"spec.nodeName={self.node}",
                )
            )
            tasks.create_task(
                watch_objects(self.core.list_namespace, self._on_namespace, "namespaces")
            )
            server = await self._listen()
            tasks.create_task(self._serve_forever(server))
            await self._start()
            tasks.create_task(self._collect_garbage())

    async def _listen(self) -> asyncio.Server:
        directory = os.path.dirname(self.socket_path)
        if directory:
            os.makedirs(directory, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)  # left by an agent that died
        server = await asyncio.start_unix_server(self._connection, path=self.socket_path)
        os.chmod(self.socket_path, 0o600)
        log.info("CNI requests served", extra={"socket": self.socket_path})
        return server

    async def _serve_forever(self, server: asyncio.Server) -> None:
        async with server:
            try:
                await server.serve_forever()
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.socket_path)

    async def _start(self) -> None:
        """Calls wait until the pools and blocks are listed and the kernel's attachments are
        taken back."""
        await self._listed.wait()
        found = await self._blocking(podnet.list_attachments)
        for attachment in found:
            self._take_back(attachment)
        self.ready.set()
        log.info(
            "CNI side ready",
            extra={"attachments": len(self.attachments), "blocks": len(list(self.blocks))},
        )

    def _take_back(self, attachment: podnet.Attachment) -> None:
        key = (attachment.container_id, attachment.ifname)
        self.attachments[key] = attachment
        for network in attachment.addresses:
            try:
                self.blocks.take(network.ip)
            except IpamError as error:
                self.orphans.add(network.ip)
                log.warning(
                    "pod address outside this node's blocks kept",
                    extra={"container": attachment.container_id, "error": str(error)},
                )
        self._measure()

    # --- one call ---------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            data = await self._read_invocation(reader)
            answer = await self.call(data)
            writer.write(answer)
            await writer.drain()
        except (ConnectionError, OSError, asyncio.IncompleteReadError) as error:
            log.info("CNI caller went away", extra={"error": str(error)})
        finally:
            writer.close()

    @staticmethod
    async def _read_invocation(reader: asyncio.StreamReader) -> bytes:
        """The bytes of one invocation (`sart.cni.wire`), read to its announced end. Framing
        that is wrong (magic, size line, over `wire.MAX_INVOCATION`) is returned as read:
        `call` refuses it with an answer naming the problem."""
        magic = await reader.readexactly(len(wire.MAGIC))
        if magic != wire.MAGIC:
            return magic
        try:
            size_line = await reader.readline()  # at most the reader's limit (64 KiB)
        except ValueError:
            return magic
        try:
            env_size, stdin_size = wire.invocation_size(size_line)
        except ValueError:
            return magic + size_line
        return magic + size_line + await reader.readexactly(env_size + stdin_size)

    async def call(self, data: bytes) -> bytes:
        """One invocation as sart-cni sends it (`sart.cni.wire`); the answer as it reads it:
        the exit status and exactly what the plugin prints. Never raises for what the caller
        sent."""
        began = time.perf_counter()
        command = "UNKNOWN"
        request: Request | None = None
        try:
            try:
                environ, stdin = wire.decode_invocation(data)
            except ValueError as error:
                raise CniError(
                    ErrorCode.DECODE_FAILURE, "the call from sart-cni is malformed", str(error)
                ) from None
            request = parse_request(environ, stdin)
            command = request.command
            result = None if command == "VERSION" else await self.handle(request)
            status, stdout = plugin_output(request, result=result)
        except CniError as error:
            self.metrics.cni_errors.labels(command, str(error.code)).inc()
            log.warning(
                "CNI call refused",
                extra={"command": command, "code": error.code, "error": error.msg,
                       "details": error.details},
            )  # fmt: skip
            return wire.encode_answer(*plugin_output(request, error=error))
        except Exception as error:
            # A bug of ours: the caller still gets an answer (not a dropped connection) and
            # the log the traceback; what the call had taken was given back on the way out.
            log.exception("CNI call failed", extra={"command": command})
            self.metrics.cni_errors.labels(command, str(ErrorCode.AGENT_FAILED.value)).inc()
            failed = CniError(ErrorCode.AGENT_FAILED, f"the sart agent failed: {error!r}")
            return wire.encode_answer(*plugin_output(request, error=failed))
        finally:
            self.metrics.cni_calls.labels(command).inc()
            self.metrics.cni_duration.labels(command).observe(time.perf_counter() - began)
        return wire.encode_answer(status, stdout)

    async def handle(self, request: Request) -> dict[str, Any]:
        if request.command == "STATUS":
            return self._status()
        await self.ready.wait()
        if request.command == "GC":
            await self._gc_call(request)
            return {}
        key = (request.container_id, request.ifname)
        lock = self._locks.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                if request.command == "ADD":
                    return await self._add(request, key)
                if request.command == "DEL":
                    await self._delete(request, key)
                    return {}
                if request.command == "CHECK":
                    await self._check(request, key)
                    return {}
        finally:
            if not lock.locked() and self._locks.get(key) is lock:
                del self._locks[key]
        raise CniError(ErrorCode.INVALID_ENVIRONMENT, f"unknown command {request.command!r}")

    def _status(self) -> dict[str, Any]:
        if not self.ready.is_set():
            raise CniError(
                ErrorCode.PLUGIN_NOT_AVAILABLE,
                "the sart agent is starting: AddressPools and AddressBlocks not listed yet",
            )
        if not self.pools:
            raise CniError(
                ErrorCode.PLUGIN_NOT_AVAILABLE, "no AddressPool of type pod exists in the cluster"
            )
        return {}

    # --- ADD --------------------------------------------------------------------------------

    async def _add(self, request: Request, key: Key) -> dict[str, Any]:
        existing = self.attachments.get(key)
        if existing is not None:  # a runtime retrying an ADD that did succeed
            return cni_result(existing, request.version)
        namespace, name = request.pod_namespace, request.pod_name
        pod_annotations, namespace_annotations = await self._annotations(namespace, name)
        try:
            choice = choose_pools(pod_annotations, namespace_annotations, self.pools)
        except NoPool as error:
            raise CniError(ErrorCode.UNKNOWN_POOL, str(error), f"pod {namespace}/{name}") from None
        mtu = _mtu(request.config)
        addresses: list[IPAddress] = []
        try:
            for pool in choice.pools:  # a dual-stack pod: one of each family, all or none
                addresses.append(await self._allocate(pool))
            attachment = await self._blocking(
                podnet.attach,
                container_id=request.container_id,
                ifname=request.ifname,
                network=str(request.config.get("name", "")),
                netns=request.netns,
                addresses=tuple(
                    IPNetwork(f"{a}/{32 if a.version == 4 else 128}") for a in addresses
                ),
                pod=f"{namespace}/{name}" if name else "",
                pool=",".join(p.name for p in choice.pools),
                mtu=mtu,
            )
        except BaseException as error:
            for address in addresses:
                self._give_back(address)
            if isinstance(error, podnet.NetnsMissing):
                raise CniError(ErrorCode.UNKNOWN_CONTAINER, str(error), request.netns) from None
            if isinstance(error, (podnet.PodNetworkError, OSError)):
                raise CniError(ErrorCode.IO_FAILURE, str(error), request.netns) from None
            raise
        self.attachments[key] = attachment
        self._measure()
        log.info(
            "pod attached",
            extra={"pod": attachment.pod, "addresses": [str(a) for a in addresses],
                   "pools": [p.name for p in choice.pools], "chosen_by": choice.why,
                   "container": request.container_id[:12]},
        )  # fmt: skip
        return cni_result(attachment, request.version)

    async def _annotations(
        self, namespace: str, name: str
    ) -> tuple[dict[str, str], dict[str, str]]:
        if not namespace:
            return {}, {}
        pod_known = self.pod_annotations.get((namespace, name)) if name else {}
        space_known = self.namespace_annotations.get(namespace)
        if pod_known is not None and space_known is not None:
            return pod_known, space_known  # the usual case: no call to the apiserver
        try:
            pod, space = await asyncio.gather(
                self.core.read_namespaced_pod(name, namespace) if pod_known is None else _nothing(),
                self.core.read_namespace(namespace) if space_known is None else _nothing(),
            )
        except ApiException as error:
            if error.status == 404:
                raise CniError(
                    ErrorCode.UNKNOWN_CONTAINER,
                    f"pod {namespace}/{name} does not exist in the API",
                ) from None
            raise CniError(
                ErrorCode.TRY_AGAIN_LATER,
                f"reading pod {namespace}/{name} failed: {describe(error)}",
            ) from None
        except API_ERRORS as error:
            raise CniError(
                ErrorCode.TRY_AGAIN_LATER,
                f"reading pod {namespace}/{name} failed: {describe(error)}",
            ) from None
        if pod_known is None and pod is not None:
            pod_known = dict(pod.metadata.annotations or {})
        if space_known is None and space is not None:
            space_known = dict(space.metadata.annotations or {})
        return pod_known or {}, space_known or {}

    async def _allocate(self, pool: PodPool) -> IPAddress:
        deadline = asyncio.get_running_loop().time() + self.block_wait
        while True:
            allocation = self.blocks.allocate(pool.name)
            if allocation is not None:
                self._measure()
                if self.blocks.free(pool.name) < low_water(pool) and not pool_exhausted(
                    pool, self.all_blocks.values()
                ):
                    self._ask_for_block(pool.name)  # before the next pods have to wait for it
                return allocation.address
            if pool_exhausted(pool, self.all_blocks.values()):
                raise CniError(
                    ErrorCode.POOL_EXHAUSTED,
                    f"AddressPool {pool.name} ({pool.cidr}) is exhausted: every /{pool.block_size}"
                    " block belongs to a node and this node's are full",
                )
            came = self._block_came.setdefault(pool.name, asyncio.Event())
            came.clear()
            self._ask_for_block(pool.name)
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                async with asyncio.timeout(max(remaining, 0)):
                    await came.wait()
            except TimeoutError:
                raise CniError(
                    ErrorCode.TRY_AGAIN_LATER,
                    f"no new AddressBlock of pool {pool.name} for node {self.node} within "
                    f"{self.block_wait:g} s (is sart-controller running?)",
                ) from None

    def _ask_for_block(self, pool: str) -> None:
        if pool not in self._asking or self._asking[pool].done():
            self._asking[pool] = asyncio.create_task(self._request_block(pool))

    async def _request_block(self, pool: str) -> None:
        """One BlockRequest for this node and pool, unless one is pending already (an agent
        that restarted while waiting must not ask twice). A request whose block exists is
        served, even while the controller has not deleted it yet."""
        try:
            listing = await self.custom.list_cluster_custom_object(GROUP, VERSION, "blockrequests")
            for item in listing.get("items", []):
                spec = item.get("spec") or {}
                pending = item["metadata"]["name"] not in self.served_requests
                if spec.get("pool") == pool and spec.get("node") == self.node and pending:
                    return  # its block is on the way
            body = {
                "apiVersion": f"{GROUP}/{VERSION}",
                "kind": "BlockRequest",
                "metadata": {"generateName": f"{pool}-{self.node}-"},
                "spec": {"pool": pool, "node": self.node},
            }
            made = await self.custom.create_cluster_custom_object(
                GROUP, VERSION, "blockrequests", body
            )
            log.info(
                "block requested",
                extra={"pool": pool, "request": made["metadata"]["name"]},
            )
        except API_ERRORS as error:
            # The waiting ADDs time out and are retried by the runtime; the next one asks again.
            log.warning("block request failed", extra={"pool": pool, "error": describe(error)})

    def _give_back(self, address: IPAddress) -> None:
        if address in self.orphans:
            self.orphans.discard(address)
            return
        try:
            releasable = self.blocks.release(address)
        except IpamError as error:
            log.warning(
                "address not given back", extra={"address": str(address), "error": str(error)}
            )
            return
        self._measure()
        if releasable is not None:
            view = self.blocks.begin_release(releasable)
            task = asyncio.create_task(self._release_block(view))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _release_block(self, view: BlockView) -> None:
        try:
            await self.custom.delete_cluster_custom_object(
                GROUP, VERSION, "addressblocks", view.name
            )
        except ApiException as error:
            if error.status != 404:
                self.blocks.cancel_release(view.name)
                log.warning(
                    "empty block not released", extra={"block": view.name, "error": describe(error)}
                )
                return
        except API_ERRORS as error:
            self.blocks.cancel_release(view.name)
            log.warning(
                "empty block not released", extra={"block": view.name, "error": describe(error)}
            )
            return
        log.info("empty block released", extra={"block": view.name, "cidr": str(view.cidr)})

    # --- DEL, CHECK, GC ---------------------------------------------------------------------

    async def _delete(self, request: Request, key: Key) -> None:
        await self._detach(key, request.netns or None)

    async def _detach(self, key: Key, netns: str | None) -> None:
        attachment = self.attachments.get(key)
        try:
            await self._blocking(podnet.detach, container_id=key[0], ifname=key[1], netns=netns)
        except (podnet.PodNetworkError, OSError) as error:
            raise CniError(ErrorCode.IO_FAILURE, str(error), netns or "") from None
        if attachment is None:
            return
        del self.attachments[key]
        for network in attachment.addresses:
            self._give_back(network.ip)
        self._measure()
        log.info(
            "pod detached",
            extra={"pod": attachment.pod, "addresses": [str(a.ip) for a in attachment.addresses],
                   "container": key[0][:12]},
        )  # fmt: skip

    async def _check(self, request: Request, key: Key) -> None:
        attachment = self.attachments.get(key)
        if attachment is None:
            raise CniError(
                ErrorCode.UNKNOWN_CONTAINER,
                f"no attachment of container {request.container_id} interface {request.ifname}",
            )
        problems = await self._blocking(podnet.check, attachment=attachment)
        previous = request.config.get("prevResult") or {}
        given = {str(ip.get("address")) for ip in previous.get("ips", []) if isinstance(ip, dict)}
        ours = {str(a) for a in attachment.addresses}
        if given and given != ours:
            problems.append(f"prevResult has {sorted(given)}, the pod has {sorted(ours)}")
        if problems:
            raise CniError(
                ErrorCode.CHECK_FAILED,
                f"pod interface {request.ifname} is not as ADD made it",
                "; ".join(problems),
            )

    async def _gc_call(self, request: Request) -> None:
        """CNI GC: this network's attachments that the runtime does not list are removed."""
        valid = request.config.get("cni.dev/valid-attachments") or []
        keep = {
            (str(item.get("containerID", "")), str(item.get("ifname", "")))
            for item in valid
            if isinstance(item, dict)
        }
        network = str(request.config.get("name", ""))
        for key, attachment in list(self.attachments.items()):
            if attachment.network == network and key not in keep:
                await self._remove_leaked(key, "not in the runtime's valid attachments")

    async def _remove_leaked(self, key: Key, why: str) -> None:
        lock = self._locks.setdefault(key, asyncio.Lock())
        if lock.locked():
            return  # a call on it is being served: that call decides
        async with lock:
            attachment = self.attachments.get(key)
            if attachment is None:
                return
            log.info("leaked attachment removed", extra={"pod": attachment.pod, "why": why})
            await self._detach(key, attachment.netns or None)
        if self._locks.get(key) is lock:
            del self._locks[key]

    async def _collect_garbage(self) -> None:
        while True:
            await asyncio.sleep(self.gc_interval)
            try:
                await self.collect_garbage()
            except (CniError, *API_ERRORS) as error:
                log.warning("garbage collection failed", extra={"error": str(error)})

    async def collect_garbage(self) -> int:
        """Remove attachments of pods the API no longer has, and forget those whose interface
        is gone; returns how many were removed. The pods come from the watch; only a pod the
        watch does not hold is asked for (a watch a moment behind must not make a new pod look
        gone), so a node whose pods all exist makes no request at all."""
        found = await self._blocking(podnet.list_attachments)
        present = {(a.container_id, a.ifname) for a in found}
        removed = 0
        for key, attachment in list(self.attachments.items()):
            if key not in present:
                why = "its interface is gone (the netns went away without a DEL)"
            elif attachment.pod and not await self._pod_exists(attachment.pod):
                why = f"pod {attachment.pod} no longer exists"
            else:
                continue
            await self._remove_leaked(key, why)
            removed += 1
        self.gc_runs += 1
        return removed

    async def _pod_exists(self, pod: str) -> bool:
        namespace, _, name = pod.partition("/")
        if (namespace, name) in self.pod_annotations:
            return True
        try:
            await self.core.read_namespaced_pod(name, namespace)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return True


async def _nothing() -> None:
    return None


def _mtu(config: dict[str, Any]) -> int | None:
    value = config.get("mtu")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 576 <= value <= 65535:
        raise CniError(
            ErrorCode.INVALID_NETWORK_CONFIG,
            f"network config field mtu: {value!r} is not 576..65535",
        )
    return value
