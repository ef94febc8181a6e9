"""The portal application: ``create_app(config)`` returns the FastAPI app ``cartreg serve`` runs.

One process: the registry writer and the background worker are threads of this process, so the
app must be served by a single uvicorn worker (``cartreg serve`` does).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractContextManager, asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import jinja2
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException

from cartreg.errors import CartregError
from cartreg.portal.audit import AuditEvent
from cartreg.portal.auth import LoginLimiter, LoginRequired, Principal, csrf_guard
from cartreg.portal.config import PortalConfig
from cartreg.portal.jobs import Readers, Worker, Writer
from cartreg.portal.processing import Actor, abandon_interrupted
from cartreg.portal.security import BodyLimit, ErrorShield, SecurityHeaders
from cartreg.portal.sessions import SESSION_COOKIE, Signer, ensure_signing_key
from cartreg.registry.store import Registry, RegistryLockedError, open_registry, transaction

if TYPE_CHECKING:
    from cartreg.cdm import CDM

log = logging.getLogger("cartreg.portal")
T = TypeVar("T")

UPLOAD_PATH = "/site/uploads"
WORKBOOK_PATH = "/site/queries/workbook"


class Portal:
    """Everything a request needs: configuration, the writer, the worker, templates."""

    def __init__(self, config: PortalConfig, *, cdm: CDM) -> None:
        self.config = config
        self.cdm = cdm
        self.readers = Readers(config.registry, lock_timeout=config.lock_timeout)
        self.writer = Writer(
            config.registry,
            self.readers,
            lock_timeout=config.lock_timeout,
            flush_seconds=config.audit_flush_seconds,
        )
        self.worker = Worker()
        self.limiter = LoginLimiter(
            per_user=config.login.failures_per_user,
            per_client=config.login.failures_per_client,
            window=config.login.window_seconds,
        )
        self.templates = Jinja2Templates(
            env=jinja2.Environment(
                loader=jinja2.PackageLoader("cartreg.portal", "templates"),
                autoescape=True,
                undefined=jinja2.StrictUndefined,
            )
        )
        self._signer: Signer | None = None

    @property
    def signer(self) -> Signer:
        if self._signer is None:
            raise RuntimeError("the portal has not started")
        return self._signer

    def start(self) -> None:
        """Upgrade the store, load the signing key, tidy what a stopped server left; start."""
        self.config.data_dir.mkdir(parents=True, exist_ok=True)
        with open_registry(self.config.registry, write=True) as registry:
            with transaction(registry):
                key = ensure_signing_key(registry)
            abandon_interrupted(registry, self.config)
        self._signer = Signer(key)
        self.writer.start()
        self.worker.start()

    def stop(self) -> None:
        self.worker.stop()
        self.writer.stop()
        self.readers.close()

    def read(self) -> AbstractContextManager[Registry]:
        """The registry for reading (waits for a write in progress, up to the lock timeout)."""
        return self.readers.read()

    @staticmethod
    def actor(who: Principal) -> Actor:
        return Actor(who.name, who.role, who.site_id, who.client)

    def event(self, who: Principal, action: str, **fields: Any) -> AuditEvent:
        return self.actor(who).event(action, **fields)

    def write(self, fn: Callable[[Registry], T], *, audit: Sequence[AuditEvent] = ()) -> T:
        """Run a write on the writer; what the library refuses is a 409 with its message."""
        try:
            return self.writer.call(fn, audit=audit)
        except RegistryLockedError:
            raise  # "busy" (503), not a refusal
        except CartregError as exc:
            raise HTTPException(409, exc.message) from None

    def record(self, who: Principal, action: str, **fields: Any) -> None:
        """Audit a view or download (written by the writer within a second)."""
        self.writer.record(self.event(who, action, **fields))

    def denied(self, who: Principal, what: str) -> None:
        self.writer.record(self.event(who, "access.denied", object=what, outcome="denied"))

    def page(
        self,
        request: Request,
        who: Principal | None,
        template: str,
        *,
        status_code: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        response = self.templates.TemplateResponse(
            request,
            template,
            {"me": who, "csrf": who.csrf if who else "", **context},
            status_code=status_code,
        )
        if who is not None:  # sliding idle timeout: a fresh signature on every page
            set_session_cookie(response, self.signer.sign_session(who.session_id), self.config)
        return response


def set_session_cookie(response: Response, value: str, config: PortalConfig) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(config.login.session_hours * 3600),
        path="/",
        secure=True,
        httponly=True,
        samesite="strict",
    )


def _limit_for(portal: Portal) -> Callable[[str, str], int]:
    """The body limit of a path: uploads are large only for a signed-in session."""
    from http.cookies import CookieError, SimpleCookie

    limits = portal.config.limits
    large = {UPLOAD_PATH: limits.upload_bytes, WORKBOOK_PATH: limits.workbook_bytes}

    def limit(path: str, cookie_header: str) -> int:
        if path not in large:
            return limits.form_bytes
        try:
            jar = SimpleCookie(cookie_header)
        except CookieError:
            return limits.form_bytes
        morsel = jar.get(SESSION_COOKIE)
        signed = morsel is not None and portal.signer.session_id(
            morsel.value, max_age=portal.config.login.idle_minutes * 60
        )
        return large[path] if signed else limits.form_bytes

    return limit


def create_app(config: PortalConfig, *, cdm: CDM | None = None) -> FastAPI:
    """The portal app over ``config.registry``; the writer and worker run while it is served."""
    from cartreg.cdm import load_cdm
    from cartreg.portal.routes import common, coordinator, queries, shared, site, statistician

    portal = Portal(config, cdm=cdm or load_cdm())

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        portal.start()
        try:
            yield
        finally:
            portal.stop()

    app = FastAPI(
        title="cartreg portal",
        lifespan=lifespan,
        dependencies=[Depends(csrf_guard)],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.portal = portal
    for module in (common, site, shared, queries, coordinator, statistician):
        app.include_router(module.router)
    app.mount(
        "/static",
        StaticFiles(directory=Path(__file__).with_name("static"), follow_symlink=False),
        name="static",
    )

    @app.exception_handler(LoginRequired)
    async def to_login(_request: Request, _exc: LoginRequired) -> Response:
        return RedirectResponse("/login", status_code=303)

    def error_page(request: Request, status: int, message: str, **headers: str) -> Response:
        response = portal.page(
            request,
            getattr(request.state, "principal", None),
            "error.html",
            status_code=status,
            title=_TITLES.get(status, "Error"),
            message=message,
        )
        response.headers.update(headers)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        return error_page(request, exc.status_code, str(exc.detail), **(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, _exc: RequestValidationError) -> Response:
        return error_page(request, 400, "the request is not one this portal understands")

    @app.exception_handler(RegistryLockedError)
    async def busy(request: Request, _exc: RegistryLockedError) -> Response:
        message = "the registry is busy (a merge or a command-line job); try again in a moment"
        return error_page(request, 503, message, **{"Retry-After": "10"})

    app.add_middleware(BodyLimit, limit_for=_limit_for(portal))
    app.add_middleware(ErrorShield)
    app.add_middleware(SecurityHeaders)
    return app


_TITLES = {
    400: "Bad request",
    401: "Not signed in",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    409: "Not possible now",
    413: "Too large",
    429: "Too many attempts",
    503: "Busy",
}
