"""Receiving an upload: names, types, sizes and zips are checked before anything reads them."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from cartreg.portal.config import Limits
from cartreg.portal.uploads import UploadRejected, receive_files
from tests.portal.conftest import World
from tests.portal.helpers import SAMPLE, client, running_portal, token, upload, wait_json
from tests.zips import with_compression_method, with_version_needed

CSV = b"STUDY_ID,SEX\nCT1,F\n"
LIMITS = Limits(files=5, unzipped_bytes=4 << 20, zip_ratio=50)


def _zip(entries: dict[str, bytes], *, links: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in links:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def _receive(tmp_path: Path, *files: tuple[str, bytes], limits: Limits = LIMITS) -> list[str]:
    received = receive_files(
        ((name, io.BytesIO(data)) for name, data in files), tmp_path / "upload" / "input", limits
    )
    return [f.name for f in received]


def _outside(tmp_path: Path) -> list[Path]:
    """Files written anywhere but inside the upload folder."""
    inside = tmp_path / "upload" / "input"
    return [p for p in tmp_path.rglob("*") if p.is_file() and inside not in p.parents]


@pytest.mark.parametrize(
    "name",
    [
        "../evil.csv",
        "../../etc/cron.d/evil.csv",
        "/etc/passwd.csv",
        "..\\..\\evil.csv",
        "C:\\temp\\evil.csv",
        "sub/records.csv",
        ".hidden.csv",
        "nul\x00.csv",
        "line\nbreak.csv",
        "..",
    ],
)
def test_file_names_that_leave_the_folder_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UploadRejected):
        _receive(tmp_path, (name, CSV))
    assert _outside(tmp_path) == []


@pytest.mark.parametrize(
    "entry",
    [
        "../evil.csv",
        "export/../../evil.csv",
        "/tmp/evil.csv",
        "..\\evil.csv",
        "C:/evil.csv",
        "export/.git/config.csv",
    ],
)
def test_zip_slip_is_refused(tmp_path: Path, entry: str) -> None:
    archive = _zip({"export/records.csv": CSV, entry: CSV})
    with pytest.raises(UploadRejected, match=r"outside the upload|not allowed|absolute"):
        _receive(tmp_path, ("export.zip", archive))
    assert _outside(tmp_path) == []
    assert not (tmp_path / "evil.csv").exists()


def test_links_and_zips_inside_zips_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UploadRejected, match="is a link"):
        _receive(tmp_path, ("x.zip", _zip({"records.csv": b"/etc/passwd"}, links=("records.csv",))))
    with pytest.raises(UploadRejected, match="zip inside a zip"):
        _receive(tmp_path, ("x.zip", _zip({"inner.zip": _zip({"a.csv": CSV})})))


def test_damaged_zips_are_refused_as_unreadable_not_a_server_error(tmp_path: Path) -> None:
    # found by the fuzz run: a header asking for zip version 20.3 raised NotImplementedError
    archive = _zip({"records.csv": CSV})
    with pytest.raises(UploadRejected, match="not a readable zip archive"):
        _receive(tmp_path, ("x.zip", with_version_needed(archive, 203)))
    with pytest.raises(UploadRejected, match="cannot be unpacked"):
        _receive(tmp_path, ("y.zip", with_compression_method(archive, 99)))
    with pytest.raises(UploadRejected, match="cannot be unpacked"):
        _receive(tmp_path, ("z.zip", with_compression_method(archive, 77)))
    assert _outside(tmp_path) == []


def test_a_zip_of_a_folder_is_unpacked_flat_and_mac_clutter_ignored(tmp_path: Path) -> None:
    archive = _zip(
        {
            "REDCAP_A/records.csv": CSV,
            "REDCAP_A/data_dictionary.csv": CSV,
            "__MACOSX/REDCAP_A/._records.csv": b"\x00\x05\x16\x07",
            "REDCAP_A/.DS_Store": b"\x00\x00\x00\x01Bud1",
        }
    )
    assert sorted(_receive(tmp_path, ("cut.zip", archive))) == [
        "data_dictionary.csv",
        "records.csv",
    ]


def test_zip_bombs_and_too_many_files_are_refused(tmp_path: Path) -> None:
    bomb = _zip({"big.csv": b"0" * (3 << 20)})  # 3 MB of zeros packs to a few KB
    with pytest.raises(UploadRejected, match="zip bomb") as caught:
        _receive(tmp_path / "a", ("bomb.zip", bomb))
    assert caught.value.too_large
    roomy = Limits(files=5, unzipped_bytes=1 << 20, zip_ratio=10_000)
    with pytest.raises(UploadRejected, match="unpacks to more than 1 MB"):
        _receive(tmp_path / "b", ("bomb.zip", bomb), limits=roomy)
    many = _zip({f"f{i}.csv": CSV for i in range(6)})
    with pytest.raises(UploadRejected, match="more than 5 files"):
        _receive(tmp_path / "c", ("many.zip", many))


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("records.csv", b"MZ\x90\x00\x03\x00\x00\x00", "not a text file"),
        ("records.csv", _zip({"a.csv": CSV}), "not a text file"),
        ("records.csv", b"a,b\n1,\x002\n", "not a text file"),
        ("export.xlsx", CSV, "not a .xlsx file"),
        ("cohort.parquet", b"PAR1 truncated", "truncated or broken"),
        ("export.zip", CSV, "not a zip archive"),
        ("tool.exe", b"MZ\x90\x00", "not accepted"),
        ("page.html", b"<script>alert(1)</script>", "not accepted"),
    ],
)
def test_content_must_match_the_extension_whatever_the_declared_type(
    tmp_path: Path, name: str, data: bytes, message: str
) -> None:
    with pytest.raises(UploadRejected, match=message):
        _receive(tmp_path, (name, data))


def test_utf16_text_with_its_byte_order_mark_is_text(tmp_path: Path) -> None:
    """The readers take UTF-16 with a BOM (docs/mapping.md): its NUL bytes are no binary."""
    for bom, codec in ((b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        folder = tmp_path / codec
        assert _receive(folder, ("records.csv", bom + CSV.decode().encode(codec)))


def test_the_same_file_twice_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UploadRejected, match="sent twice"):
        _receive(tmp_path, ("a.csv", CSV), ("a.csv", CSV))


def test_real_exports_pass(tmp_path: Path) -> None:
    names = _receive(
        tmp_path,
        (
            "CAR-T_Register_Export.xlsx",
            (SAMPLE / "excel_b/CAR-T_Register_Export.xlsx").read_bytes(),
        ),
        ("cohort.ndjson", (SAMPLE / "deid_d/cohort.ndjson").read_bytes()),
        ("records.csv", (SAMPLE / "redcap_a/records.csv").read_bytes()),
    )
    assert len(names) == 3


def test_over_http_the_declared_content_type_is_ignored(world: World) -> None:
    alice = world.clients["site_a"]
    spoofed = upload(alice, [("files", ("records.csv", b"MZ\x90\x00binary", "text/csv"))])
    assert spoofed.status_code == 400
    assert "not a text file" in spoofed.text
    traversal = upload(alice, [("files", ("../../records.csv", b"a,b\n", "text/csv"))])
    assert traversal.status_code == 400
    slip = upload(alice, [("files", ("cut.zip", _zip({"../records.csv": CSV}), "application/zip"))])
    assert slip.status_code == 400
    assert not (world.config.data_dir / "records.csv").exists()
    assert list((world.config.work_dir).glob("incoming-*")) == []


def test_only_a_signed_in_session_may_send_a_large_body(world: World) -> None:
    megabyte = [("files", ("export.exe", b"MZ" + b"0" * (1 << 20), "text/csv"))]
    anonymous = world.clients["anonymous"].post("/site/uploads", files=megabyte)
    assert anonymous.status_code == 413  # refused before the form is read
    signed_in = upload(world.clients["site_a"], megabyte)
    assert signed_in.status_code == 400  # read, then refused for its type


def test_an_oversized_upload_is_refused_before_it_is_read(tmp_path: Path) -> None:
    users = {"alice": ("site", "REDCAP_A")}
    limits = Limits(upload_bytes=64 * 1024)
    with running_portal(tmp_path, users=users, sites=["REDCAP_A"], limits=limits) as (app, cfg):
        alice = client(app, "alice")
        big = upload(alice, [("files", ("records.csv", b"a,b\n" + b"1,2\n" * 40_000, "text/csv"))])
        assert big.status_code == 413
        assert "at most" in big.text
        declared = client(app).post(
            "/site/uploads",
            content=b"x",
            headers={"content-length": str(10 << 20), "content-type": "multipart/form-data"},
        )
        assert declared.status_code == 413
        small = alice.post("/logout", data={"csrf_token": token(alice)}, files=None)
        assert small.status_code == 303
        assert list(cfg.work_dir.glob("*")) == []


def _bad_exports() -> dict[str, list[tuple[str, bytes]]]:
    """Uploads of site A that pass the receiving checks but are no usable export, or barely."""
    records = (SAMPLE / "redcap_a/records.csv").read_bytes()
    dictionary = ("data_dictionary.csv", (SAMPLE / "redcap_a/data_dictionary.csv").read_bytes())
    header, _, rows = records.partition(b"\n")
    lines = rows.split(b"\n")
    return {
        "another site's export": [
            ("patients.csv", (SAMPLE / "ehr_c/patients.csv").read_bytes()),
            ("events.csv", (SAMPLE / "ehr_c/events.csv").read_bytes()),
        ],
        "no data dictionary": [("records.csv", records)],
        "cut off mid-row": [("records.csv", records[: len(records) // 2]), dictionary],
        "empty file": [("records.csv", b""), dictionary],
        "header only": [("records.csv", header + b"\n"), dictionary],
        "other columns": [("records.csv", b"name;dob;diagnosis\nDoe;1970-01-01;ALL\n"), dictionary],
        # (lone CR line ends are harden-ingest's: its reader turns them into line breaks)
        "header repeated, CRLF line ends, Latin-1": [
            (
                "records.csv",
                b"\r\n".join([header, *lines[:5], header, *lines[5:40]]).replace(b"F", b"\xc9"),
            ),
            dictionary,
        ],
    }


def test_unusable_exports_end_with_a_clear_message(tmp_path: Path) -> None:
    """A site sending the wrong, broken or empty files learns what is wrong in one line: the
    upload is refused at once or its processing ends (stored or failed), never with an internal
    error or a server path."""
    users = {"alice": ("site", "REDCAP_A")}
    with running_portal(tmp_path, users=users, sites=["REDCAP_A"]) as (app, cfg):
        alice = client(app, "alice")
        outcomes = {}
        for case, files in _bad_exports().items():
            sent = upload(alice, [("files", (n, data, "text/csv")) for n, data in files])
            if sent.status_code == 400:
                message = sent.text
            else:
                assert sent.status_code == 303, (case, sent.status_code, sent.text)
                upload_id = int(sent.headers["location"].rsplit("/", 1)[1])
                message = wait_json(alice, f"/uploads/{upload_id}/progress")["message"]
                page = alice.get(f"/uploads/{upload_id}")
                assert page.status_code == 200 and "Traceback" not in page.text, case
            outcomes[case] = message
            assert "internal error" not in message and "Traceback" not in message, (case, message)
            assert str(tmp_path) not in message and str(cfg.data_dir) not in message, case
        # the wrong files are refused at once, naming the files the site's mapping reads
        assert "has no data_dictionary.csv, records.csv" in outcomes["another site's export"]
        assert "has no data_dictionary.csv" in outcomes["no data dictionary"]
        assert "reads data_dictionary.csv, records.csv" in outcomes["no data dictionary"]
