"""observe: /metrics read back with Prometheus's own parser, request ids on responses and log lines, JSON logs."""

import io
import json
import logging
import os
import signal
import urllib.error
import urllib.request

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from digitlab.serve.app import create_app
from digitlab.serve.observe import JsonFormatter, RequestIdFilter, endpoint_of
from digitlab.serve.settings import ServeSettings


@pytest.fixture(scope="module")
def seven(test_split) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(255 - test_split[0][0].numpy()).resize((112, 112)).save(buffer, "PNG")
    return buffer.getvalue()


def scrape(client, **kwargs) -> dict[tuple[str, tuple], float]:
    """Every sample of /metrics as {(name, sorted labels): value}."""
    response = client.get("/metrics", **kwargs)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def test_requests_images_and_refusals_are_counted(seven):
    with TestClient(create_app(ServeSettings(backend="onnx")), raise_server_exceptions=False) as client:
        assert client.post("/api/predict", content=seven).json()["digit"] == 7
        assert client.post("/api/predict", content=b"not an image").status_code == 415
        assert client.post("/api/predict", content=b"").status_code == 422
        batch = client.post("/api/predict/batch", files=[("files", ("a.png", seven)), ("files", ("b.png", b"x"))])
        assert batch.status_code == 200
        assert client.get("/wp-login.php").status_code == 404
        metrics = scrape(client)
    assert metrics[("digitlab_requests_total", (("endpoint", "/api/predict"), ("status", "200")))] == 1
    assert metrics[("digitlab_requests_total", (("endpoint", "/api/predict"), ("status", "415")))] == 1
    assert metrics[("digitlab_requests_total", (("endpoint", "other"), ("status", "404")))] == 1
    assert metrics[("digitlab_refused_total", (("reason", "not_an_image"),))] == 1
    assert metrics[("digitlab_refused_total", (("reason", "unreadable"),))] == 1
    # images: the 7 twice (alone and in the batch); the text, the empty body and the batch's bad file unreadable
    assert metrics[("digitlab_images_recognised_total", (("outcome", "answered"),))] == 2
    assert metrics[("digitlab_images_recognised_total", (("outcome", "unreadable"),))] == 3
    assert metrics[("digitlab_request_seconds_count", (("endpoint", "/api/predict"),))] == 3
    assert metrics[("digitlab_request_seconds_bucket", (("endpoint", "/api/predict"), ("le", "+Inf")))] == 3
    assert metrics[("digitlab_queue_depth", ())] == 0 and metrics[("digitlab_worker_restarts_total", ())] == 0


def test_a_client_that_leaves_mid_body_is_counted_as_client_closed_not_as_a_server_error():
    import asyncio

    app = create_app(ServeSettings(backend="onnx"))
    messages = [{"type": "http.request", "body": b"\x89PNG" + b"x" * 1000, "more_body": True},
                {"type": "http.disconnect"}]  # the connection closed before the rest of the body came
    sent = []

    async def receive():
        return messages.pop(0)

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/api/predict", "raw_path": b"/api/predict",
             "query_string": b"", "scheme": "http", "http_version": "1.1", "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000), "headers": [(b"host", b"127.0.0.1:8000"), (b"content-length", b"5000")]}
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 10))
    assert sent == []  # no one to answer
    metrics = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(app.state.metrics.exposition().decode())
               for sample in family.samples}
    requests = {labels: value for (name, labels), value in metrics.items() if name == "digitlab_requests_total"}
    assert requests == {(("endpoint", "/api/predict"), ("status", "499")): 1}


def test_request_ids_are_kept_or_made(seven):
    with TestClient(create_app(ServeSettings(backend="onnx"))) as client:
        made = client.get("/api/health").headers["x-request-id"]
        again = client.get("/api/health").headers["x-request-id"]
        assert len(made) == 32 and int(made, 16) >= 0 and made != again
        assert client.get("/api/health", headers={"X-Request-ID": "lb-42.a_b"}).headers["x-request-id"] == "lb-42.a_b"
        odd = client.get("/api/health", headers={"X-Request-ID": "two words\r\n"}).headers["x-request-id"]
        assert len(odd) == 32 and " " not in odd  # an id that could break a log line is replaced


def test_the_access_log_line_carries_the_request_id_as_json(seven):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    access = logging.getLogger("digitlab.access")
    access.addHandler(handler)
    level = access.level
    access.setLevel(logging.INFO)
    try:
        with TestClient(create_app(ServeSettings(backend="onnx"))) as client:
            response = client.post("/api/predict", content=seven)
    finally:
        access.removeHandler(handler)
        access.setLevel(level)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["request_id"] == response.headers["x-request-id"] and line["logger"] == "digitlab.access"
    assert (line["method"], line["path"], line["status"]) == ("POST", "/api/predict", 200) and line["ms"] > 0


def test_metrics_need_the_key_but_no_rate(seven):
    settings = ServeSettings(backend="onnx", api_key="k" * 24, rate_per_minute=1)
    with TestClient(create_app(settings)) as client:
        assert client.get("/metrics").status_code == 401
        for _ in range(3):  # a scraper is not held to the clients' rate
            scrape(client, headers={"Authorization": "Bearer " + "k" * 24})


def test_endpoints_are_routes_not_raw_paths():
    assert [endpoint_of(p) for p in ("/api/predict", "/static/app.js", "/x/../etc", "/api/predict/../x")] == \
        ["/api/predict", "/static/*", "other", "other"]


def test_worker_restarts_and_workers_are_read_from_the_pool(seven):
    with TestClient(create_app(ServeSettings(backend="onnx", processes=True, workers=1)),
                    raise_server_exceptions=False) as client:
        assert client.post("/api/predict", content=seven).status_code == 200
        assert scrape(client)[("digitlab_workers", ())] == 1
        pid = client.app.state.pool.workers[0].process.pid
        os.kill(pid, signal.SIGKILL)
        assert client.post("/api/predict", content=seven).status_code == 500
        assert client.post("/api/predict", content=seven).status_code == 200  # after the replacement
        metrics = scrape(client)
    assert metrics[("digitlab_worker_restarts_total", ())] == 1 and metrics[("digitlab_workers", ())] == 1
    assert metrics[("digitlab_requests_total", (("endpoint", "/api/predict"), ("status", "500")))] == 1


def test_serve_log_format_json(seven, start_server):
    server, url, _ = start_server("--backend", "onnx", "--workers", "1", "--log-format", "json")
    try:
        request = urllib.request.Request(f"{url}/api/predict", data=seven, method="POST",
                                         headers={"X-Request-ID": "from-the-balancer"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert json.load(response)["digit"] == 7
        malformed = urllib.request.Request(f"{url}/api/predict", data=b"no boundary in sight", method="POST",
                                           headers={"Content-Type": "multipart/form-data; boundary=X"})
        with pytest.raises(urllib.error.HTTPError) as refused:  # python-multipart logs why it gave up
            urllib.request.urlopen(malformed, timeout=10)
        assert refused.value.code == 400
    finally:
        server.send_signal(signal.SIGINT)
        err = server.communicate(timeout=20)[0]
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert len(lines) == len([line for line in err.splitlines() if line.strip()])  # every log line is JSON
    access = [line for line in lines if line["logger"] == "digitlab.access" and line["path"] == "/api/predict"]
    assert access and access[0]["request_id"] == "from-the-balancer" and access[0]["status"] == 200
    assert any(line["logger"].startswith("uvicorn") for line in lines)
    assert any(line["logger"].startswith("python_multipart") for line in lines)


def test_a_worker_logs_its_warnings_in_the_server_s_json_format():
    import subprocess
    import sys

    script = ("import numpy, logging; from digitlab.serve.workers import log_as; log_as('json'); "
              "numpy.log(numpy.zeros(2)); logging.getLogger('digitlab.serve').warning('a worker line')")
    err = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60).stderr
    lines = [json.loads(line) for line in err.splitlines()]  # every line is JSON
    assert [line["logger"] for line in lines] == ["py.warnings", "digitlab.serve"]
    assert "divide by zero" in lines[0]["message"] and lines[0]["level"] == "warning"
