"""A replayable cache of LLM responses, shared by every method that prompts a language model.

A response is stored as one JSON line, keyed by the model id, the sha256 of the prompt and the
generation settings::

    {"key": "…", "model": "smollm2-135m-instruct", "settings": {"max_new_tokens": 96, …},
     "prompt_sha256": "…", "prompt": "…", "response": "…", "meta": {"new_tokens": 81}}

so a cache file says by itself which model wrote which text under which settings. Files may be
plain ``.jsonl`` or gzip-compressed ``.jsonl.gz``. A :class:`ResponseCache` reads any number of
*replay* files (e.g. a compressed, versioned file shipped inside the package, written on a GPU
once) and appends new responses to one writable ``.jsonl`` file, one flushed line per response,
so an interrupted generation resumes where it stopped. A hit makes no model call; any change of
model, prompt or settings is a miss.

Shipped files start with a header line ``{"header": {"format": "molkit-responses", "version": 1,
…}}`` written by :meth:`ResponseCache.export`, which sorts records by key and writes gzip with a
zero timestamp, so the same responses always give the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from molkit.models.cache import atomic_path, cache_dir

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "GenerationStats",
    "Prompt",
    "ResponseCache",
    "prompt_sha256",
    "read_records",
    "response_key",
]

FORMAT = "molkit-responses"
FORMAT_VERSION = 1

#: A prompt: plain text, or chat messages ``[{"role": "user", "content": "…"}, …]``.
Prompt = str | Sequence[dict[str, str]]


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _plain_prompt(prompt: Prompt) -> str | list[dict[str, str]]:
    if isinstance(prompt, str):
        return prompt
    messages = [dict(m) for m in prompt]
    if not all(
        isinstance(m.get("role"), str) and isinstance(m.get("content"), str) for m in messages
    ):
        raise TypeError("a chat prompt is a list of {'role': str, 'content': str} dicts")
    return messages


def prompt_sha256(prompt: Prompt) -> str:
    """Hex sha256 of a prompt (text, or chat messages as canonical JSON)."""
    return hashlib.sha256(_canonical(_plain_prompt(prompt)).encode("utf-8")).hexdigest()


def _check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(settings, dict):
        raise TypeError(
            f"generation settings must be a dict of JSON values, not {type(settings).__name__}"
        )
    try:
        return json.loads(_canonical(settings))
    except (TypeError, ValueError) as err:
        raise TypeError(
            f"generation settings must be JSON-serialisable (numbers, strings, lists): {err}"
        ) from err


def response_key(model: str, prompt: Prompt, settings: dict[str, Any]) -> str:
    """The cache key: sha256 over model id, prompt hash and generation settings (canonical JSON)."""
    payload = {
        "model": str(model),
        "prompt_sha256": prompt_sha256(prompt),
        "settings": _check_settings(settings),
    }
    return hashlib.sha256(_canonical(payload).encode("utf-8")).hexdigest()


def _open_text(path: Path, mode: str):
    if path.suffix == ".gz":
        return gzip.open(path, mode + "t", encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def read_records(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Yield the response records of a ``.jsonl`` / ``.jsonl.gz`` file (header lines skipped).

    A truncated last line (a run killed mid-write) is skipped; any other malformed line raises.
    """
    path = Path(path)
    with _open_text(path, "r") as handle:
        lines = handle.read().splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines):
                return
            raise ValueError(
                f"{path}: line {number} is not JSON ({err}); the file is damaged"
            ) from err
        if "header" in record:
            header = record["header"]
            if header.get("format") != FORMAT or int(header.get("version", 0)) > FORMAT_VERSION:
                raise ValueError(
                    f"{path}: format {header.get('format')!r} "
                    f"version {header.get('version')!r} is not "
                    f"{FORMAT!r} <= {FORMAT_VERSION}; update molkit to read it"
                )
            continue
        missing = {"key", "model", "settings", "response"} - set(record)
        if missing:
            raise ValueError(f"{path}: line {number} lacks {sorted(missing)}")
        yield record


@dataclass
class GenerationStats:
    """What one :meth:`ResponseCache.generate` call did: ``misses`` distinct prompts generated,
    ``hits`` the other prompts (served without a model call), generation ``seconds`` and
    ``new_tokens``."""

    hits: int = 0
    misses: int = 0
    seconds: float = 0.0
    new_tokens: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else float("nan")


class ResponseCache:
    """Responses keyed by (model id, prompt hash, generation settings); replay files + one writable
    file.

    ``path``: the writable ``.jsonl`` file new responses are appended to (created on first write);
    ``None`` keeps new responses in memory only; the default is
    ``<molkit cache>/responses/responses.jsonl`` when ``path="default"``. ``replay``: read-only
    ``.jsonl(.gz)`` files consulted first (later files and the writable file win on a duplicate
    key).
    """

    def __init__(
        self, path: str | os.PathLike | None = "default", replay: Iterable[str | os.PathLike] = ()
    ) -> None:
        if path == "default":
            path = cache_dir("responses") / "responses.jsonl"
        self.path = Path(path) if path is not None else None
        if self.path is not None and self.path.suffix == ".gz":
            raise ValueError(
                f"{self.path}: the writable cache is plain .jsonl (appendable); "
                "write a .jsonl.gz for shipping with ResponseCache.export"
            )
        self.replay = [Path(p) for p in replay]
        self._records: dict[str, dict[str, Any]] = {}
        self.model_calls = 0
        for file in self.replay:
            if not file.exists():
                raise FileNotFoundError(
                    f"replay file {file} does not exist; regenerate it or drop it from replay="
                )
            self._load(file)
        if self.path is not None and self.path.exists():
            self._load(self.path)

    def _load(self, file: Path) -> None:
        for record in read_records(file):
            self._records[record["key"]] = record

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, key: str) -> bool:
        return key in self._records

    def records(self, model: str | None = None) -> list[dict[str, Any]]:
        """All records (optionally of one model), sorted by key."""
        return [r for k, r in sorted(self._records.items()) if model is None or r["model"] == model]

    def get(self, model: str, prompt: Prompt, settings: dict[str, Any]) -> str | None:
        """The cached response, or None."""
        record = self._records.get(response_key(model, prompt, settings))
        return None if record is None else record["response"]

    def put(
        self, model: str, prompt: Prompt, settings: dict[str, Any], response: str, **meta: Any
    ) -> dict[str, Any]:
        """Store one response (appended and flushed to ``path`` at once); returns the record."""
        return self._put_many([(model, prompt, settings, response, meta)])[0]

    def _put_many(
        self, items: Sequence[tuple[str, Prompt, dict[str, Any], str, dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        records = []
        for model, prompt, settings, response, meta in items:
            if not isinstance(response, str):
                raise TypeError(f"a response is text, not {type(response).__name__}")
            records.append(
                {
                    "key": response_key(model, prompt, settings),
                    "model": str(model),
                    "settings": _check_settings(settings),
                    "prompt_sha256": prompt_sha256(prompt),
                    "prompt": _plain_prompt(prompt),
                    "response": response,
                    "meta": meta,
                }
            )
        if self.path is not None and records:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write("".join(_canonical(r) + "\n" for r in records))
                handle.flush()
                os.fsync(handle.fileno())
        for record in records:
            self._records[record["key"]] = record
        return records

    def generate(
        self,
        model: str,
        prompts: Sequence[Prompt],
        settings: dict[str, Any],
        generate_fn: Callable[[list[Prompt]], list[str] | tuple[list[str], list[int]]],
        batch_size: int = 16,
        progress: bool = True,
        offline: bool = False,
    ) -> tuple[list[str], GenerationStats]:
        """Responses for ``prompts`` in order: cached ones replayed, the rest from ``generate_fn``.

        ``generate_fn(prompts)`` returns the texts (or ``(texts, new_token_counts)``) for a list of
        at most ``batch_size`` prompts; it is only called for misses (each distinct prompt once),
        and every batch is written to the cache before the next starts. ``offline=True`` raises
        instead of calling the model (a replay that must not generate). Returns
        ``(responses, stats)``.
        """
        import time

        from molkit._progress import tqdm

        settings = _check_settings(settings)
        keys = [response_key(model, p, settings) for p in prompts]
        todo: dict[str, Prompt] = {}
        for key, prompt in zip(keys, prompts, strict=True):
            if key not in self._records:
                todo.setdefault(key, prompt)
        stats = GenerationStats(hits=len(prompts) - len(todo), misses=len(todo))
        if todo and offline:
            raise LookupError(
                f"{len(todo)} of {len(prompts)} prompts for {model!r} "
                f"with settings {settings} are not in the "
                f"response cache (replay files: {[str(p) for p in self.replay]}); "
                "regenerate them or allow generation"
            )
        # similar lengths in one batch: less padding
        pending = sorted(todo.items(), key=lambda item: len(_canonical(_plain_prompt(item[1]))))
        bar = tqdm(
            total=len(pending), desc=f"generate ({model})", disable=not progress or not pending
        )
        for start in range(0, len(pending), batch_size):
            chunk = pending[start : start + batch_size]
            began = time.perf_counter()
            out = generate_fn([p for _, p in chunk])
            stats.seconds += time.perf_counter() - began
            self.model_calls += 1
            texts, counts = out if isinstance(out, tuple) else (out, [None] * len(chunk))
            if len(texts) != len(chunk):
                raise ValueError(
                    f"generate_fn returned {len(texts)} texts for {len(chunk)} prompts"
                )
            stats.new_tokens += sum(c or 0 for c in counts)
            self._put_many(
                [
                    (model, p, settings, t, {} if c is None else {"new_tokens": int(c)})
                    for (_, p), t, c in zip(chunk, texts, counts, strict=True)
                ]
            )
            bar.update(len(chunk))
        bar.close()
        return [self._records[k]["response"] for k in keys], stats

    def export(
        self,
        path: str | os.PathLike,
        model: str | None = None,
        keys: Iterable[str] | None = None,
        **header: Any,
    ) -> Path:
        """Write a versioned, deterministic ``.jsonl.gz`` (header line + records sorted by key) for
        shipping.

        ``model`` / ``keys`` select records; ``header`` adds fields to the header line (e.g. the
        command that regenerates the file). Returns the path.
        """
        path = Path(path)
        if not path.name.endswith(".jsonl.gz"):
            raise ValueError(f"{path}: a shipped response file is named *.jsonl.gz")
        wanted = None if keys is None else set(keys)
        records = [r for r in self.records(model) if wanted is None or r["key"] in wanted]
        models = sorted({r["model"] for r in records})
        head = {
            "header": {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "records": len(records),
                "models": models,
                **header,
            }
        }
        body = "".join(_canonical(r) + "\n" for r in [head, *records]).encode("utf-8")
        with atomic_path(path) as tmp:
            with (
                open(tmp, "wb") as raw,
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as gz,
            ):
                gz.write(body)
        return path
