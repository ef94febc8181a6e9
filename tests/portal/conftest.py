"""A portal "world" shared by the portal tests: two sites with a stored version each (uploaded
through the portal), both accepted by the coordinator, and a finished merge with its analysis."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cartreg.portal.app import create_app
from cartreg.portal.config import PortalConfig
from tests.portal.helpers import (
    BASE,
    SECRET,
    client,
    lenient_login,
    make_registry,
    token,
    upload_and_wait,
    wait_json,
)


@dataclass
class World:
    app: FastAPI
    config: PortalConfig
    clients: dict[str, TestClient]  # role key -> signed-in client; "anonymous" has no session
    ids: dict[str, int | str] = field(default_factory=dict)


ROLE_USERS = {"site_a": "alice", "site_b": "bob", "coordinator": "carol", "statistician": "sam"}


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("portal-world")
    registry = make_registry(root / "registry.duckdb")
    config = PortalConfig.for_registry(registry, secret=SECRET, login=lenient_login())
    app = create_app(config)
    with TestClient(app, base_url=BASE):  # runs the lifespan: writer and worker threads
        clients = {role: client(app, user) for role, user in ROLE_USERS.items()}
        clients["anonymous"] = client(app)
        w = World(app, config, clients)
        for key, site in (("a", "REDCAP_A"), ("b", "EHR_C")):
            upload_id, done = upload_and_wait(clients[f"site_{key}"], site)
            assert not done["failed"], done
            w.ids[f"upload_{key}"] = upload_id
            w.ids[f"submission_{key}"] = done["submission_id"]
        coordinator = clients["coordinator"]
        csrf = token(coordinator)
        for key in ("a", "b"):
            decided = coordinator.post(
                f"/submissions/{w.ids[f'submission_{key}']}/decision",
                data={"csrf_token": csrf, "outcome": "accepted", "reason": "reviewed"},
            )
            assert decided.status_code == 303, decided.text
            page = clients[f"site_{key}"].get("/queries").text
            w.ids[f"query_{key}"] = re.findall(r'href="/queries/([A-Z_]+-Q\d+)"', page)[0]
        started = coordinator.post(
            "/coord/merges", data={"csrf_token": csrf, "data_cut": "2025-06-30"}
        )
        assert started.status_code == 303, started.text
        merge_id = int(started.headers["location"].rsplit("/", 1)[1])
        merged = wait_json(coordinator, f"/merges/{merge_id}/progress", timeout=180)
        assert not merged["failed"], merged
        w.ids["merge"] = merge_id
        yield w
