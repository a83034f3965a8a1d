"""Resumable, retried, verified and atomic downloads from the NIH links or a mirror.

A transfer writes to `<dest>.part` and is renamed to `<dest>` only once its size (and sha256, when
pinned) check out, so Snakemake never sees a partial file as an output. The `.part` file survives a
failed attempt and the next one resumes it with an HTTP Range request.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import requests
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from ..constants import METADATA_HELP, box_name, kaggle_name
from ..files import atomic, reporting_disk_full, sha256_file

log = logging.getLogger(__name__)

# Errors after which the transfer is resumed from where it stopped.
_DROPPED = (
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
)


class DownloadError(RuntimeError):
    """A file could not be fetched or did not verify; the message names the source and reason."""


@dataclass(frozen=True)
class Settings:
    """How to talk to the server (the config's `download` section, where their defaults live)."""

    retries: int
    backoff: float
    timeout: float
    chunk_mb: float


def is_url(location: str) -> bool:
    return urlparse(location).scheme in ("http", "https")


def local_path(location: str) -> Path:
    """A directory or file:// location as a local path."""
    parsed = urlparse(location)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    return Path(location)


def join(base: str, name: str) -> str:
    if is_url(base) or base.startswith("file://"):
        return base.rstrip("/") + "/" + name
    return str(Path(base) / name)


def archive_candidates(index: int, entry: dict, mirror: str | None) -> list[str]:
    """Where archive `index` may be found: the official URL, or the Box then Kaggle name on the mirror."""
    if not mirror:
        return [entry["url"]]
    return [join(mirror, box_name(index)), join(mirror, kaggle_name(index))]


def metadata_candidates(name: str, mirror: str | None, metadata_dir: str) -> list[str]:
    """A metadata file by name, plain or gzip-compressed, from the mirror or the local folder."""
    base = mirror or metadata_dir
    return [join(base, name), join(base, name + ".gz")]


def _session(settings: Settings) -> requests.Session:
    retry = Retry(
        total=settings.retries,
        connect=settings.retries,
        read=settings.retries,
        status=settings.retries,
        backoff_factor=settings.backoff,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=frozenset({"GET", "HEAD"}),
        raise_on_status=False,
    )
    session = requests.Session()
    adapter = HTTPAdapter(max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class _NotFound(DownloadError):
    pass


def _open_http(session, url, offset, settings) -> tuple[int | None, int, Iterator[bytes]]:
    """(total size, offset actually served from, chunks) for `url` starting at `offset`."""
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        resp = session.get(url, stream=True, headers=headers, timeout=settings.timeout)
    except requests.exceptions.RetryError as exc:
        raise DownloadError(f"{url}: gave up after {settings.retries} retries ({exc})") from exc
    if resp.status_code == 404:
        raise _NotFound(f"{url}: 404 Not Found")
    if resp.status_code == 416 and offset:
        # Nothing left to send: the partial file is already complete (verified by the caller).
        total = _content_range_total(resp.headers.get("Content-Range", ""))
        return total, offset, iter(())
    if resp.status_code >= 400:
        raise DownloadError(f"{url}: HTTP {resp.status_code} {resp.reason} after {settings.retries} retries")
    chunk = int(settings.chunk_mb * 2**20)
    if resp.status_code == 206:
        start, total = _parse_content_range(resp.headers.get("Content-Range", ""), url)
        return total, start, resp.iter_content(chunk)
    length = resp.headers.get("Content-Length")
    return (int(length) if length is not None else None), 0, resp.iter_content(chunk)


def _content_range_total(header: str) -> int | None:
    total = header.rpartition("/")[2]
    return int(total) if total.isdigit() else None


def _parse_content_range(header: str, url: str) -> tuple[int, int | None]:
    # "bytes 100-199/200"
    try:
        span = header.split()[1]
        start = int(span.split("-")[0])
    except (IndexError, ValueError) as exc:
        raise DownloadError(f"{url}: bad Content-Range header {header!r}") from exc
    return start, _content_range_total(header)


def _open_local(path: Path, offset: int, settings) -> tuple[int, int, Iterator[bytes]]:
    if not path.is_file():
        raise _NotFound(f"{path}: no such file")
    total = path.stat().st_size
    chunk = int(settings.chunk_mb * 2**20)

    def chunks():
        with open(path, "rb") as fh:
            fh.seek(offset)
            while block := fh.read(chunk):
                yield block

    return total, offset, chunks()


def fetch(
    source: str,
    dest: Path,
    *,
    settings: Settings,
    expected_bytes: int | None = None,
    sha256: str | None = None,
    progress: bool = True,
) -> dict:
    """Fetch one `source` (URL, file:// URL or path) to `dest`; resume, retry, verify, rename.

    Returns {"source", "bytes", "sha256"}. Raises DownloadError, leaving no `dest`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    session = _session(settings) if is_url(source) else None
    total = None
    for attempt in range(settings.retries + 1):
        offset = part.stat().st_size if part.exists() else 0
        try:
            if session is not None:
                total, start, chunks = _open_http(session, source, offset, settings)
            else:
                total, start, chunks = _open_local(local_path(source), offset, settings)
            if start != offset:  # the server ignored our Range request: start again
                offset = 0
            with (
                reporting_disk_full(part),
                open(part, "r+b" if offset else "wb") as fh,
                tqdm(
                    total=total,
                    initial=offset,
                    unit="B",
                    unit_scale=True,
                    desc=dest.name,
                    disable=not progress,
                    mininterval=1.0,
                ) as bar,
            ):
                fh.seek(offset)
                fh.truncate()
                for block in chunks:
                    fh.write(block)
                    bar.update(len(block))
            size = part.stat().st_size
            if total is not None and size < total:
                raise requests.exceptions.ChunkedEncodingError(f"got {size} of {total} bytes")
            break
        except _DROPPED as exc:
            if attempt == settings.retries:
                raise DownloadError(f"{source}: transfer kept failing after {attempt} resumes ({exc})") from exc
            wait = settings.backoff * 2**attempt
            log.warning("%s: %s; resuming in %.1f s", source, exc, wait)
            time.sleep(wait)
    return _verify_and_commit(source, part, dest, total, expected_bytes, sha256)


def _verify_and_commit(source, part: Path, dest: Path, total, expected_bytes, sha256) -> dict:
    size = part.stat().st_size
    for want, what in ((total, "the server announced"), (expected_bytes, "the config pins")):
        if want is not None and size != want:
            part.unlink()
            raise DownloadError(f"{source}: got {size} bytes but {what} {want}; partial file removed")
    digest = sha256_file(part)
    if sha256 and digest != sha256.lower():
        part.unlink()
        raise DownloadError(
            f"{source}: sha256 mismatch for {dest.name}: got {digest}, config pins {sha256}; file removed"
        )
    os.replace(part, dest)
    return {"source": source, "bytes": size, "sha256": digest}


def fetch_first(candidates: list[str], dest: Path, **kwargs) -> dict:
    """Fetch the first candidate that exists; a clear error naming all of them if none does."""
    missing = []
    for source in candidates:
        try:
            return fetch(source, dest, **kwargs)
        except _NotFound as exc:
            missing.append(str(exc))
    raise DownloadError("not found at any of: " + "; ".join(missing))


def fetch_metadata(candidates: list[str], dest: Path, help_text: str, **kwargs) -> dict:
    """Fetch a metadata file, un-gzipping a `.gz` source; a how-to-get-it message when missing."""
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".download")
    try:
        info = fetch_first(candidates, tmp, **kwargs)
    except DownloadError as exc:
        if "not found" in str(exc):
            raise DownloadError(f"{dest.name} is missing ({exc}). {help_text}") from exc
        raise
    if info["source"].endswith(".gz"):
        with atomic(dest) as staged, gzip.open(tmp, "rb") as src, open(staged, "wb") as out:
            shutil.copyfileobj(src, out)
        tmp.unlink()
    else:
        os.replace(tmp, dest)
    return info


def write_checksum(info: dict, path: Path) -> None:
    """Record what was downloaded in `sha256sum` format, next to the file."""
    name = os.path.basename(urlparse(info["source"]).path or info["source"])
    with atomic(path) as staged:
        staged.write_text(f"{info['sha256']}  {name}\n")


def download_archive(
    *,
    sources: list[str],
    archive,
    checksum,
    expected_bytes: int | None,
    sha256: str | None,
    retries: int,
    backoff: float,
    timeout: float,
    chunk_mb: float,
) -> dict:
    """Step `download_archive`: the first of `sources` that exists, verified, to `archive`; its
    sha256 to `checksum`."""
    info = fetch_first(
        sources,
        Path(archive),
        expected_bytes=expected_bytes,
        sha256=sha256,
        progress=True,
        settings=Settings(retries=retries, backoff=backoff, timeout=timeout, chunk_mb=chunk_mb),
    )
    write_checksum(info, Path(checksum))
    log.info("%s: %s bytes from %s, sha256 %s", Path(archive).name, info["bytes"], info["source"], info["sha256"])
    return info


def download_metadata(
    *, sources: list[str], out, metadata_dir: str, retries: int, backoff: float, timeout: float, chunk_mb: float
) -> dict:
    """Step `download_metadata`: one metadata file from the first of `sources`, un-gzipped, to `out`;
    a missing file says where to get it and where to put it."""
    help_text = METADATA_HELP.format(name=Path(out).name, folder=metadata_dir)
    info = fetch_metadata(
        sources,
        Path(out),
        help_text,
        progress=False,
        settings=Settings(retries=retries, backoff=backoff, timeout=timeout, chunk_mb=chunk_mb),
    )
    log.info("%s from %s", Path(out).name, info["source"])
    return info
