"""The node agent's decisions (pure): what this node's speaker must be told, and what the
cluster is told about it.

In: the node's NodeBGP, the BGPPeers whose nodeBGPRef is this node, the BGPAdvertisements that
list it (or list no nodes: every node), the AddressPools, and the speaker as its API shows it
(`SpeakerView`). Out: `plan` gives the speaker calls (`AgentPlan`); `record_state`,
`record_configured` and `record_node_condition` give the statuses to write back.

Which source wins. The speaker may have neighbors and paths of its own, from its configuration
file (`sartd bgp -f`). The agent manages only what is the cluster's and leaves the rest alone:

- a neighbor is the cluster's when its name in the speaker is ``bgppeer/<BGPPeer name>``: the
  agent names what it adds so (a BGPPeer's name cannot hold a ``/``, a file's neighbor would
  have to be named so on purpose);
- a local path is the cluster's when a BGPAdvertisement for this node lists it, when this agent
  added it, or when it has the shape of what the cluster announces: inside an AddressPool and as
  long as one of its addresses (service pools) or one of its blocks (pod pools). So a path the
  agent added before a restart is still withdrawn when its advertisement went meanwhile, while
  the file's aggregate of a pool is left alone;
- where a BGPPeer names the address of one of the file's neighbors, the BGPPeer wins: that
  neighbor is replaced (`AgentPlan.replaced`).

The speaker changes its AS or router ID only while it has no neighbor, so a NodeBGP that changes
them removes every neighbor, sets them and adds the neighbors back: the cluster's from their
BGPPeers, the file's with the settings the speaker reports. A file's neighbor with a TCP-MD5
password cannot be put back (the speaker never returns passwords): then the identity is left
alone and the NodeBGP reported InvalidConfiguration (`AgentPlan.identity_blocked`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any, Final, TypeVar

import attrs
from netaddr import IPNetwork

from sart.bgp.config import password_matches
from sart.k8s.attributes import Attributes
from sart.k8s.models import (
    IPV4_BITS,
    IPV6_BITS,
    STATUS_HISTORY,
    AddressPool,
    AddressType,
    AdvertiseStatus,
    BGPAdvertisement,
    BGPPeer,
    BGPPeerCondition,
    BGPPeerConditionStatus,
    BGPPeerStatus,
    Condition,
    ConditionStatus,
    NodeBGP,
    NodeBGPCondition,
    NodeBGPConditionReason,
    NodeBGPConditionStatus,
    NodeBGPStatus,
)
from sart.k8s.reconcile.conditions import set_condition

NEIGHBOR_PREFIX: Final = "bgppeer/"
"""The speaker's name of a neighbor the agent added: this prefix and the BGPPeer's name."""
DEFAULT_PORT: Final = 179
BOTH_FAMILIES: Final = ("ipv4", "ipv6")

# BGPPeer `capabilities` -> what the speaker does with them. A family limits the session to the
# families listed; graceful-restart keeps a restarting peer's routes (RFC 4724, receiving side).
FAMILY_CAPABILITIES: Final = {"ipv4-unicast": "ipv4", "ipv6-unicast": "ipv6"}
GRACEFUL_RESTART: Final = "graceful-restart"
ALWAYS_ANNOUNCED: Final = frozenset(
    {"route-refresh", "enhanced-route-refresh", "4-octet-as", "extended-message"}
)
"""Capabilities the speaker announces on every session: accepted, nothing to set."""
KNOWN_CAPABILITIES: Final = frozenset({*FAMILY_CAPABILITIES, GRACEFUL_RESTART, *ALWAYS_ANNOUNCED})
MAX_PASSWORD: Final = 80  # octets (TCP_MD5SIG_MAXKEYLEN)
AUTH_SECRET_PROBLEM: Final = "AuthSecretNotUsable"

ESTABLISHED: Final = BGPPeerConditionStatus.ESTABLISHED
T = TypeVar("T")


# --- values -------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class NeighborSettings:
    """A neighbor as the speaker's AddNeighbor takes it and ListNeighbors shows it
    (sart.v1.Neighbor), with the speaker's defaults filled in so that two can be compared."""

    address: str
    asn: int
    name: str = ""
    port: int = DEFAULT_PORT
    passive: bool = False
    hold_time: int | None = None  # None: the speaker's
    keepalive_time: int | None = None  # None: a third of the negotiated hold time
    ttl: int = 0  # 0: 1 for eBGP, 255 for iBGP
    local_address: str = ""
    families: tuple[str, ...] = BOTH_FAMILIES
    graceful_restart: bool = True
    admin_down: bool = False
    next_hops: tuple[str, ...] = ()
    # The TCP-MD5 password: what the agent sends (from the BGPPeer's Secret; never in a repr,
    # so never in a log). The speaker never returns it: it reports whether it has one and a
    # salted digest of it, which tells whether it is the password the agent wants.
    password: str = attrs.field(default="", repr=False)
    has_password: bool = False  # as the speaker reports it
    password_digest: str = ""  # as the speaker reports it
    max_prefixes: int = 0  # 0: no limit
    max_prefixes_warning: int = 75  # percent
    max_prefixes_restart: int = 0  # seconds; 0: down until enabled again
    bfd: tuple[int, int, int] | None = None  # (min rx ms, min tx ms, multiplier); None: no BFD

    @property
    def bgp_peer(self) -> str | None:
        """The BGPPeer this neighbor was added for, None for one of the speaker's own."""
        if self.name.startswith(NEIGHBOR_PREFIX):
            return self.name[len(NEIGHBOR_PREFIX) :]
        return None

    def options(self) -> dict[str, Any]:
        """The keyword arguments of SpeakerClient.add_neighbor (beside address and asn)."""
        options: dict[str, Any] = {
            "name": self.name,
            "port": self.port,
            "passive": self.passive,
            "ttl": self.ttl,
            "local_address": self.local_address,
            "families": list(self.families),
            "graceful_restart": self.graceful_restart,
            "admin_down": self.admin_down,
            "next_hops": list(self.next_hops),
        }
        if self.hold_time is not None:
            options["hold_time"] = self.hold_time
        if self.keepalive_time is not None:
            options["keepalive_time"] = self.keepalive_time
        if self.password:
            options["password"] = self.password
        if self.max_prefixes:
            options["max_prefixes"] = self.max_prefixes
            options["max_prefixes_warning"] = self.max_prefixes_warning
            options["max_prefixes_restart"] = self.max_prefixes_restart
        if self.bfd is not None:
            min_rx, min_tx, multiplier = self.bfd
            options["bfd"] = {"min_rx_ms": min_rx, "min_tx_ms": min_tx, "multiplier": multiplier}
        return options

    def same_session(self, other: NeighborSettings) -> bool:
        """Whether the speaker holds `other` (as it reports it) as these settings say: the
        same settings, and the same password, told by the speaker's digest of it."""
        if self._without_password() != other._without_password():
            return False
        if not self.password:
            return not other.has_password
        return other.has_password and _holds(self.password, other.password_digest)

    def _without_password(self) -> NeighborSettings:
        return attrs.evolve(self, password="", has_password=False, password_digest="")


@functools.lru_cache(maxsize=1024)
def _holds(password: str, digest: str) -> bool:
    """password_matches, remembered: the digest is costly on purpose, and the speaker keeps
    one per neighbor, so each sync asks the same question again."""
    return password_matches(password, digest)


@attrs.frozen(kw_only=True)
class SpeakerView:
    """The speaker as its API shows it."""

    asn: int
    router_id: str
    multipath: bool = False
    neighbors: tuple[NeighborSettings, ...] = ()
    local_paths: frozenset[str] = frozenset()
    # The attributes the speaker holds for each local path (absent: none read).
    path_attributes: Mapping[str, Attributes] = attrs.field(factory=dict)


@attrs.frozen
class PeerProblem:
    """Something about a BGPPeer the speaker cannot do as asked: a Warning Event on it."""

    peer: str
    reason: str
    message: str


SecretData = Mapping[str, Mapping[str, bytes]]
"""The Secrets of the agent's namespace, by name: their data, decoded from base64."""


@attrs.frozen(kw_only=True)
class AgentObserved:
    node: str
    node_bgp: NodeBGP | None
    peers: tuple[BGPPeer, ...] = ()  # every BGPPeer seen; this node's are picked here
    advertisements: tuple[BGPAdvertisement, ...] = ()
    pools: tuple[AddressPool, ...] = ()
    speaker: SpeakerView
    added_paths: frozenset[str] = frozenset()  # what this agent added since it started
    secrets: SecretData = attrs.field(factory=dict, repr=False)  # BGPPeers' authSecretRefs
    # The speaker's own neighbors this agent removed to change the AS and has not yet put
    # back (a call failed in between): put back like those still there.
    removed: tuple[NeighborSettings, ...] = ()


@attrs.frozen(kw_only=True)
class AgentPlan:
    """The speaker calls, in the order to make them, and what to say about it."""

    delete_neighbors: tuple[str, ...] = ()
    set_asn: int | None = None
    set_router_id: str | None = None
    set_multipath: bool | None = None
    add_neighbors: tuple[NeighborSettings, ...] = ()
    delete_paths: tuple[str, ...] = ()
    add_paths: tuple[str, ...] = ()
    # The attributes of each of add_paths that has any (BGPAdvertisement spec.attrs).
    path_attributes: Mapping[str, Attributes] = attrs.field(factory=dict)
    # Not calls:
    peers: Mapping[str, str] = attrs.field(factory=dict)  # address -> BGPPeer name, this node's
    problems: tuple[PeerProblem, ...] = ()
    # BGPPeers the speaker is not given (or keeps as it has them) for now, with why: their
    # Configured condition is False with the problem's reason.
    unconfigured: tuple[PeerProblem, ...] = ()
    identity_blocked: str = ""  # why the NodeBGP's ASN and router ID cannot be applied
    replaced: tuple[str, ...] = ()  # the file's neighbors a BGPPeer takes over
    kept_neighbors: tuple[str, ...] = ()  # the file's neighbors, left alone
    kept_paths: tuple[str, ...] = ()  # the file's paths, left alone

    def __bool__(self) -> bool:
        """Whether the speaker has to be called at all."""
        return bool(
            self.delete_neighbors
            or self.set_asn is not None
            or self.set_router_id is not None
            or self.set_multipath is not None
            or self.add_neighbors
            or self.delete_paths
            or self.add_paths
        )


# --- what the cluster asks ----------------------------------------------------------------------


def _seniority(peer: BGPPeer) -> tuple[str, str]:
    return (peer.metadata.creation_timestamp or "", peer.metadata.name)


def node_peers(node: str, peers: Iterable[BGPPeer]) -> tuple[dict[str, BGPPeer], list[PeerProblem]]:
    """This node's BGPPeers (not being deleted) by address. Two for one address: the older
    one (then the first by name) has it, the other is told so."""
    chosen: dict[str, BGPPeer] = {}
    problems = []
    mine = [p for p in peers if p.spec.node_bgp_ref == node and not p.metadata.deletion_timestamp]
    for peer in sorted(mine, key=_seniority):
        address = str(peer.spec.addr)
        if address in chosen:
            problems.append(
                PeerProblem(
                    peer.metadata.name,
                    "DuplicatePeer",
                    f"BGPPeer {chosen[address].metadata.name} already has {address} on node"
                    f" {node}; this one is not configured",
                )
            )
            continue
        chosen[address] = peer
    return chosen, problems


def neighbor_settings(
    peer: BGPPeer, secrets: SecretData | None = None
) -> tuple[NeighborSettings, list[PeerProblem]]:
    """The speaker's neighbor for a BGPPeer, and what of the BGPPeer it cannot take.

    `keepaliveTime` goes to the speaker as it is when it fits the hold time (RFC 4271 4.4:
    below it; none with a hold time of 0); otherwise it is not used (KEEPALIVE every third of
    the hold time) and said so. Without a holdTime the speaker checks it against its own.
    `authSecretRef` is read from `secrets` (the agent's namespace); a Secret or key that is
    missing or not a usable password is a problem with reason AUTH_SECRET_PROBLEM, and the
    settings then have no password (`plan` does not give them to the speaker).
    `groups` do not reach the speaker (it has no per-peer export yet); the rest does."""
    spec, name = peer.spec, peer.metadata.name
    problems = []
    hold = spec.hold_time
    keepalive = spec.keepalive_time
    if keepalive is not None:
        why = ""
        if keepalive == 0:
            why = "keepaliveTime 0 is no interval"
        elif hold == 0:
            why = "with holdTime 0 no KEEPALIVE is sent (RFC 4271 4.4)"
        elif hold is not None and keepalive >= hold:
            why = f"it must be below holdTime {hold} (RFC 4271 4.4)"
        if why:
            problems.append(
                PeerProblem(
                    name,
                    "KeepaliveTimeNotUsed",
                    f"keepaliveTime {keepalive} is not used: {why}; the speaker sends"
                    " KEEPALIVE every third of the hold time",
                )
            )
            keepalive = None
    families: list[str] = []
    graceful_restart = True
    if spec.capabilities is not None:
        wanted = [c.strip().lower() for c in spec.capabilities]
        families = [FAMILY_CAPABILITIES[c] for c in wanted if c in FAMILY_CAPABILITIES]
        graceful_restart = GRACEFUL_RESTART in wanted
        unknown = sorted(
            {c for c in spec.capabilities if c.strip().lower() not in KNOWN_CAPABILITIES}
        )
        if unknown:
            problems.append(
                PeerProblem(
                    name,
                    "UnknownCapability",
                    f"the speaker does not support {', '.join(unknown)} (it knows"
                    f" {', '.join(sorted(KNOWN_CAPABILITIES))}); ignored",
                )
            )
    password = ""
    if spec.auth_secret_ref is not None:
        password, why = _password(spec.auth_secret_ref.name, spec.auth_secret_ref.key, secrets)
        if why:
            problems.append(PeerProblem(name, AUTH_SECRET_PROBLEM, why))
    settings = NeighborSettings(
        address=str(spec.addr),
        asn=spec.asn,
        name=NEIGHBOR_PREFIX + name,
        passive=bool(spec.passive),
        hold_time=hold,
        keepalive_time=keepalive,
        ttl=spec.ttl or 0,
        families=tuple(sorted(set(families))) or BOTH_FAMILIES,
        graceful_restart=graceful_restart,
        password=password,
        bfd=(
            (spec.bfd.min_rx_ms, spec.bfd.min_tx_ms, spec.bfd.multiplier)
            if spec.bfd is not None
            else None
        ),
    )
    if spec.max_prefixes is not None:
        settings = attrs.evolve(
            settings,
            max_prefixes=spec.max_prefixes.limit,
            max_prefixes_warning=spec.max_prefixes.warning_percent,
            max_prefixes_restart=spec.max_prefixes.restart_seconds,
        )
    return settings, problems


def _password(name: str, key: str, secrets: SecretData | None) -> tuple[str, str]:
    """The password in key `key` of Secret `name`, or why there is none (never the value)."""
    where = f"authSecretRef: Secret {name!r}"
    data = (secrets or {}).get(name)
    if data is None:
        return "", f"{where} not found in the agent's namespace"
    value = data.get(key)
    if value is None:
        return "", f"{where} has no key {key!r}"
    if not 1 <= len(value) <= MAX_PASSWORD:
        return "", f"{where} key {key!r}: a TCP-MD5 password is 1-{MAX_PASSWORD} bytes"
    try:
        return value.decode(), ""
    except UnicodeDecodeError:
        return "", f"{where} key {key!r}: the password is not UTF-8 text"


def wanted_paths(node: str, advertisements: Iterable[BGPAdvertisement]) -> frozenset[str]:
    """The prefixes this node announces: of the advertisements that list it, or list no node."""
    return frozenset(
        str(a.spec.cidr) for a in advertisements if a.spec.nodes is None or node in a.spec.nodes
    )


def wanted_attributes(
    node: str, advertisements: Iterable[BGPAdvertisement]
) -> dict[str, Attributes]:
    """The path attributes of each prefix this node announces (`spec.attrs`); two
    advertisements of one prefix: their attributes merged, the later name's numbers winning."""
    found: dict[str, Attributes] = {}
    for advertisement in sorted(advertisements, key=lambda a: a.metadata.name):
        spec = advertisement.spec
        if spec.nodes is not None and node not in spec.nodes:
            continue
        try:
            attributes = Attributes.from_attrs(spec.attributes or ())
        except ValueError:  # the schema refuses these; announced without them
            attributes = Attributes()
        prefix = str(spec.cidr)
        found[prefix] = attributes.over(found[prefix]) if prefix in found else attributes
    return found


def cluster_shaped(prefix: str, pools: Iterable[AddressPool]) -> bool:
    """Whether a prefix is one the cluster could announce: inside an AddressPool, as long as
    one of its addresses or its aggregation length (service) or one of its blocks (pod)."""
    network = IPNetwork(prefix)
    for pool in pools:
        cidr = pool.spec.cidr
        if cidr.version != network.version or network not in cidr:
            continue
        if pool.spec.type is AddressType.SERVICE:
            length = IPV4_BITS if cidr.version == 4 else IPV6_BITS
            if network.prefixlen == pool.spec.aggregation_length:
                return True  # a covering prefix of an aggregating pool
        else:
            length = pool.spec.block_size if pool.spec.block_size is not None else cidr.prefixlen
        if network.prefixlen == length:
            return True
    return False


# --- the plan -----------------------------------------------------------------------------------


def plan(observed: AgentObserved) -> AgentPlan:
    """The calls that make the speaker hold what the cluster asks, touching only what is the
    cluster's (see the module docstring)."""
    speaker = observed.speaker
    by_address, problems = node_peers(observed.node, observed.peers)
    current = {n.address: n for n in speaker.neighbors}
    desired: dict[str, NeighborSettings] = {}
    held: dict[str, NeighborSettings] = {}  # left as the speaker has them (their Secret)
    unconfigured = []
    for address, peer in by_address.items():
        settings, found = neighbor_settings(peer, observed.secrets)
        problems.extend(found)
        secret = [p for p in found if p.reason == AUTH_SECRET_PROBLEM]
        if secret:
            # Never a session without the password asked for: the neighbor stays as the
            # speaker has it (a Secret deleted by mistake ends no session), or is not added.
            unconfigured.extend(secret)
            there = current.get(address)
            if there is not None and there.bgp_peer == peer.metadata.name:
                held[address] = there
            continue
        desired[address] = settings
    files = {a: n for a, n in current.items() if n.bgp_peer is None}
    kept = {a: n for a, n in files.items() if a not in desired}
    missing = {n.address: n for n in observed.removed if n.address not in current}
    kept.update((a, n) for a, n in missing.items() if a not in desired)

    set_asn = set_router_id = None
    blocked = ""
    node_bgp = observed.node_bgp
    if node_bgp is not None:
        if speaker.asn != node_bgp.spec.asn:
            set_asn = node_bgp.spec.asn
        if speaker.router_id != str(node_bgp.spec.router_id):
            set_router_id = str(node_bgp.spec.router_id)
    locked = sorted(a for a, n in kept.items() if n.has_password)
    unread = sorted(a for a, n in held.items() if n.has_password)
    if (set_asn is not None or set_router_id is not None) and (locked or unread):
        blocked = (
            f"the speaker's AS and router ID change only while it has no neighbor, and"
            f" neighbor(s) {', '.join(locked + unread)} (from its configuration file, or of"
            f" a BGPPeer whose Secret cannot be read now) have a TCP-MD5 password the agent"
            f" cannot add again; the speaker keeps AS {speaker.asn} and router ID"
            f" {speaker.router_id}"
        )
        set_asn = set_router_id = None

    if set_asn is not None or set_router_id is not None:
        delete = sorted(current)
        add = [desired[a] for a in sorted(desired)] + [kept[a] for a in sorted(kept)]
        add += [held[a] for a in sorted(held)]
    else:
        delete = sorted(
            a
            for a, n in current.items()
            if (a in desired and not desired[a].same_session(n))
            or (a not in desired and a not in held and n.bgp_peer is not None)
        )
        add = [desired[a] for a in sorted(desired) if a not in current or a in delete]
        add += [n for a, n in sorted(missing.items()) if a in kept]

    multipath = None
    if node_bgp is not None:
        wanted_multipath = node_bgp.spec.speaker.multipath
        if wanted_multipath is not None and wanted_multipath != speaker.multipath:
            multipath = wanted_multipath

    wanted = wanted_paths(observed.node, observed.advertisements)
    local = speaker.local_paths
    attributes = wanted_attributes(observed.node, observed.advertisements)
    # A path the speaker holds with other attributes is added again (AddPaths replaces it).
    changed = {
        p
        for p in wanted & local
        if speaker.path_attributes.get(p, Attributes()) != attributes.get(p, Attributes())
    }
    adding = (wanted - local) | changed

    def ours(prefix: str) -> bool:
        return (
            prefix in wanted
            or prefix in observed.added_paths
            or cluster_shaped(prefix, observed.pools)
        )

    return AgentPlan(
        delete_neighbors=tuple(delete),
        set_asn=set_asn,
        set_router_id=set_router_id,
        set_multipath=multipath,
        add_neighbors=tuple(add),
        delete_paths=tuple(sorted(p for p in local if p not in wanted and ours(p))),
        add_paths=tuple(sorted(adding)),
        path_attributes={p: attributes[p] for p in sorted(adding) if attributes.get(p)},
        peers={a: p.metadata.name for a, p in sorted(by_address.items())},
        problems=tuple(problems),
        unconfigured=tuple(unconfigured),
        identity_blocked=blocked,
        replaced=tuple(sorted(a for a in files if a in desired)),
        kept_neighbors=tuple(sorted(kept)),
        kept_paths=tuple(sorted(p for p in local if not ours(p))),
    )


# --- status -------------------------------------------------------------------------------------


def _bounded(history: list[T], limit: int) -> tuple[T, ...]:
    return tuple(history[-limit:])


def last_state(status: BGPPeerStatus | None) -> BGPPeerConditionStatus | None:
    if status is None or not status.conditions:
        return None
    return status.conditions[-1].status


def record_state(
    status: BGPPeerStatus | None,
    state: BGPPeerConditionStatus,
    reason: str,
    *,
    now: str,
    generation: int | None = None,
    limit: int = STATUS_HISTORY,
) -> BGPPeerStatus:
    """A BGPPeer's status once the speaker reported `state` for its session: the state appended
    to the history when it changed (the last `limit` kept), `backoff` counting the times an
    established session was lost, the Established condition following."""
    status = status or BGPPeerStatus()
    before = last_state(status)
    if before is state and find_condition(status, "Established") is not None:
        return status  # nothing new (a repeated report, or the state read again)
    if before is not state:
        history = [*(status.conditions or ()), BGPPeerCondition(status=state, reason=reason)]
        lost = before is ESTABLISHED
        status = attrs.evolve(
            status,
            conditions=_bounded(history, limit),
            backoff=status.backoff + 1 if lost else status.backoff,
        )
    established = Condition(
        type="Established",
        status=ConditionStatus.TRUE if state is ESTABLISHED else ConditionStatus.FALSE,
        reason=state.value,
        message=reason,
        last_transition_time=now,
        observed_generation=generation,
    )
    return attrs.evolve(
        status, standard_conditions=set_condition(status.standard_conditions, established)
    )


def find_condition(status: BGPPeerStatus | None, kind: str) -> Condition | None:
    for condition in (status.standard_conditions or ()) if status is not None else ():
        if condition.type == kind:
            return condition
    return None


def record_configured(
    status: BGPPeerStatus | None,
    configured: bool,
    reason: str,
    message: str,
    *,
    now: str,
    generation: int | None,
) -> BGPPeerStatus:
    """A BGPPeer's status with its Configured condition: whether the speaker holds the peer as
    the spec of `generation` says."""
    status = status or BGPPeerStatus()
    condition = Condition(
        type="Configured",
        status=ConditionStatus.TRUE if configured else ConditionStatus.FALSE,
        reason=reason,
        message=message,
        last_transition_time=now,
        observed_generation=generation,
    )
    return attrs.evolve(
        status, standard_conditions=set_condition(status.standard_conditions, condition)
    )


@attrs.frozen
class PeerEvent:
    """A Kubernetes Event about a BGPPeer."""

    type: str
    reason: str
    message: str


def state_event(
    before: BGPPeerConditionStatus | None,
    after: BGPPeerConditionStatus,
    address: str,
    reason: str,
) -> PeerEvent | None:
    """Normal when the session comes up, Warning when it leaves Established (with why)."""
    if after is ESTABLISHED and before is not ESTABLISHED:
        return PeerEvent("Normal", "Established", f"BGP session with {address} established")
    if before is ESTABLISHED and after is not ESTABLISHED:
        why = f": {reason}" if reason else ""
        return PeerEvent(
            "Warning", "SessionDown", f"BGP session with {address} is {after.value}{why}"
        )
    return None


def node_condition(node_bgp: NodeBGP, asn: int | None, router_id: str | None) -> NodeBGPCondition:
    """Available while the speaker holds the NodeBGP's ASN and router ID; Unavailable when it
    does not, or cannot be reached (`asn` None)."""
    if asn == node_bgp.spec.asn and router_id == str(node_bgp.spec.router_id):
        return NodeBGPCondition(
            status=NodeBGPConditionStatus.AVAILABLE, reason=NodeBGPConditionReason.CONFIGURED
        )
    return NodeBGPCondition(
        status=NodeBGPConditionStatus.UNAVAILABLE,
        reason=NodeBGPConditionReason.INVALID_CONFIGURATION,
    )


def record_node_condition(
    status: NodeBGPStatus | None, condition: NodeBGPCondition, *, limit: int = STATUS_HISTORY
) -> NodeBGPStatus:
    """The NodeBGP's status with `condition` appended when it differs from the last one."""
    history = list(status.conditions or ()) if status is not None else []
    if history and history[-1] == condition:
        return status or NodeBGPStatus(conditions=tuple(history))
    return NodeBGPStatus(conditions=_bounded([*history, condition], limit))


# --- BGPAdvertisement status.peers --------------------------------------------------------------


@attrs.frozen
class PeerAdvertising:
    """What this node's speaker reported of its session with one BGPPeer: whether it is
    Established, and of our own prefixes the ones sent to it (`sent`) and the ones whose
    withdrawal was sent on this session (`withdrawn`), from its PathsSent events."""

    established: bool
    sent: frozenset[str] = frozenset()
    withdrawn: frozenset[str] = frozenset()


def advertised_state(
    cidr: str, announced: bool, session: PeerAdvertising, before: AdvertiseStatus | None
) -> AdvertiseStatus | None:
    """One BGPPeer's entry in a BGPAdvertisement's status.peers (None: no entry).

    Advertised once the speaker sent the path to it; Withdraw once the withdrawal was sent,
    and kept while that session lasts; NotAdvertised otherwise (not sent yet, kept from it,
    or its session ended, which takes the path with it). An advertisement this node does not
    announce gets no entry, unless it had one (the node announced it before)."""
    if cidr in session.sent:
        return AdvertiseStatus.ADVERTISED
    if cidr in session.withdrawn:
        return AdvertiseStatus.WITHDRAW
    if before is AdvertiseStatus.WITHDRAW and session.established:
        return AdvertiseStatus.WITHDRAW
    if announced or before is not None:
        return AdvertiseStatus.NOT_ADVERTISED
    return None


def advertisement_patch(
    cidr: str,
    announced: bool,
    sessions: Mapping[str, PeerAdvertising],
    stored: Mapping[str, AdvertiseStatus],
    gone: Iterable[str] = (),
) -> dict[str, AdvertiseStatus | None]:
    """The entries of status.peers this node's agent must change: its own BGPPeers'
    (`sessions`, by BGPPeer name) that differ from what is `stored`, and None for those of
    its BGPPeers that are `gone`. Every other entry is another node's: never in the patch,
    so a merge patch of it leaves them as they are."""
    patch: dict[str, AdvertiseStatus | None] = {}
    for name, session in sessions.items():
        before = stored.get(name)
        after = advertised_state(cidr, announced, session, before)
        if after != before:
            patch[name] = after
    for name in gone:
        if name in stored and name not in sessions:
            patch[name] = None
    return patch
