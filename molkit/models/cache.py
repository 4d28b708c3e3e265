"""Where molkit keeps derived model files, and how it writes them safely.

Everything expensive that `molkit.models` derives (an extracted or converted checkpoint, the
verification of a weight file, embeddings) lives under `cache_dir()`: the environment variable
``MOLKIT_CACHE`` moves it, otherwise ``~/.cache/molkit``. Writes go to a temporary name in the
destination directory and are `os.replace`d into place, so a reader never sees half a file and
two processes racing for the same file leave one complete copy. `EmbeddingStore` keeps computed
embeddings keyed by what produced them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import numpy as np

from molkit._io import atomic_path, atomic_write_bytes, atomic_write_text, sha256_file

__all__ = [
    "CACHE_ENV",
    "EmbeddingStore",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "cache_dir",
    "sha256_file",
]

CACHE_ENV = "MOLKIT_CACHE"


def cache_dir(*parts: str) -> Path:
    """The molkit cache root (``$MOLKIT_CACHE`` or ``~/.cache/molkit``), or a folder inside it.

    ``cache_dir("models")`` is where prepared checkpoints go; the folder is created.
    """
    root = os.environ.get(CACHE_ENV)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "molkit"
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


class EmbeddingStore:
    """Append-only on-disk store of float32 vectors keyed by text, for one embedding setting.

    A folder holding ``meta.json`` (what produced the vectors) and ``shard-*.npz`` files, each
    with ``keys`` (sha256 hex of the text, ``S64``) and ``vectors`` (float32, ``(m, d)``). Every
    `add` writes one new shard atomically, so concurrent writers never clash; past
    ``max_shards`` the shards are merged into one. A reader that misses a shard being merged
    only recomputes those vectors.
    """

    def __init__(
        self, directory: str | os.PathLike, meta: dict | None = None, max_shards: int = 32
    ):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_shards = max_shards
        meta_file = self.directory / "meta.json"
        if meta is not None and not meta_file.exists():
            atomic_write_text(meta_file, json.dumps(meta, indent=1, sort_keys=True, default=str))
        self._rows: dict[bytes, np.ndarray] = {}
        self._seen: set[str] = set()

    @staticmethod
    def key(text: str) -> bytes:
        """The store's key of ``text``: its sha256 as 64 hex bytes."""
        return hashlib.sha256(text.encode("utf-8")).hexdigest().encode("ascii")

    def _shards(self) -> list[Path]:
        return sorted(self.directory.glob("shard-*.npz"))

    def _refresh(self) -> None:
        for shard in self._shards():
            if shard.name in self._seen:
                continue
            try:
                with np.load(shard, allow_pickle=False) as data:
                    keys, vectors = data["keys"], data["vectors"]
            except FileNotFoundError:  # merged away by another process meanwhile
                continue
            self._rows.update(zip((bytes(k) for k in keys), vectors, strict=True))
            self._seen.add(shard.name)

    def __len__(self) -> int:
        self._refresh()
        return len(self._rows)

    def get(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those ``texts`` that have one."""
        self._refresh()
        found = {}
        for text in texts:
            row = self._rows.get(self.key(text))
            if row is not None:
                found[text] = row
        return found

    def add(self, texts: list[str], vectors: np.ndarray) -> None:
        """Store ``vectors[i]`` (float32) for ``texts[i]``: one new shard, written atomically."""
        if not texts:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        keys = np.array([self.key(t) for t in texts], dtype="S64")
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.npz"
        self._write_shard(self.directory / name, keys, vectors)
        self._rows.update(zip((bytes(k) for k in keys), vectors, strict=True))
        self._seen.add(name)
        if len(self._shards()) > self.max_shards:
            self._compact()

    @staticmethod
    def _write_shard(path: Path, keys: np.ndarray, vectors: np.ndarray) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, keys=keys, vectors=vectors)

    def _compact(self) -> None:
        shards = self._shards()
        self._refresh()
        keys = np.array(list(self._rows), dtype="S64")
        vectors = np.stack(list(self._rows.values())).astype(np.float32)
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.npz"
        self._write_shard(self.directory / name, keys, vectors)
        self._seen.add(name)
        for shard in shards:
            shard.unlink(missing_ok=True)
