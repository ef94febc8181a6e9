"""The audit log: every sign-in, upload, view, decision and download, with who, when, role, site
and object; append-only, with a hash chain ``cartreg audit`` checks."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb

from cartreg.portal.audit import AuditEvent, append_events, verify_chain
from cartreg.registry.store import open_registry, transaction
from tests.portal.conftest import World
from tests.portal.helpers import make_registry


def _audit(registry: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cartreg", "audit", "--registry", str(registry), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _events(registry: Path, *args: str) -> list[dict[str, Any]]:
    done = _audit(registry, "--format", "json", *args)
    assert done.returncode == 0, done.stderr
    assert "audit chain intact" in done.stderr
    events: list[dict[str, Any]] = json.loads(done.stdout)
    return events


def test_views_decisions_and_downloads_are_audited(world: World) -> None:
    ids = world.ids
    world.clients["site_a"].get(f"/submissions/{ids['submission_a']}/report")
    world.clients["statistician"].get(f"/merges/{ids['merge']}/dataset.zip")
    world.clients["statistician"].get(f"/submissions/{ids['submission_a']}/report")
    world.clients["site_b"].get(f"/submissions/{ids['submission_a']}")
    deadline = time.monotonic() + 30  # views are written by the writer within a second or so
    while True:
        events = _events(world.config.registry)  # read by another process while serving
        if any(e["action"] == "dataset.download" and e["actor"] == "sam" for e in events):
            break
        assert time.monotonic() < deadline, "the views were never written to the audit log"
        time.sleep(0.5)

    def has(**fields: Any) -> bool:
        return any(all(e[k] == v for k, v in fields.items()) for e in events)

    assert has(actor="alice", role="site", site_id="REDCAP_A", action="login", client="testclient")
    assert has(actor="alice", action="upload.received", object=f"upload:{ids['upload_a']}")
    assert has(actor="alice", action="upload.stored", site_id="REDCAP_A")
    assert has(
        actor="carol",
        role="coordinator",
        action="decision.accept",
        object=f"submission:{ids['submission_a']}",
        site_id="REDCAP_A",
    )
    assert has(actor="carol", action="merge.done", object=f"merge:{ids['merge']}")
    assert has(actor="alice", action="report.view", object=f"submission:{ids['submission_a']}")
    assert has(
        actor="sam", role="statistician", action="dataset.download", object=f"merge:{ids['merge']}"
    )
    assert has(
        actor="sam",
        action="access.denied",
        outcome="denied",
        object=f"GET /submissions/{ids['submission_a']}/report",
    )
    assert has(actor="bob", action="access.denied", object=f"submission:{ids['submission_a']}")
    text = _audit(world.config.registry, "--user", "sam").stdout
    assert "dataset.download" in text and "alice" not in text


def test_the_chain_shows_an_edited_or_deleted_row(tmp_path: Path) -> None:
    registry = make_registry(tmp_path / "r.duckdb", users={}, sites=[])
    with open_registry(registry, write=True) as reg, transaction(reg):
        append_events(reg, [AuditEvent(actor=f"user{i}", action="login") for i in range(5)])
    with open_registry(registry) as reg:
        assert verify_chain(reg).intact
    assert len(_events(registry, "--since", "1h")) == 5
    assert _events(registry, "--since", "2999-01-01") == []
    conn = duckdb.connect(str(registry))
    conn.execute("UPDATE audit_log SET actor = 'someone else' WHERE event_id = 3")
    conn.close()
    broken = _audit(registry)
    assert broken.returncode == 1
    assert "BROKEN at event 3" in broken.stderr
    conn = duckdb.connect(str(registry))
    conn.execute("UPDATE audit_log SET actor = 'user2' WHERE event_id = 3")
    conn.execute("DELETE FROM audit_log WHERE event_id = 2")
    conn.close()
    with open_registry(registry) as reg:
        assert verify_chain(reg).broken_at == 3


def test_a_bad_since_is_a_usage_error(tmp_path: Path) -> None:
    registry = make_registry(tmp_path / "r.duckdb", users={}, sites=[])
    done = _audit(registry, "--since", "last tuesday")
    assert done.returncode == 2
    assert "neither a date/time" in done.stderr
