"""The middleware every request passes before the app: what it refuses on its own, tested without a server."""

from __future__ import annotations

import asyncio
import json as json_

import pytest

from digitlab.serve.gates import ApiError, BodyLimit, Guard, _host_name, _same_origin
from digitlab.serve.settings import Limits, ServeSettings


def test_a_body_that_stops_arriving_is_given_up_with_408():
    async def reads_the_body(scope, receive, send):
        try:
            while (await receive()).get("more_body"):
                pass
        except ApiError as exc:  # as the app's handler answers it
            await send({"type": "http.response.start", "status": exc.status, "headers": []})
            await send({"type": "http.response.body", "body": json_.dumps({"detail": exc.detail}).encode()})

    async def receive():
        if not sent:
            sent.append(1)
            return {"type": "http.request", "body": b"x" * 10, "more_body": True}
        await asyncio.sleep(3600)  # the client promised more and went quiet

    sent, answers = [], []

    async def send(message):
        answers.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/predict", "headers": [(b"content-length", b"1000")]}
    middleware = BodyLimit(reads_the_body, Limits(body_seconds=1))
    asyncio.run(asyncio.wait_for(middleware(scope, receive, send), 10))
    assert answers[0]["status"] == 408 and b"stopped arriving" in answers[1]["body"]


@pytest.mark.parametrize("header,name", [(b"127.0.0.1:8000", "127.0.0.1"), (b"[::1]:8000", "[::1]"),
                                         (b"[::1]", "[::1]"), (b"Digits.Example.org", "digits.example.org"),
                                         (None, "")])
def test_the_host_name_is_read_without_its_port(header, name):
    assert _host_name(header) == name


def test_an_origin_is_the_same_only_with_the_scheme_and_host_the_request_came_by():
    scope = {"scheme": "http"}
    assert _same_origin(b"http://127.0.0.1:8000", b"127.0.0.1:8000", scope)
    assert not _same_origin(b"https://127.0.0.1:8000", b"127.0.0.1:8000", scope)
    assert not _same_origin(b"http://evil.example", b"127.0.0.1:8000", scope)
    assert not _same_origin(b"http://127.0.0.1:8000", None, scope)


def answered(middleware, scope: dict, messages=()) -> int:
    """The status ``middleware`` answers ``scope`` with, its body being ``messages`` (then the client waits)."""
    pending, answers = list(messages), []

    async def receive():
        if pending:
            return pending.pop(0)
        await asyncio.sleep(3600)

    async def send(message):
        answers.append(message)

    asyncio.run(asyncio.wait_for(middleware(scope, receive, send), 10))
    return answers[0]["status"]


async def ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


@pytest.mark.parametrize("authorization,status", [("Bearer " + "k" * 20, 200), ("bearer " + "k" * 20, 200),
                                                  ("BEARER  " + "k" * 20, 200), ("Bearer " + "x" * 20, 401),
                                                  ("Basic " + "k" * 20, 401)])
def test_the_bearer_scheme_is_read_in_any_case(authorization, status):
    guard = Guard(ok, ServeSettings(backend="onnx", api_key="k" * 20))
    scope = {"type": "http", "method": "GET", "path": "/api/model", "scheme": "http",
             "headers": [(b"host", b"127.0.0.1"), (b"authorization", authorization.encode())]}
    assert answered(guard, scope) == status


def test_headers_over_the_limit_that_arrive_whole_are_refused_431():
    guard = Guard(ok, ServeSettings(backend="onnx", limits=Limits(max_header_bytes=1000)))
    scope = {"type": "http", "method": "GET", "path": "/api/health", "scheme": "http", "query_string": b"",
             "headers": [(b"host", b"127.0.0.1"), (b"x-padding", b"a" * 900)]}
    assert answered(guard, scope) == 200
    scope["headers"].append((b"x-more", b"a" * 100))
    assert answered(guard, scope) == 431
    scope["headers"].pop()
    scope["query_string"] = b"q=" + b"a" * 100  # the request line counts too
    assert answered(guard, scope) == 431
