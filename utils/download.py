"""Fetch the published NAS-Bench-101 files, resuming and checking SHA-256.

The two official files and their published checksums::

    only108  nasbench_only108.tfrecord  ~499 MB   1,270,872 records
    full     nasbench_full.tfrecord     ~1.95 GB  5,083,488 records

:func:`fetch` downloads one into a folder (``data/`` by default in the
script), writing to ``<name>.part`` and renaming only once the whole file is
there and its SHA-256 matches. A cut connection is retried from where it
stopped (an HTTP range request); a run that still fails leaves the ``.part``
file, and the next run resumes it. A checksum mismatch deletes nothing: it
says which file is wrong and what to do.

The base address can point at a mirror: pass `base_url`, or set the
environment variable ``NASBENCH_BASE_URL``.

Example::

    path = fetch("only108", "data")          # data/nasbench_only108.tfrecord
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = [
    "BASE_URL",
    "PUBLISHED",
    "DownloadError",
    "sha256_of",
    "download",
    "fetch",
]

logger = logging.getLogger(__name__)

BASE_URL = "https://storage.googleapis.com/nasbench/"

# name -> (file name, SHA-256 as published)
PUBLISHED = {
    "only108": (
        "nasbench_only108.tfrecord",
        "4c39c3936e36a85269881d659e44e61a245babcb72cb374eacacf75d0e5f4fd1",
    ),
    "full": (
        "nasbench_full.tfrecord",
        "3d64db8180fb1b0207212f9032205064312b6907a3bbc81eabea10db2f5c7e9c",
    ),
}

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """A download that could not be completed or verified."""


def sha256_of(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK * 8):
            digest.update(chunk)
    return digest.hexdigest()


def download(
    url: str,
    path: str | os.PathLike,
    sha256: str | None = None,
    retries: int = 5,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """Download `url` to `path`, resuming ``path.part`` if it exists.

    Parameters
    ----------
    url : str
        Address of the file (http or https).
    path : str or path-like
        Where the finished file goes. If it exists and matches `sha256` (or
        no checksum is given), nothing is downloaded.
    sha256 : str, optional
        Expected hex SHA-256 of the whole file.
    retries : int
        Attempts after a cut connection, each resuming where the last
        stopped.

    Raises
    ------
    DownloadError
        If the file cannot be fetched in `retries` attempts, or its SHA-256
        does not match; the partial or mismatching file is kept.
    """
    from tqdm.auto import tqdm

    path = Path(path)
    partial = path.with_name(path.name + ".part")
    if path.exists():
        if sha256 is None:
            logger.info("%s exists; not downloading", path)
            return path
        found = sha256_of(path)
        if found == sha256:
            logger.info("%s exists and its SHA-256 matches; not downloading", path)
            return path
        raise DownloadError(
            f"{path} exists but its SHA-256 is {found}, expected {sha256}; "
            "move it away or delete it to download the file again"
        )
    path.parent.mkdir(parents=True, exist_ok=True)

    bar = tqdm(
        unit="B", unit_scale=True, desc=f"fetching {path.name}", disable=not progress
    )
    attempt = 0
    while True:
        have = partial.stat().st_size if partial.exists() else 0
        try:
            complete = _fetch_range(url, partial, have, timeout, bar)
        except (OSError, http.client.HTTPException) as error:
            if isinstance(error, urllib.error.HTTPError) and error.code == 416 and have:
                break  # the partial file already holds every byte
            if isinstance(error, urllib.error.HTTPError) and error.code < 500:
                bar.close()
                raise DownloadError(
                    f"cannot fetch {url}: HTTP {error.code} {error.reason}"
                ) from None
            attempt += 1
            got = partial.stat().st_size if partial.exists() else 0
            if attempt > retries:
                bar.close()
                raise DownloadError(
                    f"download of {url} failed after {retries} retries with "
                    f"{got:,} bytes in {partial} ({error}); run again to resume"
                ) from None
            logger.warning(
                "connection lost after %s bytes (%s); resuming (retry %d of %d)",
                f"{got:,}",
                error,
                attempt,
                retries,
            )
            time.sleep(min(2.0**attempt, 30.0) * 0.1)
            continue
        if complete:
            break
    bar.close()

    if sha256 is not None:
        found = sha256_of(partial)
        if found != sha256:
            raise DownloadError(
                f"SHA-256 of the downloaded {partial} is {found}, expected "
                f"{sha256}; the file is kept. If the source is a mirror, check "
                f"that it serves the published file; delete {partial} to "
                "download it again from the start"
            )
    os.replace(partial, path)
    logger.info("downloaded %s (%s bytes)", path, f"{path.stat().st_size:,}")
    return path


def _fetch_range(url, partial: Path, have: int, timeout: float, bar) -> bool:
    """Append what the server sends after byte `have`; True once complete."""
    request = urllib.request.Request(url)
    if have:
        request.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if have and response.status == 206:
            mode = "ab"
            total = have + int(response.headers.get("Content-Length", 0))
        else:
            # No resume offered: start again from the first byte.
            mode, have = "wb", 0
            total = int(response.headers.get("Content-Length", 0))
        bar.total = total or None
        bar.n = have
        bar.refresh()
        with open(partial, mode) as out:
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    size = partial.stat().st_size
    if total and size < total:
        raise http.client.IncompleteRead(b"", total - size)
    return True


def fetch(
    name: str,
    folder: str | os.PathLike,
    base_url: str | None = None,
    progress: bool = True,
) -> Path:
    """Download an official file by its short name (``only108`` or ``full``).

    The base address is `base_url`, else ``NASBENCH_BASE_URL``, else the
    published one.
    """
    if name not in PUBLISHED:
        raise ValueError(f"unknown file {name!r}, expected one of {sorted(PUBLISHED)}")
    file_name, sha256 = PUBLISHED[name]
    base = base_url or os.environ.get("NASBENCH_BASE_URL") or BASE_URL
    url = base.rstrip("/") + "/" + file_name
    logger.info("fetching %s into %s", url, folder)
    return download(url, Path(folder) / file_name, sha256=sha256, progress=progress)
