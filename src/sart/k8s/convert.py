"""Kubernetes objects (dicts, as the apiserver returns them or YAML holds them) <-> sart.k8s.models.

One cattrs converter does it all (``make_converter``): JSON names from the models (camelCase,
or a field's ``json_name``), extra keys refused everywhere except in ``metadata`` (the apiserver
prunes unknown fields, so only a hand-written object can have them, and then it is a typo),
``null`` read as "absent" for optional fields, None left out when writing, strict scalars (no
``"24"`` for 24, no ``"abc"`` for a list), CIDRs and addresses through netaddr.

``structure(AddressPool, obj)`` raises InvalidObject, whose ``messages`` name the field path of
every problem, e.g. ``spec.blockSize: must be between 0 and 128, got 200``.
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, get_origin

import attrs
import cattrs
from cattrs.cols import (
    homogenous_tuple_structure_factory,
    is_mapping,
    mapping_structure_factory,
)
from cattrs.errors import (
    BaseValidationError,
    ClassValidationError,
    ForbiddenExtraKeysError,
    IterableValidationError,
)
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from netaddr import AddrFormatError, IPAddress, IPNetwork

from sart.errors import ConfigError
from sart.k8s.models import API_VERSION, InvalidField, ObjectMeta, json_name, kind_class

__all__ = [
    "InvalidObject",
    "default_converter",
    "error_messages",
    "make_converter",
    "parse_address",
    "parse_cidr",
    "structure",
    "structure_object",
    "unstructure",
]

T = TypeVar("T")

_TOLERANT = (ObjectMeta,)
"""Classes whose unknown keys are ignored: metadata has many fields sart does not model."""


class InvalidObject(ConfigError):
    """An object does not fit its model; ``messages`` say where and why, one per problem."""

    def __init__(self, what: str, messages: Sequence[str]) -> None:
        super().__init__(f"{what}: {'; '.join(messages)}")
        self.what = what
        self.messages = tuple(messages)


# --- scalars --------------------------------------------------------------------------------------


def _describe(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"{type(value).__name__} {value!r}"


_PREFIX_LENGTH = re.compile(r"0|[1-9][0-9]{0,2}")


def parse_cidr(value: object) -> IPNetwork:
    """A CIDR written as ``address/prefix-length`` with no host bits (``10.0.1.0/24``)."""
    if not isinstance(value, str):
        raise TypeError(f"expected a CIDR string, got {_describe(value)}")
    address, slash, length = value.partition("/")
    if not slash:
        raise ValueError(f"{value!r} is not a CIDR: the /prefix-length is missing")
    if not _PREFIX_LENGTH.fullmatch(length):
        raise ValueError(f"{value!r} is not a CIDR: bad prefix length {length!r}")
    try:
        network = IPNetwork(f"{IPAddress(address)}/{length}")
    except (AddrFormatError, ValueError) as error:
        raise ValueError(f"{value!r} is not a CIDR") from error
    if network.ip.is_ipv4_mapped():
        raise ValueError(f"{value!r} is an IPv4-mapped IPv6 CIDR; write it as IPv4")
    if network.ip != network.network:
        raise ValueError(f"{value!r} has host bits set; did you mean {network.cidr}?")
    return network


def parse_address(value: object) -> IPAddress:
    """An IPv4 or IPv6 address in its usual text form."""
    if not isinstance(value, str):
        raise TypeError(f"expected an IP address string, got {_describe(value)}")
    try:
        address = IPAddress(value)
    except (AddrFormatError, ValueError) as error:
        raise ValueError(f"{value!r} is not an IP address") from error
    if address.is_ipv4_mapped():
        raise ValueError(f"{value!r} is an IPv4-mapped IPv6 address; write it as IPv4")
    return address


def _structure_str(value: object, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {_describe(value)}")
    return value


def _structure_int(value: object, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {_describe(value)}")
    return value


def _structure_bool(value: object, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {_describe(value)}")
    return value


def _structure_enum(value: object, cls: type[enum.Enum]) -> enum.Enum:
    try:
        return cls(value)
    except ValueError:
        choices = ", ".join(str(member.value) for member in cls)
        raise ValueError(f"must be one of {choices}; got {_describe(value)}") from None


# --- containers -----------------------------------------------------------------------------------


def _is_tuple(cls: Any) -> bool:
    return get_origin(cls) is tuple


def _strict_tuple(cls: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    inner = homogenous_tuple_structure_factory(cls, converter)

    def structure_list(value: object, type_: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {_describe(value)}")
        return inner(value, type_)

    return structure_list


def _strict_mapping(cls: Any, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    inner = mapping_structure_factory(cls, converter)

    def structure_mapping(value: object, type_: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected an object, got {_describe(value)}")
        return inner(value, type_)

    return structure_mapping


# --- attrs classes --------------------------------------------------------------------------------


def _is_resource(cls: type) -> bool:
    return hasattr(cls, "DEFINITION")


def _omit_when_default(field: attrs.Attribute[Any]) -> bool:
    """Leave a field out when writing if it holds its default and that default is "nothing"
    (None, an empty list or map); a real default such as ``autoAssign: false`` is written."""
    default = field.default
    if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
        return True
    return default is None or default == ()


def _structure_attrs(cls: type, converter: cattrs.Converter) -> Callable[[Any, Any], Any]:
    fields = attrs.fields(cls)
    renames: dict[str, Any] = {f.name: override(rename=json_name(f)) for f in fields}
    base: Callable[[Mapping[str, Any], Any], Any] = make_dict_structure_fn(
        cls, converter, _cattrs_forbid_extra_keys=cls not in _TOLERANT, **renames
    )
    optional = {json_name(f) for f in fields if f.default is not attrs.NOTHING}
    definition = getattr(cls, "DEFINITION", None)

    def structure_object(value: object, _: Any) -> Any:
        if not isinstance(value, Mapping):
            raise TypeError(f"expected an object, got {_describe(value)}")
        items = {k: v for k, v in value.items() if not (v is None and k in optional)}
        if definition is not None:
            api_version = items.pop("apiVersion", API_VERSION)
            kind = items.pop("kind", definition.kind)
            if api_version != API_VERSION or kind != definition.kind:
                raise ValueError(
                    f"expected apiVersion {API_VERSION} kind {definition.kind},"
                    f" got apiVersion {api_version} kind {kind}"
                )
        return base(items, cls)

    return structure_object


def _unstructure_attrs(cls: type, converter: cattrs.Converter) -> Callable[[Any], Any]:
    overrides: dict[str, Any] = {
        f.name: override(rename=json_name(f), omit_if_default=_omit_when_default(f))
        for f in attrs.fields(cls)
    }
    base: Callable[[Any], dict[str, Any]] = make_dict_unstructure_fn(cls, converter, **overrides)
    if not _is_resource(cls):
        return base
    header = {"apiVersion": API_VERSION, "kind": cls.DEFINITION.kind}  # type: ignore[attr-defined]

    def unstructure_resource(value: Any) -> dict[str, Any]:
        return {**header, **base(value)}

    return unstructure_resource


def make_converter() -> cattrs.Converter:
    """The converter between sart's models and Kubernetes JSON (see the module docstring)."""
    converter = cattrs.Converter(detailed_validation=True)
    converter.register_structure_hook(str, _structure_str)
    converter.register_structure_hook(int, _structure_int)
    converter.register_structure_hook(bool, _structure_bool)
    converter.register_structure_hook(IPNetwork, lambda value, _: parse_cidr(value))
    converter.register_structure_hook(IPAddress, lambda value, _: parse_address(value))
    converter.register_unstructure_hook(IPNetwork, str)
    converter.register_unstructure_hook(IPAddress, str)
    converter.register_structure_hook_func(
        lambda cls: isinstance(cls, type) and issubclass(cls, enum.Enum), _structure_enum
    )
    converter.register_structure_hook_factory(_is_tuple, _strict_tuple)
    converter.register_structure_hook_factory(is_mapping, _strict_mapping)
    converter.register_structure_hook_factory(attrs.has, _structure_attrs)
    converter.register_unstructure_hook_factory(attrs.has, _unstructure_attrs)
    return converter


@functools.cache
def default_converter() -> cattrs.Converter:
    """One shared converter (hooks are built on first use of each class)."""
    return make_converter()


# --- the public functions -------------------------------------------------------------------------


def _object_name(value: object) -> str:
    if isinstance(value, Mapping):
        metadata = value.get("metadata")
        if isinstance(metadata, Mapping) and isinstance(metadata.get("name"), str):
            return f" {metadata['name']}"
    return ""


def structure(cls: type[T], value: object, *, converter: cattrs.Converter | None = None) -> T:
    """``value`` (a dict from the apiserver or a YAML document) as an instance of ``cls`` (a
    kind such as AddressPool, or any model class such as AddressPoolSpec). Raises InvalidObject
    naming the path of each problem."""
    try:
        return (converter or default_converter()).structure(value, cls)
    except (BaseValidationError, InvalidField, ValueError, TypeError) as error:
        what = getattr(getattr(cls, "DEFINITION", None), "kind", cls.__name__)
        raise InvalidObject(f"invalid {what}{_object_name(value)}", error_messages(error)) from None


def structure_object(value: object, *, converter: cattrs.Converter | None = None) -> Any:
    """Any sart object, its class chosen by ``kind`` (for multi-document YAML)."""
    kind = value.get("kind") if isinstance(value, Mapping) else None
    api_version = value.get("apiVersion") if isinstance(value, Mapping) else None
    if api_version != API_VERSION or not isinstance(kind, str):
        raise InvalidObject(
            "not a sart object", [f"apiVersion: expected {API_VERSION}, got {api_version!r}"]
        )
    try:
        cls = kind_class(kind)
    except KeyError:
        raise InvalidObject("not a sart object", [f"kind: unknown kind {kind!r}"]) from None
    return structure(cls, value, converter=converter)


def unstructure(value: Any, *, converter: cattrs.Converter | None = None) -> Any:
    """A model value as plain JSON data (a kind gets ``apiVersion`` and ``kind``)."""
    return (converter or default_converter()).unstructure(value)


# --- error messages -------------------------------------------------------------------------------


def _child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _field_name(cls: type, python_name: str) -> str:
    for field in attrs.fields(cls):
        if field.name == python_name:
            return json_name(field)
    return python_name


def _leaf(error: BaseException) -> str:
    if isinstance(error, KeyError):
        return "required field missing"
    if isinstance(error, ForbiddenExtraKeysError):
        return f"unknown field(s): {', '.join(sorted(error.extra_fields))}"
    if isinstance(error, InvalidField):
        return error.message
    if isinstance(error, ValueError | TypeError) and error.args:
        return str(error)
    return cattrs.v.format_exception(error, None)


def _at(path: str, message: str) -> str:
    return f"{path or '(object)'}: {message}"


def error_messages(error: BaseException, path: str = "") -> list[str]:
    """One ``path: problem`` line per problem in a structuring error, with JSON field names
    (``spec.peers[0].asn``). The same walk as ``cattrs.transform_error``, but naming fields as
    the object spells them and reporting attrs validators at their field."""
    messages: list[str] = []
    if isinstance(error, ClassValidationError):
        with_notes, without = error.group_exceptions()
        for sub, note in with_notes:
            messages.extend(_walk(sub, _child(path, _field_name(error.cl, note.name))))
        for sub in without:
            if isinstance(sub, InvalidField) and sub.field is not None:
                messages.append(_at(_child(path, _field_name(error.cl, sub.field)), sub.message))
            else:
                messages.extend(_walk(sub, path))
    elif isinstance(error, IterableValidationError):
        items, rest = error.group_exceptions()
        for sub, index_note in items:
            messages.extend(_walk(sub, f"{path}[{index_note.index}]"))
        for sub in rest:
            messages.extend(_walk(sub, path))
    elif isinstance(error, InvalidField) and error.field is not None:
        messages.append(_at(_child(path, error.field), error.message))
    else:
        messages.append(_at(path, _leaf(error)))
    return messages


def _walk(error: BaseException, path: str) -> list[str]:
    if isinstance(error, BaseValidationError):
        return error_messages(error, path)
    return [_at(path, _leaf(error))]
