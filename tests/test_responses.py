"""The replayable LLM response cache: keys, hits without model calls, persistence, shipping."""

import gzip
import json

import pytest

from molkit.models.lm.responses import (
    FORMAT,
    ResponseCache,
    prompt_sha256,
    read_records,
    response_key,
)

SETTINGS = {"max_new_tokens": 8, "do_sample": False}
CHAT = [
    {"role": "system", "content": "You are a chemist."},
    {"role": "user", "content": "Describe CCO."},
]


class CountingModel:
    """A stand-in LLM that answers with the prompt's hash prefix and counts its calls."""

    def __init__(self):
        self.calls = 0
        self.prompts = 0

    def __call__(self, prompts):
        self.calls += 1
        self.prompts += len(prompts)
        return [f"answer {prompt_sha256(p)[:8]}" for p in prompts], [2] * len(prompts)


def test_key_depends_on_model_prompt_and_settings():
    base = response_key("m", CHAT, SETTINGS)
    assert base == response_key("m", [dict(m) for m in CHAT], dict(reversed(SETTINGS.items())))
    assert base != response_key("other", CHAT, SETTINGS)
    assert base != response_key("m", CHAT[1:], SETTINGS)
    assert base != response_key("m", CHAT, {**SETTINGS, "max_new_tokens": 9})
    assert response_key("m", "text", SETTINGS) != response_key(
        "m", [{"role": "user", "content": "text"}], SETTINGS
    )


def test_bad_settings_and_prompts_are_named():
    with pytest.raises(TypeError, match="JSON"):
        response_key("m", "p", {"x": object()})
    with pytest.raises(TypeError, match="role"):
        response_key("m", [{"content": "no role"}], SETTINGS)


def test_hit_makes_no_model_call_and_changed_settings_miss(tmp_path):
    cache = ResponseCache(tmp_path / "r.jsonl")
    model = CountingModel()
    prompts = [CHAT, "second prompt", CHAT]  # a duplicate is generated once
    first, stats = cache.generate("m", prompts, SETTINGS, model, batch_size=8, progress=False)
    assert (model.calls, model.prompts) == (1, 2)
    assert (stats.hits, stats.misses, stats.new_tokens) == (1, 2, 4)
    assert first[0] == first[2]
    again, stats = cache.generate("m", prompts, SETTINGS, model, progress=False)
    assert again == first and model.calls == 1 and stats.misses == 0
    _, stats = cache.generate(
        "m", prompts, {**SETTINGS, "max_new_tokens": 16}, model, progress=False
    )
    assert stats.misses == 2 and model.calls == 2
    _, stats = cache.generate("other-model", prompts[:1], SETTINGS, model, progress=False)
    assert stats.misses == 1 and model.calls == 3


def test_written_file_replays_and_resumes(tmp_path):
    path = tmp_path / "r.jsonl"
    model = CountingModel()
    ResponseCache(path).generate(
        "m", ["a", "b", "c"], SETTINGS, model, batch_size=2, progress=False
    )
    assert model.calls == 2  # written batch by batch
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert {r["model"] for r in records} == {"m"} and all(
        r["settings"] == SETTINGS for r in records
    )
    with open(path, "a") as handle:  # a run killed mid-write leaves a partial last line
        handle.write('{"key": "trunc')
    fresh = ResponseCache(path)
    assert len(fresh) == 3
    out, stats = fresh.generate("m", ["a", "b", "c", "d"], SETTINGS, model, progress=False)
    assert stats.hits == 3 and stats.misses == 1 and out[0] == fresh.get("m", "a", SETTINGS)


def test_offline_replay_raises_on_a_miss(tmp_path):
    cache = ResponseCache(None)
    with pytest.raises(LookupError, match="not in the response cache"):
        cache.generate(
            "m", ["never generated"], SETTINGS, CountingModel(), offline=True, progress=False
        )


def test_export_is_versioned_deterministic_and_replays_on_a_fresh_cache(tmp_path):
    cache = ResponseCache(tmp_path / "w.jsonl")
    model = CountingModel()
    answers, _ = cache.generate("m", ["x", "y", CHAT], SETTINGS, model, progress=False)
    keep = {response_key("m", "x", SETTINGS), response_key("m", CHAT, SETTINGS)}
    shipped = cache.export(tmp_path / "ship_v1.jsonl.gz", keys=keep, command="regenerate me")
    again = cache.export(tmp_path / "again_v1.jsonl.gz", keys=keep, command="regenerate me")
    assert shipped.read_bytes() == again.read_bytes()
    header = json.loads(gzip.open(shipped, "rt").readline())["header"]
    assert header["format"] == FORMAT and header["version"] == 1 and header["records"] == 2
    assert header["models"] == ["m"] and header["command"] == "regenerate me"
    assert len(list(read_records(shipped))) == 2
    replay = ResponseCache(None, replay=[shipped])
    out, stats = replay.generate(
        "m", ["x", CHAT], SETTINGS, CountingModel(), offline=True, progress=False
    )
    assert out == [answers[0], answers[2]] and stats.hits == 2
    with pytest.raises(ValueError, match="jsonl.gz"):
        cache.export(tmp_path / "ship.json")


def test_newer_format_versions_are_refused(tmp_path):
    path = tmp_path / "future.jsonl"
    path.write_text(json.dumps({"header": {"format": FORMAT, "version": 99}}) + "\n")
    with pytest.raises(ValueError, match="update molkit"):
        ResponseCache(None, replay=[path])
    with pytest.raises(FileNotFoundError, match="regenerate"):
        ResponseCache(None, replay=[tmp_path / "missing.jsonl.gz"])
