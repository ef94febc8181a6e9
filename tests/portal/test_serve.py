"""``cartreg serve`` as a process: a real uvicorn server on loopback. Its log holds neither
passwords nor identifiers from uploads; an upload streamed past the limit is cut off."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from tests.portal.helpers import PASSWORD, SAMPLE, csrf_of, make_registry
from tests.portal.live import LiveClient, serve

# Direct identifiers a site should never send, in columns a site might add to an export.
IDENTIFIERS = ("Quenby Zaltrowski", "MRN-73915286", "zaltrowski@example.org", "+44 7700 900461")


def _patients_with_identifiers() -> bytes:
    lines = (SAMPLE / "ehr_c/patients.csv").read_text().splitlines()
    out = [lines[0] + ",PATIENT_NAME,MRN,EMAIL,PHONE"]
    for i, line in enumerate(lines[1:]):
        values = IDENTIFIERS if i == 0 else (f"Name {i}", f"MRN-{10000000 + i}", "", "")
        out.append(line + "," + ",".join(values))
    return ("\n".join(out) + "\n").encode()


def test_the_server_log_has_no_passwords_or_identifiers(tmp_path: Path) -> None:
    registry = make_registry(
        tmp_path / "registry.duckdb", users={"bob": ("site", "EHR_C")}, sites=["EHR_C"]
    )
    log = tmp_path / "server.log"
    with serve(registry, log, extra=("--max-upload-mb", "1")) as base:
        bob = LiveClient(base)
        assert bob.login("bob", "wrong: " + PASSWORD[::-1]).status_code == 401
        assert bob.login(PASSWORD).status_code == 401  # a password typed as the user name
        assert bob.login("bob").status_code == 303
        home = bob.get("/site")
        assert home.headers.get("server") is None  # no server banner
        files = [
            ("files", ("patients.csv", _patients_with_identifiers(), "text/csv")),
            ("files", ("events.csv", (SAMPLE / "ehr_c/events.csv").read_bytes(), "text/csv")),
        ]
        sent = bob.post("/site/uploads", data={"csrf_token": csrf_of(home.text)}, files=files)
        assert sent.status_code == 303, sent.text
        progress = sent.headers["location"] + "/progress"
        deadline = time.monotonic() + 120
        while not (state := bob.get(progress).json())["finished"]:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        assert not state["failed"], state
        page = bob.get(f"/submissions/{state['submission_id']}").text
        report = bob.get(f"/submissions/{state['submission_id']}/report").text
        for value in IDENTIFIERS:
            assert value not in page and value not in report

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
            yield (
                b'--b\r\nContent-Disposition: form-data; name="files"; filename="big.csv"\r\n'
                b"Content-Type: text/csv\r\n\r\n"
            )
            for _ in range(40):
                yield b"1,2\n" * 16_384
            yield b"\r\n--b--\r\n"

        big = bob.post(
            "/site/uploads",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert big.status_code == 413, big.text
        assert bob.post("/logout", data={"csrf_token": csrf_of(home.text)}).status_code == 303
    text = log.read_text(errors="replace")
    assert "POST /login" in text and "GET /site" in text  # the access log is on
    assert PASSWORD not in text and PASSWORD[::-1] not in text
    for value in IDENTIFIERS:
        assert value not in text
    for stored in (registry, *registry.parent.rglob("*.portal/**/*")):
        if stored.is_file():
            data = stored.read_bytes()
            assert PASSWORD.encode() not in data
            assert not any(v.encode() in data for v in IDENTIFIERS), stored
