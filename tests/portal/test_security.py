"""Security of the portal over HTTP: CSRF on every state-changing route, sessions (fixation,
cookie flags, sign-out, disabled users), sign-in rate limits, security headers, script
injection through uploaded values, and passwords kept only as argon2 hashes in the store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from cartreg.portal.auth import LoginLimiter
from cartreg.portal.config import LoginPolicy
from cartreg.portal.sessions import LOGIN_COOKIE, SESSION_COOKIE
from tests.portal.conftest import World
from tests.portal.helpers import (
    BASE,
    PASSWORD,
    client,
    cookie_of,
    csrf_of,
    login,
    plant_cookie,
    running_portal,
    token,
    upload_and_wait,
)
from tests.portal.test_matrix import BODIES, EXPECTED, ROLES

STATE_CHANGING = sorted(t for (m, t) in EXPECTED if m == "POST")


def _allowed_role(template: str) -> str:
    """A role that may post to ``template`` (past the CSRF check it would succeed)."""
    statuses = EXPECTED[("POST", template)]
    return next(r for r in ROLES if statuses[r] != 403)


def _post(world: World, c: TestClient, template: str, csrf_token: str | None, **headers: str):
    from tests.portal.test_matrix import _path

    body = BODIES[template]()
    data = dict(body.get("data", {}))
    if csrf_token is not None:
        data["csrf_token"] = csrf_token
    return c.post(_path(template, world.ids), data=data, files=body.get("files"), headers=headers)


@pytest.mark.parametrize("template", STATE_CHANGING)
def test_every_state_changing_route_needs_its_sessions_csrf_token(
    world: World, template: str
) -> None:
    role = _allowed_role(template)
    if template in ("/login",):
        c, other = client(world.app), client(world.app)
        good = csrf_of(c.get("/login").text)
        foreign = csrf_of(other.get("/login").text)  # another browser's sign-in form
    else:
        c = client(world.app, {"site_a": "alice", "site_b": "bob", "coordinator": "carol"}[role])
        good = token(c)
        foreign = token(world.clients["statistician"])  # a valid token of another session
    for bad in (None, "", "0" * 64, good[:-1] + ("0" if good[-1] != "0" else "1"), foreign):
        response = _post(world, c, template, bad)
        assert response.status_code == 403, (template, bad, response.status_code)
        assert "form has expired" in response.text
    cross = _post(world, c, template, good, **{"Sec-Fetch-Site": "cross-site"})
    assert cross.status_code == 403, (template, cross.status_code)
    assert "cross-site" in cross.text


def _session_cookie(response) -> str:
    cookies = [v for k, v in response.headers.multi_items() if k.lower() == "set-cookie"]
    session = [c for c in cookies if c.startswith(f"{SESSION_COOKIE}=")]
    assert session, cookies
    return session[0]


def test_session_cookie_is_host_only_secure_httponly_and_strict(world: World) -> None:
    c = client(world.app)
    response = login(c, "alice")
    assert response.status_code == 303
    cookie = _session_cookie(response)
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "secure", "samesite", "path"} <= attributes
    assert "domain" not in attributes
    assert "samesite=strict" in cookie.lower().replace(" ", "")
    assert "path=/" in cookie.lower().replace(" ", "")


def test_session_fixation_planted_cookies_never_become_the_victims_session(
    world: World,
) -> None:
    attacker = client(world.app)
    form = attacker.get("/login")
    planted_login = cookie_of(attacker, LOGIN_COOKIE)
    planted_token = csrf_of(form.text)
    forged = "forged-value-never-signed-by-the-server"
    victim = TestClient(world.app, base_url=BASE, follow_redirects=False)
    plant_cookie(victim, LOGIN_COOKIE, planted_login)
    plant_cookie(victim, SESSION_COOKIE, forged)
    assert victim.get("/site").status_code == 303  # a forged session cookie is nobody
    signed_in = victim.post(
        "/login", data={"user": "alice", "password": PASSWORD, "csrf_token": planted_token}
    )
    assert signed_in.status_code == 303
    session = cookie_of(victim, SESSION_COOKIE)
    assert session and session not in (forged, planted_login)
    assert "Site REDCAP_A" in victim.get("/site").text
    # what the attacker planted or saw gives no access to alice's session
    assert attacker.get("/site").status_code == 303
    plant_cookie(attacker, SESSION_COOKIE, forged)
    assert attacker.get("/site").status_code == 303


def test_signing_in_ends_the_session_the_browser_held(world: World) -> None:
    held = cookie_of(client(world.app, "bob"), SESSION_COOKIE)
    c = client(world.app)
    form = c.get("/login")
    plant_cookie(c, SESSION_COOKIE, held)
    assert login_with(c, "alice", csrf_of(form.text)).status_code == 303
    assert cookie_of(c, SESSION_COOKIE) != held
    replay = TestClient(world.app, base_url=BASE, follow_redirects=False)
    plant_cookie(replay, SESSION_COOKIE, held)
    assert replay.get("/site").status_code == 303


def login_with(c: TestClient, user: str, csrf_token: str):
    return c.post("/login", data={"user": user, "password": PASSWORD, "csrf_token": csrf_token})


def test_signing_out_ends_the_session_on_the_server(world: World) -> None:
    c = client(world.app, "alice")
    stolen = cookie_of(c, SESSION_COOKIE)
    assert c.post("/logout", data={"csrf_token": token(c)}).status_code == 303
    replay = TestClient(world.app, base_url=BASE, follow_redirects=False)
    plant_cookie(replay, SESSION_COOKIE, stolen)
    assert replay.get("/site").status_code == 303


def test_a_disabled_user_is_signed_out_at_once_even_by_the_command_line(
    tmp_path: Path,
) -> None:
    users = {"dave": ("site", "EHR_C"), "carol": ("coordinator", None)}
    with running_portal(tmp_path, users=users, sites=["EHR_C"]) as (app, config):
        c = client(app, "dave")
        assert c.get("/site").status_code == 200
        # the command line writes while the portal runs: it waits for the portal's readers
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "cartreg",
                "users",
                "disable",
                "dave",
                "--registry",
                str(config.registry),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert c.get("/site").status_code == 303
        assert login(client(app), "dave").status_code == 401


def test_sign_in_attempts_are_rate_limited(tmp_path: Path) -> None:
    # a window far longer than the test (argon2 makes each sign-in slow on a busy machine)
    policy = LoginPolicy(failures_per_user=3, failures_per_client=5, window_seconds=600.0)
    users = {"alice": ("site", "REDCAP_A"), "carol": ("coordinator", None)}
    with running_portal(tmp_path, users=users, sites=["REDCAP_A"], login=policy) as (app, _):
        c = client(app)
        statuses = [login(c, "alice", "wrong password!").status_code for _ in range(3)]
        assert statuses == [401, 401, 401]
        blocked = login(c, "alice")  # the right password, too late
        assert blocked.status_code == 429
        assert int(blocked.headers["Retry-After"]) >= 1
        # another user name from the same address: the address's own limit
        statuses = [login(c, "carol", "wrong password!").status_code for _ in range(3)]
        assert statuses == [401, 401, 429]
        assert login(c, "carol").status_code == 429


def test_sign_in_limits_end_with_their_window() -> None:
    now = [1000.0]
    limiter = LoginLimiter(per_user=2, per_client=2, window=60.0, clock=lambda: now[0])
    limiter.failed("alice", "10.0.0.1")
    now[0] += 30
    limiter.failed("Alice", "10.0.0.2")  # user names are not case-sensitive
    assert limiter.retry_after("alice", "10.0.0.9") == 30.0
    now[0] += 29.5
    assert limiter.retry_after("alice", "10.0.0.9") == 0.5
    now[0] += 0.5  # the first failure leaves the window
    assert limiter.retry_after("alice", "10.0.0.9") is None
    limiter.failed("bob", "10.0.0.1")
    limiter.failed("carol", "10.0.0.1")
    assert limiter.retry_after("dave", "10.0.0.1") is not None  # the address's own limit
    limiter.succeeded("alice")
    limiter.failed("alice", "10.0.0.3")
    assert limiter.retry_after("alice", "10.0.0.3") is None  # success forgot earlier failures


PAGES = [
    "/login",
    "/site",
    "/queries",
    "/uploads/{upload_a}",
    "/submissions/{submission_a}",
    "/submissions/{submission_a}/diff",
    "/submissions/999999",
]


def test_every_page_carries_the_security_headers(world: World) -> None:
    alice = world.clients["site_a"]
    for template in PAGES:
        path = template.format(**world.ids)
        c = world.clients["anonymous"] if path == "/login" else alice
        headers = c.get(path).headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "'unsafe-inline'" not in csp, path
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
        assert headers["x-frame-options"] == "DENY"
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["cache-control"] == "no-store"
        assert "server" not in {k.lower() for k in headers} or "uvicorn" not in headers.get(
            "server", ""
        )
    report = alice.get(f"/submissions/{world.ids['submission_a']}/report").headers
    csp = report["content-security-policy"]
    assert "script-src 'sha256-" in csp and "unsafe" not in csp
    assert "connect-src" not in csp and "default-src 'none'" in csp


INJECTED = "<script>alert(1)</script><img src=x onerror=alert(2)>"  # one CSV cell as it is


def test_uploaded_values_are_escaped_and_no_inline_script_is_allowed(tmp_path: Path) -> None:
    users = {"alice": ("site", "REDCAP_A"), "carol": ("coordinator", None)}
    text = (Path(__file__).parents[2] / "sample_data/redcap_a/records.csv").read_text()
    lines = text.splitlines()
    header = lines[0].split(",")
    row = lines[1].split(",")
    row[header.index("sex")] = INJECTED
    lines[1] = ",".join(row)
    with running_portal(tmp_path, users=users, sites=["REDCAP_A"]) as (app, _):
        alice, carol = client(app, "alice"), client(app, "carol")
        _, done = upload_and_wait(alice, "REDCAP_A", {"records.csv": "\n".join(lines).encode()})
        assert not done["failed"], done
        sid = done["submission_id"]
        pages = [f"/submissions/{sid}", f"/submissions/{sid}/report", "/queries?state=all"]
        seen_escaped = False
        escaped = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"
        for c in (alice, carol):
            for path in pages:
                response = c.get(path)
                assert response.status_code == 200, path
                assert INJECTED not in response.text, path
                assert "<script>alert" not in response.text and "<img src=x" not in response.text
                seen_escaped |= escaped in response.text
                csp = response.headers["content-security-policy"]
                assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0]
        assert seen_escaped  # the value is shown, as text


def test_passwords_are_stored_only_as_argon2_hashes(world: World) -> None:
    registry = world.config.registry
    with world.app.state.portal.read() as reg:
        hashes = [
            r[0] for r in reg.conn.execute("SELECT password_hash FROM portal_users").fetchall()
        ]
        assert hashes and all(h.startswith("$argon2id$") for h in hashes)
        columns = reg.conn.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE data_type = 'VARCHAR' AND NOT (table_name = 'portal_users' "
            "AND column_name = 'password_hash')"
        ).fetchall()
        for table, column in columns:
            found = reg.conn.execute(
                f'SELECT count(*) FROM "{table}" WHERE "{column}" LIKE \'%$argon2%\' '
                f'OR "{column}" LIKE ?',
                [f"%{PASSWORD}%"],
            ).fetchone()
            assert found == (0,), (table, column)
    secret = PASSWORD.encode()
    for path in registry.parent.rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
    for role in ("site_a", "coordinator", "statistician"):
        assert "$argon2" not in world.clients[role].get("/", follow_redirects=True).text
