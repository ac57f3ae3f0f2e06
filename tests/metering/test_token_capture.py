"""Token counts: record_tokens, capture_usage, and OpenAI-compatible usage seen by httpx on a real local server."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.metering import Meter, MeterSettings, capture_usage, current_meter, record_tokens
from carbon_sensors.metering import tokens as tokens_module
from carbon_sensors.records import TokenUsage

LOGGER = "carbon_sensors.metering.tokens"


@pytest.fixture
def settings(tmp_path) -> MeterSettings:
    """No RAPL, no GPU: these tests are about tokens."""
    return MeterSettings(powercap_root=tmp_path / "none", gpu=False)


# -- record_tokens ------------------------------------------------------------------------------


def test_record_tokens_sums_per_model(settings):
    """Calls for the same model add up; each model is its own TokenUsage."""
    with Meter(settings=settings) as meter:
        record_tokens(prompt=120, completion=30, model="gpt-4o-mini")
        record_tokens(prompt=80, completion=20, model="gpt-4o-mini")
        record_tokens(prompt=1000, model="text-embedding-3-small")
    assert meter.measurement.tokens == (
        TokenUsage("gpt-4o-mini", 200, 50),
        TokenUsage("text-embedding-3-small", 1000, 0),
    )


def test_record_tokens_outside_a_meter_warns_once(caplog, monkeypatch):
    """With no meter active the call is a no-op with one warning, however often it is made."""
    monkeypatch.setattr(tokens_module, "_warned_no_meter", False)
    assert current_meter() is None
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        record_tokens(prompt=1, completion=1, model="gpt-4o-mini")
        record_tokens(prompt=1, completion=1, model="gpt-4o-mini")
    warnings = [r for r in caplog.records if r.name == LOGGER and "outside any Meter" in r.getMessage()]
    assert len(warnings) == 1


def test_record_tokens_from_a_thread_reaches_the_meter(settings):
    """A thread started inside the block (no context inherited) records into the innermost active meter."""
    with Meter(settings=settings) as meter:
        worker = threading.Thread(target=record_tokens, kwargs={"prompt": 7, "completion": 3, "model": "llama-3.1-8b"})
        worker.start()
        worker.join()
    assert meter.measurement.tokens == (TokenUsage("llama-3.1-8b", 7, 3),)


def test_nested_meters_both_count_the_inner_tokens(settings):
    """Tokens recorded inside an inner meter count for it and for the meter around it."""
    with Meter(settings=settings) as outer:
        record_tokens(prompt=1, model="m")
        with Meter(settings=settings) as inner:
            record_tokens(prompt=10, model="m")
        record_tokens(prompt=100, model="m")
    assert inner.measurement.tokens == (TokenUsage("m", 10, 0),)
    assert outer.measurement.tokens == (TokenUsage("m", 111, 0),)


def test_asyncio_tasks_inherit_the_meter(settings):
    """A meter entered in a coroutine is the current one in the tasks it starts."""

    async def work() -> Meter:
        async with Meter(settings=settings) as meter:
            await asyncio.gather(*(asyncio.create_task(_record_async(i)) for i in range(3)))
        return meter

    async def _record_async(i: int) -> None:
        await asyncio.sleep(0)
        record_tokens(prompt=i, completion=1, model="m")

    meter = asyncio.run(work())
    assert meter.measurement.tokens == (TokenUsage("m", 3, 3),)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prompt": -1, "completion": 0, "model": "m"},
        {"prompt": 1.5, "completion": 0, "model": "m"},
        {"prompt": "12", "completion": 0, "model": "m"},
        {"prompt": True, "completion": 0, "model": "m"},
        {"prompt": 1, "completion": -3, "model": "m"},
        {"prompt": 1, "completion": 1, "model": ""},
        {"prompt": 1, "completion": 1, "model": None},
    ],
    ids=["negative", "float", "str", "bool", "negative-completion", "empty-model", "no-model"],
)
def test_bad_token_input_is_refused_when_strict_and_dropped_otherwise(settings, caplog, kwargs):
    """Strict meters raise ConfigurationError; lenient ones log a warning and record nothing."""
    with Meter(settings=settings, strict=True), pytest.raises(ConfigurationError, match="record_tokens"):
        record_tokens(**kwargs)
    with caplog.at_level(logging.WARNING, logger=LOGGER), Meter(settings=settings) as meter:
        record_tokens(**kwargs)
    assert meter.measurement.tokens == ()
    assert any("call dropped" in r.getMessage() for r in caplog.records if r.name == LOGGER)


# -- capture_usage ------------------------------------------------------------------------------


class _SdkCompletion:
    """An SDK response object (pydantic-like: model_dump)."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self._payload = payload

    def model_dump(self) -> dict[str, Any]:
        return dict(self._payload)


def test_capture_usage_takes_dicts_and_sdk_objects_and_counts_an_id_once(settings):
    """Usage from a dict or an object with model_dump is recorded; the same response id is not counted twice."""
    payload = chat_completion("chatcmpl-A1", prompt=19, completion=10)
    with Meter(settings=settings) as meter:
        assert capture_usage(payload) == TokenUsage("gpt-4o-mini-2024-07-18", 19, 10)
        assert capture_usage(_SdkCompletion(payload)) is None  # the same completion again
        assert capture_usage(_SdkCompletion(chat_completion("chatcmpl-A2", prompt=1, completion=2))) is not None
        assert capture_usage({"model": "m", "choices": []}) is None
        assert capture_usage({"model": "claude-x", "usage": {"input_tokens": 5, "output_tokens": 6}}) is not None
    assert meter.measurement.tokens == (TokenUsage("claude-x", 5, 6), TokenUsage("gpt-4o-mini-2024-07-18", 20, 12))


def test_capture_usage_with_bad_counts_follows_strictness(settings):
    """A usage object with a negative count raises when strict and is dropped otherwise."""
    bad = {"model": "m", "usage": {"prompt_tokens": -5, "completion_tokens": 1}}
    with Meter(settings=settings, strict=True), pytest.raises(ConfigurationError, match="capture_usage"):
        capture_usage(bad)
    with Meter(settings=settings) as meter:
        assert capture_usage(bad) is None
    assert meter.measurement.tokens == ()


# -- httpx, against a real server -----------------------------------------------------------------

_ids = itertools.count(1)


def chat_completion(response_id: str, *, prompt: int, completion: int) -> dict[str, Any]:
    """An OpenAI /v1/chat/completions response as the API returns it."""
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": 1750000000,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "The \"usage\" of tokens was low.", "refusal": None,
                        "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0},
        },
        "service_tier": "default",
        "system_fingerprint": "fp_34a54ae93c",
    }


def embeddings(n: int, dims: int) -> dict[str, Any]:
    """An OpenAI /v1/embeddings response with ``n`` vectors (big: the usage comes after the data)."""
    data = [{"object": "embedding", "index": i, "embedding": [((i * 31 + j) % 997) / 997 - 0.5 for j in range(dims)]}
            for i in range(n)]
    return {"object": "list", "data": data, "model": "text-embedding-3-small",
            "usage": {"prompt_tokens": 8 * n, "total_tokens": 8 * n}}


EMBEDDINGS = json.dumps(embeddings(300, 1536)).encode()
#: A large JSON body that is not an LLM response and mentions usage only at its start.
DATASET = json.dumps({"usage": {"prompt_tokens": 3, "completion_tokens": 1}, "model": "catalog",
                      "rows": [{"sku": i, "title": f"product {i}"} for i in range(60_000)]}).encode()


class _OpenAICompatible(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    served: list[bytes]

    def _send(self, body: bytes, content_type: str, status: int = 200) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.served.append(body)

    def do_POST(self) -> None:  # the name http.server calls
        length = int(self.headers.get("Content-Length", "0"))
        request = json.loads(self.rfile.read(length) or b"{}")
        if self.path == "/v1/chat/completions":
            prompt = len(json.dumps(request.get("messages", [])))
            body = json.dumps(chat_completion(f"chatcmpl-{next(_ids)}", prompt=prompt, completion=10)).encode()
            self._send(body, "application/json")
        elif self.path == "/v1/embeddings":
            self._send(EMBEDDINGS, "application/json")
        elif self.path == "/v1/dataset":
            self._send(DATASET, "application/json")
        elif self.path == "/v1/broken":
            self._send(b'{"usage": {"prompt_tokens": 5, "completion_tokens"', "application/json")
        elif self.path == "/v1/stream":
            chunks = [
                {"id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": [
                    {"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}]},
                {"id": "chatcmpl-s", "object": "chat.completion.chunk", "model": "gpt-4o-mini", "choices": [],
                 "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}},
            ]
            body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
            self._send(body, "text/event-stream")
        else:
            self._send(b'{"error": {"message": "not found"}}', "application/json", 404)

    def do_GET(self) -> None:
        self._send(b'ok "usage": {"prompt_tokens": 1}', "text/plain")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[dict[str, Any]]:
    """An OpenAI-compatible server on 127.0.0.1; yields its base URL and the bodies it sent."""
    served: list[bytes] = []
    handler = type("Handler", (_OpenAICompatible,), {"served": served})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield {"url": f"http://127.0.0.1:{httpd.server_address[1]}", "served": served}
    finally:
        httpd.shutdown()
        httpd.server_close()


CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Summarise this product."}]}
CHAT_PROMPT_TOKENS = len(json.dumps(CHAT["messages"]))


def test_sync_client_responses_are_captured_and_unchanged(settings, server):
    """httpx.Client: each chat completion's usage is recorded, and the caller gets the exact bytes served."""
    with Meter(settings=settings) as meter, httpx.Client(base_url=server["url"]) as client:
        first = client.post("/v1/chat/completions", json=CHAT)
        second = client.post("/v1/chat/completions", json=CHAT)
    assert first.status_code == 200 and first.content == server["served"][0]
    assert second.json()["object"] == "chat.completion"
    assert meter.measurement.tokens == (TokenUsage("gpt-4o-mini-2024-07-18", 2 * CHAT_PROMPT_TOKENS, 20),)


def test_async_client_responses_are_captured(settings, server):
    """httpx.AsyncClient: concurrent chat completions are all recorded."""

    async def work() -> tuple[Meter, list[httpx.Response]]:
        async with Meter(settings=settings) as meter, httpx.AsyncClient(base_url=server["url"]) as client:
            responses = await asyncio.gather(*(client.post("/v1/chat/completions", json=CHAT) for _ in range(3)))
        return meter, list(responses)

    meter, responses = asyncio.run(work())
    assert sorted(r.content for r in responses) == sorted(server["served"])
    assert meter.measurement.tokens == (TokenUsage("gpt-4o-mini-2024-07-18", 3 * CHAT_PROMPT_TOKENS, 30),)


def test_a_client_used_from_a_thread_is_captured(settings, server):
    """A worker thread's HTTP calls count for the innermost active meter."""

    def call() -> None:
        with httpx.Client(base_url=server["url"]) as client:
            client.post("/v1/chat/completions", json=CHAT)

    with Meter(settings=settings) as meter:
        worker = threading.Thread(target=call)
        worker.start()
        worker.join()
    assert meter.measurement.tokens[0].prompt_tokens == CHAT_PROMPT_TOKENS


def test_a_large_embeddings_response_is_captured_without_a_full_parse(settings, server):
    """A body over the full-parse limit still yields its usage (read around the usage key)."""
    assert len(EMBEDDINGS) > tokens_module._FULL_PARSE_MAX_BYTES
    with Meter(settings=settings) as meter, httpx.Client(base_url=server["url"]) as client:
        response = client.post("/v1/embeddings", json={"model": "text-embedding-3-small", "input": ["a"] * 300})
    assert response.content == EMBEDDINGS
    assert meter.measurement.tokens == (TokenUsage("text-embedding-3-small", 2400, 0),)


def test_a_large_body_is_only_searched_near_its_end(settings, server):
    """A large JSON body whose usage key is far from the end is not read as a completion (and reaches the caller intact)."""
    assert len(DATASET) > tokens_module._FULL_PARSE_MAX_BYTES
    with Meter(settings=settings) as meter, httpx.Client(base_url=server["url"]) as client:
        response = client.post("/v1/dataset", json={})
    assert response.content == DATASET
    assert meter.measurement.tokens == ()


def test_non_json_broken_json_and_errors_are_left_alone(settings, server):
    """A text body, a truncated JSON body and a 404 record nothing and reach the caller intact."""
    with Meter(settings=settings) as meter, httpx.Client(base_url=server["url"]) as client:
        text = client.get("/health")
        broken = client.post("/v1/broken", json={})
        missing = client.post("/v1/nothing", json={})
    assert text.text == 'ok "usage": {"prompt_tokens": 1}'
    assert broken.content == b'{"usage": {"prompt_tokens": 5, "completion_tokens"'
    assert missing.status_code == 404
    assert meter.measurement.tokens == ()


def test_streamed_responses_are_never_read(settings, server):
    """With stream=True the body is the caller's: nothing is read or recorded, and the caller reads it all."""
    with Meter(settings=settings) as meter, httpx.Client(base_url=server["url"]) as client:
        with client.stream("POST", "/v1/chat/completions", json=CHAT) as response:
            assert not response.is_stream_consumed
            body = b"".join(response.iter_bytes())
        with client.stream("POST", "/v1/stream", json={**CHAT, "stream": True}) as sse:
            events = [line for line in sse.iter_lines() if line]
    assert body == server["served"][0]
    assert events[-1] == "data: [DONE]"
    assert meter.measurement.tokens == ()


def test_after_the_meter_ends_responses_are_not_recorded(settings, server):
    """Once no meter is active the wrapper records nothing (and the finished measurement does not change)."""
    with Meter(settings=settings) as meter, httpx.Client(base_url=server["url"]) as client:
        client.post("/v1/chat/completions", json=CHAT)
    before = meter.measurement
    with httpx.Client(base_url=server["url"]) as client:
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    assert meter.measurement is before
    assert current_meter() is None


def test_send_is_wrapped_once(settings):
    """Installing the capture again (each meter start does) leaves one wrapper around the original send."""
    with Meter(settings=settings):
        pass
    wrapped = httpx.Client.send
    assert tokens_module.install_httpx_capture()
    tokens_module._wrap_send(httpx.Client, asynchronous=False)
    assert httpx.Client.send is wrapped
    assert wrapped._carbon_sensors_capture
    assert not getattr(wrapped.__wrapped__, "_carbon_sensors_capture", False)
    assert not getattr(httpx.AsyncClient.send.__wrapped__, "_carbon_sensors_capture", False)
