"""The custom resources of sart (API group ``sart.terassyi.net``, version ``v1alpha2``) as values.

Every kind is a frozen attrs class ``<Kind>`` holding ``metadata``, ``spec`` (``<Kind>Spec``) and
``status`` (``<Kind>Status``), with the same kinds, field names, types, enums and required fields
as the original sart, so its manifests load unchanged. Python fields are snake_case; the JSON name
is their camelCase (or ``json_name`` where the original spells it otherwise, as ``nodeBGPRef``).

These classes are the single source of truth: ``sart.k8s.convert`` structures and unstructures
them, ``sart.k8s.crd`` turns them into CustomResourceDefinitions and the tables of docs/crds.md.
What the schema says beyond the Python type comes from the class itself:

* each field's ``metadata=schema(...)``: its description, a different JSON name, immutability
  (a CEL ``self == oldSelf`` rule), extra CEL rules, whether its default goes into the schema;
* validators that are also schema: ``InRange`` (published as ``minimum``/``maximum``) and
  ``Check`` (a CEL rule on the field, with its Python twin), combined with ``all_of``;
* a class's ``RULES``: CEL rules across fields, each with the same check in Python where one
  exists (transition rules, which compare with the old object, only run in the apiserver);
* a resource class's ``DEFINITION``: names, scope, printer columns.

CIDRs are ``netaddr.IPNetwork`` and addresses ``netaddr.IPAddress``; parsing them from text is
``sart.k8s.convert``'s job.
"""

from __future__ import annotations

import enum
import re
import typing
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final

import attrs
from netaddr import IPAddress, IPNetwork

from sart.k8s.attributes import (
    ATTR_FORMAT,
    ATTR_PATTERN,
    COMMUNITY_FORMAT,
    COMMUNITY_PATTERN,
    LARGE_COMMUNITY_FORMAT,
    LARGE_COMMUNITY_PATTERN,
)

GROUP: Final = "sart.terassyi.net"
VERSION: Final = "v1alpha2"
API_VERSION: Final = f"{GROUP}/{VERSION}"

# --- annotations, labels and finalizers (the original sart's strings) -----------------------------

ADDRESS_POOL_ANNOTATION: Final = "sart.terassyi.net/addresspool"
"""On a Service: the AddressPool(s) to allocate from, comma-separated."""
ADDRESS_POOL_ANNOTATION_ALIAS: Final = "sart.terassyi.net/address-pool"
"""Accepted as well as ADDRESS_POOL_ANNOTATION (same meaning)."""
ADDRESS_POOL_ANNOTATIONS: Final = (ADDRESS_POOL_ANNOTATION, ADDRESS_POOL_ANNOTATION_ALIAS)
LOAD_BALANCER_IPS_ANNOTATION: Final = "sart.terassyi.net/loadBalancerIPs"
"""On a Service: the addresses to assign, comma-separated."""
ALLOW_SHARED_IP_ANNOTATION: Final = "sart.terassyi.net/allow-shared-ip"
"""On a Service: a sharing key; Services with the same key may share an address."""

ASN_LABEL: Final = "sart.terassyi.net/asn"
"""On a Node: its ASN, when a ClusterBGP's asnSelector says ``from: label``."""
ROUTER_ID_LABEL: Final = "sart.terassyi.net/router-id"
"""On a Node: its router ID, when a ClusterBGP's routerIdSelector says ``from: label``."""
BGP_PEER_NODE_LABEL: Final = "bgppeer.sart.terassyi.net/node"
PEER_GROUP_ANNOTATION: Final = "bgppeer.sart.terassyi.net/group"
ADDRESS_BLOCK_NODE_LABEL: Final = "addressblock.sart.terassyi.net/node"

ADDRESS_POOL_FINALIZER: Final = "addresspool.sart.terassyi.net/finalizer"
ADDRESS_BLOCK_FINALIZER_CONTROLLER: Final = "controller.addressblock.sart.terassyi.net/finalizer"
ADDRESS_BLOCK_FINALIZER_AGENT: Final = "agent.addressblock.sart.terassyi.net/finalizer"
BLOCK_REQUEST_FINALIZER: Final = "blockrequest.sart.terassyi.net/finalizer"
CLUSTER_BGP_FINALIZER: Final = "clusterbgp.sart.terassyi.net/finalizer"
NODE_BGP_FINALIZER: Final = "clusterbgp.sart.terassyi.net/finalizer"
"""The original sart puts the ClusterBGP finalizer on NodeBGPs too; kept so that objects it
created are released by us."""
BGP_PEER_FINALIZER: Final = "bgppeer.sart.terassyi.net/finalizer"
BGP_ADVERTISEMENT_FINALIZER: Final = "bgpadvertisement.sart.terassyi.net/finalizer"

STATUS_HISTORY: Final = 16
"""How many state changes the status history of a BGPPeer or NodeBGP keeps (oldest dropped)."""
ASN_MAX: Final = 2**32 - 1
UINT32_MAX: Final = 2**32 - 1
IPV4_BITS: Final = 32
IPV6_BITS: Final = 128

# --- the schema metadata mechanism ----------------------------------------------------------------

SCHEMA_KEY: Final = "sart.k8s.schema"
"""The key of a field's FieldSchema in its attrs metadata."""


class InvalidField(ValueError):
    """A validator's complaint about one field; ``sart.k8s.convert`` turns ``field`` (the Python
    attribute name) into the JSON path of the field in the object."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@attrs.frozen(kw_only=True)
class Rule:
    """One CEL rule of the CRD schema (an ``x-kubernetes-validations`` entry).

    ``check`` is the same rule in Python, run when the class is built; ``field`` is the Python
    name of the field the message is about (it becomes the rule's ``fieldPath``). A rule that
    uses ``oldSelf`` is a transition rule: only the apiserver checks it, on update.
    """

    rule: str
    message: str
    field: str | None = None
    check: Callable[[Any], bool] | None = None
    # A CEL expression for the message (``messageExpression``), so the apiserver can name the
    # value; ``explain`` is its Python twin, given the value.
    message_expression: str | None = None
    explain: Callable[[Any], str] | None = None

    @property
    def is_transition(self) -> bool:
        return "oldSelf" in self.rule


@attrs.frozen(kw_only=True)
class FieldSchema:
    """What a field's schema says beyond its Python type (see ``schema``)."""

    description: str
    json_name: str | None = None
    immutable: bool = False
    rules: tuple[Rule, ...] = ()
    publish_default: bool = False
    max_items: int | None = None
    max_length: int | None = None


def schema(
    description: str,
    *,
    json_name: str | None = None,
    immutable: bool = False,
    rules: tuple[Rule, ...] = (),
    publish_default: bool = False,
    max_items: int | None = None,
    max_length: int | None = None,
) -> dict[str, FieldSchema]:
    """The ``metadata=`` of a model field: its description (for the CRD and the docs), its JSON
    name when not the camelCase of the Python name, whether it is immutable once created, extra
    CEL rules on its value, whether the default is written into the schema (the apiserver then
    fills it in), the most items a list may have and the longest a string (or each string of a
    list) may be (both bound the cost of CEL rules)."""
    return {
        SCHEMA_KEY: FieldSchema(
            description=description,
            json_name=json_name,
            immutable=immutable,
            rules=rules,
            publish_default=publish_default,
            max_items=max_items,
            max_length=max_length,
        )
    }


_NO_SCHEMA: Final = FieldSchema(description="")


def field_schema(field: attrs.Attribute[Any]) -> FieldSchema:
    """A field's FieldSchema (an empty one for fields without ``schema(...)`` metadata, such as
    a kind's ``metadata``, ``spec`` and ``status``)."""
    found = field.metadata.get(SCHEMA_KEY, _NO_SCHEMA)
    assert isinstance(found, FieldSchema)
    return found


def camel_case(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def json_name(field: attrs.Attribute[Any]) -> str:
    """The field's name in the Kubernetes object."""
    return field_schema(field).json_name or camel_case(field.name)


@attrs.frozen
class InRange:
    """Validator: an integer between ``minimum`` and ``maximum`` inclusive (None passes). The
    CRD schema publishes the same bounds."""

    minimum: int
    maximum: int | None = None

    def __call__(self, instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None:
            return
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            upper = "" if self.maximum is None else f" and {self.maximum}"
            bound = f"between {self.minimum}{upper}" if upper else f">= {self.minimum}"
            raise InvalidField(attribute.name, f"must be {bound}, got {value}")


@attrs.frozen
class Check:
    """Validator: the value (None passes) follows ``rule``, whose ``check`` takes the value.
    The CRD schema publishes the rule's CEL on the field."""

    rule: Rule

    def __call__(self, instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        if value is None or self.rule.check is None:
            return
        if not self.rule.check(value):
            explain = self.rule.explain
            raise InvalidField(attribute.name, explain(value) if explain else self.rule.message)


@attrs.frozen
class AllOf:
    """Validator: all of ``validators``, in order (attrs' own ``and_`` keeps them private)."""

    validators: tuple[Callable[[object, attrs.Attribute[Any], Any], None], ...]

    def __call__(self, instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
        for validator in self.validators:
            validator(instance, attribute, value)


def all_of(*validators: Callable[[object, attrs.Attribute[Any], Any], None]) -> AllOf:
    return AllOf(validators)


def check_rules(instance: object, rules: tuple[Rule, ...]) -> None:
    """Run the Python side of a class's rules; the first one broken raises InvalidField."""
    for rule in rules:
        if rule.check is not None and not rule.check(instance):
            raise InvalidField(rule.field, rule.message)


def _immutable(what: str) -> Rule:
    return Rule(rule="self == oldSelf", message=f"{what} is immutable")


@attrs.frozen(kw_only=True)
class PrinterColumn:
    """One column of ``kubectl get`` (``additionalPrinterColumns``); priority 1 = ``-o wide``."""

    name: str
    type: str
    json_path: str
    description: str
    priority: int = 0


AGE_COLUMN: Final = PrinterColumn(
    name="AGE",
    type="date",
    json_path=".metadata.creationTimestamp",
    description="Time since the object was created",
)


@attrs.frozen(kw_only=True)
class KindDefinition:
    """How a kind is named and served: the CRD's ``names``, ``scope`` and printer columns."""

    kind: str
    plural: str
    namespaced: bool = False
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("sart",)
    printer_columns: tuple[PrinterColumn, ...] = (AGE_COLUMN,)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def crd_name(self) -> str:
        return f"{self.plural}.{GROUP}"


# --- enums ----------------------------------------------------------------------------------------


class AddressType(enum.Enum):
    """What an AddressPool's addresses are for."""

    SERVICE = "service"
    POD = "pod"


class AllocationType(enum.Enum):
    """How addresses are picked from a pool: ``bit`` takes the lowest free one."""

    BIT = "bit"


class Protocol(enum.Enum):
    """The address family of an advertised prefix."""

    IPV4 = "ipv4"
    IPV6 = "ipv6"


class AsnSelectionType(enum.Enum):
    """Where a ClusterBGP finds a node's ASN."""

    ASN = "asn"
    LABEL = "label"


class RouterIdSelectionType(enum.Enum):
    """Where a ClusterBGP finds a node's router ID."""

    INTERNAL_ADDRESS = "internalAddress"
    LABEL = "label"
    ROUTER_ID = "routerId"


class NodeBGPConditionStatus(enum.Enum):
    AVAILABLE = "Available"
    UNAVAILABLE = "Unavailable"


class NodeBGPConditionReason(enum.Enum):
    NOT_CONFIGURED = "NotConfigured"
    CONFIGURED = "Configured"
    INVALID_CONFIGURATION = "InvalidConfiguration"


class BGPPeerConditionStatus(enum.Enum):
    """The BGP FSM state of a peer (RFC 4271 section 8.2.2), as the original sart spells it."""

    UNKNOWN = "Unknown"
    IDLE = "Idle"
    ACTIVE = "Active"
    CONNECT = "Connect"
    OPEN_SENT = "OpenSent"
    OPEN_CONFIRM = "OpenConfirm"
    ESTABLISHED = "Established"


class ConditionStatus(enum.Enum):
    """The status of a standard Kubernetes condition."""

    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class AdvertiseStatus(enum.Enum):
    NOT_ADVERTISED = "NotAdvertised"
    ADVERTISED = "Advertised"
    WITHDRAW = "Withdraw"


# --- metadata -------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class OwnerReference:
    """An ``ownerReferences`` entry."""

    api_version: str = attrs.field(metadata=schema("API version of the owner"))
    kind: str = attrs.field(metadata=schema("Kind of the owner"))
    name: str = attrs.field(metadata=schema("Name of the owner"))
    uid: str = attrs.field(metadata=schema("UID of the owner"))
    controller: bool | None = attrs.field(
        default=None, metadata=schema("Whether the owner is the managing controller")
    )
    block_owner_deletion: bool | None = attrs.field(
        default=None, metadata=schema("Whether the owner's deletion waits for this object")
    )


@attrs.frozen(kw_only=True)
class ObjectMeta:
    """The part of ``metadata`` sart reads and writes; other keys are ignored when structuring."""

    name: str = attrs.field(metadata=schema("Object name"))
    namespace: str | None = attrs.field(default=None, metadata=schema("Namespace, if namespaced"))
    labels: Mapping[str, str] = attrs.field(factory=dict, metadata=schema("Labels"))
    annotations: Mapping[str, str] = attrs.field(factory=dict, metadata=schema("Annotations"))
    finalizers: tuple[str, ...] = attrs.field(default=(), metadata=schema("Finalizers"))
    owner_references: tuple[OwnerReference, ...] = attrs.field(
        default=(), metadata=schema("Owners")
    )
    uid: str | None = attrs.field(default=None, metadata=schema("UID, set by the apiserver"))
    resource_version: str | None = attrs.field(
        default=None, metadata=schema("Resource version, set by the apiserver")
    )
    generation: int | None = attrs.field(
        default=None, metadata=schema("Spec generation, set by the apiserver")
    )
    creation_timestamp: str | None = attrs.field(
        default=None, metadata=schema("Creation time (RFC 3339), set by the apiserver")
    )
    deletion_timestamp: str | None = attrs.field(
        default=None, metadata=schema("Deletion request time (RFC 3339), set by the apiserver")
    )


class CustomResource(typing.Protocol):
    """What every kind class has (for functions working on any kind)."""

    DEFINITION: ClassVar[KindDefinition]

    @property
    def metadata(self) -> ObjectMeta: ...

    @property
    def spec(self) -> Any: ...

    @property
    def status(self) -> Any: ...


# --- AddressPool ----------------------------------------------------------------------------------


def _each(pattern: str, what: str, want: str) -> Rule:
    """A CEL rule (and its Python twin) that every string of a list matches ``pattern``; the
    apiserver's message names the first that does not."""
    return Rule(
        rule=f"self.all(x, x.matches('{pattern}'))",
        message=f"each must be {want}",
        message_expression=(
            f"'not {what}: ' + self.filter(x, !x.matches('{pattern}'))[0] + ' (want {want})'"
        ),
        check=lambda values: all(re.fullmatch(pattern, v) for v in values),
        explain=lambda values: next(
            f"not {what}: {v} (want {want})" for v in values if not re.fullmatch(pattern, v)
        ),
    )


@attrs.frozen(kw_only=True)
class BGPAttributes:
    """Path attributes of the prefixes announced for a pool's addresses (an addition to the
    original sart). A Service's annotations add to them: see docs/loadbalancer.md."""

    communities: tuple[str, ...] | None = attrs.field(
        default=None,
        validator=Check(_each(COMMUNITY_PATTERN, "a community", COMMUNITY_FORMAT)),
        metadata=schema(
            "Communities (RFC 1997): ASN:VALUE or a well-known name such as no-export",
            max_items=32,
            max_length=32,
        ),
    )
    large_communities: tuple[str, ...] | None = attrs.field(
        default=None,
        validator=Check(
            _each(LARGE_COMMUNITY_PATTERN, "a large community", LARGE_COMMUNITY_FORMAT)
        ),
        metadata=schema(
            "Large communities (RFC 8092): GLOBAL:LOCAL1:LOCAL2",
            max_items=32,
            max_length=32,
        ),
    )
    local_pref: int | None = attrs.field(
        default=None,
        validator=InRange(0, UINT32_MAX),
        metadata=schema("LOCAL_PREF: sent to iBGP peers only (RFC 4271 5.1.5)"),
    )
    med: int | None = attrs.field(
        default=None,
        validator=InRange(0, UINT32_MAX),
        metadata=schema("MULTI_EXIT_DISC (RFC 4271 5.1.4)"),
    )


def _aggregation_fits(spec: AddressPoolSpec) -> bool:
    if spec.aggregation_length is None:
        return True
    width = IPV4_BITS if spec.cidr.version == 4 else IPV6_BITS
    return bool(spec.cidr.prefixlen <= spec.aggregation_length <= width)


def _block_size_fits(spec: AddressPoolSpec) -> bool:
    if spec.block_size is None:
        return True
    width = IPV4_BITS if spec.cidr.version == 4 else IPV6_BITS
    return bool(spec.cidr.prefixlen <= spec.block_size <= width)


def _service_block_is_whole_pool(spec: AddressPoolSpec) -> bool:
    return (
        spec.type is not AddressType.SERVICE
        or spec.block_size is None
        or spec.block_size == spec.cidr.prefixlen
    )


@attrs.frozen(kw_only=True)
class AddressPoolSpec:
    """A range of addresses for LoadBalancer Services (``type: service``) or pods
    (``type: pod``), carved into AddressBlocks of ``blockSize``."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            rule=(
                "!has(self.blockSize) || !isCIDR(self.cidr) || ("
                "self.blockSize >= cidr(self.cidr).prefixLength() && "
                "self.blockSize <= (cidr(self.cidr).ip().family() == 4 ? 32 : 128))"
            ),
            message=(
                "blockSize must be between the prefix length of cidr and 32 (IPv4) or 128 (IPv6)"
            ),
            field="block_size",
            check=_block_size_fits,
        ),
        Rule(
            rule=(
                "self.type != 'service' || !has(self.blockSize) || !isCIDR(self.cidr) || "
                "self.blockSize == cidr(self.cidr).prefixLength()"
            ),
            message="blockSize of a service pool must equal the prefix length of cidr",
            field="block_size",
            check=_service_block_is_whole_pool,
        ),
        Rule(
            rule="has(self.blockSize) == has(oldSelf.blockSize)",
            message="blockSize is immutable",
            field="block_size",
        ),
        Rule(
            rule=(
                "!has(self.aggregationLength) || !isCIDR(self.cidr) || ("
                "self.aggregationLength >= cidr(self.cidr).prefixLength() && "
                "self.aggregationLength <= (cidr(self.cidr).ip().family() == 4 ? 32 : 128))"
            ),
            message=(
                "aggregationLength must be between the prefix length of cidr and 32 (IPv4)"
                " or 128 (IPv6)"
            ),
            field="aggregation_length",
            check=_aggregation_fits,
        ),
        Rule(
            rule="!has(self.aggregationLength) || self.type == 'service'",
            message="aggregationLength is for service pools only",
            field="aggregation_length",
            check=lambda spec: spec.aggregation_length is None or spec.type is AddressType.SERVICE,
        ),
    )

    cidr: IPNetwork = attrs.field(
        metadata=schema("The addresses of the pool, as a network address", immutable=True)
    )
    type: AddressType = attrs.field(
        metadata=schema("What the addresses are for: service or pod", immutable=True)
    )
    alloc_type: AllocationType = attrs.field(
        default=AllocationType.BIT,
        metadata=schema(
            "How an address is picked: bit (the lowest free one)",
            immutable=True,
            publish_default=True,
        ),
    )
    block_size: int | None = attrs.field(
        default=None,
        validator=InRange(0, IPV6_BITS),
        metadata=schema(
            "Prefix length of the AddressBlocks carved from the pool; defaults to the prefix"
            " length of cidr (one block). A service pool is always one block",
            immutable=True,
        ),
    )
    auto_assign: bool = attrs.field(
        default=False,
        metadata=schema(
            "Whether Services (or pods) that name no pool get addresses from this one;"
            " at most one pool per type",
            publish_default=True,
        ),
    )
    namespaces: tuple[str, ...] | None = attrs.field(
        default=None,
        metadata=schema(
            "Only Services in these namespaces get addresses from the pool; all when absent"
            " (an addition to the original sart)",
            max_items=1024,
        ),
    )
    service_selector: Mapping[str, str] | None = attrs.field(
        default=None,
        metadata=schema(
            "Only Services with all these labels get addresses from the pool; all when absent"
            " (an addition to the original sart)",
        ),
    )
    bgp_attributes: BGPAttributes | None = attrs.field(
        default=None,
        metadata=schema(
            "BGP path attributes of the pool's announced prefixes; a Service's annotations"
            " add to them (an addition to the original sart)"
        ),
    )
    aggregation_length: int | None = attrs.field(
        default=None,
        validator=InRange(0, IPV6_BITS),
        metadata=schema(
            "Service pools: announce the addresses in use as their covering prefixes of this"
            " length, each from the nodes of the Services inside it, instead of one prefix"
            " per address (an addition to the original sart)"
        ),
    )

    def __attrs_post_init__(self) -> None:
        check_rules(self, self.RULES)


@attrs.frozen(kw_only=True)
class AddressPoolStatus:
    """What has been handed out from the pool: the controller writes allocatedAddresses and
    freeAddresses of service pools; requested, allocated and released are the original sart's
    and sart does not write them."""

    requested: tuple[str, ...] | None = attrs.field(
        default=None,
        metadata=schema("BlockRequests waiting for a block (not written by sart)", max_items=4096),
    )
    allocated: Mapping[str, int] | None = attrs.field(
        default=None,
        metadata=schema(
            "AddressBlocks carved from the pool, with their index (not written by sart)"
        ),
    )
    released: tuple[str, ...] | None = attrs.field(
        default=None,
        metadata=schema("AddressBlocks being given back (not written by sart)", max_items=4096),
    )
    allocated_addresses: int | None = attrs.field(
        default=None,
        validator=InRange(0),
        metadata=schema("How many addresses are allocated (service pools, by the controller)"),
    )
    free_addresses: int | None = attrs.field(
        default=None,
        validator=InRange(0),
        metadata=schema("How many addresses are left (service pools, by the controller)"),
    )


@attrs.frozen(kw_only=True)
class AddressPool:
    """A pool of addresses for LoadBalancer Services or pods (cluster-scoped)."""

    DEFINITION: ClassVar[KindDefinition] = KindDefinition(
        kind="AddressPool",
        plural="addresspools",
        printer_columns=(
            PrinterColumn(
                name="CIDR", type="string", json_path=".spec.cidr", description="CIDR of the pool"
            ),
            PrinterColumn(
                name="TYPE", type="string", json_path=".spec.type", description="service or pod"
            ),
            PrinterColumn(
                name="BLOCKSIZE",
                type="integer",
                json_path=".spec.blockSize",
                description="Prefix length of the blocks",
            ),
            PrinterColumn(
                name="AUTO",
                type="boolean",
                json_path=".spec.autoAssign",
                description="Used when no pool is named",
            ),
            AGE_COLUMN,
            PrinterColumn(
                name="ALLOCATED",
                type="integer",
                json_path=".status.allocatedAddresses",
                description="Addresses allocated",
                priority=1,
            ),
            PrinterColumn(
                name="FREE",
                type="integer",
                json_path=".status.freeAddresses",
                description="Addresses left",
                priority=1,
            ),
        ),
    )

    metadata: ObjectMeta
    spec: AddressPoolSpec
    status: AddressPoolStatus | None = None


# --- AddressBlock ---------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class AddressBlockSpec:
    """A part of an AddressPool owned by one node: a block of a pod pool, made by the controller
    for a BlockRequest and deleted by the node's agent when it is empty (the original also made
    one per service pool; sart accepts those and does not need them)."""

    cidr: IPNetwork = attrs.field(metadata=schema("The addresses of the block", immutable=True))
    type: AddressType = attrs.field(
        metadata=schema("The type of the pool: service or pod", immutable=True)
    )
    pool_ref: str = attrs.field(
        metadata=schema("Name of the AddressPool the block belongs to", immutable=True)
    )
    node_ref: str | None = attrs.field(
        default=None, metadata=schema("Name of the node the block belongs to (pod pools)")
    )
    auto_assign: bool = attrs.field(metadata=schema("Copied from the pool's autoAssign"))


@attrs.frozen(kw_only=True)
class AddressBlockStatus:
    """Where the block sits in its pool (the original sart's; sart does not write it)."""

    index: int | None = attrs.field(
        default=None,
        validator=InRange(0),
        metadata=schema("Position of the block in its pool (not written by sart)"),
    )


@attrs.frozen(kw_only=True)
class AddressBlock:
    """A block of an AddressPool (cluster-scoped)."""

    DEFINITION: ClassVar[KindDefinition] = KindDefinition(
        kind="AddressBlock",
        plural="addressblocks",
        printer_columns=(
            PrinterColumn(
                name="CIDR", type="string", json_path=".spec.cidr", description="CIDR of the block"
            ),
            PrinterColumn(
                name="TYPE", type="string", json_path=".spec.type", description="service or pod"
            ),
            PrinterColumn(
                name="POOLREF", type="string", json_path=".spec.poolRef", description="Pool name"
            ),
            PrinterColumn(
                name="NODEREF", type="string", json_path=".spec.nodeRef", description="Node name"
            ),
            AGE_COLUMN,
        ),
    )

    metadata: ObjectMeta
    spec: AddressBlockSpec
    status: AddressBlockStatus | None = None


# --- BlockRequest ---------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class BlockRequestSpec:
    """A node agent's request for one more block of a pod pool, made by the agent's CNI side
    when its node's blocks of the pool are full and deleted by the controller once served."""

    pool: str = attrs.field(metadata=schema("Name of the AddressPool", immutable=True))
    node: str = attrs.field(metadata=schema("Name of the node", immutable=True))


@attrs.frozen(kw_only=True)
class BlockRequestStatus:
    """Empty, as in the original sart."""


@attrs.frozen(kw_only=True)
class BlockRequest:
    """A request for an AddressBlock (cluster-scoped)."""

    DEFINITION: ClassVar[KindDefinition] = KindDefinition(
        kind="BlockRequest",
        plural="blockrequests",
        printer_columns=(
            PrinterColumn(
                name="POOL", type="string", json_path=".spec.pool", description="Pool name"
            ),
            PrinterColumn(
                name="NODE", type="string", json_path=".spec.node", description="Node name"
            ),
            AGE_COLUMN,
        ),
    )

    metadata: ObjectMeta
    spec: BlockRequestSpec
    status: BlockRequestStatus | None = None


# --- BGP: shared parts ----------------------------------------------------------------------------

_HOLD_TIME = all_of(
    InRange(0, 65535),
    Check(
        Rule(
            rule="self == 0 || self >= 3",
            message="must be 0 (no keepalives) or at least 3 seconds (RFC 4271)",
            check=lambda seconds: seconds == 0 or seconds >= 3,
        )
    ),
)
_IPV4_ONLY = Check(
    Rule(
        rule="!isIP(self) || ip(self).family() == 4",
        message="must be an IPv4 address",
        check=lambda address: address.version == 4,
    )
)


@attrs.frozen(kw_only=True)
class SpeakerConfig:
    """How the agent reaches the node's BGP speaker (its gRPC endpoint)."""

    path: str = attrs.field(metadata=schema("Endpoint of the speaker's API, host:port"))
    timeout: int | None = attrs.field(
        default=None,
        validator=InRange(0),
        metadata=schema("Timeout of calls to the speaker, in seconds"),
    )
    multipath: bool | None = attrs.field(
        default=None, metadata=schema("Whether the speaker installs multiple paths")
    )


def _max_prefixes_field() -> Any:
    return attrs.field(
        default=None, metadata=schema("Limit on the routes taken from the peer; none by default")
    )


def _bfd_field() -> Any:
    return attrs.field(
        default=None,
        metadata=schema(
            "BFD with the peer (RFC 5880, single hop RFC 5881): the session goes down as soon as"
            " BFD detects the peer gone; none by default (an addition to the original sart)"
        ),
    )


def _passive_field() -> Any:
    return attrs.field(
        default=None,
        metadata=schema(
            "Whether the speaker only accepts the peer's connection and never connects to it"
            " (an addition to the original sart)"
        ),
    )


def _ttl_field() -> Any:
    return attrs.field(
        default=None,
        validator=InRange(1, 255),
        metadata=schema(
            "IP TTL of the session's packets: above 1 for an eBGP peer more than one hop away"
            " (multihop); default 1 for eBGP, 255 for iBGP (an addition to the original sart)"
        ),
    )


def _auth_secret_ref_field() -> Any:
    return attrs.field(
        default=None,
        metadata=schema(
            "TCP-MD5 (RFC 2385) password of the session, from a Secret in the node agent's"
            " namespace (1-80 bytes); none by default (an addition to the original sart)"
        ),
    )


@attrs.frozen(kw_only=True)
class BGPPeerTemplateSpec:
    """A reusable peer configuration; every field is optional."""

    asn: int | None = attrs.field(
        default=None, validator=InRange(1, ASN_MAX), metadata=schema("ASN of the remote speaker")
    )
    addr: IPAddress | None = attrs.field(
        default=None, metadata=schema("Address of the remote speaker")
    )
    capabilities: tuple[str, ...] | None = attrs.field(
        default=None, metadata=schema("BGP capabilities to announce", max_items=64)
    )
    hold_time: int | None = attrs.field(
        default=None,
        validator=_HOLD_TIME,
        metadata=schema("Hold time in seconds"),
    )
    keepalive_time: int | None = attrs.field(
        default=None,
        validator=InRange(0, 65535),
        metadata=schema("Keepalive interval in seconds"),
    )
    groups: tuple[str, ...] | None = attrs.field(
        default=None, metadata=schema("Peer groups, matched by advertisements", max_items=64)
    )
    max_prefixes: MaxPrefixes | None = _max_prefixes_field()
    bfd: Bfd | None = _bfd_field()
    passive: bool | None = _passive_field()
    ttl: int | None = _ttl_field()
    auth_secret_ref: SecretKeyRef | None = _auth_secret_ref_field()


@attrs.frozen(kw_only=True)
class MaxPrefixes:
    """The most routes the speaker takes from the peer (RFC 4271 6, RFC 4486)."""

    limit: int = attrs.field(
        validator=InRange(1, 2**32 - 1),
        metadata=schema(
            "Most paths accepted from the peer (all families together); one more and the speaker"
            " sends Cease / Maximum Number of Prefixes Reached and closes the session"
        ),
    )
    warning_percent: int = attrs.field(
        default=75,
        validator=InRange(1, 100),
        metadata=schema("Percent of the limit at which the speaker logs a warning (default 75)"),
    )
    restart_seconds: int = attrs.field(
        default=0,
        validator=InRange(0, 2**31 - 1),
        metadata=schema(
            "Seconds the session stays down after the limit was passed before the speaker"
            " starts it again; 0 (the default): down until the neighbor is enabled again"
        ),
    )


@attrs.frozen(kw_only=True)
class Bfd:
    """Bidirectional Forwarding Detection with the peer (RFC 5880 asynchronous mode)."""

    min_rx_ms: int = attrs.field(
        default=300,
        validator=InRange(1, 4_294_967),
        metadata=schema("Shortest interval between the peer's packets we accept, in ms (300)"),
    )
    min_tx_ms: int = attrs.field(
        default=300,
        validator=InRange(1, 4_294_967),
        metadata=schema("Shortest interval at which we would send, in ms (300)"),
    )
    multiplier: int = attrs.field(
        default=3,
        validator=InRange(1, 255),
        metadata=schema(
            "Detection time multiplier: down after this many agreed intervals without a packet (3)"
        ),
    )


@attrs.frozen(kw_only=True)
class SecretKeyRef:
    """A key of a Secret in the namespace the node agent runs in (sart-system as shipped)."""

    name: str = attrs.field(metadata=schema("Name of the Secret, in the agent's namespace"))
    key: str = attrs.field(
        default="password",
        metadata=schema("Key of the password in the Secret's data", publish_default=True),
    )


@attrs.frozen(kw_only=True)
class BGPPeerSpec:
    """A BGP session between a node's speaker and a remote router."""

    asn: int = attrs.field(
        validator=InRange(1, ASN_MAX),
        metadata=schema("ASN of the remote speaker", immutable=True),
    )
    addr: IPAddress = attrs.field(metadata=schema("Address of the remote speaker", immutable=True))
    hold_time: int | None = attrs.field(
        default=None,
        validator=_HOLD_TIME,
        metadata=schema("Hold time in seconds"),
    )
    keepalive_time: int | None = attrs.field(
        default=None,
        validator=InRange(0, 65535),
        metadata=schema("Keepalive interval in seconds"),
    )
    capabilities: tuple[str, ...] | None = attrs.field(
        default=None, metadata=schema("BGP capabilities to announce", max_items=64)
    )
    node_bgp_ref: str = attrs.field(
        metadata=schema(
            "Name of the NodeBGP (the node) whose speaker has this peer",
            json_name="nodeBGPRef",
            immutable=True,
        )
    )
    cluster_bgp_ref: str | None = attrs.field(
        default=None,
        metadata=schema("Name of the ClusterBGP that made this peer", json_name="clusterBGPRef"),
    )
    speaker: SpeakerConfig = attrs.field(metadata=schema("The node's speaker"))
    groups: tuple[str, ...] | None = attrs.field(
        default=None, metadata=schema("Peer groups, matched by advertisements", max_items=64)
    )
    max_prefixes: MaxPrefixes | None = _max_prefixes_field()
    bfd: Bfd | None = _bfd_field()
    passive: bool | None = _passive_field()
    ttl: int | None = _ttl_field()
    auth_secret_ref: SecretKeyRef | None = _auth_secret_ref_field()


@attrs.frozen(kw_only=True)
class BGPPeerSlim:
    """A peer as listed in a NodeBGP: its name and spec."""

    name: str = attrs.field(metadata=schema("Name of the BGPPeer"))
    spec: BGPPeerSpec = attrs.field(metadata=schema("Spec of the BGPPeer"))


@attrs.frozen(kw_only=True)
class PeerConfig:
    """Peers a ClusterBGP gives to the NodeBGPs it selects."""

    peer_template_ref: str | None = attrs.field(
        default=None, metadata=schema("Name of a BGPPeerTemplate")
    )
    peer_config: BGPPeerTemplateSpec | None = attrs.field(
        default=None, metadata=schema("Inline peer settings, overriding the template's")
    )
    node_bgp_selector: Mapping[str, str] | None = attrs.field(
        default=None,
        metadata=schema("Labels a NodeBGP must have to get this peer", json_name="nodeBGPSelector"),
    )


# --- ClusterBGP -----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class AsnSelector:
    """Where a node's ASN comes from: ``asn`` (this value) or ``label`` (the node's
    ``sart.terassyi.net/asn`` label)."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            rule="self.from != 'asn' || has(self.asn)",
            message="asn is required when from is asn",
            field="asn",
            check=lambda s: s.from_ is not AsnSelectionType.ASN or s.asn is not None,
        ),
    )

    from_: AsnSelectionType = attrs.field(metadata=schema("asn or label", json_name="from"))
    asn: int | None = attrs.field(
        default=None, validator=InRange(1, ASN_MAX), metadata=schema("The ASN, for from: asn")
    )

    def __attrs_post_init__(self) -> None:
        check_rules(self, self.RULES)


@attrs.frozen(kw_only=True)
class RouterIdSelector:
    """Where a node's router ID comes from: ``internalAddress`` (the node's InternalIP),
    ``label`` (its ``sart.terassyi.net/router-id`` label) or ``routerId`` (this value)."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            rule="self.from != 'routerId' || has(self.routerId)",
            message="routerId is required when from is routerId",
            field="router_id",
            check=lambda s: (
                s.from_ is not RouterIdSelectionType.ROUTER_ID or s.router_id is not None
            ),
        ),
    )

    from_: RouterIdSelectionType = attrs.field(
        metadata=schema("internalAddress, label or routerId", json_name="from")
    )
    router_id: IPAddress | None = attrs.field(
        default=None,
        validator=_IPV4_ONLY,
        metadata=schema("The router ID (an IPv4 address), for from: routerId"),
    )

    def __attrs_post_init__(self) -> None:
        check_rules(self, self.RULES)


@attrs.frozen(kw_only=True)
class ClusterBGPSpec:
    """BGP settings for a set of nodes: the ClusterBGP controller makes a NodeBGP (and its
    BGPPeers) for every node it selects."""

    node_selector: Mapping[str, str] | None = attrs.field(
        default=None, metadata=schema("Labels of the nodes to configure; all nodes when absent")
    )
    asn_selector: AsnSelector = attrs.field(metadata=schema("Where each node's ASN comes from"))
    router_id_selector: RouterIdSelector = attrs.field(
        metadata=schema("Where each node's router ID comes from")
    )
    speaker: SpeakerConfig = attrs.field(metadata=schema("The nodes' speaker endpoint"))
    peers: tuple[PeerConfig, ...] | None = attrs.field(
        default=None, metadata=schema("Peers of the selected nodes", max_items=256)
    )


CLUSTER_BGP_CONFLICTED: Final = "Conflicted"
"""The ClusterBGP condition saying whether another ClusterBGP selects some of its nodes."""


@attrs.frozen(kw_only=True)
class ClusterBGPStatus:
    """Which nodes the ClusterBGP covers, written by the controller."""

    desired_nodes: tuple[str, ...] | None = attrs.field(
        default=None,
        metadata=schema(
            "Nodes the selector matches, but those an older ClusterBGP selects too (that one"
            " configures them)"
        ),
    )
    nodes: tuple[str, ...] | None = attrs.field(
        default=None, metadata=schema("Nodes configured so far")
    )
    conditions: tuple[Condition, ...] | None = attrs.field(
        default=None,
        metadata=schema(
            f"Standard Kubernetes conditions, an addition to the original sart:"
            f" {CLUSTER_BGP_CONFLICTED} (True while another ClusterBGP selects one of its"
            f" nodes too; the older one, by creation time then name, configures the node)",
            max_items=8,
        ),
    )


@attrs.frozen(kw_only=True)
class ClusterBGP:
    """Cluster-wide BGP settings (cluster-scoped)."""

    DEFINITION: ClassVar[KindDefinition] = KindDefinition(
        kind="ClusterBGP",
        plural="clusterbgps",
        printer_columns=(
            AGE_COLUMN,  # the original's; the rest, additions, with -o wide
            PrinterColumn(
                name="CONFLICTED",
                type="string",
                json_path=f'.status.conditions[?(@.type=="{CLUSTER_BGP_CONFLICTED}")].status',
                description="Whether another ClusterBGP selects some of its nodes too",
                priority=1,
            ),
        ),
    )

    metadata: ObjectMeta
    spec: ClusterBGPSpec
    status: ClusterBGPStatus | None = None


# --- NodeBGP --------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class NodeBGPSpec:
    """The BGP speaker of one node (named after the node)."""

    asn: int = attrs.field(
        validator=InRange(1, ASN_MAX), metadata=schema("ASN of the node's speaker")
    )
    router_id: IPAddress = attrs.field(
        validator=_IPV4_ONLY, metadata=schema("Router ID of the node's speaker (an IPv4 address)")
    )
    speaker: SpeakerConfig = attrs.field(metadata=schema("The node's speaker endpoint"))
    peers: tuple[BGPPeerSlim, ...] | None = attrs.field(
        default=None, metadata=schema("The node's peers", max_items=256)
    )


@attrs.frozen(kw_only=True)
class NodeBGPCondition:
    """One state change of a node's speaker."""

    status: NodeBGPConditionStatus = attrs.field(metadata=schema("Available or Unavailable"))
    reason: NodeBGPConditionReason = attrs.field(
        metadata=schema("NotConfigured, Configured or InvalidConfiguration")
    )


@attrs.frozen(kw_only=True)
class NodeBGPStatus:
    """The state of the node's speaker, written by the node's agent: Available (Configured)
    while the speaker holds the NodeBGP's ASN and router ID, Unavailable (InvalidConfiguration)
    when it does not or cannot be reached."""

    conditions: tuple[NodeBGPCondition, ...] | None = attrs.field(
        default=None,
        metadata=schema(
            f"History of the speaker's state, latest last; the agent keeps the last"
            f" {STATUS_HISTORY} changes"
        ),
    )


@attrs.frozen(kw_only=True)
class NodeBGP:
    """A node's BGP speaker (cluster-scoped, named after the node)."""

    DEFINITION: ClassVar[KindDefinition] = KindDefinition(
        kind="NodeBGP",
        plural="nodebgps",
        printer_columns=(
            PrinterColumn(
                name="ASN", type="integer", json_path=".spec.asn", description="ASN of the speaker"
            ),
            PrinterColumn(
                name="ROUTERID",
                type="string",
                json_path=".spec.routerId",
                description="Router ID of the speaker",
            ),
            AGE_COLUMN,
            PrinterColumn(
                name="STATUS",
                type="string",
                json_path=".status.conditions[-1:].status",
                description="State of the speaker",
            ),
        ),
    )

    metadata: ObjectMeta
    spec: NodeBGPSpec
    status: NodeBGPStatus | None = None


# --- BGPPeer --------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class BGPPeerCondition:
    """One state change of a BGP session."""

    status: BGPPeerConditionStatus = attrs.field(metadata=schema("BGP state of the session"))
    reason: str = attrs.field(metadata=schema("Why the state changed"))


@attrs.frozen(kw_only=True)
class Condition:
    """A standard Kubernetes condition (the fields of metav1.Condition)."""

    type: str = attrs.field(metadata=schema("What the condition is about, in CamelCase"))
    status: ConditionStatus = attrs.field(metadata=schema("True, False or Unknown"))
    reason: str = attrs.field(metadata=schema("Why, in one CamelCase word"))
    message: str = attrs.field(default="", metadata=schema("Why, for humans"))
    last_transition_time: str = attrs.field(
        metadata=schema("When the status last changed (RFC 3339)")
    )
    observed_generation: int | None = attrs.field(
        default=None,
        validator=InRange(0),
        metadata=schema("The metadata.generation the condition was judged against"),
    )


@attrs.frozen(kw_only=True)
class BGPPeerStatus:
    """The state of the BGP session, written by the node's agent from the speaker's events."""

    backoff: int = attrs.field(
        default=0,
        validator=InRange(0, UINT32_MAX),
        metadata=schema(
            "How many times the session was lost once established (each loss is followed by"
            " a reconnect)",
            publish_default=True,
        ),
    )
    conditions: tuple[BGPPeerCondition, ...] | None = attrs.field(
        default=None,
        metadata=schema(
            f"History of the session's state, latest last; the agent keeps the last"
            f" {STATUS_HISTORY} changes"
        ),
    )
    standard_conditions: tuple[Condition, ...] | None = attrs.field(
        default=None,
        metadata=schema(
            "Standard Kubernetes conditions, an addition to the original sart (whose state"
            " history is conditions): Established (the session is up) and Configured (the"
            " speaker has the peer as its spec says)",
            max_items=8,
        ),
    )


@attrs.frozen(kw_only=True)
class BGPPeer:
    """A BGP session of a node's speaker (cluster-scoped)."""

    DEFINITION: ClassVar[KindDefinition] = KindDefinition(
        kind="BGPPeer",
        plural="bgppeers",
        printer_columns=(
            PrinterColumn(
                name="ASN",
                type="integer",
                json_path=".spec.asn",
                description="ASN of the remote speaker",
            ),
            PrinterColumn(
                name="ADDRESS",
                type="string",
                json_path=".spec.addr",
                description="Address of the remote speaker",
            ),
            PrinterColumn(
                name="NODEBGP",
                type="string",
                json_path=".spec.nodeBGPRef",
                description="NodeBGP (node) whose speaker has this peer",
            ),
            PrinterColumn(
                name="STATUS",
                type="string",
                json_path=".status.conditions[-1:].status",
                description="BGP state of the session",
            ),
            AGE_COLUMN,
            PrinterColumn(
                name="CLUSTERBGP",
                type="string",
                json_path=".spec.clusterBGPRef",
                description="ClusterBGP that made this peer",
                priority=1,
            ),
            PrinterColumn(
                name="BACKOFF",
                type="integer",
                json_path=".status.backoff",
                description="How many times the session was retried",
                priority=1,
            ),
        ),
    )

    metadata: ObjectMeta
    spec: BGPPeerSpec
    status: BGPPeerStatus | None = None


# --- BGPPeerTemplate ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class BGPPeerTemplateStatus:
    """Empty, as in the original sart."""


@attrs.frozen(kw_only=True)
class BGPPeerTemplate:
    """Peer settings a ClusterBGP refers to by name (cluster-scoped)."""

    DEFINITION: ClassVar[KindDefinition] = KindDefinition(
        kind="BGPPeerTemplate", plural="bgppeertemplates"
    )

    metadata: ObjectMeta
    spec: BGPPeerTemplateSpec
    status: BGPPeerTemplateStatus | None = None


# --- BGPAdvertisement -----------------------------------------------------------------------------


def _protocol_matches(spec: BGPAdvertisementSpec) -> bool:
    return bool((spec.protocol is Protocol.IPV4) == (spec.cidr.version == 4))


@attrs.frozen(kw_only=True)
class BGPAdvertisementSpec:
    """A prefix to announce: a LoadBalancer address (``type: service``) or a pod block
    (``type: pod``). Made by the controller: one per LoadBalancer address (owned by its
    Service), one per pod block (owned by the AddressBlock) and one per covering prefix of a pool
    with aggregationLength (owned by the AddressPool)."""

    RULES: ClassVar[tuple[Rule, ...]] = (
        Rule(
            rule=(
                "!isCIDR(self.cidr) || "
                "(self.protocol == 'ipv4') == (cidr(self.cidr).ip().family() == 4)"
            ),
            message="protocol must be the address family of cidr",
            field="protocol",
            check=_protocol_matches,
        ),
    )

    cidr: IPNetwork = attrs.field(metadata=schema("The prefix to announce"))
    type: AddressType = attrs.field(metadata=schema("service or pod"))
    protocol: Protocol = attrs.field(metadata=schema("ipv4 or ipv6, the family of cidr"))
    attributes: tuple[str, ...] | None = attrs.field(
        default=None,
        validator=Check(_each(ATTR_PATTERN, "a path attribute", ATTR_FORMAT)),
        metadata=schema(
            "Path attributes of the announcement: community=ASN:VALUE,"
            " large-community=GLOBAL:LOCAL1:LOCAL2, local-pref=N, med=N",
            json_name="attrs",
            max_items=64,
            max_length=64,
        ),
    )
    nodes: tuple[str, ...] | None = attrs.field(
        default=None,
        metadata=schema(
            "Nodes whose speakers announce the prefix; all peers' nodes when absent"
            " (an addition to the original sart)",
        ),
    )

    def __attrs_post_init__(self) -> None:
        check_rules(self, self.RULES)


@attrs.frozen(kw_only=True)
class BGPAdvertisementStatus:
    """Where the prefix is announced: each node's agent writes the entries of its own
    BGPPeers (a merge patch naming only those)."""

    peers: Mapping[str, AdvertiseStatus] | None = attrs.field(
        default=None, metadata=schema("State of the announcement, by BGPPeer name")
    )


@attrs.frozen(kw_only=True)
class BGPAdvertisement:
    """A prefix announced to BGP peers (namespaced: next to its Service; pod blocks' and
    aggregated prefixes' in the controller's namespace)."""

    DEFINITION: ClassVar[KindDefinition] = KindDefinition(
        kind="BGPAdvertisement",
        plural="bgpadvertisements",
        namespaced=True,
        printer_columns=(
            PrinterColumn(
                name="CIDR", type="string", json_path=".spec.cidr", description="Announced prefix"
            ),
            PrinterColumn(
                name="TYPE", type="string", json_path=".spec.type", description="service or pod"
            ),
            PrinterColumn(
                name="PROTOCOL",
                type="string",
                json_path=".spec.protocol",
                description="ipv4 or ipv6",
            ),
            AGE_COLUMN,
        ),
    )

    metadata: ObjectMeta
    spec: BGPAdvertisementSpec
    status: BGPAdvertisementStatus | None = None


KINDS: Final[tuple[type[Any], ...]] = (
    AddressPool,
    AddressBlock,
    BlockRequest,
    ClusterBGP,
    NodeBGP,
    BGPPeer,
    BGPPeerTemplate,
    BGPAdvertisement,
)
"""Every kind, in the order of the generated manifests and docs."""


def kind_class(kind: str) -> type[Any]:
    """The class of a kind name (``"AddressPool"`` -> AddressPool); KeyError if not ours."""
    for cls in KINDS:
        if cls.DEFINITION.kind == kind:
            return cls
    raise KeyError(kind)
