"""Files a container record points at: the additional files tarball (fetched from file:// or http(s)://, SHA-256
checked, extracted, cached by hash) and, for a DockerArchive, the image tarball (download() with its hash)."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from runner.clients.retry import backoff_delay
from runner.errors import ContainerSpecError

_CHUNK = 1 << 20
_ATTEMPTS = 3


def fetch_additional_files(url: str, sha256: str, cache_dir: Path, *, where: str = "",
                           sleep: Callable[[float], None] = time.sleep) -> Path:
    """Return the folder holding the tarball's extracted files, downloading and extracting only on a cache miss.

    The cache is `cache_dir/<sha256>/`: it exists only once the tarball matched its hash and was fully
    extracted (it is renamed into place last), so a present folder is trusted without reading `url`.
    """
    sha256 = sha256.lower()
    target = Path(cache_dir) / sha256
    if target.is_dir():
        return target
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{sha256[:12]}-", dir=cache_dir))
    try:
        tarball = work / "files.tar.gz"
        got = download(url, tarball, where=where, sleep=sleep)
        if got != sha256:
            raise ContainerSpecError(f"additional files: hash mismatch for {url}: expected {sha256}, found {got}",
                                     where=where, hint="the tarball changed since the container was registered; "
                                                       "ask its owner to re-register it")
        extracted = work / "files"
        extracted.mkdir()
        _extract(tarball, extracted, url=url, where=where)
        try:
            extracted.rename(target)
        except OSError:
            if not target.is_dir():  # lost a race only if the winner finished; otherwise a real error
                raise
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def empty_additional_files(cache_dir: Path) -> Path:
    """Return an empty folder to mount as additional_files for a container that has none."""
    path = Path(cache_dir) / "empty"
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o755)
    return path


def download(url: str, dest: Path, *, where: str = "", what: str = "additional files",
             sleep: Callable[[float], None] = time.sleep,
             on_progress: Callable[[int, int], None] | None = None) -> str:
    """Copy `url` (file://, http://, https://) to `dest` and return the SHA-256 hex of what was written.

    `on_progress(done, total)` is told the bytes written (total 0 when the server does not say)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        source = Path(urllib.request.url2pathname(parsed.path))
        try:
            with open(source, "rb") as src, open(dest, "wb") as out:
                return _copy_hashing(src, out, on_progress, os.fstat(src.fileno()).st_size)
        except OSError as e:
            raise ContainerSpecError(f"{what}: cannot read {url}: {e.strerror or e}", where=where) from e
    if parsed.scheme in ("http", "https"):
        import requests  # only needed for remote tarballs

        last: Exception | None = None
        rng = random.Random()
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with requests.get(url, stream=True, timeout=(10, 60)) as resp:
                    resp.raise_for_status()
                    total = int(resp.headers.get("Content-Length") or 0)
                    with open(dest, "wb") as out:
                        return _copy_hashing(_Chunks(resp), out, on_progress, total)
            except requests.HTTPError as e:
                if e.response is not None and 400 <= e.response.status_code < 500:
                    raise ContainerSpecError(f"{what}: {url} answered {e.response.status_code}",
                                             where=where) from e
                last = e
            except requests.RequestException as e:
                last = e
            if attempt < _ATTEMPTS:
                sleep(backoff_delay(attempt, base=1.0, cap=5.0, rng=rng) or 0.0)
        raise ContainerSpecError(f"{what}: cannot download {url} after {_ATTEMPTS} attempts: {last}",
                                 where=where, hint="check the network, then run again") from last
    raise ContainerSpecError(f"{what}: unsupported URL {url!r}", where=where)


class _Chunks:
    """Adapt a streamed requests response to the file-like read() that _copy_hashing uses."""

    def __init__(self, resp):
        self._it = resp.iter_content(_CHUNK)

    def read(self, _size: int) -> bytes:
        return next(self._it, b"")


def _copy_hashing(src, out, on_progress: Callable[[int, int], None] | None = None, total: int = 0) -> str:
    digest = hashlib.sha256()
    done = 0
    while chunk := src.read(_CHUNK):
        digest.update(chunk)
        out.write(chunk)
        done += len(chunk)
        if on_progress is not None:
            on_progress(done, max(total, done))
    return digest.hexdigest()


def _extract(tarball: Path, dest: Path, *, url: str, where: str) -> None:
    """Extract safely (no absolute paths, no escaping links, no devices) and make everything world-readable.

    The container runs as an unprivileged uid, so the files must be readable by anyone.
    """
    try:
        with tarfile.open(tarball, "r:*") as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise ContainerSpecError(f"additional files: {url} is not a valid tarball: {e}", where=where) from e
    for root, dirs, files in os.walk(dest):
        for d in dirs:
            p = os.path.join(root, d)
            os.chmod(p, os.stat(p).st_mode | 0o555)
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                os.chmod(p, os.stat(p).st_mode | 0o444)
    dest.chmod(0o755)
