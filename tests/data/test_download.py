"""Real KuaiRec ingest: resumable verified download, defensive extraction, folder and archive sources.

Every download test talks to a local ``ThreadingHTTPServer`` on 127.0.0.1; nothing reaches the internet.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import socket
import stat
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from reco.data import download as dl
from reco.data.download import (
    KUAIREC_MEMBER_PREFIX,
    download,
    ingest_kuairec,
    safe_extract_kuairec,
    verify_md5,
)
from reco.errors import DownloadError, InputDataError, ParamsError
from reco.params import parse_section
from reco.schema import (
    INTERACTION_COLUMNS,
    ITEM_CATEGORY_COLUMNS,
    ITEM_DAILY_COLUMNS,
    SOCIAL_NETWORK_COLUMNS,
    USER_FEATURE_COLUMNS,
    Columns,
    RawFiles,
)

# Published MD5 of the real user_features.csv (see ../shared/kuairec-real/PROVENANCE.md).
USER_FEATURES_MD5 = "33b5d7ae19378fb7c68c2238eed7720c"


# ------------------------------------------------------------------------------------------
# Tiny KuaiRec-shaped archives
# ------------------------------------------------------------------------------------------


def tiny_csvs() -> dict[str, bytes]:
    """The six required files with KuaiRec's headers and a row or two each."""
    interaction_row = "0,148,4381,6067,2020-07-05 05:27:48.378,20200705,1593898068.378,0.722103\n"
    return {
        RawFiles.big_matrix: (",".join(INTERACTION_COLUMNS) + "\n" + interaction_row * 3).encode(),
        RawFiles.small_matrix: (",".join(INTERACTION_COLUMNS) + "\n" + interaction_row).encode(),
        RawFiles.user_features: (",".join(USER_FEATURE_COLUMNS) + "\n").encode(),
        RawFiles.item_categories: (",".join(ITEM_CATEGORY_COLUMNS) + '\n148,"[27, 9]"\n').encode(),
        RawFiles.item_daily_features: (",".join(ITEM_DAILY_COLUMNS) + "\n").encode(),
        RawFiles.social_network: (",".join(SOCIAL_NETWORK_COLUMNS) + '\n0,"[1, 2]"\n').encode(),
    }


def build_zip(path: Path, files: dict[str, bytes], extra: dict[str, bytes] | None = None) -> Path:
    """A zip laid out like KuaiRec.zip (``KuaiRec 2.0/data/<name>``), plus ``extra`` members by full name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo("KuaiRec 2.0/"), b"")
        zf.writestr(zipfile.ZipInfo(KUAIREC_MEMBER_PREFIX), b"")
        for name, body in files.items():
            zf.writestr(KUAIREC_MEMBER_PREFIX + name, body)
        for name, body in (extra or {}).items():
            zf.writestr(name, body)
    return path


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture()
def archive(tmp_path: Path) -> Path:
    """A valid tiny archive with some members that must be skipped."""
    extra = {
        "__MACOSX/KuaiRec 2.0/data/._big_matrix.csv": b"resource fork",
        KUAIREC_MEMBER_PREFIX + "README.md": b"not a csv",
        KUAIREC_MEMBER_PREFIX + "nested/other.csv": b"a,b\n",
    }
    return build_zip(tmp_path / "served" / "KuaiRec.zip", tiny_csvs(), extra)


# ------------------------------------------------------------------------------------------
# A local HTTP server with Range support and failure modes
# ------------------------------------------------------------------------------------------


@dataclass
class Served:
    """What the server serves and how it misbehaves; ``requests`` logs each request's Range header."""

    payload: bytes = b""
    mode: str = "good"  # good | corrupt | cut_once | cut_once_ignore_range | always_cut
    requests: list[str | None] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_handler(served: Served) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            if self.path != "/KuaiRec.zip":
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            range_header = self.headers.get("Range")
            with served.lock:
                served.requests.append(range_header)
                n_request = len(served.requests)
            body = served.payload
            if served.mode == "corrupt":
                body = bytes([body[0] ^ 0xFF]) + body[1:]  # same size, different bytes
            total = len(body)
            ignore_range = served.mode == "always_cut" or (served.mode == "cut_once_ignore_range" and n_request > 1)
            start = 0
            if range_header and not ignore_range:
                start = int(range_header.removeprefix("bytes=").split("-")[0])
            cut = served.mode == "always_cut" or (served.mode.startswith("cut_once") and n_request == 1)
            if start:
                self.send_response(HTTPStatus.PARTIAL_CONTENT)
                self.send_header("Content-Range", f"bytes {start}-{total - 1}/{total}")
            else:
                self.send_response(HTTPStatus.OK)
            self.send_header("Content-Length", str(total - start))
            self.send_header("Content-Type", "application/zip")
            self.send_header("Connection", "close")
            self.end_headers()
            chunk = body[start:]
            # A cut response promises the full length, sends half, and hangs up.
            self.wfile.write(chunk[: len(chunk) // 2] if cut else chunk)
            self.wfile.flush()
            self.close_connection = True

    return Handler


@pytest.fixture()
def server(archive: Path) -> Iterator[tuple[str, Served]]:
    """Serve ``archive`` on 127.0.0.1 (ephemeral port); yields (url, served state)."""
    served = Served(payload=archive.read_bytes())
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(served))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/KuaiRec.zip", served
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture()
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record backoff pauses instead of waiting."""
    calls: list[float] = []
    monkeypatch.setattr(dl, "_sleep", calls.append)
    return calls


def fetch(url: str, served: Served, dest: Path, **kwargs: object) -> Path:
    expected_md5, size = md5(served.payload), len(served.payload)
    return download(url, dest, expected_md5, size, progress=False, **kwargs)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------
# download
# ------------------------------------------------------------------------------------------


def test_download_good_verifies_and_reports_progress(
    server: tuple[str, Served], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, served = server
    dest = tmp_path / "dl" / "KuaiRec.zip"
    result = download(url, dest, md5(served.payload), len(served.payload), progress=True)
    assert result == dest
    assert dest.read_bytes() == served.payload
    assert not dest.with_suffix(".zip.part").exists()
    assert served.requests == [None]  # one request, no Range
    err = capsys.readouterr().err
    assert "100.0%" in err and "MB/s" in err


def test_download_reuses_verified_dest_without_network(server: tuple[str, Served], tmp_path: Path) -> None:
    url, served = server
    dest = tmp_path / "KuaiRec.zip"
    dest.write_bytes(served.payload)
    assert fetch(url, served, dest) == dest
    assert served.requests == []


def test_download_corrupted_body_never_becomes_dest(server: tuple[str, Served], tmp_path: Path) -> None:
    url, served = server
    served.mode = "corrupt"
    dest = tmp_path / "KuaiRec.zip"
    with pytest.raises(DownloadError) as excinfo:
        fetch(url, served, dest)
    message = str(excinfo.value)
    expected = md5(served.payload)
    actual = md5(bytes([served.payload[0] ^ 0xFF]) + served.payload[1:])
    assert expected in message and actual in message
    assert not dest.exists()
    assert not dest.with_suffix(".zip.part").exists()


def test_download_resumes_with_range_after_a_cut(
    server: tuple[str, Served], tmp_path: Path, sleeps: list[float]
) -> None:
    url, served = server
    served.mode = "cut_once"
    dest = tmp_path / "KuaiRec.zip"
    fetch(url, served, dest, backoff_s=0.01)
    assert dest.read_bytes() == served.payload
    half = len(served.payload) // 2
    assert served.requests == [None, f"bytes={half}-"]  # the second request resumed where the first stopped
    assert sleeps == [0.01]


def test_download_restarts_when_server_ignores_range(
    server: tuple[str, Served], tmp_path: Path, sleeps: list[float]
) -> None:
    url, served = server
    served.mode = "cut_once_ignore_range"
    dest = tmp_path / "KuaiRec.zip"
    fetch(url, served, dest, backoff_s=0.01)
    assert dest.read_bytes() == served.payload  # a 200 answer to a Range request restarted from zero
    assert served.requests[1] is not None and len(served.requests) == 2


def test_download_resumes_a_part_left_by_an_earlier_run(server: tuple[str, Served], tmp_path: Path) -> None:
    url, served = server
    dest = tmp_path / "KuaiRec.zip"
    dest.with_suffix(".zip.part").write_bytes(served.payload[:100])
    fetch(url, served, dest)
    assert dest.read_bytes() == served.payload
    assert served.requests == ["bytes=100-"]


def test_download_stale_part_is_discarded_and_refetched(server: tuple[str, Served], tmp_path: Path) -> None:
    url, served = server
    dest = tmp_path / "KuaiRec.zip"
    dest.with_suffix(".zip.part").write_bytes(b"\0" * 100)  # wrong bytes: resume gives a bad MD5
    fetch(url, served, dest)
    assert dest.read_bytes() == served.payload
    assert served.requests == ["bytes=100-", None]  # one clean restart after the checksum failed


def test_download_always_cut_fails_after_retries(
    server: tuple[str, Served], tmp_path: Path, sleeps: list[float]
) -> None:
    url, served = server
    served.mode = "always_cut"
    dest = tmp_path / "KuaiRec.zip"
    with pytest.raises(DownloadError, match="after 3 attempt") as excinfo:
        fetch(url, served, dest, retries=2, backoff_s=0.01)
    assert not dest.exists()
    assert len(served.requests) == 3
    assert sleeps == [0.01, 0.02]  # exponential backoff
    assert "kuairec_archive" in str(excinfo.value)


def test_download_wrong_expected_size_fails_before_the_body(server: tuple[str, Served], tmp_path: Path) -> None:
    url, served = server
    dest = tmp_path / "KuaiRec.zip"
    with pytest.raises(DownloadError, match="Content-Length") as excinfo:
        download(url, dest, md5(served.payload), len(served.payload) + 1, progress=False)
    assert f"{len(served.payload) + 1:,}" in str(excinfo.value)
    assert not dest.exists()


def test_download_http_404_is_not_retried(server: tuple[str, Served], tmp_path: Path, sleeps: list[float]) -> None:
    url, served = server
    with pytest.raises(DownloadError, match="404"):
        download(url.rsplit("/", 1)[0] + "/missing.zip", tmp_path / "x.zip", "0" * 32, 10, progress=False)
    assert sleeps == [] and served.requests == []  # the 404 path is not logged; nothing was retried


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_download_connection_refused_fails_fast(tmp_path: Path, sleeps: list[float]) -> None:
    url = f"http://127.0.0.1:{free_port()}/KuaiRec.zip"
    dest = tmp_path / "KuaiRec.zip"
    with pytest.raises(DownloadError) as excinfo:
        download(url, dest, "0" * 32, 10, retries=5, progress=False)
    message = str(excinfo.value)
    assert "kuairec_archive" in message and "kuairec_dir" in message
    assert sleeps == []  # no retry loop for a refused connection
    assert not dest.exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/KuaiRec.zip",
        "ftp://127.0.0.1/KuaiRec.zip",
        "file:///etc/passwd",
        "http://127.0.0.1.example.com/KuaiRec.zip",
        "http://localhost@example.com/KuaiRec.zip",
        "KuaiRec.zip",
    ],
)
def test_download_refuses_non_https_urls_without_network(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    with pytest.raises(DownloadError, match="https://"):
        download(url, tmp_path / "KuaiRec.zip", "0" * 32, 10, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_verify_md5_names_both_checksums(tmp_path: Path) -> None:
    path = tmp_path / "file.bin"
    path.write_bytes(b"abc")
    verify_md5(path, md5(b"abc").upper())  # case-insensitive
    with pytest.raises(DownloadError) as excinfo:
        verify_md5(path, "f" * 32)
    assert "f" * 32 in str(excinfo.value) and md5(b"abc") in str(excinfo.value)


# ------------------------------------------------------------------------------------------
# safe_extract_kuairec
# ------------------------------------------------------------------------------------------


def test_extract_only_the_data_csvs_flattened(archive: Path, tmp_path: Path) -> None:
    out = tmp_path / "raw"
    paths = safe_extract_kuairec(archive, out)
    assert [p.name for p in paths] == sorted(RawFiles.required)
    assert sorted(p.name for p in out.iterdir()) == sorted(RawFiles.required)  # no README, nested, __MACOSX, temp
    assert (out / RawFiles.item_categories).read_bytes() == tiny_csvs()[RawFiles.item_categories]


@pytest.mark.parametrize(
    "evil",
    [KUAIREC_MEMBER_PREFIX + "../../evil.csv", "/tmp/evil.csv", "..\\evil.csv"],
)
def test_extract_refuses_zip_slip(evil: str, tmp_path: Path) -> None:
    path = build_zip(tmp_path / "slip.zip", tiny_csvs(), {evil: b"x\n"})
    out = tmp_path / "a" / "b" / "raw"
    with pytest.raises(DownloadError, match="zip slip") as excinfo:
        safe_extract_kuairec(path, out)
    assert repr(evil) in str(excinfo.value)
    assert not out.exists()  # refused before anything was written
    assert not (tmp_path / "evil.csv").exists() and not (tmp_path / "a" / "evil.csv").exists()


def test_extract_refuses_symlink_member(tmp_path: Path) -> None:
    files = tiny_csvs()
    del files[RawFiles.social_network]
    link = zipfile.ZipInfo(KUAIREC_MEMBER_PREFIX + RawFiles.social_network)
    link.create_system = 3
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    path = build_zip(tmp_path / "link.zip", files)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(DownloadError, match="symbolic link"):
        safe_extract_kuairec(path, tmp_path / "raw")
    assert not (tmp_path / "raw").exists()


def test_extract_refuses_high_compression_ratio(tmp_path: Path) -> None:
    files = tiny_csvs()
    row = b"0,0,0,0,2020-07-05 00:00:00.000,20200705,0.0,0.0\n"
    files[RawFiles.big_matrix] += row * 4000  # ~200 KB that deflates ~270x
    path = build_zip(tmp_path / "bomb.zip", files)
    with pytest.raises(DownloadError, match="compression ratio") as excinfo:
        safe_extract_kuairec(path, tmp_path / "raw", max_ratio=20)
    assert RawFiles.big_matrix in str(excinfo.value)
    assert not (tmp_path / "raw").exists()
    # The same archive passes under a looser limit, so the check is about the ratio, not the file.
    assert len(safe_extract_kuairec(path, tmp_path / "ok", max_ratio=10_000)) == len(RawFiles.required)


def test_extract_refuses_total_size_above_limit(archive: Path, tmp_path: Path) -> None:
    declared = sum(len(body) for body in tiny_csvs().values())
    with pytest.raises(DownloadError, match="max_total_bytes") as excinfo:
        safe_extract_kuairec(archive, tmp_path / "raw", max_total_bytes=declared - 1)
    assert f"{declared:,}" in str(excinfo.value)


def test_extract_stops_a_member_that_inflates_beyond_its_declared_size(archive: Path, tmp_path: Path) -> None:
    # Lie in the central directory: declare big_matrix.csv 10 bytes smaller than it inflates to.
    data = bytearray(archive.read_bytes())
    name = (KUAIREC_MEMBER_PREFIX + RawFiles.big_matrix).encode()
    header = next(
        pos - 46
        for pos in range(len(data))
        if data.startswith(name, pos) and data[pos - 46 : pos - 42] == b"PK\x01\x02"  # central header is 46 bytes
    )
    declared = int.from_bytes(data[header + 24 : header + 28], "little")
    data[header + 24 : header + 28] = (declared - 10).to_bytes(4, "little")
    liar = tmp_path / "liar.zip"
    liar.write_bytes(bytes(data))
    with pytest.raises(DownloadError, match="declared|corrupted") as excinfo:
        safe_extract_kuairec(liar, tmp_path / "raw")
    assert RawFiles.big_matrix in str(excinfo.value)
    assert not (tmp_path / "raw" / RawFiles.big_matrix).exists()
    assert [p for p in (tmp_path / "raw").iterdir() if p.name.endswith(".tmp")] == []  # no temp file left


def test_extract_missing_required_file(tmp_path: Path) -> None:
    files = tiny_csvs()
    del files[RawFiles.social_network]
    path = build_zip(tmp_path / "short.zip", files)
    with pytest.raises(DownloadError, match=RawFiles.social_network) as excinfo:
        safe_extract_kuairec(path, tmp_path / "raw")
    assert RawFiles.big_matrix in str(excinfo.value)  # lists what it did find


def test_extract_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "KuaiRec.zip"
    path.write_bytes(b"<html>rate limited</html>")
    with pytest.raises(DownloadError, match="not a readable zip"):
        safe_extract_kuairec(path, tmp_path / "raw")


# ------------------------------------------------------------------------------------------
# ingest_kuairec
# ------------------------------------------------------------------------------------------


@pytest.fixture()
def real_files(kuairec_real_dir: Path) -> dict[str, bytes]:
    """The tiny required files, with the real user_features, item_categories and caption files."""
    files = tiny_csvs()
    files[RawFiles.user_features] = (kuairec_real_dir / RawFiles.user_features).read_bytes()
    files[RawFiles.item_categories] = (kuairec_real_dir / RawFiles.item_categories).read_bytes()
    files[RawFiles.big_matrix] = (kuairec_real_dir / "samples" / "big_matrix_1000.csv").read_bytes()
    files[RawFiles.caption_category] = (kuairec_real_dir / RawFiles.caption_category).read_bytes()
    return files


def check_manifest(manifest: dict[str, object], files: dict[str, bytes], raw: Path) -> None:
    listed = manifest["files"]
    assert isinstance(listed, dict)
    assert sorted(listed) == sorted(files)
    for name, body in files.items():
        assert (raw / name).read_bytes() == body
        assert listed[name] == {"bytes": len(body), "md5": md5(body)}
    assert listed[RawFiles.user_features]["md5"] == USER_FEATURES_MD5  # byte-exact copy of the real file


def test_ingest_from_folder(real_files: dict[str, bytes], tmp_path: Path) -> None:
    folder = tmp_path / "KuaiRec 2.0" / "data"
    folder.mkdir(parents=True)
    for name, body in real_files.items():
        (folder / name).write_bytes(body)
    (folder / "notes.txt").write_text("ignored")
    params = parse_section("data", {"source": "kuairec", "kuairec_dir": str(folder)})
    raw = tmp_path / "raw"
    manifest = ingest_kuairec(params, raw)
    assert manifest["source"] == "kuairec" and manifest["archive_md5"] is None
    check_manifest(manifest, real_files, raw)
    assert not (raw / "notes.txt").exists()
    # Pointing at the "KuaiRec 2.0" folder above works too.
    params_up = parse_section("data", {"source": "kuairec", "kuairec_dir": str(folder.parent)})
    assert ingest_kuairec(params_up, tmp_path / "raw2")["files"] == manifest["files"]


def test_ingest_from_folder_missing_files(tmp_path: Path) -> None:
    folder = tmp_path / "extracted"
    folder.mkdir()
    (folder / RawFiles.big_matrix).write_bytes(tiny_csvs()[RawFiles.big_matrix])
    params = parse_section("data", {"source": "kuairec", "kuairec_dir": str(folder)})
    with pytest.raises(InputDataError) as excinfo:
        ingest_kuairec(params, tmp_path / "raw")
    message = str(excinfo.value)
    assert str(folder) in message and RawFiles.social_network in message and "kuairec_dir" in message
    assert RawFiles.big_matrix in message.split("found:")[1]


def test_ingest_from_archive(real_files: dict[str, bytes], tmp_path: Path) -> None:
    path = build_zip(tmp_path / "KuaiRec.zip", real_files)
    archive_md5 = md5(path.read_bytes())
    params = parse_section(
        "data",
        {
            "source": "kuairec",
            "kuairec_archive": str(path),
            "kuairec_md5": archive_md5,
            "kuairec_size": path.stat().st_size,
        },
    )
    raw = tmp_path / "raw"
    manifest = ingest_kuairec(params, raw)
    assert manifest["archive_md5"] == archive_md5
    check_manifest(manifest, real_files, raw)


def test_ingest_from_archive_with_wrong_md5(archive: Path, tmp_path: Path) -> None:
    params = parse_section("data", {"source": "kuairec", "kuairec_archive": str(archive), "kuairec_md5": "0" * 32})
    with pytest.raises(DownloadError, match="0" * 32) as excinfo:
        ingest_kuairec(params, tmp_path / "raw")
    assert md5(archive.read_bytes()) in str(excinfo.value)
    assert list((tmp_path / "raw").iterdir()) == []


def test_ingest_archive_not_found(tmp_path: Path) -> None:
    params = parse_section("data", {"source": "kuairec", "kuairec_archive": str(tmp_path / "nope.zip")})
    with pytest.raises(InputDataError, match="kuairec_archive"):
        ingest_kuairec(params, tmp_path / "raw")


def test_ingest_downloads_then_reuses_the_archive(server: tuple[str, Served], tmp_path: Path) -> None:
    url, served = server
    params = parse_section(
        "data",
        {
            "source": "kuairec",
            "kuairec_md5": md5(served.payload),
            "kuairec_size": len(served.payload),
            "download_dir": str(tmp_path / "download"),
        },
    )
    params = dataclasses.replace(params, kuairec_url=url)  # params.yaml itself only accepts https
    first = ingest_kuairec(params, tmp_path / "raw1", progress=False)
    assert (tmp_path / "download" / "KuaiRec.zip").read_bytes() == served.payload
    assert first["archive_md5"] == md5(served.payload)
    assert sorted(first["files"]) == sorted(RawFiles.required)
    second = ingest_kuairec(params, tmp_path / "raw2", progress=False)
    assert second["files"] == first["files"]
    assert len(served.requests) == 1  # the verified archive was reused
    assert (tmp_path / "raw2" / RawFiles.item_categories).read_bytes() == tiny_csvs()[RawFiles.item_categories]
    assert Columns.feat in (tmp_path / "raw2" / RawFiles.item_categories).read_text()


# ------------------------------------------------------------------------------------------
# Interrupted downloads and damaged archives never pass verification
# ------------------------------------------------------------------------------------------


def test_download_cut_short_keeps_only_a_part_then_resumes(
    server: tuple[str, Served], tmp_path: Path, sleeps: list[float]
) -> None:
    url, served = server
    served.mode = "always_cut"
    dest = tmp_path / "KuaiRec.zip"
    part = dest.with_suffix(".zip.part")
    with pytest.raises(DownloadError, match="resumed on the next run"):
        fetch(url, served, dest, retries=0)
    assert not dest.exists()  # the cut body never becomes the archive
    assert 0 < part.stat().st_size < len(served.payload)
    with pytest.raises(DownloadError) as excinfo:  # and could not pass for it
        verify_md5(part, md5(served.payload))
    assert md5(served.payload) in str(excinfo.value) and md5(part.read_bytes()) in str(excinfo.value)

    served.mode, served.requests[:] = "good", []
    fetch(url, served, dest)  # the next run resumes where the cut one stopped
    assert dest.read_bytes() == served.payload and not part.exists()
    assert served.requests == [f"bytes={len(served.payload) // 2}-"]


def test_download_truncated_dest_is_fetched_again(server: tuple[str, Served], tmp_path: Path) -> None:
    url, served = server
    dest = tmp_path / "KuaiRec.zip"
    dest.write_bytes(served.payload[: len(served.payload) // 2])  # e.g. copied by hand, cut short
    fetch(url, served, dest)
    assert dest.read_bytes() == served.payload
    assert served.requests == [None]  # not trusted, not resumed: fetched whole


def test_download_part_longer_than_the_file_restarts(server: tuple[str, Served], tmp_path: Path) -> None:
    url, served = server
    dest = tmp_path / "KuaiRec.zip"
    dest.with_suffix(".zip.part").write_bytes(served.payload + b"trailing junk")
    fetch(url, served, dest)
    assert dest.read_bytes() == served.payload
    assert served.requests == [None]


def test_ingest_refuses_a_truncated_archive_naming_both_checksums(archive: Path, tmp_path: Path) -> None:
    full = archive.read_bytes()
    cut = tmp_path / "KuaiRec.zip"
    cut.write_bytes(full[: len(full) // 2])
    params = parse_section("data", {"source": "kuairec", "kuairec_archive": str(cut), "kuairec_md5": md5(full)})
    with pytest.raises(DownloadError, match="MD5 mismatch") as excinfo:
        ingest_kuairec(params, tmp_path / "raw")
    assert md5(full) in str(excinfo.value) and md5(full[: len(full) // 2]) in str(excinfo.value)
    assert list((tmp_path / "raw").iterdir()) == []


def test_ingest_refuses_a_valid_zip_that_is_not_the_expected_one(archive: Path, tmp_path: Path) -> None:
    other = build_zip(tmp_path / "other" / "KuaiRec.zip", {**tiny_csvs(), RawFiles.big_matrix: b"user_id\n"})
    params = parse_section(
        "data", {"source": "kuairec", "kuairec_archive": str(other), "kuairec_md5": md5(archive.read_bytes())}
    )
    with pytest.raises(DownloadError) as excinfo:
        ingest_kuairec(params, tmp_path / "raw")
    assert md5(archive.read_bytes()) in str(excinfo.value) and md5(other.read_bytes()) in str(excinfo.value)


@pytest.mark.parametrize(
    ("url", "accepted"),
    [
        ("https://zenodo.org/records/18164998/files/KuaiRec.zip", True),
        ("http://zenodo.org/records/18164998/files/KuaiRec.zip", False),
        ("http://127.0.0.1:8000/KuaiRec.zip", False),  # tests reach their local server via dataclasses.replace
        ("https://", False),
        ("ftp://zenodo.org/KuaiRec.zip", False),
        ("https://[::1", False),
    ],
)
def test_params_accept_only_https_urls(url: str, accepted: bool) -> None:
    if accepted:
        assert parse_section("data", {"kuairec_url": url}).kuairec_url == url
    else:
        with pytest.raises(ParamsError, match=r"data\.kuairec_url .*https://"):
            parse_section("data", {"kuairec_url": url})
