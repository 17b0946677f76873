"""The openai backend against a chat-completions server on 127.0.0.1."""

import json
import time

from biocap_assets.inference.base import GenerationRequest, SamplingConfig
from biocap_assets.inference.openai_backend import OpenAIBackend, OpenAIConfig
from biocap_assets.inference.tasks import DescriptionInput, filter_with_model
from biocap_assets_tests.chat_server import ChatServer, completion


def scripted(payload, attempt):
    text = payload["messages"][0]["content"][-1]["text"]
    if text.startswith("flaky") and attempt == 1:
        return 500, b'{"error": "overloaded"}', 0.0
    if text.startswith("slow"):
        return 200, completion("too late"), 1.5
    if text.startswith("broken"):
        return 200, b'{"choices": []}', 0.0
    if text.startswith("garbage"):
        return 200, b"<html>not json", 0.0
    return 200, completion(f"echo {text}"), 0.05


def backend(server, **overrides):
    config = OpenAIConfig(
        base_url=server.base_url,
        model="test-vlm",
        concurrency=3,
        timeout=0.5,
        retries=2,
        backoff_base=0.01,
    )
    config = OpenAIConfig(**{**config.__dict__, **overrides})
    return OpenAIBackend(config, SamplingConfig(temperature=0.6, top_p=0.8, max_tokens=50))


def test_batching_concurrency_retries_timeouts_and_bad_answers():
    texts = [f"item{i}" for i in range(12)] + ["flaky one"]
    faults = ["slow one", "broken one", "garbage one"]
    requests = [
        GenerationRequest(id=t, instruction="Describe.", text=t, image=b"\xff\xd8", seed=i)
        for i, t in enumerate(texts + faults)
    ]
    with ChatServer(scripted) as server:
        client = backend(server)
        results = client.generate(requests[: len(texts)])
        peak = server.max_in_flight  # measured before timeouts leave abandoned requests
        sent = list(server.requests)
        results += client.generate(requests[len(texts) :])
    by_id = {r.id: r for r in results}
    assert [r.id for r in results] == texts + faults, "one result per request, in order"
    assert all(by_id[f"item{i}"].text == f"echo item{i}" for i in range(12))
    assert by_id["flaky one"].text == "echo flaky one"
    assert "timeout" in by_id["slow one"].error and "3 attempts" in by_id["slow one"].error
    assert "malformed answer" in by_id["broken one"].error
    assert "malformed answer" in by_id["garbage one"].error
    assert 2 <= peak <= 3, "bounded concurrency, and it is used"
    first = sent[0]
    assert first["model"] == "test-vlm" and first["max_tokens"] == 50
    assert first["temperature"] == 0.6 and first["top_p"] == 0.8 and "seed" in first
    content = first["messages"][0]["content"]
    assert content[1]["image_url"]["url"].startswith("data:image/jpeg;base64,")


def test_llm_description_filter_validates_and_retries_once():
    def answers(payload, attempt):
        text = payload["messages"][0]["content"][-1]["text"]
        if "Species: Goodus" in text:
            return 200, completion('{"visual_description": "Green with red spots."}'), 0
        if "Species: Lateus" in text:  # invalid first, valid when reminded
            if "previous answer was not valid" in text:
                return 200, completion('{"visual_description": "Blue."}'), 0
            return 200, completion("Sure! It is blue."), 0
        return 200, completion("I cannot answer in JSON."), 0

    items = [
        DescriptionInput("g", "Goodus one", None, "Green with red spots. Lives here."),
        DescriptionInput("l", "Lateus two", "late", "Blue."),
        DescriptionInput("n", "Neverus three", None, "Text."),
    ]
    with ChatServer(answers) as server:
        started = time.perf_counter()
        results = filter_with_model(items, backend(server), seed=3)
        assert time.perf_counter() - started < 10
        calls = len(server.requests)
    by_id = {r.taxon_id: r for r in results}
    assert (by_id["g"].status, by_id["g"].description) == ("ok", "Green with red spots.")
    assert (by_id["l"].status, by_id["l"].description) == ("ok", "Blue.")
    assert by_id["n"].status == "error" and "invalid answer twice" in by_id["n"].reason
    assert all(r.backend == "openai" and r.model == "test-vlm" for r in results)
    assert calls == 5, "three first answers, two retries"
    assert json.dumps(by_id["g"].__dict__)


def test_a_retry_after_of_hours_is_capped(monkeypatch):
    import biocap_assets.inference.openai_backend as openai_backend

    monkeypatch.setattr(openai_backend, "RETRY_AFTER_MAX", 0.2)

    def busy(payload, attempt):
        if attempt == 1:
            return 429, b'{"error": "busy"}', 0.0, {"Retry-After": "86400"}
        return 200, completion("done"), 0.0

    with ChatServer(busy) as server:
        started = time.monotonic()
        (result,) = backend(server, timeout=5).generate(
            [GenerationRequest(id="x", instruction="Describe.", text="x")]
        )
    assert result.text == "done" and time.monotonic() - started < 5
