"""Tokens used by the work: from :func:`record_tokens`, :func:`capture_usage` and httpx responses.

Which meter a call counts for: the meter entered in this context (a ``contextvars`` variable, so
asyncio tasks started inside the block inherit it); where none is set here (a thread the work
started: threads do not inherit context), the most recently started meter still active in the
process (the innermost one, where meters are nested). Where several meters run at once in threads
of one process, start worker threads with ``contextvars.copy_context().run`` (or submit through an
executor that copies context) so each call reaches its own task's meter. A nested meter's tokens
also count for the meters around it, as its energy does.

Automatic capture: while any meter is active, every JSON response that ``httpx.Client.send`` or
``httpx.AsyncClient.send`` returns with an OpenAI-compatible ``usage`` object (``prompt_tokens``
and ``completion_tokens``, or ``input_tokens`` and ``output_tokens``) and a top-level ``model`` is
recorded, the OpenAI SDK's and most LLM clients' included. ``send`` is wrapped once, when the first
meter starts; with no meter active the wrapper costs one list check. Streamed responses
(``stream=True``, e.g. ``client.stream(...)``) are never read, and a response is never altered: a
body that is not JSON is ignored. A response's ``id`` is remembered, so passing the same completion
to :func:`capture_usage` as well does not count it twice.

>>> from carbon_sensors.metering import Meter, MeterSettings
>>> with Meter(settings=MeterSettings(gpu=False)) as meter:
...     record_tokens(prompt=120, completion=30, model="gpt-4o-mini")
...     _ = capture_usage({"id": "c1", "model": "gpt-4o-mini", "usage": {"prompt_tokens": 5, "completion_tokens": 1}})
>>> meter.measurement.tokens
(TokenUsage(model='gpt-4o-mini', prompt_tokens=125, completion_tokens=31),)
"""

from __future__ import annotations

import functools
import json
import logging
import operator
import threading
from collections.abc import Mapping
from contextvars import ContextVar, Token
from typing import Any, Protocol

from carbon_sensors.errors import ConfigurationError
from carbon_sensors.records import TokenUsage

__all__ = ["capture_usage", "current_meter", "install_httpx_capture", "record_tokens"]

log = logging.getLogger(__name__)


class MeterLike(Protocol):
    """What token counting needs of a meter (a :class:`~carbon_sensors.metering.Meter`), so this module imports none."""

    _active: bool
    _parent: MeterLike | None
    strict: bool

    def _add_tokens(self, model: str, prompt: int, completion: int, response_id: str | None) -> bool: ...


_current: ContextVar[MeterLike | None] = ContextVar("carbon_sensors_meter", default=None)
#: Meters active in this process, in the order they started (the last one is the most recent).
_active: list[MeterLike] = []
_lock = threading.Lock()
_warned_no_meter = False
_capture_installed = False

#: Bodies up to this size are parsed whole; larger ones (big embedding batches) only around ``usage``.
_FULL_PARSE_MAX_BYTES = 1 << 20
_WINDOW = 1 << 16


def current_meter() -> MeterLike | None:
    """The meter a token count made here goes to, or None when no meter is active.

    >>> from carbon_sensors.metering import Meter, MeterSettings
    >>> with Meter(settings=MeterSettings(gpu=False)) as meter:
    ...     current_meter() is meter
    True
    >>> current_meter() is None
    True
    """
    meter = _current.get()
    while meter is not None:
        if meter._active:
            return meter
        meter = meter._parent
    try:
        return _active[-1]
    except IndexError:
        return None


def _activate(meter: MeterLike) -> Token[MeterLike | None]:
    """Make ``meter`` the current one (called by ``Meter.__enter__``)."""
    with _lock:
        _active.append(meter)
    return _current.set(meter)


def _deactivate(meter: MeterLike, token: Token[MeterLike | None] | None) -> None:
    """Undo :func:`_activate` (called by ``Meter.__exit__``, maybe from another context)."""
    if token is not None:
        try:
            _current.reset(token)
        except (ValueError, RuntimeError):
            pass  # left in another context: lookups skip inactive meters
    with _lock:
        for i in range(len(_active) - 1, -1, -1):
            if _active[i] is meter:
                del _active[i]
                break


def _problem(prompt: Any, completion: Any, model: Any) -> str | None:
    for name, value in (("prompt", prompt), ("completion", completion)):
        if isinstance(value, bool):
            return f"record_tokens: {name}={value!r} is not a token count; pass an int >= 0"
        try:
            count = operator.index(value)
        except TypeError:
            return f"record_tokens: {name}={value!r} is not an int; pass the token count, e.g. {name}=120"
        if count < 0:
            return f"record_tokens: {name}={value!r} is negative; pass the token count, e.g. {name}=120"
    if not isinstance(model, str) or not model.strip():
        return f"record_tokens: model={model!r} must name the model, e.g. model='gpt-4o-mini'"
    return None


def _deliver(meter: MeterLike, model: str, prompt: int, completion: int, response_id: str | None) -> bool:
    """Add to ``meter`` and the active meters around it; False where the response was already counted."""
    counted = False
    m: MeterLike | None = meter
    while m is not None:
        if m._active:
            counted = m._add_tokens(model, prompt, completion, response_id) or counted
        m = m._parent
    return counted


def _no_meter(what: str) -> None:
    global _warned_no_meter
    if not _warned_no_meter:
        _warned_no_meter = True
        log.warning("carbon-sensors: %s outside any Meter; the tokens are not recorded (this warning is shown once)", what)


def record_tokens(*, prompt: int = 0, completion: int = 0, model: str) -> None:
    """Count ``prompt`` and ``completion`` tokens of ``model`` for the active meter.

    Outside any meter: a warning (once) and nothing else. A negative or non-integer count or an
    empty model raises :class:`~carbon_sensors.errors.ConfigurationError` when the meter is strict;
    otherwise the call is dropped with a warning.

    >>> from carbon_sensors.metering import Meter, MeterSettings
    >>> with Meter(settings=MeterSettings(gpu=False)) as meter:
    ...     record_tokens(prompt=120, completion=30, model="gpt-4o-mini")
    ...     record_tokens(prompt=80, model="gpt-4o-mini")
    >>> meter.measurement.tokens[0].total_tokens
    230
    """
    meter = current_meter()
    if meter is None:
        _no_meter("record_tokens() called")
        return
    problem = _problem(prompt, completion, model)
    if problem is not None:
        if meter.strict:
            raise ConfigurationError(problem)
        log.warning("carbon-sensors: %s; call dropped", problem)
        return
    _deliver(meter, model.strip(), operator.index(prompt), operator.index(completion), None)


def _usage_of(payload: Any) -> tuple[str, Any, Any, str | None] | None:
    """(model, prompt, completion, id) from an OpenAI-compatible response body, or None without usage."""
    if not isinstance(payload, Mapping):
        return None
    usage, model = payload.get("usage"), payload.get("model")
    if not isinstance(usage, Mapping) or not isinstance(model, str):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
    if prompt is None:
        return None
    response_id = payload.get("id")
    return model, prompt, completion, response_id if isinstance(response_id, str) and response_id else None


def capture_usage(payload: Any) -> TokenUsage | None:
    """Record the ``usage`` of one OpenAI-compatible response you hold as a dict or an SDK object.

    For clients that do not go through httpx (which is captured already). SDK objects with
    ``model_dump()`` (pydantic) or ``to_dict()`` are converted first. Returns what was recorded, or
    None where the payload has no usage, no meter is active, or this response ``id`` was counted already.

    >>> capture_usage({"model": "m", "choices": []}) is None
    True
    """
    if not isinstance(payload, Mapping):
        for method in ("model_dump", "to_dict"):
            convert = getattr(payload, method, None)
            if callable(convert):
                payload = convert()
                break
    found = _usage_of(payload)
    if found is None:
        return None
    model, prompt, completion, response_id = found
    meter = current_meter()
    if meter is None:
        _no_meter("capture_usage() called")
        return None
    problem = _problem(prompt, completion, model)
    if problem is not None:
        problem = problem.replace("record_tokens", "capture_usage")
        if meter.strict:
            raise ConfigurationError(problem)
        log.warning("carbon-sensors: %s; usage dropped", problem)
        return None
    prompt, completion = operator.index(prompt), operator.index(completion)
    if not _deliver(meter, model, prompt, completion, response_id):
        return None
    return TokenUsage(model, prompt, completion)


# -- httpx ------------------------------------------------------------------------------------


def _tail_usage(content: bytes) -> dict[str, Any] | None:
    """``usage``, ``model`` and ``id`` from a large JSON body without parsing all of it.

    OpenAI-compatible bodies put ``usage`` last; only the last :data:`_WINDOW` bytes are searched for
    it, and the first and last ``_WINDOW`` bytes for ``model`` and ``id``, so a large body that is not
    an LLM response costs two short scans.
    """
    tail_start = max(0, len(content) - _WINDOW)
    at = content.rfind(b'"usage"', tail_start)
    if at < 0:
        return None
    decoder = json.JSONDecoder()
    tail = content[at:].decode("utf-8", errors="replace")
    start = tail.find("{")
    if start < 0:
        return None
    usage, _ = decoder.raw_decode(tail, start)
    out: dict[str, Any] = {"usage": usage}
    for key in ("model", "id"):
        needle = b'"' + key.encode() + b'"'
        k = content.find(needle, 0, _WINDOW)
        if k < 0:
            k = content.find(needle, tail_start)
        if k >= 0:
            text = content[k + len(needle) : k + 512].decode("utf-8", errors="replace").lstrip()
            if text.startswith(":") and (rest := text[1:].lstrip()).startswith('"'):
                out[key], _ = decoder.raw_decode(rest)
    return out


def _capture_response(response: Any) -> None:
    """Record the usage in an httpx response's JSON body, if any. Never raises, never alters it."""
    try:
        content_type = response.headers.get("content-type", "")
        if "json" not in content_type or "ndjson" in content_type:
            return
        content = response.content  # read already (stream=False); ResponseNotRead otherwise
        if len(content) <= _FULL_PARSE_MAX_BYTES:
            if b'"usage"' not in content:
                return
            payload = json.loads(content)
        else:
            payload = _tail_usage(content)
        found = _usage_of(payload)
        if found is None:
            return
        model, prompt, completion, response_id = found
        if _problem(prompt, completion, model) is not None:
            return
        meter = current_meter()
        if meter is not None:
            _deliver(meter, model, operator.index(prompt), operator.index(completion), response_id)
    except Exception as exc:  # noqa: BLE001 - a body we cannot read is no usage; the response is the work's
        log.debug("carbon-sensors: no usage read from a response: %s", exc)


def install_httpx_capture() -> bool:
    """Wrap ``httpx.Client.send`` and ``httpx.AsyncClient.send`` once; False where httpx is missing."""
    global _capture_installed
    if _capture_installed:
        return True
    with _lock:
        if _capture_installed:
            return True
        try:
            import httpx
        except ImportError:
            return False
        _wrap_send(httpx.Client, asynchronous=False)
        _wrap_send(httpx.AsyncClient, asynchronous=True)
        _capture_installed = True
    return True


def _wrap_send(cls: type, *, asynchronous: bool) -> None:
    original = cls.send  # type: ignore[attr-defined]
    if getattr(original, "_carbon_sensors_capture", False):
        return  # wrapped already (e.g. this module was reloaded)
    if asynchronous:

        @functools.wraps(original)
        async def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            response = await original(self, request, *args, **kwargs)
            if _active and not kwargs.get("stream", False):
                _capture_response(response)
            return response

    else:

        @functools.wraps(original)
        def send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
            response = original(self, request, *args, **kwargs)
            if _active and not kwargs.get("stream", False):
                _capture_response(response)
            return response

    send._carbon_sensors_capture = True  # type: ignore[attr-defined]
    cls.send = send  # type: ignore[attr-defined]
