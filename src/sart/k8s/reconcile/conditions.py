"""Standard Kubernetes conditions (metav1.Condition) in a status: one per type."""

from __future__ import annotations

import attrs

from sart.k8s.models import Condition


def set_condition(
    conditions: tuple[Condition, ...] | None, condition: Condition
) -> tuple[Condition, ...]:
    """Put `condition` in place of the one of its type; its lastTransitionTime stays the old
    one's while the status does not change (as apimachinery's SetStatusCondition does)."""
    found = list(conditions or ())
    for index, old in enumerate(found):
        if old.type == condition.type:
            if old.status == condition.status:
                condition = attrs.evolve(condition, last_transition_time=old.last_transition_time)
            found[index] = condition
            return tuple(found)
    return (*found, condition)
