"""The codec's constructors of frozen attrs classes make what the classes' own do."""

from __future__ import annotations

import attrs
import pytest
from netaddr import IPNetwork

from sart.bgp.frozen import builder
from sart.bgp.fsm import Deliver
from sart.bgp.messages import AsPath, AsPathSegment, Origin, Update


def test_built_instances_equal_constructed_ones_and_stay_frozen() -> None:
    segment = builder(AsPathSegment)(2, (65001, 65002))
    assert segment == AsPathSegment(2, (65001, 65002))
    path = builder(AsPath)((segment,), 0x40)
    assert path == AsPath.from_asns(65001, 65002) and hash(path) == hash(AsPath((segment,)))
    nlri = (IPNetwork("10.0.0.0/24"),)
    update = builder(Update)((), (Origin(0), path), nlri, (), ())
    assert update == Update(attributes=(Origin(0), path), nlri=nlri)
    assert builder(Deliver)(update) == Deliver(update)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        update.nlri = ()  # type: ignore[misc]
