"""HTTP hardening of the portal: security headers, request size limits, and errors that never
leak a traceback (or the data a message may quote) to the browser or the log.

The Content-Security-Policy of the portal's own pages allows scripts and styles from the portal
only (``/static``), no inline code. The stored validation and analysis reports are complete
HTML documents with inline styles and one inline script: they are served with a policy that
allows exactly those blocks by their sha256 (computed from the templates, not from the stored
document, so nothing injected into a report could ever be allowed), and nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("cartreg.portal")

PORTAL_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=(), usb=()"),
    (b"strict-transport-security", b"max-age=31536000; includeSubDomains"),
)


def sha256_source(text: str) -> str:
    """A CSP hash source (``'sha256-...'``) for an inline block's exact text."""
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


_BLOCK = {tag: re.compile(rf"<{tag}>(.*?)</{tag}>", re.DOTALL) for tag in ("script", "style")}


def static_block_hashes(template_source: str, tag: str) -> list[str]:
    """CSP hashes of the ``<tag>`` blocks of a template; each must be static text."""
    hashes = []
    for block in _BLOCK[tag].findall(template_source):
        if "{{" in block or "{%" in block:
            raise ValueError(f"a <{tag}> block of a report template holds template code")
        hashes.append(sha256_source(block))
    return hashes


def document_csp(*, scripts: Iterable[str] = (), styles: Iterable[str] = ()) -> str:
    """The policy of a stored report document: its known inline blocks, data: images."""
    script_src = " ".join(scripts) or "'none'"
    style_src = " ".join(styles) or "'none'"
    return (
        f"default-src 'none'; script-src {script_src}; style-src {style_src}; img-src data:; "
        "form-action 'none'; frame-ancestors 'none'; base-uri 'none'"
    )


class SecurityHeaders:
    """Adds the security headers (and the portal's CSP, unless a route set its own)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope.get("path", "")).startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", PORTAL_CSP.encode()))
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"max-age=3600" if static else b"no-store"))
                headers.extend(h for h in _HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _TooLarge(BaseException):
    """Raised from ``receive`` past the limit. Not an ``Exception``: FastAPI turns any
    exception met while it parses a body into a 400, and this must reach :class:`BodyLimit`."""


class _Sent:
    """``send``, remembering whether the response has started (then no other can be sent)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self.send(message)


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode("utf-8")
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuses a request body larger than ``limit_for(path, cookie header)`` bytes with 413,
    while it streams in (the Content-Length is checked first, then the bytes received).

    Runs before anything parses the body: the web framework reads a form before it checks who
    is asking, so a large limit is given only to requests that carry a valid session cookie.
    """

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str, str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cookies = b"; ".join(v for k, v in scope.get("headers", []) if k == b"cookie")
        limit = self.limit_for(str(scope.get("path", "")), cookies.decode("latin-1"))
        message = f"request too large: at most {limit // 1024} KB here\n"
        if limit >= 1 << 20:
            message = f"upload too large: at most {limit >> 20} MB per upload\n"
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await _plain(send, 413, message)
                return
        received = 0
        sent = _Sent(send)

        async def counting_receive() -> Message:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return msg

        try:
            await self.app(scope, counting_receive, sent)
        except _TooLarge:
            if not sent.started:
                await _plain(send, 413, message)


class ErrorShield:
    """An exception that escaped a route becomes a plain 500 with a reference; the log gets the
    exception's type and the reference only (its text may quote data), the traceback only with
    ``CARTREG_DEBUG``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = _Sent(send)
        try:
            await self.app(scope, receive, sent)
        except Exception as exc:
            reference = secrets.token_hex(4)
            if os.environ.get("CARTREG_DEBUG"):
                log.exception("internal error (reference %s)", reference)
            else:
                log.error(
                    "internal error %s in %s %s (reference %s)",
                    type(exc).__name__,
                    scope.get("method"),
                    scope.get("path"),
                    reference,
                )
            if not sent.started:
                await _plain(
                    send,
                    500,
                    f"internal error in cartreg (reference {reference}); please tell the "
                    "coordinating centre\n",
                )


def client_address(scope: dict[str, Any]) -> str | None:
    client = scope.get("client")
    return str(client[0]) if client else None
