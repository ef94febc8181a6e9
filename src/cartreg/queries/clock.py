"""Who and when for the query history: the actor from an option, ``$CARTREG_ACTOR`` or the
login name; the time from the clock (``$CARTREG_TEST_NOW`` fixes it for tests, see
:func:`cartreg.registry.store.now_utc`)."""

from __future__ import annotations

import os
from datetime import datetime

ACTOR_ENV = "CARTREG_ACTOR"


def now() -> datetime:
    from cartreg.registry.store import now_utc

    return now_utc()


def actor(explicit: str | None = None) -> str:
    """``explicit``, else ``$CARTREG_ACTOR``, else the login name."""
    if explicit and explicit.strip():
        return explicit.strip()
    env = os.environ.get(ACTOR_ENV, "").strip()
    if env:
        return env
    from cartreg.registry.store import current_user

    return current_user()
