"""`sartd agent`: drives the node's speaker from the cluster and reports back, through the
speaker's API only. The decisions are `sart.k8s.reconcile.agent`'s; this module watches, calls
and writes.

- Watches its own NodeBGP (named after the node), the BGPPeers, the BGPAdvertisements and the
  AddressPools. Once every watch has listed, and again whenever one of them changes what the
  speaker must hold (a spec, not a status), it reads the speaker (info, neighbors, local paths),
  plans and makes the calls.
- The speaker's endpoint is the NodeBGP's `spec.speaker.path` (with its `timeout`): the NodeBGP
  is what the ClusterBGP, and so the operator, says of this node's speaker. The `--endpoint`
  flag is used where nothing says so (no NodeBGP), and where the NodeBGP's path cannot be
  reached (a Warning Event on the NodeBGP says so): there is one speaker per node, and the
  DaemonSet that runs it beside the agent knows where it listens.
- Follows the speaker's event stream (WatchEvents), never polls it: every peer state change
  becomes the BGPPeer's status (the state history, backoff, the Established condition) and, on
  reaching or leaving Established, an Event. A broken stream (the speaker restarting) is opened
  again with backoff, and then the speaker is read once: the neighbors' states as they are now,
  and a full sync, as a restarted speaker has forgotten everything. A speaker that holds its
  End-of-RIBs (graceful restart: `end_of_rib_deferred` in its info) is told after that sync
  that its table is complete (EndOfInitialTable).
- Writes statuses as merge patches of the status subresource, built by the models' converter,
  only when they differ from what it knows is stored (its own last write, or what it read);
  failed writes follow the error model (409: again at once, temporary: backoff, permanent: an
  error in the log).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import attrs
from grpclib.const import Status
from grpclib.exceptions import StreamTerminatedError
from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi

from sart.api._gen.sart.speaker.v1 import speaker_pb2 as pb
from sart.api.client import ApiError, SpeakerClient, SpeakerUnreachable
from sart.k8s.attributes import Attributes
from sart.k8s.convert import unstructure
from sart.k8s.models import (
    API_VERSION,
    GROUP,
    VERSION,
    AddressPool,
    AdvertiseStatus,
    BGPAdvertisement,
    BGPAdvertisementStatus,
    BGPPeer,
    BGPPeerConditionStatus,
    BGPPeerStatus,
    NodeBGP,
    NodeBGPConditionStatus,
    NodeBGPStatus,
)
from sart.k8s.reconcile.agent import (
    AgentObserved,
    AgentPlan,
    NeighborSettings,
    PeerAdvertising,
    PeerEvent,
    SecretData,
    SpeakerView,
    advertisement_patch,
    last_state,
    node_condition,
    node_peers,
    plan,
    record_configured,
    record_node_condition,
    record_state,
    state_event,
)
from sart.k8s.reconcile.binding import bound_addresses
from sart.k8s.runtime import MERGE, rfc3339_now
from sart.k8s.runtime.binding import AddressBinding
from sart.k8s.runtime.events import EventRecorder
from sart.k8s.runtime.metrics import AgentMetrics
from sart.k8s.runtime.outcome import API_ERRORS, Backoff, KeyedBackoff, Outcome, classify, describe
from sart.k8s.runtime.watch import (
    WatchStats,
    object_key,
    object_meta,
    read_object,
    watch_kind,
    watch_objects,
)

log = logging.getLogger("sart.agent")

COMPONENT = "sartd-agent"
DEFAULT_TIMEOUT = 10.0  # seconds per speaker call, unless the NodeBGP says otherwise
KINDS = ("nodebgps", "bgppeers", "bgpadvertisements", "addresspools")
# BGPPeers' authSecretRef name Secrets of the agent's own namespace (its Pod's, from the
# downward API or its ServiceAccount; sart-system as shipped).
NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
DEFAULT_NAMESPACE = "sart-system"

STATES = {
    pb.SESSION_STATE_UNSPECIFIED: BGPPeerConditionStatus.UNKNOWN,
    pb.SESSION_STATE_IDLE: BGPPeerConditionStatus.IDLE,
    pb.SESSION_STATE_CONNECT: BGPPeerConditionStatus.CONNECT,
    pb.SESSION_STATE_ACTIVE: BGPPeerConditionStatus.ACTIVE,
    pb.SESSION_STATE_OPEN_SENT: BGPPeerConditionStatus.OPEN_SENT,
    pb.SESSION_STATE_OPEN_CONFIRM: BGPPeerConditionStatus.OPEN_CONFIRM,
    pb.SESSION_STATE_ESTABLISHED: BGPPeerConditionStatus.ESTABLISHED,
}
UNKNOWN = BGPPeerConditionStatus.UNKNOWN
FAMILY_NAMES = {pb.FAMILY_IPV4_UNICAST: "ipv4", pb.FAMILY_IPV6_UNICAST: "ipv6"}
STREAM_ERRORS = (ApiError, StreamTerminatedError, ConnectionError, OSError, TimeoutError)
ESTABLISHED = BGPPeerConditionStatus.ESTABLISHED
# BGPAdvertisement status.peers: events that come together (a write of the speaker to each
# peer, a session going down) make one patch per advertisement.
ADVERTISEMENT_COALESCE = 0.05  # seconds
ADVERTISEMENT_WRITERS = 16  # patches in flight


def own_namespace() -> str:
    """The namespace the agent runs in: $POD_NAMESPACE, else its ServiceAccount's."""
    if namespace := os.environ.get("POD_NAMESPACE", ""):
        return namespace
    with contextlib.suppress(OSError), open(NAMESPACE_FILE) as file:
        return file.read().strip() or DEFAULT_NAMESPACE
    return DEFAULT_NAMESPACE


def secret_data(secret: Any) -> dict[str, bytes]:
    """A Secret's data (a kubernetes-asyncio V1Secret), decoded; keys that do not decode
    are left out (the BGPPeer is then told the key is missing)."""
    data = {}
    for key, value in (secret.data or {}).items():
        with contextlib.suppress(binascii.Error, ValueError):
            data[key] = base64.b64decode(value, validate=True)
    return data


def neighbor_view(state: pb.NeighborState) -> NeighborSettings:
    """A neighbor as ListNeighbors shows it (the password as the speaker's digest of it)."""
    config = state.config
    families = tuple(sorted(FAMILY_NAMES[f] for f in config.families if f in FAMILY_NAMES))
    return NeighborSettings(
        address=config.address,
        asn=config.asn,
        name=config.name,
        port=config.port or 179,
        passive=config.passive,
        hold_time=config.hold_time if config.HasField("hold_time") else None,
        keepalive_time=config.keepalive_time if config.HasField("keepalive_time") else None,
        ttl=config.ttl,
        local_address=config.local_address,
        families=families or ("ipv4", "ipv6"),
        graceful_restart=config.graceful_restart,
        admin_down=config.admin_down,
        next_hops=tuple(config.next_hops),
        has_password=state.has_password,
        password_digest=state.password_digest,
        max_prefixes=config.max_prefixes,
        max_prefixes_warning=(
            config.max_prefixes_warning if config.HasField("max_prefixes_warning") else 75
        ),
        max_prefixes_restart=config.max_prefixes_restart,
        bfd=(
            (config.bfd.min_rx_ms, config.bfd.min_tx_ms, config.bfd.multiplier)
            if config.HasField("bfd")
            else None
        ),
    )


def path_attributes(path: pb.Path) -> Attributes:
    """The attributes of a local path as GetRib shows them (none it cannot read: the path
    is then added again with the ones wanted)."""
    try:
        return Attributes.of(
            communities=path.communities,
            large_communities=path.large_communities,
            local_pref=path.local_pref if path.HasField("local_pref") else None,
            med=path.med if path.HasField("med") else None,
        )
    except ValueError:
        return Attributes()


@attrs.define
class AdvertisementRecord:
    """A BGPAdvertisement as the agent follows its status.peers: the entries as last seen in
    the watch (`observed`) and the ones this agent wrote since (`ours`, None: removed), which
    win over the watch (it may not show them yet). Only this node's BGPPeers' entries are the
    agent's; the others belong to the other nodes' agents."""

    uid: str | None
    namespace: str
    name: str
    cidr: str
    announced: bool  # this node announces it (it lists the node, or no node)
    observed: dict[str, AdvertiseStatus]
    ours: dict[str, AdvertiseStatus | None] = attrs.field(factory=dict)

    def stored(self) -> dict[str, AdvertiseStatus]:
        found = {**self.observed, **self.ours}
        return {name: state for name, state in found.items() if state is not None}


@attrs.define
class StatusRecord:
    """One object's status as the agent wants it (`current`) and as it knows it stored
    (`written`: its last successful write, or what it read first)."""

    uid: str | None
    current: Any
    written: Any


class NodeAgent:
    def __init__(
        self,
        api: ApiClient,
        node: str,
        endpoint: str,
        *,
        stats: WatchStats | None = None,
        clock: Callable[[], str] = rfc3339_now,
        metrics: AgentMetrics | None = None,
        namespace: str | None = None,
        binding: AddressBinding | None = None,
    ) -> None:
        self.custom = CustomObjectsApi(api)
        self.core = CoreV1Api(api)
        self.namespace = namespace or own_namespace()  # where authSecretRefs point
        self.metrics = metrics or AgentMetrics()
        self.events = EventRecorder(CoreV1Api(api), COMPONENT)
        self.node = node
        self.default_endpoint = endpoint
        self.clock = clock
        self.stats = stats if stats is not None else WatchStats()  # every watch, added up
        self.node_bgp: NodeBGP | None = None
        self.peers: dict[str, BGPPeer] = {}
        self.advertisements: dict[str, BGPAdvertisement] = {}
        self.pools: dict[str, AddressPool] = {}
        self.secrets: dict[str, Any] = {}  # the namespace's Secrets, by name (as read)
        self.added_paths: set[str] = set()  # paths this agent added to the speaker
        self.removed: dict[str, NeighborSettings] = {}  # the speaker's own, to put back
        self.speaker_states: dict[str, tuple[BGPPeerConditionStatus, str]] = {}
        self.statuses: dict[tuple[str, str], StatusRecord] = {}  # (plural, name) -> record
        # BGPAdvertisement status.peers: what the speaker reported sent to (and withdrawn
        # from) each neighbor address on its current session, every advertisement's record
        # by namespace/name, and this node's BGPPeers deleted (their entries to remove).
        self.paths_sent: dict[str, set[str]] = {}
        self.paths_withdrawn: dict[str, set[str]] = {}
        self.advertisement_records: dict[str, AdvertisementRecord] = {}
        self.by_cidr: dict[str, set[str]] = {}
        self.gone_peers: set[str] = set()
        self.advertisement_writes = 0
        self._advertisements_dirty: set[str] = set()
        self._advertisements_wake = asyncio.Event()
        self.reached = ""  # the endpoint the speaker answered on last
        self.streaming = ""  # the endpoint of the event stream, while it is open
        self.syncs = 0  # syncs that reached the speaker (tests wait on these)
        self.stream_opened = 0  # event streams opened
        self.status_writes = 0
        self._synced = dict.fromkeys((*KINDS, "secrets"), False)
        self._wake = asyncio.Event()
        self._backoff = Backoff(base=0.2, cap=10.0)
        self._dirty: set[tuple[str, str]] = set()
        self._events: list[tuple[dict[str, Any], PeerEvent]] = []
        self._write_wake = asyncio.Event()
        self._write_backoff = KeyedBackoff(base=0.2, cap=30.0)
        self._moved = asyncio.Event()  # the speaker's endpoint changed
        self._told: set[tuple[str, ...]] = set()  # problems said already (once per generation)
        self._said_kept: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
        self._said_no_node_bgp = False
        # --bind-addresses: the LoadBalancer addresses announced here, on an interface.
        self.binding = binding
        self._bind_wake = asyncio.Event()

    # --- where the speaker is ---------------------------------------------------------------

    def endpoints(self) -> list[tuple[str, float]]:
        """Where the speaker's API may be, in order, with the timeout of each call: the
        NodeBGP's spec.speaker.path, then the --endpoint flag."""
        found = []
        if self.node_bgp is not None and self.node_bgp.spec.speaker.path:
            speaker = self.node_bgp.spec.speaker
            timeout = float(speaker.timeout) if speaker.timeout else DEFAULT_TIMEOUT
            found.append((speaker.path, timeout))
        if all(endpoint != self.default_endpoint for endpoint, _ in found):
            found.append((self.default_endpoint, DEFAULT_TIMEOUT))
        return found

    async def _reach(self, stack: contextlib.ExitStack) -> tuple[SpeakerClient, Any]:
        """A client of the first endpoint whose speaker answers, and its info."""
        failures = []
        for endpoint, timeout in self.endpoints():
            try:
                speaker = stack.enter_context(_client(endpoint, timeout))
                info = await speaker.info()
            except SpeakerUnreachable as error:
                failures.append(error.message)
                continue
            self.reached = endpoint
            if self.streaming and self.streaming != endpoint:
                self._moved.set()  # the events come from elsewhere: follow this one instead
            if failures and self.node_bgp is not None:
                self._fell_back(self.node_bgp, failures[0], endpoint)
            return speaker, info
        raise SpeakerUnreachable(Status.UNAVAILABLE, "; ".join(failures))

    def _fell_back(self, node_bgp: NodeBGP, failure: str, endpoint: str) -> None:
        said = ("nodebgp", str(node_bgp.metadata.generation), endpoint)
        if said in self._told:
            return
        self._told.add(said)
        message = f"{failure} (spec.speaker.path); using the agent's --endpoint {endpoint}"
        log.warning(message, extra={"nodebgp": node_bgp.metadata.name})
        warning = PeerEvent("Warning", "SpeakerPathUnreachable", message)
        self._event(_involved("NodeBGP", node_bgp.metadata), warning)

    # --- the watches ------------------------------------------------------------------------

    @property
    def unlisted(self) -> tuple[str, ...]:
        """The kinds whose first listing has not come yet (for /readyz)."""
        return tuple(plural for plural, listed in self._synced.items() if not listed)

    def _synced_kind(self, plural: str) -> None:
        self._synced[plural] = True
        self._wake.set()

    def _on_node_bgp(self, kind: str, obj: Any) -> None:
        if kind == "SYNCED":
            self._synced_kind("nodebgps")
            return
        before = self.endpoints()
        old = self.node_bgp
        if kind == "DELETED":
            self.node_bgp = None
            self.statuses.pop(("nodebgps", self.node), None)
        else:
            found = read_object(NodeBGP, obj)
            if found is None:
                return
            self.node_bgp = found
            self._track("nodebgps", found.metadata, found.status)
        if self.endpoints() != before:
            self._moved.set()
        if old is None or self.node_bgp is None or old.spec != self.node_bgp.spec:
            self._wake.set()

    def _on_peer(self, kind: str, obj: Any) -> None:
        if kind == "SYNCED":
            self._synced_kind("bgppeers")
            return
        name = object_key(obj)
        old = self.peers.get(name)
        peer = None if kind == "DELETED" else read_object(BGPPeer, obj)
        if peer is None or peer.spec.node_bgp_ref != self.node:  # gone, or another node's
            if kind == "DELETED" or peer is not None:
                self.peers.pop(name, None)
                self.statuses.pop(("bgppeers", name), None)
                if peer is not None:
                    self.gone_peers.discard(name)  # another node's: its entries are not ours
                elif old is not None:
                    self.gone_peers.add(name)
                if old is not None:
                    self._wake.set()
                    self._mark_advertisements()
                    states = [each.value for each in BGPPeerConditionStatus]
                    self.metrics.forget_state(self.metrics.peer_status, old.metadata.name, states)
            return
        self.peers[name] = peer
        self.gone_peers.discard(name)
        if old is None or old.spec.addr != peer.spec.addr:
            self._mark_advertisements()
        self._track("bgppeers", peer.metadata, peer.status)
        state = self.speaker_states.get(str(peer.spec.addr))
        if state is not None:
            self._peer_state(peer, *state)
        if (
            old is None
            or old.spec != peer.spec
            or old.metadata.deletion_timestamp != peer.metadata.deletion_timestamp
        ):
            self._wake.set()

    def _on_advertisement(self, kind: str, obj: Any) -> None:
        if kind == "SYNCED":
            self._synced_kind("bgpadvertisements")
            self._bind_wake.set()
            return
        key = object_key(obj)
        old = self.advertisements.get(key)
        new = None if kind == "DELETED" else read_object(BGPAdvertisement, obj)
        if new is None and kind != "DELETED":
            return  # does not fit its model (logged): keep what we had
        self._follow_advertisement(key, new)
        if new is not None and self._announced_here(new):
            self.advertisements[key] = new
        else:
            self.advertisements.pop(key, None)
            new = None
        if (old is None) != (new is None) or (old and new and old.spec != new.spec):
            self._wake.set()
            self._bind_wake.set()

    def _follow_advertisement(self, key: str, new: BGPAdvertisement | None) -> None:
        """Keep the record of an advertisement's status.peers (every advertisement: one this
        node announced before may still hold its entries)."""
        record = self.advertisement_records.pop(key, None)
        if record is not None:
            self.by_cidr.get(record.cidr, set()).discard(key)
        if new is None:
            return
        status = new.status or BGPAdvertisementStatus()
        observed = dict(status.peers or {})
        meta = new.metadata
        if record is None or record.uid != meta.uid:
            ours: dict[str, AdvertiseStatus | None] = {}
        else:
            ours = record.ours
            # What the watch shows now of what we wrote is the stored value from here on.
            ours = {n: s for n, s in ours.items() if observed.get(n) != s}
        cidr = str(new.spec.cidr)
        record = AdvertisementRecord(
            meta.uid, meta.namespace or "", meta.name, cidr, self._announced_here(new),
            observed, ours,
        )  # fmt: skip
        self.advertisement_records[key] = record
        self.by_cidr.setdefault(cidr, set()).add(key)
        self._mark_advertisement(key)

    def _announced_here(self, advertisement: BGPAdvertisement) -> bool:
        nodes = advertisement.spec.nodes
        return nodes is None or self.node in nodes

    def _on_pool(self, kind: str, obj: Any) -> None:
        if kind == "SYNCED":
            self._synced_kind("addresspools")
            return
        key = object_key(obj)
        old = self.pools.pop(key, None)
        if kind != "DELETED":
            pool = read_object(AddressPool, obj)
            if pool is None:
                if old is not None:
                    self.pools[key] = old
                return
            self.pools[key] = pool
            if old is not None and old.spec == pool.spec:
                return  # its status (the controller's counts): nothing for the speaker
        self._wake.set()

    def _on_secret(self, kind: str, obj: Any) -> None:
        """A Secret of the agent's namespace: a wake-up when a BGPPeer of this node names it
        (a password set, changed or gone re-adds the neighbor). Never logged."""
        if kind == "SYNCED":
            self._synced_kind("secrets")
            return
        name = object_meta(obj).name
        old = self.secrets.pop(name, None)
        if kind != "DELETED":
            self.secrets[name] = obj
        changed = old is None or kind == "DELETED" or old.data != obj.data
        if changed and name in self._secret_names():
            self._wake.set()

    def _secret_names(self) -> set[str]:
        return {
            p.spec.auth_secret_ref.name
            for p in self.peers.values()
            if p.spec.auth_secret_ref is not None
        }

    def _secret_data(self) -> SecretData:
        """The data of the Secrets this node's BGPPeers name, decoded (only those)."""
        return {
            name: secret_data(self.secrets[name])
            for name in self._secret_names()
            if name in self.secrets
        }

    def _track(self, plural: str, metadata: Any, stored: Any) -> None:
        """Start following an object's status: what is stored is what we know it holds. The
        same object seen again keeps what we know (our own write may not be in the watch
        yet); a new one (another uid) starts afresh."""
        key = (plural, metadata.name)
        record = self.statuses.get(key)
        if record is None or record.uid != metadata.uid:
            self.statuses[key] = StatusRecord(metadata.uid, stored, stored)

    # --- the loop ---------------------------------------------------------------------------

    async def run(self) -> None:
        handlers = {
            "nodebgps": self._on_node_bgp,
            "bgppeers": self._on_peer,
            "bgpadvertisements": self._on_advertisement,
            "addresspools": self._on_pool,
        }
        async with asyncio.TaskGroup() as tasks:
            for plural, handler in handlers.items():
                options: dict[str, Any] = {}
                if plural == "nodebgps":
                    options["field_selector"] = f"metadata.name={self.node}"
                watch = watch_kind(self.custom, plural, handler, stats=self.stats, **options)
                tasks.create_task(watch)
            secrets = watch_objects(
                self.core.list_namespaced_secret,
                self._on_secret,
                f"secrets in {self.namespace}",
                stats=self.stats,
                namespace=self.namespace,
            )
            tasks.create_task(secrets)
            tasks.create_task(self._work())
            tasks.create_task(self._follow_speaker())
            tasks.create_task(self._write_statuses())
            tasks.create_task(self._write_advertisements())
            if self.binding is not None:
                tasks.create_task(self.binding.follow(self._bound, self._bind_wake))

    def _bound(self) -> frozenset[Any] | None:
        """The addresses to bind, once the advertisements have listed (None before)."""
        if not self._synced["bgpadvertisements"]:
            return None
        return bound_addresses(self.node, self.advertisements.values())

    async def _work(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not all(self._synced.values()):
                continue  # never act on half the picture (it would remove what it cannot see)
            began = time.perf_counter()
            try:
                await self.sync()
            except SpeakerUnreachable as error:
                self.metrics.failures.labels("NodeBGP", self.node).inc()
                self._node_status(None, None, error.message)
                await self._retry(error)
            except ApiError as error:
                self.metrics.failures.labels("NodeBGP", self.node).inc()
                await self._retry(error)
            else:
                self.metrics.reconciliations.labels("NodeBGP", self.node).inc()
                self.metrics.duration.observe(time.perf_counter() - began)
                self._backoff.reset()

    async def _retry(self, error: ApiError) -> None:
        """The speaker restarting, not up yet, or refusing for now: jittered backoff."""
        delay = self._backoff.next()
        log.warning(
            "speaker not in sync, retrying",
            extra={"error": error.message, "retry_in": round(delay, 2)},
        )
        await asyncio.sleep(delay)
        self._wake.set()

    def observed(self, speaker: SpeakerView) -> AgentObserved:
        return AgentObserved(
            node=self.node,
            node_bgp=self.node_bgp,
            peers=tuple(self.peers.values()),
            advertisements=tuple(self.advertisements.values()),
            pools=tuple(self.pools.values()),
            speaker=speaker,
            added_paths=frozenset(self.added_paths),
            secrets=self._secret_data(),
            removed=tuple(self.removed.values()),
        )

    async def sync(self) -> None:
        """Read the speaker, plan, make the calls, and say what became of it."""
        with contextlib.ExitStack() as stack:
            speaker, info = await self._reach(stack)
            neighbors = await speaker.neighbors()
            own = [p for p in await speaker.rib() if p.source == "local"]
            local = frozenset(p.prefix for p in own)
            view = SpeakerView(
                asn=info.asn,
                router_id=info.router_id,
                multipath=info.multi_path,
                neighbors=tuple(neighbor_view(n) for n in neighbors),
                local_paths=local,
                path_attributes={p.prefix: path_attributes(p) for p in own},
            )
            todo = plan(self.observed(view))
            self._say(todo)
            refused = await self._apply(speaker, todo)
            if info.end_of_rib_deferred:
                # A (re)started speaker holds End-of-RIB until its table is complete: it is,
                # with everything this sync put back (graceful restart, RFC 4724 4.1).
                await speaker.end_of_initial_table()
                log.info("speaker told its table is complete", extra={"endpoint": self.reached})
            if todo.set_asn is not None or todo.set_router_id is not None:
                info = await speaker.info()
        self.syncs += 1
        self._node_status(info.asn, info.router_id, todo.identity_blocked)
        self._configured(todo, refused)

    async def _apply(self, speaker: SpeakerClient, todo: AgentPlan) -> dict[str, str]:
        """Make the plan's calls in order; the neighbors the speaker refused, with why."""
        refused: dict[str, str] = {}
        if not todo:
            return refused
        for neighbor in todo.add_neighbors:
            if neighbor.bgp_peer is None:  # the speaker's own, removed only to be put back
                self.removed[neighbor.address] = neighbor
        for address in todo.delete_neighbors:
            try:
                await speaker.delete_neighbor(address)
            except ApiError as error:
                if error.status is not Status.NOT_FOUND:
                    raise
        if todo.set_asn is not None:
            await speaker.set_as(todo.set_asn)
        if todo.set_router_id is not None:
            await speaker.set_router_id(todo.set_router_id)
        if todo.set_multipath is not None:
            await speaker.set_multipath(todo.set_multipath)
        for neighbor in todo.add_neighbors:
            try:
                await speaker.add_neighbor(neighbor.address, neighbor.asn, **neighbor.options())
            except SpeakerUnreachable:
                raise
            except ApiError as error:
                if error.status is not Status.INVALID_ARGUMENT:
                    raise  # ALREADY_EXISTS: added meanwhile; the next pass sees it
                refused[neighbor.address] = error.message
            self.removed.pop(neighbor.address, None)
        if todo.delete_paths:
            await speaker.delete_paths(todo.delete_paths)
            self.added_paths.difference_update(todo.delete_paths)
        if todo.add_paths:
            groups: dict[Attributes, list[str]] = {}
            for prefix in todo.add_paths:
                groups.setdefault(todo.path_attributes.get(prefix, Attributes()), []).append(prefix)
            for attributes, prefixes in groups.items():
                await speaker.add_paths(
                    prefixes,
                    communities=attributes.communities,
                    large_communities=attributes.large_communities,
                    local_pref=attributes.local_pref,
                    med=attributes.med,
                )
            self.added_paths.update(todo.add_paths)
        log.info(
            "speaker updated",
            extra={"neighbors_added": len(todo.add_neighbors),
                   "neighbors_deleted": len(todo.delete_neighbors),
                   "paths_added": len(todo.add_paths), "paths_deleted": len(todo.delete_paths),
                   "asn": todo.set_asn, "router_id": todo.set_router_id,
                   "multipath": todo.set_multipath},
        )  # fmt: skip
        return refused

    def _say(self, todo: AgentPlan) -> None:
        """Log what is left alone (once per change of it), Warning Events for problems (once
        per BGPPeer generation)."""
        if self.node_bgp is None and not self._said_no_node_bgp:
            log.info(
                "no NodeBGP for this node: the speaker's AS and router ID are left as they are",
                extra={"node": self.node},
            )
        self._said_no_node_bgp = self.node_bgp is None
        kept = (todo.kept_neighbors, todo.kept_paths)
        if kept != self._said_kept and (todo.kept_neighbors or todo.kept_paths):
            log.info(
                "the speaker's own neighbors and paths (from its configuration file) are kept",
                extra={"neighbors": list(todo.kept_neighbors), "paths": list(todo.kept_paths)},
            )
        self._said_kept = kept
        for address in todo.replaced:
            log.warning(
                "a BGPPeer replaces the speaker's own neighbor",
                extra={"neighbor": address, "bgppeer": todo.peers.get(address)},
            )
        for problem in todo.problems:
            peer = self.peers.get(problem.peer)
            if peer is None:
                continue
            said = (problem.peer, str(peer.metadata.generation), problem.reason, problem.message)
            if said in self._told:
                continue
            self._told.add(said)
            log.warning(problem.message, extra={"bgppeer": problem.peer, "reason": problem.reason})
            warning = PeerEvent("Warning", problem.reason, problem.message)
            self._event(_involved("BGPPeer", peer.metadata), warning)

    # --- statuses ---------------------------------------------------------------------------

    def _node_status(self, asn: int | None, router_id: str | None, why: str) -> None:
        """The NodeBGP's condition from what the speaker holds (asn None: unreachable)."""
        node_bgp = self.node_bgp
        record = self.statuses.get(("nodebgps", self.node))
        if node_bgp is None or record is None:
            return
        condition = node_condition(node_bgp, asn, router_id)
        status: NodeBGPStatus = record_node_condition(record.current, condition)
        if status == record.current:
            return
        record.current = status
        self._mark(("nodebgps", self.node))
        states = [each.value for each in NodeBGPConditionStatus]
        self.metrics.set_state(self.metrics.node_status, self.node, condition.status.value, states)
        if condition.status.value == "Unavailable":
            self.metrics.node_backoff.labels(self.node).inc()
            message = why or (
                f"the speaker at {self.reached} holds AS {asn} and router ID {router_id}, not the"
                f" NodeBGP's AS {node_bgp.spec.asn} and router ID {node_bgp.spec.router_id}"
            )
            event = PeerEvent("Warning", condition.reason.value, message)
        else:
            event = PeerEvent(
                "Normal",
                condition.reason.value,
                f"the speaker holds AS {asn} and router ID {router_id}",
            )
        self._event(_involved("NodeBGP", node_bgp.metadata), event)

    def _configured(self, todo: AgentPlan, refused: dict[str, str]) -> None:
        """Each of this node's BGPPeers: Configured, or why not."""
        problems: dict[str, list[str]] = {}
        for problem in todo.problems:
            problems.setdefault(problem.peer, []).append(problem.message)
        unconfigured = {problem.peer: problem.reason for problem in todo.unconfigured}
        chosen, _ = node_peers(self.node, self.peers.values())
        chosen_names = {p.metadata.name for p in chosen.values()}
        for peer in self.peers.values():
            name = peer.metadata.name
            record = self.statuses.get(("bgppeers", name))
            if record is None or peer.spec.node_bgp_ref != self.node:
                continue
            message = "; ".join(problems.get(name, []))
            if str(peer.spec.addr) in refused and name in chosen_names:
                ok, reason, message = False, "Refused", refused[str(peer.spec.addr)]
            elif name not in chosen_names:
                ok, reason = False, "DuplicatePeer"
            elif name in unconfigured:
                ok, reason = False, unconfigured[name]
            else:
                ok, reason = True, "Configured"
            status = record_configured(
                record.current, ok, reason, message,
                now=self.clock(), generation=peer.metadata.generation,
            )  # fmt: skip
            if status != record.current:
                record.current = status
                self._mark(("bgppeers", name))

    def _peer_state(self, peer: BGPPeer, state: BGPPeerConditionStatus, reason: str) -> None:
        record = self.statuses.get(("bgppeers", peer.metadata.name))
        if record is None:
            return
        current: BGPPeerStatus | None = record.current
        before = last_state(current)
        status = record_state(
            current, state, reason, now=self.clock(), generation=peer.metadata.generation
        )
        if status == current:
            return
        record.current = status
        self._mark(("bgppeers", peer.metadata.name))
        states = [each.value for each in BGPPeerConditionStatus]
        self.metrics.set_state(self.metrics.peer_status, peer.metadata.name, state.value, states)
        event = state_event(before, state, str(peer.spec.addr), reason)
        if event is not None:
            log.info(event.message, extra={"bgppeer": peer.metadata.name, "reason": reason})
            self._event(_involved("BGPPeer", peer.metadata), event)

    # --- BGPAdvertisement status.peers -------------------------------------------------------

    def _mark_advertisement(self, key: str) -> None:
        self._advertisements_dirty.add(key)
        self._advertisements_wake.set()

    def _mark_advertisements(self, cidrs: Any = None) -> None:
        """Look again at the advertisements of these prefixes (None: all)."""
        if cidrs is None:
            keys: Any = self.advertisement_records
        else:
            keys = {key for cidr in cidrs for key in self.by_cidr.get(cidr, ())}
        if keys:
            self._advertisements_dirty.update(keys)
            self._advertisements_wake.set()

    def _paths_sent(self, address: str, advertised: Any, withdrawn: Any) -> None:
        """The speaker's PathsSent: these of our prefixes went out to the neighbor."""
        sent = self.paths_sent.setdefault(address, set())
        gone = self.paths_withdrawn.setdefault(address, set())
        for prefix in withdrawn:
            sent.discard(prefix)
            gone.add(prefix)
        for prefix in advertised:
            sent.add(prefix)
            gone.discard(prefix)
        self._mark_advertisements({*advertised, *withdrawn})

    def _session_changed(self, address: str, established: bool) -> None:
        """A session that is not Established holds nothing of ours (the peer dropped what it
        had when it ended)."""
        if not established:
            self.paths_sent.pop(address, None)
            self.paths_withdrawn.pop(address, None)
        self._mark_advertisements()

    def _sessions(self) -> dict[str, PeerAdvertising]:
        """This node's BGPPeers, by name, with what the speaker reported of their sessions."""
        chosen, _ = node_peers(self.node, self.peers.values())
        sessions = {}
        for address, peer in chosen.items():
            state = self.speaker_states.get(address)
            sessions[peer.metadata.name] = PeerAdvertising(
                established=state is not None and state[0] is ESTABLISHED,
                sent=frozenset(self.paths_sent.get(address, ())),
                withdrawn=frozenset(self.paths_withdrawn.get(address, ())),
            )
        return sessions

    async def _write_advertisements(self) -> None:
        """Patch the status.peers entries that changed: after a short wait, so that the
        events of one burst make one patch per advertisement; a few at a time."""
        limit = asyncio.Semaphore(ADVERTISEMENT_WRITERS)

        async def write(key: str, sessions: dict[str, PeerAdvertising]) -> None:
            async with limit:
                outcome = await self._write_advertisement(key, sessions)
            if outcome is Outcome.REDO:
                self._mark_advertisement(key)
            elif outcome is Outcome.TEMPORARY:
                delay = self._write_backoff.next(f"bgpadvertisements/{key}")
                asyncio.get_running_loop().call_later(delay, self._mark_advertisement, key)
            else:
                self._write_backoff.reset(f"bgpadvertisements/{key}")

        while True:
            await self._advertisements_wake.wait()
            await asyncio.sleep(ADVERTISEMENT_COALESCE)
            self._advertisements_wake.clear()
            dirty, self._advertisements_dirty = self._advertisements_dirty, set()
            sessions = self._sessions()
            await asyncio.gather(*(write(key, sessions) for key in sorted(dirty)))

    def advertisement_patch(
        self, key: str, sessions: dict[str, PeerAdvertising] | None = None
    ) -> dict[str, AdvertiseStatus | None]:
        """The entries of this node's BGPPeers to change in the advertisement's status."""
        record = self.advertisement_records.get(key)
        if record is None:
            return {}
        return advertisement_patch(
            record.cidr,
            record.announced,
            self._sessions() if sessions is None else sessions,
            record.stored(),
            self.gone_peers,
        )

    async def _write_advertisement(self, key: str, sessions: dict[str, PeerAdvertising]) -> Outcome:
        """A JSON merge patch of only this node's entries of status.peers: the other nodes'
        agents write theirs into the same map, and a merge patch leaves what it does not name
        as it is (None removes an entry)."""
        patch = self.advertisement_patch(key, sessions)
        record = self.advertisement_records.get(key)
        if not patch or record is None:
            return Outcome.DONE
        written = {name: state for name, state in patch.items() if state is not None}
        peers = unstructure(BGPAdvertisementStatus(peers=written))["peers"]
        peers.update((name, None) for name, state in patch.items() if state is None)
        body = {"status": {"peers": peers}}
        try:
            await self.custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, record.namespace, "bgpadvertisements", record.name, body, **MERGE
            )
        except API_ERRORS as error:
            outcome = classify(error)
            problem = {"object": f"bgpadvertisements/{key}", "error": describe(error)}
            if outcome is Outcome.DONE:
                pass  # gone meanwhile: the watch will say so
            elif outcome is Outcome.PERMANENT:
                log.error("status write refused", extra=problem)
            else:
                log.warning("status write failed, retrying", extra=problem)
            return outcome
        if self.advertisement_records.get(key) is record:
            record.ours.update(patch)
        self.advertisement_writes += 1
        return Outcome.DONE

    def _mark(self, key: tuple[str, str]) -> None:
        self._dirty.add(key)
        self._write_wake.set()

    def _event(self, involved: dict[str, Any], event: PeerEvent) -> None:
        self._events.append((involved, event))
        self._write_wake.set()

    async def _write_statuses(self) -> None:
        """Write what changed, one object at a time (a node has few), Events first."""
        while True:
            await self._write_wake.wait()
            self._write_wake.clear()
            events, self._events = self._events, []
            for involved, event in events:
                await self.events.record(involved, event.type, event.reason, event.message)
            dirty, self._dirty = self._dirty, set()
            for key in sorted(dirty):
                outcome = await self._write_status(key)
                if outcome is Outcome.REDO:
                    self._mark(key)
                elif outcome is Outcome.TEMPORARY:
                    delay = self._write_backoff.next("/".join(key))
                    asyncio.get_running_loop().call_later(delay, self._mark, key)
                else:
                    self._write_backoff.reset("/".join(key))

    async def _write_status(self, key: tuple[str, str]) -> Outcome:
        record = self.statuses.get(key)
        if record is None or record.current is None or record.current == record.written:
            return Outcome.DONE
        plural, name = key
        status = record.current
        body = {"status": unstructure(status)}
        try:
            await self.custom.patch_cluster_custom_object_status(
                GROUP, VERSION, plural, name, body, **MERGE
            )
        except API_ERRORS as error:
            outcome = classify(error)
            problem = {"object": f"{plural}/{name}", "error": describe(error)}
            if outcome is Outcome.DONE:
                self.statuses.pop(key, None)  # gone meanwhile: the watch will say so
            elif outcome is Outcome.PERMANENT:
                log.error("status write refused", extra=problem)
            else:
                log.warning("status write failed, retrying", extra=problem)
            return outcome
        record.written = status
        self.status_writes += 1
        return Outcome.DONE

    # --- the speaker's events ---------------------------------------------------------------

    async def _follow_speaker(self) -> None:
        """Follow the speaker's event stream, starting again when where it may be changes."""
        while True:
            self._moved.clear()
            follow = asyncio.create_task(self._stream())
            moved = asyncio.create_task(self._moved.wait())
            try:
                await asyncio.wait({follow, moved}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (follow, moved):
                    task.cancel()
                await asyncio.gather(follow, moved, return_exceptions=True)
            if follow.done() and not follow.cancelled() and follow.exception() is not None:
                raise follow.exception()  # type: ignore[misc]  # a bug of ours: crash loudly

    async def _stream(self) -> None:
        """Open the stream on the first endpoint that answers; when it breaks, say so and
        open it again, with backoff."""
        backoff = Backoff(base=0.2, cap=10.0)
        while True:
            failures = []
            for endpoint, _ in self.endpoints():
                opened = self.stream_opened
                try:
                    with _client(endpoint) as speaker:
                        await self._listen(speaker, backoff)
                    failures.append(f"the speaker at {endpoint} ended the stream")
                except STREAM_ERRORS as error:
                    failures.append(_text(error))
                if self.stream_opened != opened:
                    break  # it was open: this speaker went away, start from the first again
            why = "; ".join(failures)
            self._speaker_lost(why)
            delay = backoff.next()
            log.warning(
                "speaker event stream broken, reconnecting",
                extra={"error": why, "retry_in": round(delay, 2)},
            )
            await asyncio.sleep(delay)

    async def _listen(self, speaker: SpeakerClient, backoff: Backoff) -> None:
        """One event stream: opened, then the neighbors read once (their states before it),
        then every event as it comes."""
        queue: asyncio.Queue[pb.Event | None] = asyncio.Queue()
        seen: set[str] = set()  # addresses with an event since the stream opened

        registered = asyncio.Event()

        async def pump() -> None:
            try:
                async for event in speaker.events(registered):
                    if event.HasField("peer_state_changed"):
                        seen.add(event.peer_state_changed.address)
                        await queue.put(event)
                    elif event.HasField("paths_sent"):
                        await queue.put(event)
            finally:
                await queue.put(None)

        pumping = asyncio.create_task(pump())
        try:
            # The neighbors are read once the speaker has subscribed the stream, so no state
            # change falls between the reading and the events.
            waiting = asyncio.ensure_future(registered.wait())
            try:
                await asyncio.wait({waiting, pumping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiting.cancel()
            if pumping.done():
                pumping.result()  # what broke the stream
                raise SpeakerUnreachable(Status.UNAVAILABLE, "the speaker ended its event stream")
            states = await speaker.neighbors()
            sent = await speaker.paths_sent()
            self.stream_opened += 1
            self.streaming = speaker.endpoint
            backoff.reset()
            log.info("following the speaker's events", extra={"endpoint": speaker.endpoint})
            for state in states:
                # What the stream said since it opened is newer than this reading.
                if state.config.address not in seen:
                    self._speaker_state(state.config.address, STATES[state.state], "Observed")
            # Our paths as sent now; the PathsSent events queued meanwhile replay on top (each
            # says where one prefix stands after it, so replaying them ends where they did).
            self.paths_sent, self.paths_withdrawn = {}, {}
            for prefix, peers in sent.items():
                for address in peers:
                    self.paths_sent.setdefault(address, set()).add(prefix)
            self._mark_advertisements()
            self._wake.set()  # a speaker met again may have restarted: sync everything
            while (event := await queue.get()) is not None:
                if event.HasField("paths_sent"):
                    paths = event.paths_sent
                    self._paths_sent(paths.peer, paths.advertised, paths.withdrawn)
                    continue
                change = event.peer_state_changed
                self._speaker_state(change.address, STATES[change.state], change.reason)
        finally:
            self.streaming = ""
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pumping  # raises what broke the stream, if anything did

    def _speaker_lost(self, why: str) -> None:
        """Without its event stream the agent does not know the sessions' states (a speaker
        that restarted has lost them): Unknown until the stream is back and says. The NodeBGP
        is Unavailable until a sync finds the speaker configured again."""
        self._node_status(None, None, f"lost the speaker's event stream: {why}")
        self.speaker_states.clear()
        self.paths_sent, self.paths_withdrawn = {}, {}  # no news: nothing known sent
        self._mark_advertisements()
        chosen, _ = node_peers(self.node, self.peers.values())
        for peer in chosen.values():
            record = self.statuses.get(("bgppeers", peer.metadata.name))
            if record is None or last_state(record.current) in (None, UNKNOWN):
                continue
            self._peer_state(peer, UNKNOWN, f"no news from the speaker: {why}")

    def _speaker_state(self, address: str, state: BGPPeerConditionStatus, reason: str) -> None:
        before = self.speaker_states.get(address)
        self.speaker_states[address] = (state, reason)
        if (before is not None and before[0] is ESTABLISHED) != (state is ESTABLISHED):
            self._session_changed(address, state is ESTABLISHED)
        chosen, _ = node_peers(self.node, self.peers.values())
        peer = chosen.get(address)
        if peer is not None:
            self._peer_state(peer, state, reason)


@contextlib.contextmanager
def _client(endpoint: str, timeout: float = DEFAULT_TIMEOUT) -> Iterator[SpeakerClient]:
    """A SpeakerClient, closed afterwards; an endpoint that does not parse is a speaker that
    cannot be reached (said so in the NodeBGP's status), not a crash."""
    try:
        speaker = SpeakerClient(endpoint, timeout=timeout)
    except ValueError as error:
        raise SpeakerUnreachable(Status.INVALID_ARGUMENT, f"speaker endpoint: {error}") from None
    try:
        yield speaker
    finally:
        speaker.close()


def _involved(kind: str, metadata: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "name": metadata.name, "uid": metadata.uid}


def _text(error: BaseException) -> str:
    if isinstance(error, ApiError):
        return error.message
    return f"{type(error).__name__}: {error}"
