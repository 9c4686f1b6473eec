"""Building frozen attrs instances in the codec's hot loops.

A frozen attrs class's __init__ sets each field through the class's setattr guard: for an
UPDATE, its AS path and its segment that is four calls per field, about a microsecond and
a half per object, and a full table is a million UPDATEs. `builder` makes a constructor
that fills the slots directly, generated for the class the way attrs generates __init__.
It checks nothing: callers pass every field, already what the class holds (the codec's
own decoded values). `new_tuple` does the same for a NamedTuple.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs


def builder(cls: type) -> Callable[..., Any]:
    """A positional constructor of `cls` (a slotted attrs class), fields in their order."""
    names = [field.name for field in attrs.fields(cls)]
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls}
    lines = [f"def build({', '.join(names)}):", "    made = _new(_cls)"]
    for name in names:
        namespace[f"_set_{name}"] = getattr(cls, name).__set__
        lines.append(f"    _set_{name}(made, {name})")
    lines.append("    return made")
    exec("\n".join(lines), namespace)  # generated from the class's own field names
    built: Callable[..., Any] = namespace["build"]
    return built


new_tuple = tuple.__new__
"""new_tuple(cls, (field, ...)): a NamedTuple from its fields in one tuple, skipping the
argument handling of its generated __new__."""
