"""Get the real KuaiRec 2.0 files: download and verify the archive, extract it safely, or copy a folder.

:func:`ingest_kuairec` takes, in this order, ``data.kuairec_dir`` (an extracted folder, copied),
``data.kuairec_archive`` (a ``KuaiRec.zip``, MD5-checked and extracted) or else downloads ``data.kuairec_url``
(resumable, retried, size- and MD5-checked before it appears); :func:`safe_extract_kuairec` refuses unsafe
archives. Only the standard library touches the network, and only in the download branch. See
docs/real-kuairec.md and docs/design/data.md.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import os
import socket
import stat
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO, Any, Final

from reco.errors import DownloadError, InputDataError
from reco.io import atomic_path
from reco.progress import report
from reco.params import DataParams
from reco.schema import RawFiles

KUAIREC_MEMBER_PREFIX: Final = "KuaiRec 2.0/data/"
ARCHIVE_NAME: Final = "KuaiRec.zip"

_CHUNK: Final = 1 << 20  # 1 MiB reads: few syscalls, little memory
_LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost"})  # plain http allowed only here (tests)
_MAX_BACKOFF_S: Final = 30.0
# Members smaller than this are not ratio-checked: a tiny CSV can compress very well and still be harmless.
_RATIO_MIN_BYTES: Final = 64 * 2**10
_OFFLINE_ERRNOS: Final = frozenset({errno.ECONNREFUSED, errno.ENETUNREACH, errno.EHOSTUNREACH})

# Indirection so tests can observe (not wait for) the backoff.
_sleep: Callable[[float], None] = time.sleep


# --------------------------------------------------------------------------------------------
# Checksums
# --------------------------------------------------------------------------------------------


def file_md5(path: Path) -> str:
    """Return the hex MD5 of a file (``hashlib.file_digest``: buffered reads, constant memory).

    Examples
    --------
    >>> file_md5(Path("KuaiRec.zip"))  # doctest: +SKIP
    '261550d472c48eff4990fb13c0e5bcf7'
    """
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, lambda: hashlib.md5(usedforsecurity=False)).hexdigest()


def verify_md5(path: Path, expected_md5: str) -> None:
    """Raise :class:`DownloadError` unless ``path`` exists and its MD5 is ``expected_md5``.

    Parameters
    ----------
    path
        The file to check.
    expected_md5
        32 hex digits (case-insensitive).

    Raises
    ------
    DownloadError
        The file is missing, or its checksum differs; the message names both checksums.
    """
    path = Path(path)
    if not path.is_file():
        raise DownloadError(f"{path}: file not found; expected a file with MD5 {expected_md5.lower()}")
    actual = file_md5(path)
    if actual != expected_md5.lower():
        raise DownloadError(
            f"{path}: MD5 mismatch: expected {expected_md5.lower()}, found {actual} "
            f"({path.stat().st_size:,} bytes); the file is corrupted or not the expected archive"
        )


# --------------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------------


def _manual_hint(url: str, expected_md5: str, expected_size: int) -> str:
    return (
        f"To supply the archive by hand, download {ARCHIVE_NAME} elsewhere ({url}, {expected_size:,} bytes, "
        f"MD5 {expected_md5}) and set `data.kuairec_archive: /path/to/{ARCHIVE_NAME}` in params.yaml "
        f"(or `data.kuairec_dir: /path/to/KuaiRec 2.0/data` for an already extracted folder)."
    )


def _check_url(url: str) -> urllib.parse.SplitResult:
    """Allow https anywhere and plain http only on loopback (the test servers); refuse the rest."""
    parts = urllib.parse.urlsplit(url)
    try:
        host = parts.hostname
    except ValueError as error:  # malformed netloc, e.g. an unclosed IPv6 bracket
        raise DownloadError(f"{url}: not a valid URL ({error})") from error
    if parts.scheme == "https" and host:
        return parts
    if parts.scheme == "http" and host in _LOOPBACK_HOSTS:
        return parts
    raise DownloadError(
        f"{url}: refusing to download: expected an https:// URL (plain http only on 127.0.0.1/localhost), "
        f"found scheme {parts.scheme or '(none)'!r} and host {host or '(none)'!r}"
    )


class _SafeRedirect(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to URLs that :func:`_check_url` accepts (no https -> http downgrade)."""

    def redirect_request(
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Any, newurl: str
    ) -> urllib.request.Request | None:
        _check_url(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _opener(loopback: bool) -> urllib.request.OpenerDirector:
    # Loopback never goes through a proxy: an http_proxy in the environment must not capture tests.
    proxies = urllib.request.ProxyHandler({}) if loopback else urllib.request.ProxyHandler()
    return urllib.request.build_opener(proxies, _SafeRedirect())


def _is_offline(error: BaseException) -> bool:
    """True for failures that retrying will not fix soon: name resolution, refused, unreachable."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (socket.gaierror, ConnectionRefusedError)):
            return True
        if isinstance(current, OSError) and current.errno in _OFFLINE_ERRNOS:
            return True
        reason = getattr(current, "reason", None)  # urllib.error.URLError wraps the socket error here
        current = reason if isinstance(reason, BaseException) else (current.__cause__ or current.__context__)
    return False


class _Progress:
    """A minimal download progress report on stderr: percentage, MB done / total, MB/s.

    One line every 10 %, never redrawn (on a terminal too), so logs (DVC, CI) stay readable.
    """

    def __init__(self, label: str, total: int, enabled: bool) -> None:
        self.label, self.total, self.enabled = label, max(total, 1), enabled
        self.started = time.monotonic()
        self.last_decile = -1
        self.last_done = -1
        self.session_start_bytes: int | None = None

    def update(self, done: int, *, force: bool = False) -> None:
        if not self.enabled:
            return
        if done == self.last_done:
            return  # nothing new to show (e.g. the final forced draw right after the 100 % one)
        if self.session_start_bytes is None:
            self.session_start_bytes = done  # speed counts this session's bytes, not the resumed ones
        now = time.monotonic()
        decile = done * 10 // self.total
        if not force and decile == self.last_decile:
            return
        self.last_decile, self.last_done = decile, done
        speed = max(done - self.session_start_bytes, 0) / max(now - self.started, 1e-6) / 1e6
        line = (
            f"{self.label}: {100 * done / self.total:5.1f}%  "
            f"{done / 1e6:,.1f}/{self.total / 1e6:,.1f} MB  {speed:,.1f} MB/s"
        )
        sys.stderr.write(line + "\n")
        sys.stderr.flush()


class _Retry(Exception):
    """One attempt failed in a way worth retrying (internal)."""


class _Offline(Exception):
    """The host cannot be reached at all: retrying soon will not help (internal)."""


def _parse_content_range(value: str | None) -> tuple[int, int | None] | None:
    """``'bytes 100-199/1000'`` -> ``(100, 1000)``; ``None`` when absent or malformed."""
    if not value or not value.startswith("bytes "):
        return None
    span, _, total = value[len("bytes ") :].partition("/")
    start, _, _ = span.partition("-")
    try:
        return int(start), (None if total.strip() == "*" else int(total))
    except ValueError:
        return None


def _attempt(
    opener: urllib.request.OpenerDirector,
    url: str,
    part: Path,
    expected_size: int,
    timeout_s: float,
    bar: _Progress,
) -> bool:
    """Fetch the rest of ``url`` into ``part``; return True if this response resumed a partial file.

    Raises :class:`_Retry` for transient failures and :class:`DownloadError` for permanent ones.
    """
    offset = part.stat().st_size if part.exists() else 0
    if offset > expected_size:  # cannot be a prefix of the right file
        part.unlink()
        offset = 0
    if offset == expected_size:
        return True  # complete already (e.g. a crash between download and verification)
    request = urllib.request.Request(url, headers={"User-Agent": "reco-kuairec/0.1", "Accept-Encoding": "identity"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = opener.open(request, timeout=timeout_s)
    except urllib.error.HTTPError as error:
        error.close()
        if error.code == 416:  # our .part does not fit the server's file: start over
            part.unlink(missing_ok=True)
            raise _Retry(f"HTTP 416 for a resume at byte {offset:,}; restarting from zero") from error
        if error.code in (408, 429) or error.code >= 500:
            raise _Retry(f"HTTP {error.code} {error.reason}") from error
        raise DownloadError(f"{url}: server answered HTTP {error.code} {error.reason}; expected 200 or 206") from error
    except DownloadError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        if _is_offline(error):
            raise _Offline(str(getattr(error, "reason", error))) from error
        raise _Retry(f"connection failed: {getattr(error, 'reason', error)}") from error

    with response:
        status = response.status
        resumed = False
        if status == 206 and offset:
            content_range = _parse_content_range(response.headers.get("Content-Range"))
            if content_range is None or content_range[0] != offset:
                part.unlink(missing_ok=True)
                found = response.headers.get("Content-Range")
                raise _Retry(f"server resumed at the wrong place (Content-Range {found!r}, expected start {offset})")
            if content_range[1] is not None and content_range[1] != expected_size:
                raise DownloadError(
                    f"{url}: server reports a file of {content_range[1]:,} bytes; expected {expected_size:,} bytes"
                )
            resumed = True
        elif status == 200:
            offset = 0  # the server ignored the Range header (or there was none): start over
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) != expected_size:
                raise DownloadError(
                    f"{url}: server reports a file of {int(length):,} bytes (Content-Length); "
                    f"expected {expected_size:,} bytes"
                )
        else:
            raise _Retry(f"unexpected HTTP status {status}")
        done = offset
        bar.update(done, force=True)
        try:
            with open(part, "ab" if resumed else "wb") as sink:
                while chunk := response.read(_CHUNK):
                    sink.write(chunk)
                    done += len(chunk)
                    if done > expected_size:
                        break
                    bar.update(done)
        except (http.client.HTTPException, OSError) as error:  # reset, timeout, IncompleteRead
            raise _Retry(f"connection lost after {done:,} of {expected_size:,} bytes: {error!r}") from error
    if done > expected_size:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: received more than the expected {expected_size:,} bytes; not the expected file")
    if done < expected_size:
        raise _Retry(f"connection closed after {done:,} of {expected_size:,} bytes")
    bar.update(done, force=True)
    return resumed


def download(
    url: str,
    dest: Path,
    expected_md5: str,
    expected_size: int,
    *,
    retries: int = 3,
    timeout_s: float = 30.0,
    progress: bool = True,
    backoff_s: float = 1.0,
) -> Path:
    """Download ``url`` to ``dest``, resumably, and verify its size and MD5 before it appears.

    The body streams into ``dest`` + ``.part``. A dropped connection is retried after a backoff
    (``backoff_s``, doubled each time, at most 30 s) and resumed with an HTTP ``Range`` request;
    a server that answers ``200`` instead of ``206`` restarts the file from zero. Only a complete
    body whose size and MD5 match is renamed onto ``dest`` (atomically); a wrong checksum deletes
    the ``.part``. When retries run out, the ``.part`` is kept so the next call resumes it.
    An existing ``dest`` that verifies is reused without any network access.

    Parameters
    ----------
    url
        An ``https://`` URL (plain ``http://`` is accepted only for 127.0.0.1/localhost).
    dest
        Where the verified file ends up.
    expected_md5, expected_size
        The file's checksum (hex) and length in bytes.
    retries
        How many further attempts after the first one fails transiently.
    timeout_s
        Socket timeout for connecting and for each read.
    progress
        Report the download's progress on stderr (a line every 10 %).
    backoff_s
        The first pause between attempts.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    DownloadError
        Refused URL; offline (name resolution failed, connection refused, network unreachable: raised
        at once, no retries); HTTP error; wrong size or MD5; retries exhausted. The offline and
        exhausted messages explain how to set ``data.kuairec_archive`` instead.

    Examples
    --------
    >>> download("https://zenodo.org/records/18164998/files/KuaiRec.zip", Path("data/download/KuaiRec.zip"),
    ...          "261550d472c48eff4990fb13c0e5bcf7", 431_964_858)  # doctest: +SKIP
    PosixPath('data/download/KuaiRec.zip')
    """
    parts = _check_url(url)
    dest = Path(dest)
    expected_md5 = expected_md5.lower()
    if retries < 0 or expected_size < 0:
        raise ValueError(f"retries and expected_size must be >= 0, got {retries} and {expected_size}")
    if dest.is_file():
        if dest.stat().st_size == expected_size and file_md5(dest) == expected_md5:
            return dest
        dest.unlink()  # a stale or damaged earlier result: fetch it again
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    opener = _opener(loopback=parts.hostname in _LOOPBACK_HOSTS)
    bar = _Progress(dest.name, expected_size, progress)
    hint = _manual_hint(url, expected_md5, expected_size)
    failures: list[str] = []
    restarted_after_mismatch = False
    attempt = 0
    while True:
        try:
            resumed = _attempt(opener, url, part, expected_size, timeout_s, bar)
        except _Retry as error:
            failures.append(str(error))
            if attempt >= retries:
                raise DownloadError(
                    f"{url}: download failed after {attempt + 1} attempt(s) "
                    f"({part.stat().st_size if part.exists() else 0:,} of {expected_size:,} bytes kept in "
                    f"{part}, resumed on the next run); last error: {failures[-1]}. {hint}"
                ) from error
            _sleep(min(backoff_s * 2**attempt, _MAX_BACKOFF_S))
            attempt += 1
            continue
        except _Offline as error:  # no retry loop: fail fast with the way out
            raise DownloadError(
                f"{url}: cannot connect to {parts.hostname} ({error}): offline, or a wrong host name. {hint}"
            ) from error
        actual = file_md5(part)
        if actual == expected_md5:
            os.replace(part, dest)  # same folder, so the rename is atomic
            return dest
        part.unlink(missing_ok=True)
        if (resumed or attempt > 0) and not restarted_after_mismatch:
            # A resumed .part may hold stale bytes from an earlier run: one clean download decides.
            restarted_after_mismatch = True
            failures.append(f"MD5 {actual} after resuming; restarting from zero")
            continue
        raise DownloadError(
            f"{url}: MD5 mismatch: expected {expected_md5}, found {actual} for {expected_size:,} bytes; "
            f"the download was deleted. {hint}"
        )


# --------------------------------------------------------------------------------------------
# Extraction
# --------------------------------------------------------------------------------------------


def _is_unsafe_name(name: str) -> bool:
    """Absolute paths, Windows drives or backslashes, and ``..`` components (zip slip)."""
    if name.startswith(("/", "\\")) or "\\" in name or (len(name) > 1 and name[1] == ":"):
        return True
    return ".." in PurePosixPath(name).parts


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


def _select_members(
    archive: Path, zf: zipfile.ZipFile, max_total_bytes: int, max_ratio: float
) -> dict[str, zipfile.ZipInfo]:
    """Check every member and return the CSVs directly under ``KUAIREC_MEMBER_PREFIX`` by base name."""
    selected: dict[str, zipfile.ZipInfo] = {}
    for info in zf.infolist():
        if _is_unsafe_name(info.filename):
            raise DownloadError(
                f"{archive}: refusing member {info.filename!r}: absolute path or '..' (zip slip); "
                "expected relative paths under 'KuaiRec 2.0/data/'"
            )
        if info.is_dir() or not info.filename.startswith(KUAIREC_MEMBER_PREFIX) or not info.filename.endswith(".csv"):
            continue
        base = info.filename[len(KUAIREC_MEMBER_PREFIX) :]
        if "/" in base:  # a nested folder: not part of KuaiRec's layout
            continue
        if _is_symlink(info):
            raise DownloadError(f"{archive}: refusing member {info.filename!r}: it is a symbolic link, expected a file")
        if info.flag_bits & 0x1:
            raise DownloadError(f"{archive}: member {info.filename!r} is encrypted; expected a plain archive")
        if base in selected:
            raise DownloadError(f"{archive}: member {info.filename!r} appears twice; expected unique file names")
        if info.file_size >= _RATIO_MIN_BYTES:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > max_ratio:
                raise DownloadError(
                    f"{archive}: refusing member {info.filename!r}: compression ratio {ratio:,.0f} "
                    f"({info.file_size:,} bytes from {info.compress_size:,}) exceeds max_ratio {max_ratio:,.0f} "
                    "(zip bomb?)"
                )
        selected[base] = info
    total = sum(info.file_size for info in selected.values())
    if total > max_total_bytes:
        raise DownloadError(
            f"{archive}: refusing to extract {total:,} bytes (declared, {len(selected)} CSV files): more than "
            f"max_total_bytes {max_total_bytes:,} (zip bomb?)"
        )
    missing = [name for name in RawFiles.required if name not in selected]
    if missing:
        raise DownloadError(
            f"{archive}: missing required file(s) {', '.join(missing)} under {KUAIREC_MEMBER_PREFIX!r}; "
            f"found: {', '.join(sorted(selected)) or 'no CSV files'}"
        )
    return selected


def _copy_hashing(source: IO[bytes], target: Path, limit: int | None = None, what: str = "") -> tuple[int, str]:
    """Stream ``source`` to ``target`` atomically; return (bytes, md5). Stop beyond ``limit`` bytes."""
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    with atomic_path(target) as tmp, open(tmp, "wb") as sink:
        while chunk := source.read(_CHUNK):
            size += len(chunk)
            if limit is not None and size > limit:
                raise DownloadError(f"{what}: inflates beyond its declared {limit:,} bytes (zip bomb?)")
            digest.update(chunk)
            sink.write(chunk)
    return size, digest.hexdigest()


def _extract(archive: Path, out_dir: Path, max_total_bytes: int, max_ratio: float) -> dict[str, dict[str, Any]]:
    """Extract the selected members; return ``{name: {"bytes": n, "md5": hex}}``."""
    archive = Path(archive)
    out_dir = Path(out_dir)
    try:
        zf = zipfile.ZipFile(archive)
    except FileNotFoundError as error:
        raise DownloadError(f"{archive}: archive not found") from error
    except (zipfile.BadZipFile, OSError) as error:
        raise DownloadError(f"{archive}: not a readable zip archive ({error})") from error
    files: dict[str, dict[str, Any]] = {}
    with zf:
        selected = _select_members(archive, zf, max_total_bytes, max_ratio)
        out_dir.mkdir(parents=True, exist_ok=True)
        for base, info in sorted(selected.items()):
            what = f"{archive}: member {info.filename!r}"
            try:
                with zf.open(info) as source:
                    size, md5 = _copy_hashing(source, out_dir / base, limit=info.file_size, what=what)
            except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # bad CRC, truncated archive
                raise DownloadError(f"{what} is corrupted ({error}); download the archive again") from error
            files[base] = {"bytes": size, "md5": md5}
    return files


def safe_extract_kuairec(
    archive: Path, out_dir: Path, *, max_total_bytes: int = 8 * 2**30, max_ratio: float = 200.0
) -> list[Path]:
    """Extract the CSV files of ``KuaiRec 2.0/data/`` from ``archive`` into ``out_dir``, defensively.

    Only ``.csv`` members directly under :data:`KUAIREC_MEMBER_PREFIX` are extracted, flattened to
    their base names; each streams to a temporary file that is renamed into place. Before anything
    is written the archive is refused if a member has an absolute path or a ``..`` component (zip
    slip), a selected member is a symbolic link, the declared total size of the selected members
    exceeds ``max_total_bytes``, or a selected member (64 KiB or larger) claims a compression ratio
    above ``max_ratio`` (zip bombs). A member that inflates beyond its declared size is stopped.

    Parameters
    ----------
    archive
        The ``KuaiRec.zip`` file.
    out_dir
        Folder for the CSVs (created if needed).
    max_total_bytes
        Limit on the declared uncompressed size (default 8 GiB; KuaiRec 2.0 is about 1.5 GiB).
    max_ratio
        Limit on a member's uncompressed / compressed size.

    Returns
    -------
    list[Path]
        The extracted files, sorted by name.

    Raises
    ------
    DownloadError
        Unreadable or unsafe archive, or one of :attr:`RawFiles.required` is missing.

    Examples
    --------
    >>> safe_extract_kuairec(Path("data/download/KuaiRec.zip"), Path("data/raw"))  # doctest: +SKIP
    [PosixPath('data/raw/big_matrix.csv'), ...]
    """
    files = _extract(Path(archive), Path(out_dir), max_total_bytes, max_ratio)
    return [Path(out_dir) / name for name in sorted(files)]


# --------------------------------------------------------------------------------------------
# Ingest
# --------------------------------------------------------------------------------------------


def _resolve_folder(folder: Path) -> Path:
    """Accept the ``data`` folder itself, or ``KuaiRec 2.0`` / its parent, if the CSVs are there."""
    for candidate in (folder, folder / "data", folder / "KuaiRec 2.0" / "data"):
        if all((candidate / name).is_file() for name in RawFiles.required):
            return candidate
    return folder


def _copy_folder(folder: Path, raw_dir: Path) -> dict[str, dict[str, Any]]:
    if not folder.is_dir():
        raise InputDataError(
            folder, "data.kuairec_dir: folder not found; expected the extracted 'KuaiRec 2.0/data' folder"
        )
    source = _resolve_folder(folder)
    missing = [name for name in RawFiles.required if not (source / name).is_file()]
    if missing:
        present = sorted(p.name for p in folder.glob("*.csv"))
        raise InputDataError(
            folder,
            f"data.kuairec_dir: missing required file(s) {', '.join(missing)}; expected the extracted "
            f"'KuaiRec 2.0/data' folder with {', '.join(RawFiles.required)}; "
            f"found: {', '.join(present) or 'no CSV files'}",
        )
    files: dict[str, dict[str, Any]] = {}
    for name in (*RawFiles.required, RawFiles.caption_category):
        if not (source / name).is_file():
            continue  # only the optional caption file can be absent here
        with open(source / name, "rb") as handle:
            size, md5 = _copy_hashing(handle, raw_dir / name)
        files[name] = {"bytes": size, "md5": md5}
    return files


def ingest_kuairec(params: DataParams, raw_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Put the real KuaiRec 2.0 CSVs into ``raw_dir`` and describe what was written.

    Sources, first match wins: ``params.kuairec_dir`` (copy the six required CSVs and
    ``kuairec_caption_category.csv`` if present), ``params.kuairec_archive`` (MD5-check against
    ``params.kuairec_md5``, then :func:`safe_extract_kuairec`), else :func:`download`
    ``params.kuairec_url`` to ``download_dir/KuaiRec.zip`` (reused when present and verified) and
    extract it.

    Parameters
    ----------
    params
        The ``data`` section of ``params.yaml``.
    raw_dir
        Output folder (created if needed).
    progress
        Report the download's progress on stderr (a line every 10 %).

    Returns
    -------
    dict
        ``{"source": "kuairec", "origin": "kuairec_dir" | "kuairec_archive" | "download",
        "archive_md5": hex or None, "files": {name: {"bytes": n, "md5": hex}}}``.

    Raises
    ------
    InputDataError
        ``kuairec_dir`` or ``kuairec_archive`` does not exist, or the folder lacks required files.
    DownloadError
        Wrong archive checksum, unsafe or incomplete archive, failed download.
    """
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    if params.kuairec_dir:
        report(f"copying {params.kuairec_dir}")
        files = _copy_folder(Path(params.kuairec_dir), raw_dir)
        return {"source": "kuairec", "origin": "kuairec_dir", "archive_md5": None, "files": files}
    if params.kuairec_archive:
        archive = Path(params.kuairec_archive)
        if not archive.is_file():
            raise InputDataError(
                archive, f"data.kuairec_archive: file not found; expected {ARCHIVE_NAME} with MD5 {params.kuairec_md5}"
            )
        report(f"checking {archive.name}")
        verify_md5(archive, params.kuairec_md5)
        origin = "kuairec_archive"
    else:
        archive = download(
            params.kuairec_url,
            Path(params.download_dir) / ARCHIVE_NAME,
            params.kuairec_md5,
            params.kuairec_size,
            progress=progress,
        )
        origin = "download"
    report(f"extracting {archive.name}")
    files = _extract(archive, raw_dir, max_total_bytes=8 * 2**30, max_ratio=200.0)
    return {"source": "kuairec", "origin": origin, "archive_md5": params.kuairec_md5.lower(), "files": files}


__all__ = [
    "ARCHIVE_NAME",
    "KUAIREC_MEMBER_PREFIX",
    "download",
    "file_md5",
    "ingest_kuairec",
    "safe_extract_kuairec",
    "verify_md5",
]
