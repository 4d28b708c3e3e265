"""File registry: every data file molkit reads, with its pinned upstream URL and sha256.

Resolution order for a file:
1. the offline mirror named by ``MOLKIT_DATA_MIRROR`` (a folder laid out like ``registry.csv``'s
   ``file`` column; the Makefile and ``.ci/run`` point it at ``../shared/data`` when that exists),
   hash-checked;
2. pooch's cache (``MOLKIT_DATA_CACHE``, default ``<MOLKIT_CACHE or ~/.cache/molkit>/data``):
   a hash-verified download that never happens twice.

Set ``MOLKIT_OFFLINE=1`` to forbid downloads (a missing file then fails at once).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from molkit._io import sha256_file

MIRROR_ENV = "MOLKIT_DATA_MIRROR"
CACHE_ENV = "MOLKIT_DATA_CACHE"
OFFLINE_ENV = "MOLKIT_OFFLINE"
DOWNLOAD_TIMEOUT_S = 15

_REGISTRY_CSV = Path(__file__).with_name("registry.csv")


class DataError(RuntimeError):
    """Base class of molkit's data errors; the message always says how to fix it."""


class DataHashError(DataError):
    """A file's sha256 is not the registered one."""


class DataUnavailableError(DataError):
    """A file is neither in the mirror nor in the cache, and cannot be downloaded."""


@dataclass(frozen=True)
class RegisteredFile:
    """One registered file: ``key`` is its path relative to the mirror root (e.g.
    ``moleculenet/bbbp.csv``)."""

    key: str
    url: str
    sha256: str | None
    size: int | None
    mirrored: bool
    license_note: str


@lru_cache(maxsize=1)
def registered_files() -> dict[str, RegisteredFile]:
    """All registered files, keyed by their mirror-relative path."""
    out: dict[str, RegisteredFile] = {}
    with _REGISTRY_CSV.open(newline="") as fh:
        for row in csv.DictReader(fh):
            out[row["file"]] = RegisteredFile(
                key=row["file"],
                url=row["upstream_url"],
                sha256=row["sha256"] or None,
                size=int(row["bytes"]) if row["bytes"] else None,
                mirrored=row["mirrored"] == "yes",
                license_note=row["license_note"],
            )
    return out


def mirror_dir() -> Path | None:
    """The offline mirror folder named by ``MOLKIT_DATA_MIRROR``, or None when unset."""
    value = os.environ.get(MIRROR_ENV, "").strip()
    return Path(value).expanduser() if value else None


def data_cache_dir() -> Path:
    """Where downloaded files are kept (``MOLKIT_DATA_CACHE``, else ``$MOLKIT_CACHE/data``)."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    base = os.environ.get("MOLKIT_CACHE", "").strip()
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "molkit") / "data"


_VERIFIED: dict[tuple[str, int, int], str] = {}


def _check_hash(entry: RegisteredFile, path: Path, where: str) -> None:
    if entry.sha256 is None:
        return
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns)
    digest = _VERIFIED.get(memo) or sha256_file(path)
    if digest != entry.sha256:
        raise DataHashError(
            f"sha256 mismatch for {entry.key} in the {where} ({path}): expected {entry.sha256}, "
            f"got {digest}. The file is corrupt or a different version; "
            "delete it and fetch it again "
            f"(`molkit data fetch`), or restore the pinned copy from {entry.url}."
        )
    _VERIFIED[memo] = digest


def _lookup(key: str) -> RegisteredFile:
    files = registered_files()
    if key not in files:
        import difflib

        close = difflib.get_close_matches(key, list(files), n=3, cutoff=0.4)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise KeyError(
            f"unknown data file {key!r}.{hint} `molkit data list --files` lists them all."
        )
    return files[key]


def fetch_file(key: str) -> Path:
    """Local path of registered file ``key``, from the mirror, the cache, or a verified download."""
    entry = _lookup(key)
    mirror = mirror_dir()
    if mirror is not None and (mirror / key).is_file():
        path = mirror / key
        _check_hash(entry, path, f"mirror {MIRROR_ENV}={mirror}")
        return path
    cached = data_cache_dir() / key
    if cached.is_file():
        _check_hash(entry, cached, "download cache")
        return cached
    if os.environ.get(OFFLINE_ENV, "").strip() not in ("", "0"):
        raise DataUnavailableError(
            _missing_message(entry, mirror, "downloads are disabled (MOLKIT_OFFLINE is set)")
        )
    return _download(entry, mirror)


def _missing_message(entry: RegisteredFile, mirror: Path | None, why: str) -> str:
    where = (
        f"it is not in the mirror {MIRROR_ENV}={mirror}"
        if mirror is not None
        else f"no offline mirror is set ({MIRROR_ENV} is empty)"
    )
    return (
        f"cannot get data file {entry.key}: {where}, "
        f"it is not in the cache {data_cache_dir()}, and {why}. "
        f"Upstream URL: {entry.url}. Fix: connect to the internet, "
        f"or set {MIRROR_ENV} to a folder that holds "
        f"{entry.key} (e.g. `export {MIRROR_ENV}=../shared/data`), "
        f"or place the file at {data_cache_dir() / entry.key}."
    )


def _download(entry: RegisteredFile, mirror: Path | None) -> Path:
    import pooch

    target = data_cache_dir() / entry.key
    target.parent.mkdir(parents=True, exist_ok=True)
    known_hash = f"sha256:{entry.sha256}" if entry.sha256 else None
    try:
        path = pooch.retrieve(
            url=entry.url,
            known_hash=known_hash,
            fname=target.name,
            path=target.parent,
            downloader=pooch.HTTPDownloader(timeout=DOWNLOAD_TIMEOUT_S, progressbar=False),
        )
    except ValueError as exc:  # pooch's hash mismatch
        raise DataHashError(
            f"downloaded {entry.key} from {entry.url} "
            f"but its sha256 is not the registered {entry.sha256}: {exc}. "
            "Upstream changed or the download was corrupted; "
            "report it, or set MOLKIT_DATA_MIRROR to a pinned copy."
        ) from exc
    except Exception as exc:  # network errors of every kind
        raise DataUnavailableError(
            _missing_message(entry, mirror, f"the download failed ({type(exc).__name__}: {exc})")
        ) from exc
    return Path(path)
