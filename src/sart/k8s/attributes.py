"""BGP path attributes of the prefixes the cluster announces, as Kubernetes spells them.

Three places say them: an AddressPool's ``spec.bgpAttributes`` (``communities``,
``largeCommunities``, ``localPref``, ``med``), a Service's annotations (``ANNOTATIONS``), and a
BGPAdvertisement's ``spec.attrs``, the original sart's reserved list of strings, which carries
them to the node agents as ``community=65000:100``, ``large-community=65000:1:2``,
``local-pref=200`` and ``med=10``. `Attributes` is the value all three become; pure, no I/O.

Communities are RFC 1997 ``ASN:VALUE`` (each 0-65535) or a well-known name (``no-export``,
any case, ``-`` or ``_``), written back as the speaker shows them (``NO_EXPORT``); large
communities are RFC 8092 ``GLOBAL:LOCAL1:LOCAL2`` (each 0-4294967295). The patterns below are
the CRD schema's CEL rules too, so the apiserver and this module refuse the same strings.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

import attrs

from sart.bgp.codes import WellKnownCommunity
from sart.bgp.messages import LargeCommunity, format_community, parse_community

UINT32_MAX: Final = 2**32 - 1


def decimal_at_most(limit: int) -> str:
    """A regular expression (RE2 and Python alike) for the decimals 0..limit, no leading
    zeros."""
    digits = str(limit)
    width = len(digits)
    options = ["0"] if width > 1 else []
    if width > 2:
        options.append(f"[1-9][0-9]{{0,{width - 2}}}")
    elif width == 2:
        options.append("[1-9]")
    for index, digit in enumerate(digits):
        low = 1 if index == 0 and width > 1 else 0
        if int(digit) > low:
            tail = f"[0-9]{{{width - index - 1}}}" if index < width - 1 else ""
            options.append(f"{digits[:index]}[{low}-{int(digit) - 1}]{tail}")
    options.append(digits)
    return "(?:" + "|".join(options) + ")"


_U16: Final = decimal_at_most(0xFFFF)
_U32: Final = decimal_at_most(UINT32_MAX)
_NAMES: Final = "|".join(m.name.replace("_", "[-_]") for m in WellKnownCommunity)
COMMUNITY_PATTERN: Final = f"^(?:{_U16}:{_U16}|(?i:{_NAMES}))$"
LARGE_COMMUNITY_PATTERN: Final = f"^{_U32}:{_U32}:{_U32}$"
ATTR_PATTERN: Final = (
    f"^(?:community=(?:{_U16}:{_U16}|(?i:{_NAMES}))|large-community={_U32}:{_U32}:{_U32}"
    f"|local-pref={_U32}|med={_U32})$"
)
COMMUNITY_FORMAT: Final = "ASN:VALUE (each 0-65535) or a well-known name such as no-export"
LARGE_COMMUNITY_FORMAT: Final = "GLOBAL:LOCAL1:LOCAL2 (each 0-4294967295)"
ATTR_FORMAT: Final = (
    "community=ASN:VALUE (or a well-known name), large-community=GLOBAL:LOCAL1:LOCAL2,"
    " local-pref=N or med=N (N 0-4294967295)"
)

COMMUNITIES_ANNOTATION: Final = "sart.terassyi.net/bgp-communities"
"""On a Service: communities for its addresses, comma-separated (``65000:100,no-export``)."""
LARGE_COMMUNITIES_ANNOTATION: Final = "sart.terassyi.net/bgp-large-communities"
"""On a Service: large communities for its addresses, comma-separated (``65000:1:2``)."""
LOCAL_PREF_ANNOTATION: Final = "sart.terassyi.net/bgp-local-pref"
"""On a Service: LOCAL_PREF for its addresses (sent to iBGP peers only, RFC 4271 5.1.5)."""
MED_ANNOTATION: Final = "sart.terassyi.net/bgp-med"
"""On a Service: MULTI_EXIT_DISC for its addresses."""
ANNOTATIONS: Final = (
    COMMUNITIES_ANNOTATION,
    LARGE_COMMUNITIES_ANNOTATION,
    LOCAL_PREF_ANNOTATION,
    MED_ANNOTATION,
)


def is_community(text: str) -> bool:
    return re.fullmatch(COMMUNITY_PATTERN, text) is not None


def is_large_community(text: str) -> bool:
    return re.fullmatch(LARGE_COMMUNITY_PATTERN, text) is not None


def is_attr(text: str) -> bool:
    return re.fullmatch(ATTR_PATTERN, text) is not None


def community(text: str) -> str:
    """The canonical spelling of a community (as the speaker shows it); ValueError if it is
    not one."""
    if not is_community(text):
        raise ValueError(f"{text!r} is not a community: want {COMMUNITY_FORMAT}")
    return format_community(parse_community(text))


def large_community(text: str) -> str:
    if not is_large_community(text):
        raise ValueError(f"{text!r} is not a large community: want {LARGE_COMMUNITY_FORMAT}")
    return str(LargeCommunity.from_str(text))


def _community_key(text: str) -> int:
    return parse_community(text)


def _large_key(text: str) -> tuple[int, int, int]:
    value = LargeCommunity.from_str(text)
    return (value.global_admin, value.local_data_1, value.local_data_2)


def _communities(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({community(v) for v in values}, key=_community_key))


def _large_communities(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({large_community(v) for v in values}, key=_large_key))


@attrs.frozen(kw_only=True)
class Attributes:
    """Path attributes for announced prefixes, canonical: communities in the speaker's
    spelling and order (by value), no duplicates, so two equal sets compare equal."""

    communities: tuple[str, ...] = ()
    large_communities: tuple[str, ...] = ()
    local_pref: int | None = None
    med: int | None = None

    @classmethod
    def of(
        cls,
        *,
        communities: Iterable[str] = (),
        large_communities: Iterable[str] = (),
        local_pref: int | None = None,
        med: int | None = None,
    ) -> Attributes:
        """Canonical attributes from what a user wrote; ValueError naming a bad value."""
        for name, number in (("local-pref", local_pref), ("med", med)):
            if number is not None and not 0 <= number <= UINT32_MAX:
                raise ValueError(f"{name} {number} is not 0-{UINT32_MAX}")
        return cls(
            communities=_communities(communities),
            large_communities=_large_communities(large_communities),
            local_pref=local_pref,
            med=med,
        )

    def __bool__(self) -> bool:
        return bool(self.communities or self.large_communities or self.local_pref is not None) or (
            self.med is not None
        )

    def over(self, base: Attributes) -> Attributes:
        """These attributes (a Service's) merged over `base` (its pool's): communities and
        large communities are the union of both, LOCAL_PREF and MED this one's where set."""
        return Attributes(
            communities=_communities(base.communities + self.communities),
            large_communities=_large_communities(base.large_communities + self.large_communities),
            local_pref=self.local_pref if self.local_pref is not None else base.local_pref,
            med=self.med if self.med is not None else base.med,
        )

    def to_attrs(self) -> tuple[str, ...]:
        """The BGPAdvertisement ``spec.attrs`` strings."""
        found = [f"community={c}" for c in self.communities]
        found += [f"large-community={c}" for c in self.large_communities]
        if self.local_pref is not None:
            found.append(f"local-pref={self.local_pref}")
        if self.med is not None:
            found.append(f"med={self.med}")
        return tuple(found)

    @classmethod
    def from_attrs(cls, strings: Iterable[str]) -> Attributes:
        """The inverse of to_attrs; ValueError naming the first string that is not one."""
        communities, large = [], []
        numbers: dict[str, int] = {}
        for text in strings:
            if not is_attr(text):
                raise ValueError(f"{text!r} is not a path attribute: want {ATTR_FORMAT}")
            key, _, value = text.partition("=")
            if key == "community":
                communities.append(value)
            elif key == "large-community":
                large.append(value)
            else:
                numbers[key] = int(value)
        return cls.of(
            communities=communities,
            large_communities=large,
            local_pref=numbers.get("local-pref"),
            med=numbers.get("med"),
        )


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def _number(annotation: str, value: str) -> int:
    text = value.strip()
    if not (text.isascii() and text.isdigit()) or int(text) > UINT32_MAX:
        raise ValueError(f"{annotation}: {value!r} is not a number 0-{UINT32_MAX}")
    return int(text)


def from_annotations(annotations: Mapping[str, str]) -> tuple[Attributes, list[str]]:
    """A Service's attributes from its annotations, and the problems: each annotation that
    does not parse is left out whole and named with its value."""
    problems: list[str] = []
    communities: tuple[str, ...] = ()
    large: tuple[str, ...] = ()
    local_pref = med = None
    if COMMUNITIES_ANNOTATION in annotations:
        value = annotations[COMMUNITIES_ANNOTATION]
        try:
            communities = _communities(_split(value))
        except ValueError as error:
            problems.append(f"{COMMUNITIES_ANNOTATION}: {error}")
    if LARGE_COMMUNITIES_ANNOTATION in annotations:
        value = annotations[LARGE_COMMUNITIES_ANNOTATION]
        try:
            large = _large_communities(_split(value))
        except ValueError as error:
            problems.append(f"{LARGE_COMMUNITIES_ANNOTATION}: {error}")
    if LOCAL_PREF_ANNOTATION in annotations:
        try:
            local_pref = _number(LOCAL_PREF_ANNOTATION, annotations[LOCAL_PREF_ANNOTATION])
        except ValueError as error:
            problems.append(str(error))
    if MED_ANNOTATION in annotations:
        try:
            med = _number(MED_ANNOTATION, annotations[MED_ANNOTATION])
        except ValueError as error:
            problems.append(str(error))
    found = Attributes(
        communities=communities, large_communities=large, local_pref=local_pref, med=med
    )
    return found, problems
