"""Helpers of the portal tests: registries with users and site mappings, signed-in clients."""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from cartreg.cdm import load_cdm
from cartreg.paths import repo_root
from cartreg.portal.app import create_app
from cartreg.portal.config import LoginPolicy, PortalConfig
from cartreg.portal.sites import register_mapping
from cartreg.portal.users import add_user
from cartreg.registry.store import init_registry, open_registry, transaction

PASSWORD = "correct horse battery staple"
SECRET = b"portal-tests-consortium-secret-0123456789"
BASE = "https://testserver"  # the session cookie is Secure: the test client must speak https
SAMPLE = repo_root() / "sample_data"
# site -> (sample folder, the files its mapping reads)
SAMPLES = {
    "REDCAP_A": ("redcap_a", ("records.csv", "data_dictionary.csv")),
    "EHR_C": ("ehr_c", ("patients.csv", "events.csv")),
}
# user -> (role, site)
USERS = {
    "alice": ("site", "REDCAP_A"),
    "bob": ("site", "EHR_C"),
    "carol": ("coordinator", None),
    "sam": ("statistician", None),
}
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_registry(
    path: Path,
    *,
    sites: Iterable[str] = tuple(SAMPLES),
    users: dict[str, tuple[str, str | None]] | None = None,
) -> Path:
    """A registry with the sample sites' mappings registered and the given users."""
    init_registry(path)
    cdm = load_cdm()
    with open_registry(path, write=True) as registry, transaction(registry):
        for site in sites:
            folder = SAMPLE / SAMPLES[site][0]
            register_mapping(registry, site, folder / "mapping.yaml", cdm=cdm, registered_by="test")
        for name, (role, site) in (USERS if users is None else users).items():
            add_user(registry, name, role=role, site=site, password=PASSWORD, created_by="test")
    return path


def csrf_of(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def client(app: FastAPI, user: str | None = None, password: str = PASSWORD) -> TestClient:
    """A client with its own cookies (no lifespan: the app is started elsewhere)."""
    c = TestClient(app, base_url=BASE, follow_redirects=False)
    if user is not None:
        response = login(c, user, password)
        assert response.status_code == 303, response.text
    return c


def login(c: TestClient, user: str, password: str = PASSWORD) -> Any:
    form = c.get("/login")
    token = csrf_of(form.text) if form.status_code == 200 else ""
    return c.post("/login", data={"user": user, "password": password, "csrf_token": token})


def token(c: TestClient, path: str = "/") -> str:
    """The CSRF token of the signed-in session (from any page with a form)."""
    page = c.get(path, follow_redirects=True)
    return csrf_of(page.text)


def sample_files(
    site: str, replace: dict[str, bytes] | None = None
) -> list[tuple[str, tuple[str, bytes, str]]]:
    folder, names = SAMPLES[site]
    replace = replace or {}
    return [
        ("files", (name, replace.get(name) or (SAMPLE / folder / name).read_bytes(), "text/csv"))
        for name in names
    ]


def wait_json(c: TestClient, url: str, *, timeout: float = 120.0) -> dict[str, Any]:
    """Poll a progress URL until the job is finished (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = c.get(url).json()
        if state["finished"]:
            return state
        assert time.monotonic() < deadline, f"{url} did not finish in {timeout} s: {state}"
        time.sleep(0.2)


def upload(c: TestClient, files: list[Any]) -> Any:
    return c.post("/site/uploads", data={"csrf_token": token(c, "/site")}, files=files)


def upload_and_wait(
    c: TestClient, site: str, replace: dict[str, bytes] | None = None
) -> tuple[int, dict[str, Any]]:
    """Upload a sample export; the upload id and its finished progress."""
    response = upload(c, sample_files(site, replace))
    assert response.status_code == 303, response.text
    upload_id = int(response.headers["location"].rsplit("/", 1)[1])
    return upload_id, wait_json(c, f"/uploads/{upload_id}/progress")


def lenient_login() -> LoginPolicy:
    """No rate limit worth mentioning: tests sign in often from one client."""
    return LoginPolicy(failures_per_user=10_000, failures_per_client=10_000)


@contextmanager
def running_portal(
    folder: Path,
    *,
    users: dict[str, tuple[str, str | None]] | None = None,
    sites: Iterable[str] = tuple(SAMPLES),
    **config: Any,
) -> Iterator[tuple[FastAPI, PortalConfig]]:
    """A fresh registry and a started portal app over it (writer and worker running)."""
    registry = make_registry(folder / "registry.duckdb", users=users, sites=sites)
    settings = PortalConfig.for_registry(
        registry, secret=SECRET, **{"login": lenient_login(), **config}
    )
    app = create_app(settings)
    with TestClient(app, base_url=BASE):
        yield app, settings


def plant_cookie(c: TestClient, name: str, value: str) -> None:
    """Replace the cookie ``name`` of a test client (as an attacker planting one would)."""
    for cookie in [k for k in c.cookies.jar if k.name == name]:
        c.cookies.delete(name, domain=cookie.domain, path=cookie.path)
    c.cookies.set(name, value, domain="testserver.local", path="/")


def cookie_of(c: TestClient, name: str) -> str | None:
    values = [k.value for k in c.cookies.jar if k.name == name]
    assert len(values) <= 1, values
    return values[0] if values else None
