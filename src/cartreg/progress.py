"""Progress of long library calls, reported to a callback (the library never prints).

A stage reports a :class:`Step` each time one more of its units is done (a table checked, a
batch of rules collected); the CLI draws bars from them on a terminal and ignores them in pipes.
Callbacks may come from worker threads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """``done`` of ``total`` units of ``stage`` are finished; ``item`` is the last one."""

    stage: str
    done: int
    total: int
    item: str = ""


OnStep = Callable[[Step], None]
