"""Who is asking: sessions from cookies, role checks, CSRF checks and sign-in rate limits.

Every route declares the roles it serves with :func:`require`; an anonymous request is sent to
the sign-in page, a signed-in user of another role gets 403. Objects that belong to a site are
looked up *with* the site of a site user, so another site's id is simply not found (404).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import HTTPException, Request

from cartreg.portal.sessions import LOGIN_COOKIE, SESSION_COOKIE, load_session
from cartreg.portal.users import User

if TYPE_CHECKING:
    from cartreg.portal.app import Portal

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Principal:
    """A signed-in user and their session."""

    user: User
    session_id: str
    csrf: str
    client: str | None

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def role(self) -> str:
        return self.user.role

    @property
    def site_id(self) -> str | None:
        return self.user.site_id


class LoginRequired(Exception):
    """No live session: the handler redirects to the sign-in page."""


def portal_of(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


def client_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def session_id_of(request: Request, portal: Portal) -> str | None:
    return portal.signer.session_id(
        request.cookies.get(SESSION_COOKIE), max_age=portal.config.login.idle_minutes * 60
    )


def current_principal(request: Request) -> Principal | None:
    """The signed-in user of this request, or None (cached on the request)."""
    if hasattr(request.state, "principal"):
        cached: Principal | None = request.state.principal
        return cached
    portal = portal_of(request)
    principal = None
    session_id = session_id_of(request, portal)
    if session_id is not None:
        with portal.read() as registry:
            session = load_session(registry, session_id)
        if session is not None:
            principal = Principal(
                user=session.user,
                session_id=session_id,
                csrf=portal.signer.csrf_token("session", session_id),
                client=client_of(request),
            )
    request.state.principal = principal
    return principal


def require(*roles: str) -> Callable[[Request], Principal]:
    """A dependency: the signed-in user, who must have one of ``roles``."""

    def dependency(request: Request) -> Principal:
        principal = current_principal(request)
        if principal is None:
            raise LoginRequired
        if principal.role not in roles:
            portal_of(request).denied(principal, f"{request.method} {request.url.path}")
            raise HTTPException(403, "your role does not give access to this page")
        return principal

    dependency.__name__ = f"require_{'_'.join(roles)}"
    return dependency


async def csrf_guard(request: Request) -> None:
    """Every state-changing request carries the CSRF token of its session (form field or
    header); cross-site requests are refused outright."""
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise HTTPException(403, "cross-site request refused")
    portal = portal_of(request)
    token = request.headers.get(CSRF_HEADER)
    if token is None:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            form = await request.form(
                max_files=portal.config.limits.files, max_fields=portal.config.limits.files + 20
            )
            value = form.get(CSRF_FIELD)
            token = value if isinstance(value, str) else None
    if request.url.path == "/login":
        nonce = portal.signer.login_nonce(request.cookies.get(LOGIN_COOKIE), max_age=3600)
        ok = nonce is not None and portal.signer.csrf_ok("login", nonce, token)
    else:
        session_id = session_id_of(request, portal)
        ok = session_id is not None and portal.signer.csrf_ok("session", session_id, token)
    if not ok:
        raise HTTPException(403, "the form has expired or did not come from this portal; reload")


class LoginLimiter:
    """Failed sign-ins per user name and per client address in a sliding window.

    In memory: the portal is one process. Bounded: the oldest keys are dropped beyond
    ``max_keys``, and old failures fall out of the window.
    """

    def __init__(
        self,
        *,
        per_user: int,
        per_client: int,
        window: float,
        max_keys: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_user = per_user
        self.per_client = per_client
        self.window = window
        self.max_keys = max_keys
        self._failures: OrderedDict[str, list[float]] = OrderedDict()
        self._lock = threading.Lock()
        self._clock = clock

    def _recent(self, key: str, now: float) -> list[float]:
        times = [t for t in self._failures.get(key, []) if now - t < self.window]
        if times:
            self._failures[key] = times
        else:
            self._failures.pop(key, None)
        return times

    def retry_after(self, user: str, client: str | None) -> float | None:
        """Seconds until a sign-in may be tried again, or None if it may be tried now."""
        now = self._clock()
        with self._lock:
            waits = []
            for key, limit in (
                (f"user:{user.lower()}", self.per_user),
                (f"client:{client}", self.per_client),
            ):
                times = self._recent(key, now)
                if len(times) >= limit:
                    waits.append(self.window - (now - times[-limit]))
            return max(waits) if waits else None

    def failed(self, user: str, client: str | None) -> None:
        now = self._clock()
        with self._lock:
            for key in (f"user:{user.lower()}", f"client:{client}"):
                self._failures.setdefault(key, []).append(now)
                self._failures.move_to_end(key)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{user.lower()}", None)
