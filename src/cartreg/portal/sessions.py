"""Sessions and CSRF tokens (no web framework imports: the app and the tests share this).

A session id is 32 random bytes, made by the server at sign-in (never taken from a request, so
a session cannot be fixed in advance). The browser holds it in a cookie signed with the server's
key (itsdangerous; the signature's timestamp ends an idle session); the registry holds only its
sha256 with the user, the absolute expiry and when it ended (sign-out, disabled user).

CSRF tokens are HMACs of the session id (or, before sign-in, of a random nonce in its own signed
cookie): a page can only post what the server rendered for that same session.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cartreg.portal.users import User, user_from_row
from cartreg.registry.store import now_utc

if TYPE_CHECKING:
    from cartreg.registry.store import Registry

SESSION_COOKIE = "__Host-cartreg-session"
LOGIN_COOKIE = "__Host-cartreg-login"
_KEY_NAME = "session_signing_key"


def ensure_signing_key(registry: Registry) -> bytes:
    """The server's session-signing key, created on first use (caller holds the writer lock)."""
    row = registry.first_row("SELECT value FROM portal_secrets WHERE name = ?", [_KEY_NAME])
    if row is not None:
        return bytes.fromhex(str(row[0]))
    key = secrets.token_bytes(32)
    registry.conn.execute(
        "INSERT INTO portal_secrets VALUES (?, ?, ?)", [_KEY_NAME, key.hex(), now_utc()]
    )
    return key


def session_hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("ascii")).hexdigest()


class Signer:
    """Signs cookie values and derives CSRF tokens from the server's key."""

    def __init__(self, key: bytes) -> None:
        from itsdangerous import URLSafeTimedSerializer

        self._key = key
        self._sessions = URLSafeTimedSerializer(key, salt="cartreg.portal.session")
        self._logins = URLSafeTimedSerializer(key, salt="cartreg.portal.login")

    def sign_session(self, session_id: str) -> str:
        return self._sessions.dumps(session_id)

    def session_id(self, cookie: str | None, *, max_age: float) -> str | None:
        """The session id in a cookie signed by us within ``max_age`` seconds, else None."""
        from itsdangerous import BadSignature

        if not cookie:
            return None
        try:
            value = self._sessions.loads(cookie, max_age=int(max_age))
        except BadSignature:  # includes an expired signature
            return None
        return value if isinstance(value, str) else None

    def sign_login(self, nonce: str) -> str:
        return self._logins.dumps(nonce)

    def login_nonce(self, cookie: str | None, *, max_age: float) -> str | None:
        from itsdangerous import BadSignature

        if not cookie:
            return None
        try:
            value = self._logins.loads(cookie, max_age=int(max_age))
        except BadSignature:
            return None
        return value if isinstance(value, str) else None

    def csrf_token(self, purpose: str, value: str) -> str:
        return hmac.new(self._key, f"csrf\x1f{purpose}\x1f{value}".encode(), "sha256").hexdigest()

    def csrf_ok(self, purpose: str, value: str, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(purpose, value), str(token))


@dataclass(frozen=True)
class Session:
    session_id: str
    user: User
    expires_at: datetime


def start_session(registry: Registry, user: User, *, hours: float) -> Session:
    """A new session for ``user`` (caller holds the writer lock)."""
    session_id = secrets.token_urlsafe(32)
    when = now_utc()
    expires = when + timedelta(hours=hours)
    registry.conn.execute(
        "INSERT INTO portal_sessions VALUES (?, ?, ?, ?, NULL)",
        [session_hash(session_id), user.name, when, expires],
    )
    return Session(session_id, user, expires)


def load_session(registry: Registry, session_id: str) -> Session | None:
    """The live session with this id: not ended, not expired, its user active."""
    row = registry.first_row(
        "SELECT u.user_name, u.role, u.site_id, u.created_at, u.created_by, u.disabled_at, "
        "s.expires_at FROM portal_sessions s JOIN portal_users u USING (user_name) "
        "WHERE s.session_hash = ? AND s.ended_at IS NULL AND s.expires_at > ? "
        "AND u.disabled_at IS NULL",
        [session_hash(session_id), now_utc()],
    )
    if row is None:
        return None
    expires = row[6]
    assert isinstance(expires, datetime)
    return Session(session_id, user_from_row(tuple(row[:6])), expires)


def end_session(registry: Registry, session_id: str) -> None:
    registry.conn.execute(
        "UPDATE portal_sessions SET ended_at = ? WHERE session_hash = ? AND ended_at IS NULL",
        [now_utc(), session_hash(session_id)],
    )
