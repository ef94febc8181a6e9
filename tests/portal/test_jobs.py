"""One writer, and reads that never wait for a long submission."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import cartreg.ingest
import cartreg.registry.store as store
from cartreg.portal.audit import AuditEvent
from cartreg.portal.jobs import Readers, Writer
from tests.portal.helpers import (
    client,
    make_registry,
    running_portal,
    token,
    upload,
    upload_and_wait,
    wait_json,
)

USERS = {"alice": ("site", "REDCAP_A"), "carol": ("coordinator", None)}


def test_every_registry_write_of_the_portal_runs_on_the_writer_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    writers: list[str] = []
    real_lock = store._file_lock

    @contextmanager
    def recording_lock(path: Path, *, exclusive: bool, timeout: float) -> Iterator[None]:
        if exclusive:
            writers.append(threading.current_thread().name)
        with real_lock(path, exclusive=exclusive, timeout=timeout):
            yield

    monkeypatch.setattr(store, "_file_lock", recording_lock)
    with running_portal(tmp_path, users=USERS, sites=["REDCAP_A"]) as (app, _):
        started = len(writers)  # the start-up (store upgrade, signing key) ran before serving
        alice, carol = client(app, "alice"), client(app, "carol")
        _, done = upload_and_wait(alice, "REDCAP_A")
        sid = done["submission_id"]
        carol.post(
            f"/submissions/{sid}/decision",
            data={"csrf_token": token(carol), "outcome": "accepted", "reason": "fine"},
        )
        alice.get(f"/submissions/{sid}/report")  # a view: its audit row is written later
        alice.post("/logout", data={"csrf_token": token(alice)})
    # (stopping the portal flushed the buffered audit rows, on the writer too)
    during = set(writers[started:])
    assert during == {"cartreg-writer"}, writers


def test_pages_and_decisions_do_not_wait_for_an_upload_being_processed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    real_ingest = cartreg.ingest.ingest_submission

    def slow_ingest(*args: Any, **kwargs: Any) -> Any:
        assert gate.wait(60), "the test never opened the gate"
        return real_ingest(*args, **kwargs)

    monkeypatch.setattr(cartreg.ingest, "ingest_submission", slow_ingest)
    with running_portal(tmp_path, users=USERS, sites=["REDCAP_A"]) as (app, _):
        alice, carol = client(app, "alice"), client(app, "carol")
        gate.set()
        _, first = upload_and_wait(alice, "REDCAP_A")  # a stored version to look at
        gate.clear()
        pending = upload(alice, _files())
        assert pending.status_code == 303
        progress_url = pending.headers["location"] + "/progress"
        try:
            for path in (
                "/site",
                progress_url,
                f"/submissions/{first['submission_id']}",
                "/queries",
            ):
                began = time.monotonic()
                assert alice.get(path).status_code == 200
                assert time.monotonic() - began < 10.0, path  # the ingest waits 60 s
            assert alice.get(progress_url).json()["stage"] == "ingesting"
            began = time.monotonic()
            decided = carol.post(
                f"/submissions/{first['submission_id']}/decision",
                data={"csrf_token": token(carol), "outcome": "accepted", "reason": "reviewed"},
            )
            assert decided.status_code == 303
            assert time.monotonic() - began < 10.0
        finally:
            gate.set()
        assert not wait_json(alice, progress_url)["failed"]


def _files() -> list[Any]:
    from tests.portal.helpers import sample_files

    return sample_files("REDCAP_A")


def test_the_writer_reports_a_failed_job_and_keeps_going(tmp_path: Path) -> None:
    registry = make_registry(tmp_path / "r.duckdb", users={}, sites=[])
    readers = Readers(registry, lock_timeout=5)
    writer = Writer(registry, readers, lock_timeout=5, flush_seconds=0.2)
    writer.start()
    try:
        with pytest.raises(ZeroDivisionError):
            writer.call(lambda reg: 1 // 0)
        writer.record(AuditEvent(actor="t", action="view"))
        assert writer.call(lambda reg: reg.scalar("SELECT 41 + 1")) == 42
        deadline = time.monotonic() + 5
        while True:
            with readers.read() as reg:
                if reg.scalar("SELECT count(*) FROM audit_log WHERE action = 'view'") == 1:
                    break
            assert time.monotonic() < deadline, "the buffered audit row was never written"
            time.sleep(0.1)
    finally:
        writer.stop()
        readers.close()


def test_a_read_inside_a_read_does_not_wait_for_the_writer(tmp_path: Path) -> None:
    registry = make_registry(tmp_path / "r.duckdb", users={}, sites=[])
    readers = Readers(registry, lock_timeout=5)
    writer = Writer(registry, readers, lock_timeout=5, flush_seconds=0.2)
    writer.start()
    try:
        with readers.read() as outer:
            pending = writer.submit(lambda reg: reg.scalar("SELECT 1"))
            time.sleep(0.3)  # the writer now waits for this thread's read to end
            with readers.read() as inner:  # would deadlock if it waited for the writer
                assert inner.scalar("SELECT 2") == 2 == outer.scalar("SELECT 2")
            assert not pending.done()
        assert pending.result(timeout=10) == 1
    finally:
        writer.stop()
        readers.close()


def test_command_line_writers_get_their_turn_while_pages_are_read(tmp_path: Path) -> None:
    import subprocess
    import sys

    with running_portal(tmp_path, users=USERS, sites=["REDCAP_A"]) as (app, config):
        alice = client(app, "alice")
        stop = threading.Event()
        reads: list[int] = []

        def keep_reading() -> None:  # a progress page polling, but faster
            while not stop.is_set() and len(reads) < 2000:
                reads.append(alice.get("/site").status_code)
                time.sleep(0.05)

        reader = threading.Thread(target=keep_reading)
        reader.start()
        try:
            secret = tmp_path / "pw"
            secret.write_text("a long enough password\n")
            done = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "cartreg",
                    "users",
                    "add",
                    "zoe",
                    "--role",
                    "statistician",
                    "--password-file",
                    str(secret),
                    "--registry",
                    str(config.registry),
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        finally:
            stop.set()
            reader.join(30)
        assert done.returncode == 0, done.stderr
        assert reads and set(reads) == {200}
