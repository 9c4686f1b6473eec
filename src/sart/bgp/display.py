"""Messages for people and scripts: a JSON-ready form and a readable text form.

The JSON form is the one `sart bgp decode --format json` prints and the one the shared test
manifest uses: attributes as {type_code, name, flags, value}, capabilities as {code, name,
...fields}, addresses and prefixes as strings, raw octets as hex under a `_hex` key.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_unstructure_fn, override
from netaddr import IPAddress, IPNetwork

from sart.bgp.as4 import effective_aggregator, effective_as_path
from sart.bgp.codes import AsPathSegmentType, AttrType, CapabilityCode, MessageType, OriginCode
from sart.bgp.messages import (
    Aggregator,
    As4Aggregator,
    As4Path,
    AsPath,
    AsPathSegment,
    AtomicAggregate,
    Capability,
    ClusterList,
    Communities,
    ExtendedCommunities,
    LargeCommunities,
    LocalPref,
    Message,
    MpReachNlri,
    MpUnreachNlri,
    MultiExitDisc,
    NextHop,
    Notification,
    Open,
    Origin,
    OriginatorId,
    PathAttribute,
    UnknownAttribute,
    UnknownCapability,
    Update,
)


def _name(kind: type[enum.IntEnum], value: int) -> str | int:
    try:
        return kind(value).name
    except ValueError:
        return value


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter()
    converter.register_unstructure_hook(IPAddress, str)
    converter.register_unstructure_hook(IPNetwork, str)
    converter.register_unstructure_hook(bytes, bytes.hex)
    for kind in (UnknownCapability, UnknownAttribute, Notification):
        converter.register_unstructure_hook(
            kind, make_dict_unstructure_fn(kind, converter, data=override(rename="data_hex"))
        )
    converter.register_unstructure_hook(
        AsPathSegment,
        lambda segment: {
            "type": _name(AsPathSegmentType, segment.type),
            "asns": list(segment.asns),
        },
    )
    return converter


_converter = _make_converter()

# How an attribute's value reads when its fields alone would not read well.
_VALUES: dict[type[Any], Any] = {
    Origin: lambda a: _name(OriginCode, a.value),
    Communities: lambda a: [str(c) for c in str(a).split()],
    LargeCommunities: lambda a: [str(c) for c in a.values],
    ExtendedCommunities: lambda a: [f"{value:016x}" for value in a.values],
}


def attribute_to_dict(attribute: PathAttribute) -> dict[str, Any]:
    """{type_code, name, flags, value}: value is the attribute's one field, or a dict of its
    fields when it has several."""
    type_code = attribute.type_code
    special = _VALUES.get(type(attribute))
    if special is not None:
        value = special(attribute)
    else:
        fields = _converter.unstructure(attribute)
        fields.pop("flags")
        if not fields.get("path_ids", True):
            del fields["path_ids"]
        value = next(iter(fields.values())) if len(fields) == 1 else (fields or None)
    return {
        "type_code": type_code,
        "name": _name(AttrType, type_code)
        if type(attribute) is not UnknownAttribute
        else "UNKNOWN",
        "flags": attribute.flags,
        "value": value,
    }


def capability_to_dict(capability: Capability) -> dict[str, Any]:
    known = type(capability) is not UnknownCapability
    fields = _converter.unstructure(capability)
    fields.pop("code", None)
    name = _name(CapabilityCode, capability.code) if known else "UNKNOWN"
    return {"code": capability.code, "name": name, **fields}


def message_to_dict(message: Message) -> dict[str, Any]:
    """A JSON-ready dict of the message, starting with its "type"."""
    out: dict[str, Any] = {"type": MessageType(message.message_type).name}
    if isinstance(message, Update):
        out["withdrawn"] = [str(prefix) for prefix in message.withdrawn]
        out["attributes"] = [attribute_to_dict(a) for a in message.attributes]
        out["nlri"] = [str(prefix) for prefix in message.nlri]
        if message.withdrawn_path_ids:
            out["withdrawn_path_ids"] = list(message.withdrawn_path_ids)
        if message.nlri_path_ids:
            out["nlri_path_ids"] = list(message.nlri_path_ids)
        family = message.end_of_rib_family
        if family is not None:
            out["end_of_rib"] = str(family)
    elif isinstance(message, Open):
        out.update(_converter.unstructure(message))
        out["capabilities"] = [capability_to_dict(c) for c in message.capabilities]
        if message.parameter_layout is None:
            del out["parameter_layout"]
        if not message.extended_parameters:
            del out["extended_parameters"]
    else:
        out.update(_converter.unstructure(message))
    if isinstance(message, Notification):
        out["description"] = message.description
    return out


def format_message(message: Message) -> str:
    """Several lines for people: the type, then one line per field worth reading."""
    kind = MessageType(message.message_type).name
    if isinstance(message, Update):
        return "\n".join([kind, *_update_lines(message)])
    if isinstance(message, Open):
        lines = [
            f"{kind} version {message.version}, AS {message.asn}, hold time {message.hold_time} s,"
            f" router id {message.bgp_id}"
        ]
        lines += [f"  {_capability_line(c)}" for c in message.capabilities]
        return "\n".join(lines)
    if isinstance(message, Notification):
        data = f", data {message.data.hex()}" if message.data else ""
        text = message.shutdown_message
        said = f', "{text}"' if text else ""
        return f"{kind} {message.code}/{message.subcode} {message.description}{data}{said}"
    return " ".join([kind, *(f"{k} {v}" for k, v in _converter.unstructure(message).items())])


def _capability_line(capability: Capability) -> str:
    entry = capability_to_dict(capability)
    fields = {k: v for k, v in entry.items() if k not in ("code", "name")}
    return f"{entry['name']} ({entry['code']})" + (f" {_text(fields)}" if fields else "")


def _text(value: Any) -> str:
    """Compact text of a JSON-ready value: key=value pairs, lists comma-separated."""
    if isinstance(value, dict):
        return " ".join(f"{k}={_text(v)}" for k, v in value.items())
    if isinstance(value, list):
        items = [f"({_text(v)})" if isinstance(v, dict) else _text(v) for v in value]
        return ", ".join(items) if items else "none"
    return '""' if value == "" else str(value)


def _update_lines(update: Update) -> list[str]:
    family = update.end_of_rib_family
    if family is not None:
        return [f"  End-of-RIB {family}"]
    lines = []
    if update.withdrawn:
        lines.append("  withdrawn " + _prefixes(update.withdrawn, update.withdrawn_path_ids))
    for attribute in update.attributes:
        lines.append(f"  {_attribute_line(attribute)}")
    if any(type(a) in (As4Path, As4Aggregator) for a in update.attributes):
        path = effective_as_path(update.attributes)
        aggregator = effective_aggregator(update.attributes)
        lines.append(f"  (RFC 6793 merge) AS path {path or '(empty)'}")
        if aggregator is not None:
            lines.append(f"  (RFC 6793 merge) aggregator AS {aggregator.asn} {aggregator.address}")
    if update.nlri:
        lines.append("  nlri " + _prefixes(update.nlri, update.nlri_path_ids))
    return lines


def _attribute_line(attribute: PathAttribute) -> str:
    entry = attribute_to_dict(attribute)
    name = (
        entry["name"] if type(attribute) is not UnknownAttribute else f"type {attribute.type_code}"
    )
    if isinstance(attribute, MpReachNlri):
        hops = " ".join(str(hop) for hop in attribute.next_hops)
        prefixes = _prefixes(attribute.nlri, attribute.path_ids)
        return f"{name} {attribute.family} next hop {hops} nlri {prefixes}"
    if isinstance(attribute, MpUnreachNlri):
        prefixes = _prefixes(attribute.withdrawn, attribute.path_ids)
        return f"{name} {attribute.family} withdrawn {prefixes}"
    if isinstance(attribute, AsPath | As4Path):
        text = str(attribute) or "(empty)"
    elif isinstance(entry["value"], list):
        text = " ".join(str(v) for v in entry["value"])
    elif isinstance(entry["value"], dict):
        text = _text(entry["value"])
    else:
        text = "" if entry["value"] is None else str(entry["value"])
    flags = (
        f" [flags 0x{attribute.flags:02x}]"
        if attribute.flags != _DEFAULT_FLAGS.get(type(attribute))
        else ""
    )
    return f"{name} {text}".rstrip() + flags


_DEFAULT_FLAGS: dict[type[Any], int] = {
    kind: attrs.fields(kind).flags.default
    for kind in (
        Origin,
        AsPath,
        NextHop,
        MultiExitDisc,
        LocalPref,
        AtomicAggregate,
        Aggregator,
        Communities,
        OriginatorId,
        ClusterList,
        MpReachNlri,
        MpUnreachNlri,
        ExtendedCommunities,
        As4Path,
        As4Aggregator,
        LargeCommunities,
    )
}


def _prefixes(prefixes: Sequence[IPNetwork], path_ids: tuple[int, ...]) -> str:
    if path_ids:
        return " ".join(f"{p} (path {i})" for p, i in zip(prefixes, path_ids, strict=True))
    return " ".join(str(p) for p in prefixes)


__all__ = [
    "attribute_to_dict",
    "capability_to_dict",
    "format_message",
    "message_to_dict",
]
