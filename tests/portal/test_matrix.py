"""Who may call what: every route of the app, as each role, against the allowed set exactly.

The routes come from the app itself, so a new route without an entry here fails the test. Ids
of another site's submission, upload, report and query are not found (404), never shown.
"""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable
from typing import Any

import polars as pl
import pytest
from fastapi.routing import iter_route_contexts

from tests.portal.conftest import ROLE_USERS, World
from tests.portal.helpers import client, csrf_of, token

ROLES = ("anonymous", "site_a", "site_b", "coordinator", "statistician")
LOGIN = 303  # anonymous: sent to the sign-in page


def only(allowed: dict[str, int], *, anonymous: int = LOGIN, others: int = 403) -> dict[str, int]:
    """Expected status per role: ``allowed`` roles as given, anonymous and the rest as denied."""
    return {role: allowed.get(role, anonymous if role == "anonymous" else others) for role in ROLES}


SITE_OBJECT = only({"site_a": 200, "site_b": 404, "coordinator": 200})  # site A's object
BOTH_SITES = only({"site_a": 200, "site_b": 200})
COORDINATOR = only({"coordinator": 200})
DATA = only({"coordinator": 200, "statistician": 200})
POST_DENIED = 403  # anonymous posts fail the CSRF check (no session)

# (method, path template) -> expected status per role
EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("GET", "/"): dict.fromkeys(ROLES, 303),
    ("GET", "/login"): only({"anonymous": 200}, others=303),
    ("POST", "/login"): only({"anonymous": 401}, anonymous=401),
    ("POST", "/logout"): only({r: 303 for r in ROLES if r != "anonymous"}, anonymous=POST_DENIED),
    ("GET", "/site"): BOTH_SITES,
    ("POST", "/site/uploads"): only({"site_a": 400, "site_b": 400}, anonymous=POST_DENIED),
    ("GET", "/uploads/{upload_id}"): SITE_OBJECT,
    ("GET", "/uploads/{upload_id}/progress"): SITE_OBJECT,
    ("GET", "/submissions/{submission_id}"): SITE_OBJECT,
    ("GET", "/submissions/{submission_id}/report"): SITE_OBJECT,
    ("GET", "/submissions/{submission_id}/diff"): SITE_OBJECT,
    ("POST", "/submissions/{submission_id}/decision"): only(
        {"coordinator": 303}, anonymous=POST_DENIED
    ),
    ("GET", "/queries"): only({"site_a": 200, "site_b": 200, "coordinator": 200}),
    ("GET", "/queries/{query_id}"): SITE_OBJECT,
    ("POST", "/queries/{query_id}/response"): only(
        {"site_a": 303, "site_b": 404}, anonymous=POST_DENIED
    ),
    ("POST", "/queries/{query_id}/close"): only({"coordinator": 303}, anonymous=POST_DENIED),
    ("POST", "/queries/{query_id}/reopen"): only({"coordinator": 303}, anonymous=POST_DENIED),
    ("GET", "/site/queries/workbook"): BOTH_SITES,
    ("POST", "/site/queries/workbook"): only({"site_a": 400, "site_b": 400}, anonymous=POST_DENIED),
    ("GET", "/site/scorecard"): BOTH_SITES,
    ("GET", "/coord"): COORDINATOR,
    ("GET", "/coord/sites/{site_id}"): COORDINATOR,
    ("GET", "/coord/scorecard"): COORDINATOR,
    ("GET", "/coord/merges"): COORDINATOR,
    ("POST", "/coord/merges"): only({"coordinator": 400}, anonymous=POST_DENIED),
    ("GET", "/data"): only({"statistician": 200}),
    ("GET", "/merges/{merge_id}"): DATA,
    ("GET", "/merges/{merge_id}/progress"): COORDINATOR,
    ("GET", "/merges/{merge_id}/dataset.zip"): DATA,
    ("GET", "/merges/{merge_id}/analysis"): DATA,
    ("GET", "/merges/{merge_id}/analysis.zip"): DATA,
}

# Form bodies that pass validation, so that an allowed role gets past authorization; uploads
# carry a file no reader takes (400) and the merge an invalid data cut (400), so nothing runs.
BODIES: dict[str, Callable[[], dict[str, Any]]] = {
    "/login": lambda: {"data": {"user": "nobody-at-all", "password": "not the password"}},
    "/site/uploads": lambda: {"files": [("files", ("tool.exe", b"MZ\x90\x00", "text/csv"))]},
    "/submissions/{submission_id}/decision": lambda: {
        "data": {"outcome": "accepted", "reason": "matrix: reviewed again"}
    },
    "/queries/{query_id}/response": lambda: {"data": {"comment": "matrix: looked at it"}},
    "/queries/{query_id}/close": lambda: {
        "data": {"resolution": "unobtainable", "reason": "matrix: closed"}
    },
    "/queries/{query_id}/reopen": lambda: {"data": {"reason": "matrix: reopened"}},
    "/site/queries/workbook": lambda: {
        "files": {"workbook": ("answers.xlsx", b"not a workbook", "application/octet-stream")}
    },
    "/coord/merges": lambda: {"data": {"data_cut": "not-a-date"}},
    "/logout": dict,
}


def app_routes(world: World) -> tuple[set[tuple[str, str]], set[str | None]]:
    """(method, path) of every route of the app (included routers resolved), and the paths of
    routes without methods (mounts)."""
    contexts = list(iter_route_contexts(world.app.routes))
    routes = {(m, str(c.path)) for c in contexts if c.methods for m in c.methods if m != "HEAD"}
    return routes, {c.path for c in contexts if not c.methods}


def test_every_route_has_a_matrix_entry(world: World) -> None:
    routes, mounts = app_routes(world)
    assert routes == set(EXPECTED)
    assert mounts == {"/static"}


def _path(template: str, ids: dict[str, Any], *, site: str = "a") -> str:
    return template.format(
        upload_id=ids[f"upload_{site}"],
        submission_id=ids[f"submission_{site}"],
        query_id=ids[f"query_{site}"],
        merge_id=ids["merge"],
        site_id="REDCAP_A" if site == "a" else "EHR_C",
    )


def _call(world: World, role: str, method: str, template: str, csrf: dict[str, str]) -> Any:
    path = _path(template, world.ids)
    if method == "GET":
        return world.clients[role].get(path)
    c = world.clients[role]
    if template == "/logout" and role != "anonymous":
        c = client(world.app, ROLE_USERS[role])  # signing out must not end the shared session
        csrf_token = token(c)
    elif template == "/login":
        form = c.get("/login")
        csrf_token = csrf_of(form.text) if form.status_code == 200 else ""
    else:
        csrf_token = csrf.get(role, "")
    body = BODIES[template]()
    data = {"csrf_token": csrf_token, **body.get("data", {})}
    return c.post(path, data=data, files=body.get("files"))


def test_authorization_matrix(world: World) -> None:
    csrf = {role: token(world.clients[role]) for role in ROLES if role != "anonymous"}
    got: dict[tuple[str, str], dict[str, int]] = {}
    for (method, template), expected in EXPECTED.items():
        got[(method, template)] = {
            role: _call(world, role, method, template, csrf).status_code for role in expected
        }
    wrong = {key: (got[key], want) for key, want in EXPECTED.items() if got[key] != want}
    assert not wrong, "\n".join(f"{k}: got {g}, expected {w}" for k, (g, w) in wrong.items())


def _site_scoped_gets() -> list[str]:
    return [
        template
        for (method, template), expected in EXPECTED.items()
        if method == "GET" and expected is SITE_OBJECT
    ]


@pytest.mark.parametrize("template", _site_scoped_gets())
def test_another_sites_ids_are_not_found_and_show_nothing(world: World, template: str) -> None:
    site_b, site_a = world.clients["site_b"], world.clients["site_a"]
    for c, path, foreign in (
        (site_b, _path(template, world.ids, site="a"), "REDCAP_A"),
        (site_a, _path(template, world.ids, site="b"), "EHR_C"),
    ):
        response = c.get(path)
        assert response.status_code == 404, (path, response.status_code)
        assert foreign not in response.text
        assert "records.csv" not in response.text and "patients.csv" not in response.text


@pytest.mark.parametrize(
    "path",
    ["/uploads/999999", "/submissions/999999", "/submissions/999999/report", "/queries/X-Q1"],
)
def test_unknown_ids_are_not_found(world: World, path: str) -> None:
    assert world.clients["site_a"].get(path).status_code == 404
    assert world.clients["coordinator"].get(path).status_code == 404


def test_statistician_sees_only_pseudonymised_merges(world: World) -> None:
    page = world.clients["statistician"].get("/data").text
    assert f'href="/merges/{world.ids["merge"]}"' in page
    download = world.clients["statistician"].get(f"/merges/{world.ids['merge']}/dataset.zip")
    assert download.status_code == 200
    keys: list[str] = []
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        for name in archive.namelist():
            if name.endswith(".parquet"):
                frame = pl.read_parquet(io.BytesIO(archive.read(name)))
            elif name == "duplicates.csv":
                frame = pl.read_csv(io.BytesIO(archive.read(name)), infer_schema=False)
            else:
                continue
            for column in (c for c in frame.columns if c == "patient_key" or c.startswith("key_")):
                keys += frame[column].drop_nulls().cast(pl.String).to_list()
    assert keys and all(key.startswith("PSN-") for key in keys)  # never a site's own ids
    for forbidden in ("/site", "/coord", "/queries", f"/submissions/{world.ids['submission_a']}"):
        assert world.clients["statistician"].get(forbidden).status_code == 403


def test_static_files_are_public_and_stay_in_their_folder(world: World) -> None:
    anonymous = world.clients["anonymous"]
    assert anonymous.get("/static/portal.css").status_code == 200
    for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py"):
        assert anonymous.get(path).status_code == 404


def _own_ids(page: str, kind: str) -> set[int]:
    return {int(i) for i in re.findall(rf'href="/{kind}/(\d+)"', page)}


def test_a_site_user_guessing_ids_finds_only_its_own_site(world: World) -> None:
    """Site B walks every id up to past the highest one on every route that takes one (pages,
    progress, report and diff downloads, query answers): its own objects answer, every other
    id is not found, and no response carries anything of site A."""
    bob = world.clients["site_b"]
    home = bob.get("/site").text
    own = {"uploads": _own_ids(home, "uploads"), "submissions": _own_ids(home, "submissions")}
    assert own["uploads"] and own["submissions"]
    highest = max(
        int(world.ids[k]) for k in ("upload_a", "upload_b", "submission_a", "submission_b")
    )
    numbered = [
        t for (m, t) in EXPECTED if m == "GET" and ("{upload_id}" in t or "{submission_id}" in t)
    ]
    answered: dict[str, set[int]] = {}
    for template in numbered:
        kind = "uploads" if "{upload_id}" in template else "submissions"
        for guess in range(0, highest + 4):
            response = bob.get(
                template.replace("{upload_id}", str(guess)).replace("{submission_id}", str(guess))
            )
            assert response.status_code in (200, 404), (template, guess, response.status_code)
            assert "REDCAP_A" not in response.text and "records.csv" not in response.text
            if response.status_code == 200:
                answered.setdefault(template, set()).add(guess)
        assert answered.get(template, set()) <= own[kind], template
    assert world.ids["submission_b"] in answered["/submissions/{submission_id}/report"]
    csrf = token(bob)
    foreign = str(world.ids["query_a"]).rsplit("-Q", 1)[0]
    for n in range(1, 40):
        query = f"{foreign}-Q{n}"
        assert bob.get(f"/queries/{query}").status_code == 404
        answer = {"csrf_token": csrf, "response": "confirmed", "comment": "guess"}
        assert bob.post(f"/queries/{query}/response", data=answer).status_code == 404
    # the filters of the list pages never widen a site user's scope
    for path in ("/queries?site=REDCAP_A&state=all", "/site/scorecard?site=REDCAP_A"):
        response = bob.get(path)
        assert response.status_code == 200 and "REDCAP_A" not in response.text, path
    # odd spellings of an id are refused or not found, never a crash or another site's object
    for path in (
        f"/submissions/{world.ids['submission_a']}%2F..",
        f"/submissions/{world.ids['submission_a']}.0",
        "/submissions/-1",
        f"/submissions/0{world.ids['submission_a']}",
        "/uploads/1e3",
        "/queries/..%2F..%2Fcoord",
        f"/queries/{world.ids['query_a']}%00",
    ):
        response = bob.get(path)
        assert response.status_code in (400, 404), (path, response.status_code)
        assert "REDCAP_A" not in response.text, path
