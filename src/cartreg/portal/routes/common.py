"""Sign-in, sign-out and the start page of each role."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from cartreg.portal.app import set_session_cookie
from cartreg.portal.audit import AuditEvent
from cartreg.portal.auth import client_of, current_principal, portal_of, session_id_of
from cartreg.portal.sessions import LOGIN_COOKIE, SESSION_COOKIE, end_session, start_session
from cartreg.portal.users import MAX_PASSWORD_CHARS, authenticate, get_user
from cartreg.registry.store import Registry, transaction

router = APIRouter()

HOME = {"site": "/site", "coordinator": "/coord", "statistician": "/data"}


@router.get("/")
def home(request: Request) -> Response:
    principal = current_principal(request)
    target = "/login" if principal is None else HOME[principal.role]
    return RedirectResponse(target, status_code=303)


def _login_page(request: Request, *, status_code: int = 200, error: str = "") -> Response:
    portal = portal_of(request)
    nonce = portal.signer.login_nonce(request.cookies.get(LOGIN_COOKIE), max_age=3600)
    if nonce is None:
        nonce = secrets.token_urlsafe(24)
    response = portal.page(
        request,
        None,
        "login.html",
        status_code=status_code,
        login_csrf=portal.signer.csrf_token("login", nonce),
        error=error,
    )
    response.set_cookie(
        LOGIN_COOKIE,
        portal.signer.sign_login(nonce),
        max_age=3600,
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )
    return response


@router.get("/login")
def login_form(request: Request) -> Response:
    if current_principal(request) is not None:
        return RedirectResponse("/", status_code=303)
    return _login_page(request)


@router.post("/login")
def login(
    request: Request,
    user: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=MAX_PASSWORD_CHARS)],
) -> Response:
    portal = portal_of(request)
    client = client_of(request)
    wait = portal.limiter.retry_after(user, client)
    if wait is not None:
        portal.writer.record(
            AuditEvent(actor="(sign-in)", action="login.blocked", outcome="denied", client=client)
        )
        raise HTTPException(
            429,
            f"too many failed sign-ins; try again in {int(wait // 60) + 1} minute(s)",
            headers={"Retry-After": str(int(wait) + 1)},
        )
    with portal.read() as registry:
        account = authenticate(registry, user, password)
        known = account is not None or get_user(registry, user) is not None
    if account is None:
        portal.limiter.failed(user, client)
        # An unknown name is not recorded: people type their password into the name field.
        portal.writer.record(
            AuditEvent(
                actor=user if known else "(unknown user)",
                action="login.failed",
                outcome="denied",
                client=client,
            )
        )
        return _login_page(request, status_code=401, error="wrong user name or password")
    portal.limiter.succeeded(user)
    previous = session_id_of(request, portal)
    event = AuditEvent(
        actor=account.name,
        role=account.role,
        site_id=account.site_id,
        action="login",
        client=client,
    )

    def sign_in(registry: Registry) -> str:
        with transaction(registry):
            if previous is not None:
                end_session(registry, previous)  # never carry a session across a sign-in
            return start_session(
                registry, account, hours=portal.config.login.session_hours
            ).session_id

    session_id = portal.writer.call(sign_in, audit=[event])
    response = RedirectResponse("/", status_code=303)
    set_session_cookie(response, portal.signer.sign_session(session_id), portal.config)
    response.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


@router.post("/logout")
def logout(request: Request) -> Response:
    portal = portal_of(request)
    principal = current_principal(request)
    if principal is not None:
        session_id = principal.session_id
        portal.writer.call(
            lambda registry: _end(registry, session_id),
            audit=[portal.event(principal, "logout")],
        )
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return response


def _end(registry: Registry, session_id: str) -> None:
    with transaction(registry):
        end_session(registry, session_id)
