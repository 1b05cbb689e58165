"""The REST API through FastAPI's test client: every endpoint, every kind of bad input, and concurrent requests.

The oracle for the answers is ``predict.Recognizer`` on the same bytes (the server must add nothing and lose
nothing), plus the MNIST labels for a plain accuracy floor.
"""

import base64
import io
import json
import struct
import sys
import threading
import zlib

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from digitlab.recognition.engine import load_engine
from digitlab.recognition.predict import Recognizer
from digitlab.serve.app import create_app
from digitlab.serve.gates import http_options
from digitlab.serve.settings import Limits, ServeSettings


def png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header declares ``width`` x ``height`` pixels, followed by a few bytes of pixel data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


@pytest.fixture(scope="module")
def digits(test_split):
    """Sixty MNIST test digits as PNG files, with their labels."""
    images, labels = test_split
    return [(png_bytes(images[i].numpy()), int(labels[i])) for i in range(60)]


@pytest.fixture(scope="module")
def client(served_checkpoint):
    # every request of a test client comes from one address: sixteen at once must not meet the per-address cap of
    # bodies arriving at once when the host is so loaded that they are all still arriving
    limits = Limits(max_upload_bytes=200_000, max_batch_bytes=400_000, max_batch_files=8, max_pixels=4_000_000,
                    max_client_uploads=16)
    settings = ServeSettings(served_checkpoint, limits=limits)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def oracle(served_checkpoint):
    return Recognizer(load_engine(served_checkpoint))


def decode_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


# --- the endpoints ------------------------------------------------------------------------------------------------

def test_health_model_docs_and_page(client, served_checkpoint):
    backend = "onnx" if served_checkpoint.with_suffix(".onnx").is_file() else "torch"  # its own export beside it
    assert client.get("/api/health").json() == {"status": "ok", "backend": backend,
                                                 "model": client.get("/api/model").json()["metadata"]["arch"]}
    model = client.get("/api/model").json()
    assert model["metadata"]["normalisation"] == {"mean": 0.1307, "std": 0.3081}
    assert model["limits"]["max_upload_bytes"] == 200_000
    schema = client.get("/openapi.json").json()
    assert {"/api/predict", "/api/predict/batch", "/api/health", "/api/model"} <= set(schema["paths"])
    assert "multipart/form-data" in schema["paths"]["/api/predict"]["post"]["requestBody"]["content"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
    assert "cdn" not in docs.text.lower()  # the docs must work on a machine without internet
    assert client.get("/redoc").status_code == 404  # FastAPI's ReDoc page would load its script from a CDN
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css"):
        assert f"/docs-assets/{asset}" in docs.text
        assert client.get(f"/docs-assets/{asset}").status_code == 200
    page = client.get("/")
    assert page.status_code == 200 and '<canvas id="canvas"' in page.text
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200


def test_every_answer_is_described_by_the_published_schema(client, digits):
    """Real answers of every kind, refusals included, checked against /openapi.json as a client generated from it
    would read them (schemathesis's response check: status documented, body valid against its schema)."""
    import schemathesis

    published = client.get("/openapi.json").json()
    assert published["openapi"] == "3.0.3" and '"type": "null"' not in str(published).replace("'", '"')
    for path, method in (("/api/predict", "post"), ("/api/predict/batch", "post"), ("/api/health", "get"),
                         ("/api/model", "get")):
        ok = published["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok not in ({}, {"title": ok.get("title")}), f"{path}: the 200 answer has no schema"
    for status in ("413", "415", "422"):
        error = published["paths"]["/api/predict"]["post"]["responses"][status]["content"]["application/json"]
        assert error["schema"] == {"$ref": "#/components/schemas/ErrorAnswer"}
    schema = schemathesis.openapi.from_dict(published)
    data = digits[0][0]
    blank = png_bytes(np.full((280, 280), 255, np.uint8))
    row = png_bytes(np.hstack([np.asarray(Image.open(io.BytesIO(d))) for d, _ in digits[:3]]))
    answers = [
        ("/api/predict", "POST", client.post("/api/predict", content=data)),
        ("/api/predict", "POST", client.post("/api/predict?threshold=1", content=data)),
        ("/api/predict", "POST", client.post("/api/predict", content=blank)),
        ("/api/predict", "POST", client.post("/api/predict?multi=true", content=row)),
        ("/api/predict", "POST", client.post("/api/predict?steps=true", content=data)),
        ("/api/predict", "POST", client.post("/api/predict?steps=true&multi=true", content=blank)),
        ("/api/predict", "POST", client.post("/api/predict?multi=true", content=blank)),
        ("/api/predict", "POST", client.post("/api/predict", content=b"words, not a picture")),
        ("/api/predict", "POST", client.post("/api/predict", content=data[:60])),
        ("/api/predict", "POST", client.post("/api/predict", content=b"x" * 300_000)),
        ("/api/predict/batch", "POST", client.post("/api/predict/batch", files=[
            ("files", ("a.png", data)), ("files", ("b.txt", b"no")), ("files", ("row.png", row))])),
        ("/api/predict/batch", "POST", client.post("/api/predict/batch?multi=1", files=[("files", ("r.png", row))])),
        ("/api/health", "GET", client.get("/api/health")),
        ("/api/model", "GET", client.get("/api/model")),
    ]
    assert sorted({response.status_code for *_, response in answers}) == [200, 413, 415, 422]
    for path, method, response in answers:
        schema[path][method].validate_response(response)  # raises, saying what does not fit
    # and the check can fail: an answer with a field of the wrong type is caught
    wrong = client.post("/api/predict", content=data)
    wrong._content = wrong.content.replace(b'"multi":false', b'"multi":"no"')
    with pytest.raises(Exception, match="multi|valid"):
        schema["/api/predict"]["POST"].validate_response(wrong)


def test_steps_show_how_the_image_was_read(client, oracle, digits):
    """?steps=true adds preprocess's own images between its steps (nothing is computed twice or elsewhere): the
    fitted 20x20 digit put at its corner is the 28x28 image the model saw."""
    data, _ = digits[0]
    plain = client.post("/api/predict", content=data).json()
    assert "steps" not in plain
    body = client.post("/api/predict?steps=true", content=data).json()
    expected = oracle.predict_one(data, steps=True).steps
    steps = body["steps"]
    assert set(steps) == {"gray", "ink", "crop", "fit", "centre"}
    for name in ("gray", "ink", "crop", "fit"):
        np.testing.assert_allclose(decode_data_url(steps[name]) / 255, expected[name], atol=1 / 255 + 1e-6)
    fit, (left, top) = decode_data_url(steps["fit"]), steps["centre"]["corner"]
    placed = np.zeros((28, 28), np.uint8)
    placed[top:top + fit.shape[0], left:left + fit.shape[1]] = fit
    np.testing.assert_array_equal(placed, decode_data_url(body["image"]))
    assert {k: v for k, v in body.items() if k != "steps"} == plain
    number = client.post("/api/predict?steps=1&multi=1", content=data).json()
    assert set(number["steps"]) == set(steps)
    assert client.post("/api/predict?steps=perhaps", content=data).status_code == 422


def test_predict_raw_body_matches_the_recognizer_and_reads_mnist(client, oracle, digits):
    correct = 0
    for data, label in digits:
        response = client.post("/api/predict", content=data, headers={"content-type": "image/png"})
        assert response.status_code == 200
        body = response.json()
        expected = oracle.predict_one(data)
        assert body["digit"] == expected.digit
        np.testing.assert_allclose(body["probabilities"], expected.digits[0].probabilities, atol=1e-6)
        assert len(body["probabilities"]) == 10  # the digits' share; the rest is the model's "not a digit", if any
        assert abs(sum(body["probabilities"]) + (body["not_a_digit"] or 0.0) - 1) < 1e-4
        assert body["confidence"] == pytest.approx(max(body["probabilities"]), abs=1e-6)
        seen = decode_data_url(body["image"])
        assert seen.shape == (28, 28)
        np.testing.assert_allclose(seen / 255, expected.digits[0].image, atol=1 / 255)
        correct += body["digit"] == label
    assert correct / len(digits) >= 0.85


def test_multipart_gives_the_same_answer_as_the_raw_body(client, digits):
    data, _ = digits[0]
    raw = client.post("/api/predict", content=data).json()
    form = client.post("/api/predict", files={"file": ("seven.png", data, "image/png")}).json()
    assert form["name"] == "seven.png" and raw["name"] == "body"
    assert {k: v for k, v in form.items() if k != "name"} == {k: v for k, v in raw.items() if k != "name"}


def test_multi_digit_reads_a_number_left_to_right_with_boxes(client, oracle, test_split):
    images, labels = test_split
    row = np.zeros((28, 28 * 3 + 20), np.uint8)
    for k, index in enumerate((1, 2, 3)):
        row[:, k * 38:k * 38 + 28] = images[index].numpy()
    data = png_bytes(row)
    body = client.post("/api/predict?multi=true", content=data).json()
    expected = oracle.predict_one(data, multi=True)
    assert body["multi"] and body["number"] == expected.number and body["size"] == [row.shape[1], row.shape[0]]
    assert len(body["digits"]) == 3
    lefts = [d["box"][0] for d in body["digits"]]
    assert lefts == sorted(lefts) and all(decode_data_url(d["image"]).shape == (28, 28) for d in body["digits"])
    assert [d["digit"] for d in body["digits"]] == [d.digit for d in expected.digits]


def test_blank_image_is_an_answer_without_a_digit(client):
    body = client.post("/api/predict", content=png_bytes(np.full((280, 280), 255, np.uint8))).json()
    assert body["digit"] is None and "blank" in body["reason"] and body["image"] is None
    assert body["probabilities"] is None and body["box"] is None


def test_query_parameters(client, digits):
    data, _ = digits[0]
    unsure = client.post("/api/predict?threshold=1.0", content=data).json()
    assert unsure["digit"] is None and unsure["reason"].startswith("unsure")
    for query, words in (("threshold=2", "from 0 to 1"), ("threshold=nan", "from 0 to 1"),
                         ("threshold=high", "a number"), ("polarity=sideways", "polarity must be one of"),
                         ("multi=maybe", "true or false")):
        for path in ("/api/predict", "/api/predict/batch"):
            refused = client.post(f"{path}?{query}", files={"file": ("a.png", data, "image/png")})
            assert refused.status_code == 422 and words in refused.json()["detail"], (path, query)
    flipped = client.post("/api/predict?polarity=light-on-dark", content=data).json()
    assert flipped["polarity"] == "light-on-dark"
    assert client.post("/api/predict?multi=TRUE", content=data).json()["multi"] is True
    assert client.post("/api/predict?multi=0&threshold=0.5", content=data).json()["multi"] is False
    documented = {p["name"] for p in client.get("/openapi.json").json()["paths"]["/api/predict"]["post"]["parameters"]}
    assert documented == {"multi", "polarity", "threshold", "steps"}


def test_batch_answers_each_file_and_isolates_a_bad_one(client, digits, oracle):
    files = [("files", (f"{i}.png", digits[i][0], "image/png")) for i in range(3)]
    files.insert(1, ("files", ("notes.txt", b"not an image at all", "text/plain")))
    files.append(("files", ("cut.png", digits[5][0][:60], "image/png")))
    response = client.post("/api/predict/batch", files=files)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["name"] for r in results] == ["0.png", "notes.txt", "1.png", "2.png", "cut.png"]
    assert results[1]["status"] == 415 and "not an image" in results[1]["error"]
    assert results[4]["status"] == 422 and "truncated" in results[4]["error"]
    for result, index in zip((results[0], results[2], results[3]), range(3)):
        assert result["digit"] == oracle.predict_one(digits[index][0]).digit


def test_a_batch_holds_each_file_to_the_one_image_limit(client, digits):
    big = np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)  # noise: PNG cannot shrink it
    oversize = png_bytes(big)
    assert 200_000 < len(oversize) < 400_000 - 2 * len(digits[0][0])  # over one image's limit, under the batch's
    files = [("files", ("a.png", digits[0][0])), ("files", ("big.png", oversize)), ("files", ("b.png", digits[1][0]))]
    results = client.post("/api/predict/batch", files=files).json()["results"]
    assert results[1]["status"] == 413 and "one image" in results[1]["error"] and results[1]["name"] == "big.png"
    assert results[0]["digit"] == digits[0][1] and results[2]["digit"] == digits[1][1]


def test_security_headers_and_a_cross_site_post_refused(client, digits):
    for path in ("/", "/api/health", "/docs"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff" and headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "unsafe-inline" not in client.get("/").headers["content-security-policy"]  # the page: its own files only
    data = digits[0][0]
    evil = client.post("/api/predict", content=data, headers={"Origin": "https://evil.example"})
    assert evil.status_code == 403 and "cross-origin" in evil.json()["detail"]
    assert evil.headers["x-content-type-options"] == "nosniff"
    same = client.post("/api/predict", content=data, headers={"Origin": "http://testserver"})
    assert same.status_code == 200 and same.json()["digit"] == digits[0][1]
    assert client.post("/api/predict", content=data).status_code == 200  # no Origin: not a browser


def test_a_server_on_this_machine_answers_only_requests_that_name_it(served_checkpoint, digits):
    from digitlab.cli import build_parser
    from digitlab.cli.serve import serve_settings
    from digitlab.serve.settings import LOOPBACK_HOSTS

    parser = build_parser()
    assert serve_settings(parser.parse_args(["serve"])).allowed_hosts == LOOPBACK_HOSTS  # 127.0.0.1 by default
    assert serve_settings(parser.parse_args(["serve", "--host", "0.0.0.0"])).allowed_hosts is None
    settings = ServeSettings(served_checkpoint, allowed_hosts=LOOPBACK_HOSTS)
    with TestClient(create_app(settings), base_url="http://127.0.0.1:8000") as local:
        assert local.post("/api/predict", content=digits[0][0]).json()["digit"] == digits[0][1]
        assert local.get("/", headers={"Host": "localhost:8000"}).status_code == 200
        assert local.get("/", headers={"Host": "[::1]:8000"}).status_code == 200  # IPv6, its port after the brackets
        rebound = local.get("/api/model", headers={"Host": "attacker.example:8000"})  # DNS rebinding
        assert rebound.status_code == 400 and "Host" in rebound.json()["detail"]


def test_a_server_on_every_address_answers_the_names_it_is_given(served_checkpoint, digits, capsys):
    from digitlab.cli import build_parser, main
    from digitlab.cli.serve import serve_settings
    from digitlab.serve.settings import LOOPBACK_HOSTS

    parser = build_parser()
    settings = serve_settings(parser.parse_args(["serve", "--host", "0.0.0.0", "--allowed-host", "Digits.Example.org",
                                                 "--allowed-host", "10.0.0.7", "--allowed-host", "fd00::7"]))
    assert settings.allowed_hosts == ("digits.example.org", "10.0.0.7", "[fd00::7]")
    assert serve_settings(parser.parse_args(["serve", "--allowed-host", "digits.example.org"])).allowed_hosts == \
        (*LOOPBACK_HOSTS, "digits.example.org")  # on 127.0.0.1, e.g. behind a proxy that keeps the Host header
    with TestClient(create_app(ServeSettings(served_checkpoint, allowed_hosts=settings.allowed_hosts)),
                    base_url="http://digits.example.org") as named:
        assert named.post("/api/predict", content=digits[0][0]).json()["digit"] == digits[0][1]
        assert named.get("/api/health", headers={"Host": "10.0.0.7:8000"}).status_code == 200
        assert named.get("/api/health", headers={"Host": "[fd00::7]:8000"}).status_code == 200
        for other in ("evil.example", "127.0.0.1:8000", "digits.example.org.evil.example", ""):
            refused = named.get("/", headers={"Host": other})
            assert refused.status_code == 400 and "digits.example.org" in refused.json()["detail"], other
    for bad in ("http://digits.example.org", "digits.example.org:8000", "a b", ""):
        assert main(["serve", "--host", "0.0.0.0", "--allowed-host", bad]) == 2
        assert "--allowed-host takes a host name" in capsys.readouterr().err


def test_an_api_key_a_rate_limit_and_named_cors_origins_when_asked_for(served_onnx, digits):
    key = "k" * 24
    settings = ServeSettings(served_onnx, backend="onnx", api_key=key, rate_per_minute=4,
                             cors_origins=("https://school.example",))
    data = digits[0][0]
    with TestClient(create_app(settings)) as test_client:
        assert test_client.get("/api/health").status_code == 200  # open: load balancers check it
        assert test_client.get("/").status_code == 200  # the page; it sends the key it is given after #
        refused = test_client.post("/api/predict", content=data)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert test_client.post("/api/predict", content=data, headers={"X-API-Key": "wrong" * 5}).status_code == 401
        assert test_client.post("/api/predict", content=data, headers={"X-API-Key": key}).json()["digit"] \
            == digits[0][1]
        assert test_client.get("/api/model", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        school = {"X-API-Key": key, "Origin": "https://school.example"}
        allowed = test_client.post("/api/predict", content=data, headers=school)
        assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://school.example"
        preflight = test_client.options("/api/predict", headers={"Origin": "https://school.example",
                                                                  "Access-Control-Request-Method": "POST",
                                                                  "Access-Control-Request-Headers": "X-API-Key"})
        assert preflight.status_code == 200
        other = test_client.post("/api/predict", content=data, headers={"X-API-Key": key, "Origin": "https://x.example"})
        assert other.status_code == 403
        limited = test_client.post("/api/predict", content=data, headers={"X-API-Key": key})  # the 5th in a minute
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    with pytest.raises(ValueError, match="api_key"):
        ServeSettings(served_onnx, backend="onnx", api_key="short")


def test_the_model_endpoint_tells_no_paths_commands_or_versions(client):
    metadata = client.get("/api/model").json()["metadata"]
    assert {"arch", "classes", "normalisation"} <= set(metadata)
    assert not {"command", "versions", "data_md5"} & set(metadata)
    assert "data_dir" not in metadata.get("config", {})


def test_batch_refusals(client, digits):
    assert client.post("/api/predict/batch", content=digits[0][0]).status_code == 415
    response = client.post("/api/predict/batch", files={"file": ("a.png", digits[0][0])})
    assert response.status_code == 422 and "'files'" in response.json()["detail"]
    too_many = [("files", (f"{i}.png", digits[0][0])) for i in range(9)]
    response = client.post("/api/predict/batch", files=too_many)
    assert response.status_code == 400 and "Too many files" in response.json()["detail"]


# --- bad input ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data,status,words", [
    (b"", 422, "empty body"),
    (b"hello, this is text", 415, "not an image"),
    (b"%PDF-1.7\n" + bytes(range(256)) * 10, 415, "not an image"),
])
def test_not_an_image(client, data, status, words):
    response = client.post("/api/predict", content=data)
    assert response.status_code == status and words in response.json()["detail"]


def test_truncated_image_is_422(client, digits):
    data = png_bytes(np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8))
    response = client.post("/api/predict", content=data[:len(data) // 2])
    assert response.status_code == 422 and "truncated" in response.json()["detail"]


def test_oversize_body_is_413_from_the_header(client):
    response = client.post("/api/predict", content=b"\0" * 200_001)
    assert response.status_code == 413 and "200,001 bytes" in response.json()["detail"]


def test_a_content_length_with_spaces_around_it_is_read(client, digits):
    data = digits[0][0]
    answer = client.post("/api/predict", content=data, headers={"Content-Length": f"{len(data)}  "})
    assert answer.status_code == 200 and answer.json()["digit"] == digits[0][1]
    schema = client.get("/openapi.json").json()["paths"]["/api/predict/batch"]["post"]
    assert {"400", "403", "413", "415", "422"} <= set(schema["responses"])
    files = schema["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]["files"]
    assert files["minItems"] == 1


@pytest.fixture
def live_server(served_onnx):
    """A function: ``live_server(limits, **uvicorn_options)`` runs the app with ``limits`` under uvicorn, as
    `digitlab serve` runs it, on a free loopback port, in a thread of this process, and returns its (host, port); the
    server stops at the end of the test."""
    import socket
    import time

    import uvicorn

    servers = []

    def start(limits: Limits, **options) -> tuple[str, int]:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        app = create_app(ServeSettings(served_onnx, backend="onnx", limits=limits))
        options = http_options(limits) | options  # as `digitlab serve` runs it
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", **options))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        servers.append((server, thread))
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        return "127.0.0.1", port

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def open_upload(address, length: int, sent: bytes, client: str = "127.0.0.1"):
    """A connection from ``client`` (an address of this machine) that has sent the headers of a POST /api/predict of
    ``length`` bytes and then ``sent``."""
    import socket

    connection = socket.create_connection(address, timeout=10, source_address=(client, 0))
    connection.sendall(b"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream"
                       b"\r\nContent-Length: %d\r\n\r\n" % length + sent)
    return connection


def status_of(connection) -> tuple[int, bytes]:
    """The status and the rest of the answer the server sends on ``connection``."""
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
        piece = connection.recv(65536)
        if not piece:
            break
        answer += piece
    return int(answer.split(b" ", 2)[1]), answer


def test_a_body_shorter_than_its_content_length_is_answered_408_in_time(live_server):
    import time

    address = live_server(Limits(body_seconds=1))
    start = time.monotonic()
    with open_upload(address, 10_000, b"x" * 4000) as connection:  # 6000 bytes promised never come
        status, answer = status_of(connection)
    assert status == 408 and b"stopped arriving" in answer
    assert time.monotonic() - start < 5


def test_a_body_that_trickles_in_is_answered_408_when_its_time_is_up(live_server):
    """A byte every 0.2 s never waits body_seconds for a piece, yet the whole body has max_body_seconds."""
    import time

    address = live_server(Limits(body_seconds=5, max_body_seconds=1))
    start = time.monotonic()
    with open_upload(address, 10_000, b"x") as connection:
        connection.settimeout(0.2)
        answer = b""
        while not answer and time.monotonic() - start < 10:
            try:
                connection.sendall(b"x")
                answer = connection.recv(65536)
            except TimeoutError:
                continue
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer
    assert time.monotonic() - start < 4


def test_uploads_over_the_caps_are_refused_before_they_are_read_and_places_are_shared_by_address(live_server, digits):
    import time

    address = live_server(Limits(max_uploads=3, max_client_uploads=2, body_seconds=20))
    slow = [open_upload(address, 100_000, b"x" * 1000) for _ in range(2)]  # two bodies arriving slowly
    try:
        time.sleep(0.5)  # the server has taken the two in
        with open_upload(address, 100_000, b"x" * 1000) as extra:  # a third from the same address
            status, answer = status_of(extra)
        assert status == 429 and b"retry-after: 5" in answer.lower() and b"2 from your address" in answer
        slow.append(open_upload(address, 100_000, b"x" * 1000, client="127.0.0.2"))  # another address: its place
        time.sleep(0.5)
        # every place is taken, 127.0.0.1 holding two: a newcomer takes the older of them, which is answered 503
        slow.append(open_upload(address, 100_000, b"x" * 1000, client="127.0.0.3"))
        time.sleep(0.5)
        set_aside = slow.pop(0)
        set_aside.sendall(b"x")  # its next piece
        status, answer = status_of(set_aside)
        set_aside.close()
        assert status == 503 and b"retry-after: 5" in answer.lower() and b"given to another address" in answer
        time.sleep(0.5)
        with open_upload(address, 100_000, b"x" * 1000, client="127.0.0.4") as extra:  # one place each: none to take
            status, answer = status_of(extra)
        assert status == 503 and b"retry-after: 5" in answer.lower() and b"3 uploads are" in answer
        whole = slow.pop()
        whole.sendall(b"x" * 99_000)  # one body arrives whole and frees its place
        assert status_of(whole)[0] == 415  # not an image
        whole.close()
        data, label = digits[0]
        with open_upload(address, len(data), data, client="127.0.0.4") as next_one:
            status, answer = status_of(next_one)
        assert status == 200 and b'"digit":%d' % label in answer
    finally:
        for connection in slow:
            connection.close()


def test_bodies_trickled_from_a_few_addresses_keep_no_one_else_out(live_server, digits):
    """Every upload place taken by bodies trickling in a byte at a time from two addresses: others' uploads are still
    read and answered at once, each taking a place from the address holding the most."""
    import time

    address = live_server(Limits(max_uploads=8, max_client_uploads=4, body_seconds=20, max_body_seconds=60))
    trickling = [open_upload(address, 100_000, b"x", client=f"127.0.0.{1 + i % 2}") for i in range(8)]
    try:
        time.sleep(0.5)
        data, label = digits[0]
        for client in range(3, 9):
            start = time.monotonic()
            with open_upload(address, len(data), data, client=f"127.0.0.{client}") as upload:
                status, answer = status_of(upload)
            assert status == 200 and b'"digit":%d' % label in answer, answer
            assert time.monotonic() - start < 5
            for connection in trickling:
                try:
                    connection.sendall(b"x")
                except OSError:  # answered 503 and closed: its place was given away
                    pass
        assert answer_time(address) < 5
    finally:
        for connection in trickling:
            connection.close()


def answer_time(address, client: str = "127.0.0.1") -> float:
    """Seconds until GET /api/health from ``client`` is answered 200."""
    import socket
    import time

    start = time.monotonic()
    with socket.create_connection(address, timeout=30, source_address=(client, 0)) as connection:
        connection.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert status_of(connection)[0] == 200
    return time.monotonic() - start


@pytest.mark.parametrize("http,refused", [("bounded", 431), ("h11", 400)])
def test_huge_request_headers_are_refused_and_others_are_still_answered(live_server, http, refused):
    """A client sending megabytes of header is cut off once its head passes the limit, by either HTTP parser."""
    import socket

    options = {} if http == "bounded" else {"http": http}
    address = live_server(Limits(max_header_bytes=16_384), **options)
    with socket.create_connection(address, timeout=10) as huge:
        huge.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ")
        try:
            for _ in range(200):  # up to 12.8 MB, 64 kB at a time; the server closes long before
                huge.sendall(b"a" * 65536)
                assert answer_time(address) < 5  # the others are answered meanwhile
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, answer = status_of(huge)
    assert status == refused and b"connection: close" in answer.lower()
    if http == "bounded":
        assert b"request headers too large: over the limit of 16,384 bytes" in answer
    assert answer_time(address) < 5
    ok = f"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: {'a' * 12_000}\r\n\r\n".encode()
    with socket.create_connection(address, timeout=10) as fits:  # a head under the limit, in one piece or in two
        fits.sendall(ok)
        assert status_of(fits)[0] == 200
        fits.sendall(ok[:9000])
        fits.sendall(ok[9000:])
        assert status_of(fits)[0] == 200


def test_memory_is_handed_back_once_the_last_large_body_is_let_go(client, monkeypatch):
    from digitlab.serve import gates

    gates.release_memory()  # the real one runs (glibc) or does nothing (elsewhere)
    released = []
    monkeypatch.setattr(gates, "release_memory", lambda: released.append(1))
    client.post("/api/predict", content=b"x" * 100_000)
    assert released == []  # a small body leaves nothing worth trimming
    monkeypatch.setattr(gates, "RELEASE_AFTER", 50_000)
    assert client.post("/api/predict", content=b"x" * 100_000).status_code == 415
    assert released == [1]


def test_oversize_body_is_413_while_streaming(client):
    def chunks():  # no Content-Length: the server has to count
        for _ in range(30):
            yield b"\0" * 10_000

    response = client.post("/api/predict", content=chunks())
    assert response.status_code == 413 and "over the limit" in response.json()["detail"]


def test_oversize_multipart_is_413(client):
    response = client.post("/api/predict", files={"file": ("big.png", b"\0" * 300_000, "image/png")})
    assert response.status_code == 413


def test_pixel_bomb_is_refused_before_decoding(client):
    # The pixel data is cut short: decoding it would end in 422 (truncated); 413 proves the header was enough.
    response = client.post("/api/predict", content=png_header_only(3_000, 3_000))
    assert response.status_code == 413 and "3000x3000 pixels" in response.json()["detail"]
    response = client.post("/api/predict", content=png_header_only(60_000, 60_000))  # over Pillow's own limit too
    assert response.status_code == 413 and "pixels" in response.json()["detail"]
    # Just over this server's limit of 4,000,000 pixels, in a valid, tiny file.
    buffer = io.BytesIO()
    Image.new("1", (2100, 2000)).save(buffer, "PNG")
    assert len(buffer.getvalue()) < 20_000
    assert client.post("/api/predict", content=buffer.getvalue()).status_code == 413


def test_wrong_form_field_is_422(client, digits):
    response = client.post("/api/predict", files={"image": ("a.png", digits[0][0], "image/png")})
    detail = response.json()["detail"]
    assert response.status_code == 422 and "'file'" in detail and "'image'" in detail
    response = client.post("/api/predict", data={"file": "just text"}, files={"other": ("x", b"x")})
    assert response.status_code == 422


def test_an_internal_error_leaks_no_traceback(served_checkpoint, digits):
    with TestClient(create_app(ServeSettings(served_checkpoint)), raise_server_exceptions=False) as test_client:
        def broken(batch):
            raise RuntimeError("secret internals /etc/passwd")

        test_client.app.state.engine.logits = broken
        response = test_client.post("/api/predict", content=digits[0][0])
        assert response.status_code == 500 and response.json() == {"detail": "internal server error"}
        assert "Traceback" not in response.text and "secret" not in response.text
        assert test_client.get("/api/health").status_code == 200  # and the server goes on


def test_concurrent_requests_get_their_own_answers(client, digits):
    expected = {i: client.post("/api/predict", content=digits[i][0]).json()["probabilities"] for i in range(16)}
    failures, lock = [], threading.Lock()

    def worker(offset: int):
        for k in range(6):
            i = (offset + k) % 16
            response = client.post("/api/predict", content=digits[i][0])
            if response.status_code != 200 or response.json()["probabilities"] != expected[i]:
                with lock:
                    failures.append((i, response.status_code))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    assert failures == []


def test_onnx_backend_serves_the_same_answers(served_onnx, client, digits):
    with TestClient(create_app(ServeSettings(served_onnx, backend="onnx"))) as onnx_client:
        assert onnx_client.get("/api/health").json()["backend"] == "onnx"
        assert onnx_client.get("/api/model").json()["metadata"] == client.get("/api/model").json()["metadata"]
        for data, _ in digits[:20]:
            a = onnx_client.post("/api/predict", content=data).json()
            b = client.post("/api/predict", content=data).json()
            assert a["digit"] == b["digit"]
            np.testing.assert_allclose(a["probabilities"], b["probabilities"], atol=1e-4)


@pytest.fixture(scope="module")
def process_client(served_onnx):
    """The app as `digitlab serve` runs it: two worker processes, each with its own onnxruntime session."""
    with TestClient(create_app(ServeSettings(served_onnx, backend="onnx", processes=True, workers=2)),
                    raise_server_exceptions=False) as test_client:
        yield test_client


def test_worker_processes_answer_as_threads_do(process_client, served_onnx, digits):
    with TestClient(create_app(ServeSettings(served_onnx, backend="onnx"))) as thread_client:
        assert process_client.get("/api/health").json() == thread_client.get("/api/health").json()
        assert process_client.get("/api/model").json() == thread_client.get("/api/model").json()
        for data, _ in digits[:10]:
            for query in ("", "?multi=true", "?threshold=1"):
                assert (process_client.post(f"/api/predict{query}", content=data).json()
                        == thread_client.post(f"/api/predict{query}", content=data).json())
    files = [("files", ("a.png", digits[0][0], "image/png")), ("files", ("bad.png", b"not an image", "image/png"))]
    results = process_client.post("/api/predict/batch", files=files).json()["results"]
    assert results[0]["digit"] == digits[0][1] and results[1]["status"] == 415
    response = process_client.post("/api/predict", content=digits[0][0][:100])
    assert response.status_code == 422 and "truncated" in response.json()["detail"]


def test_a_request_past_its_time_is_answered_503_and_its_worker_replaced(served_onnx, digits):
    """Thirty-six-megapixel images, each a small PNG, take a quarter to a third of a second each to decode: a batch
    of them holds a worker well past its second, even on a fast, quiet host that reads them on two threads."""
    heavy = np.zeros((6000, 6000), np.uint8)
    heavy[::97] = 255
    buffer = io.BytesIO()
    Image.fromarray(heavy).save(buffer, format="PNG")
    files = [("files", (f"big{i}.png", buffer.getvalue(), "image/png")) for i in range(24)]
    limits = Limits(max_seconds=1, max_pixels=40_000_000)
    with TestClient(create_app(ServeSettings(served_onnx, backend="onnx", processes=True, workers=1, limits=limits)),
                    raise_server_exceptions=False) as test_client:
        slow = test_client.post("/api/predict/batch", files=files)
        assert slow.status_code == 503 and "longer than 1 s" in slow.json()["detail"]
        assert slow.headers["retry-after"] == "1"
        after = test_client.post("/api/predict", content=digits[0][0])  # waits for the replacement worker
        assert after.status_code == 200 and after.json()["digit"] == digits[0][1]


def test_too_many_waiting_requests_are_answered_503_at_once(served_onnx):
    import asyncio

    from digitlab.serve.workers import Busy, WorkerPool

    pool = WorkerPool(ServeSettings(served_onnx, backend="onnx", processes=True, workers=1,
                                    limits=Limits(max_waiting=2)))
    pool.waiting = 2  # two requests already wait for the one worker (none is started: none is needed)
    with pytest.raises(Busy, match="2 requests are waiting") as refused:
        asyncio.run(pool.recognise("auto", None, [("a.png", b"")], False))
    assert refused.value.retry_after >= 1


def test_worker_processes_run_below_the_server_s_priority(process_client, served_onnx):
    import os

    from digitlab.serve.settings import WORKER_NICE

    def niceness(pid: int) -> int:
        return os.getpriority(os.PRIO_PROCESS, pid)

    server = niceness(0)
    process_client.portal.call(_all_joined, process_client.app.state.pool)  # each takes its niceness with its settings
    pids = process_client.portal.call(_worker_pids, process_client.app)
    assert len(pids) == 2 and {niceness(pid) for pid in pids} == {min(19, server + WORKER_NICE)}
    settings = ServeSettings(served_onnx, backend="onnx", processes=True, workers=1, worker_nice=0)
    with TestClient(create_app(settings)) as same:
        assert [niceness(pid) for pid in same.portal.call(_worker_pids, same.app)] == [server]


def test_the_pool_answers_once_its_first_worker_is_ready_and_replaces_one_that_fails_to_load(served_onnx, digits):
    """The others load while the first answers; one that fails to load is counted and replaced, as a dead one is."""
    import asyncio

    from digitlab.serve.workers import WorkerPool

    async def start_with_a_broken_second_worker():
        pool = WorkerPool(ServeSettings(served_onnx, backend="onnx", processes=True, workers=2))
        command, spawn, spawned = pool.command, pool._spawn, []

        async def broken_second():
            spawned.append(1)
            pool.command = [sys.executable, "-c", "import sys; sys.exit(2)"] if len(spawned) == 2 else command
            return await spawn()

        pool._spawn = broken_second
        await pool.start()
        try:
            first = await pool.recognise("auto", None, [("a.png", digits[0][0])], False)
            await _all_joined(pool)
            return first[0], pool.restarts, len(pool.workers), pool.idle.qsize(), len(spawned)
        finally:
            await pool.close()

    answer, restarts, workers, idle, spawned = asyncio.run(start_with_a_broken_second_worker())
    assert answer["digit"] == digits[0][1]
    assert (restarts, workers, idle, spawned) == (1, 2, 2, 3)


def test_concurrent_requests_to_worker_processes(process_client, digits):
    from concurrent.futures import ThreadPoolExecutor

    expected = {i: process_client.post("/api/predict", content=digits[i][0]).json() for i in range(8)}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: (i % 8, process_client.post("/api/predict", content=digits[i % 8][0])),
                                range(48)))
    assert all(r.status_code == 200 and r.json() == expected[i] for i, r in answers)


def test_a_dead_worker_process_fails_one_request_and_is_replaced(served_onnx, digits):
    import os
    import signal

    with TestClient(create_app(ServeSettings(served_onnx, backend="onnx", processes=True, workers=1)),
                    raise_server_exceptions=False) as test_client:
        assert test_client.post("/api/predict", content=digits[0][0]).status_code == 200
        pids = test_client.portal.call(_worker_pids, test_client.app)
        os.kill(pids[0], signal.SIGKILL)
        response = test_client.post("/api/predict", content=digits[0][0])
        assert response.status_code == 500 and response.json() == {"detail": "internal server error"}
        response = test_client.post("/api/predict", content=digits[0][0])  # waits for the replacement
        assert response.status_code == 200 and response.json()["digit"] == digits[0][1]
        assert test_client.portal.call(_worker_pids, test_client.app) != pids


def test_a_model_the_workers_cannot_load_fails_the_start(tmp_path):
    from digitlab.serve.workers import WorkerError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx model")
    with pytest.raises(WorkerError, match="exit code 2"):
        with TestClient(create_app(ServeSettings(bad, backend="onnx", processes=True, workers=2))):
            pass


async def _worker_pids(app) -> list[int]:
    return [worker.process.pid for worker in app.state.pool.workers]


async def _all_joined(pool) -> None:
    """Wait until every worker of ``pool`` has loaded its model: the app answers once the first has."""
    import asyncio

    while pool.joining:
        await asyncio.sleep(0.01)


def test_serve_command_refuses_bad_options(capsys):
    from digitlab.cli import main

    assert main(["serve", "--model", "/no/such/model.onnx"]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["serve", "--backend", "tensorflow"]) == 2
    assert main(["serve", "--threshold", "3"]) == 2
    assert main(["serve", "--worker-nice", "-5"]) == 2
    assert "--worker-nice must be between 0 and 19" in capsys.readouterr().err


def test_serve_command_runs_a_server_on_localhost(served_onnx, digits, start_server):
    import json
    import urllib.error
    import urllib.request

    server, url, health = start_server("--model", str(served_onnx), "--log-level", "warning")
    try:
        assert health["backend"] == "onnx"  # chosen from the file's suffix
        request = urllib.request.Request(f"{url}/api/predict", data=digits[0][0], method="POST")
        assert json.load(urllib.request.urlopen(request, timeout=10))["digit"] == digits[0][1]
        huge = urllib.request.Request(f"{url}/api/health", headers={"X-Padding": "a" * 100_000})
        with pytest.raises(urllib.error.HTTPError) as refused:  # the head's limit holds in the command's server
            urllib.request.urlopen(huge, timeout=10)
        assert refused.value.code == 431
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_corrupt_checkpoint_fails_the_start_with_one_line(tmp_path, capfd):
    from digitlab.serve.workers import WorkerError

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header at all" + bytes(range(256)))
    with pytest.raises(WorkerError, match="exit code 2"):
        with TestClient(create_app(ServeSettings(bad, backend="torch", processes=True, workers=1))):
            pass
    stderr = capfd.readouterr().err
    assert "Traceback" not in stderr and "worker process: error" in stderr and str(bad) in stderr


def test_threads_in_the_threaded_server_with_the_torch_backend(served_checkpoint, digits):
    # PyTorch takes no per-model thread count: the threaded server must not hand `threads` to its engine
    with TestClient(create_app(ServeSettings(served_checkpoint, backend="torch", threads=2))) as test_client:
        response = test_client.post("/api/predict", content=digits[0][0])
        assert response.status_code == 200 and response.json()["digit"] == digits[0][1]


def test_the_default_app_serves_the_bundled_model_in_threads():
    from digitlab.recognition.facts import MAX_PIXELS
    from digitlab.training import checkpoint

    if not checkpoint.BUNDLED.is_file():
        pytest.skip("no bundled model in this checkout")
    with TestClient(create_app()) as test_client:
        model = test_client.get("/api/model").json()
        assert model["backend"] == "onnx" and model["limits"]["max_pixels"] == MAX_PIXELS  # its export, shipped
        assert not hasattr(test_client.app.state, "pool")


def test_samples_are_saved_only_when_collecting_and_under_the_same_limits(served_onnx, digits, tmp_path, client):
    import schemathesis

    data, label = digits[0]
    off = client.post(f"/api/samples?label={label}", content=data)
    assert off.status_code == 404 and "--collect" in off.json()["detail"]
    assert client.get("/api/model").json()["collecting"] is False

    folder = tmp_path / "mine"
    limits = Limits(max_upload_bytes=200_000, max_pixels=4_000_000)
    with TestClient(create_app(ServeSettings(served_onnx, limits=limits, collect=folder))) as collecting:
        assert collecting.get("/api/model").json()["collecting"] is True
        saved = collecting.post(f"/api/samples?label={label}&answer=8", content=data)
        assert saved.status_code == 200, saved.text
        path = folder / saved.json()["path"]
        assert path.parent == folder / str(label) and path.is_file()
        np.testing.assert_array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(io.BytesIO(data))))
        sidecar = json.loads(path.with_suffix(".json").read_text())
        assert sidecar["answer"] == "8" and sidecar["model"]["arch"] and sidecar["model"]["backend"] == "onnx"
        form = collecting.post("/api/samples?label=not_a_digit", files={"file": ("e.png", data, "image/png")})
        assert form.status_code == 200 and form.json()["path"].startswith("not_a_digit/")
        schema = schemathesis.openapi.from_dict(collecting.get("/openapi.json").json())
        refusals = {
            422: collecting.post("/api/samples?label=12", content=data),
            415: collecting.post("/api/samples?label=1", content=b"a shopping list"),
            413: collecting.post("/api/samples?label=1", content=b"x" * 300_000),
            403: collecting.post("/api/samples?label=1", content=data, headers={"Origin": "https://evil.example"}),
        }
        for status, response in refusals.items():
            assert response.status_code == status, (status, response.text)
        empty = collecting.post("/api/samples?label=1", content=b"")  # answered where images are read
        assert empty.status_code == 422 and empty.json()["detail"].startswith("empty body")
        for response in [saved, form, empty, *refusals.values()]:
            schema["/api/samples"]["POST"].validate_response(response)
        assert collecting.post("/api/samples?label=1", content=png_bytes(np.zeros((2100, 2100), np.uint8))
                               ).status_code == 413  # over the pixel limit, refused before decoding
    assert sorted(p.relative_to(folder).parent.as_posix() for p in folder.rglob("*.png")) == sorted([
        "not_a_digit", str(label)])
    assert len(list(folder.rglob("*.json"))) == 2


def test_a_sample_is_saved_by_a_worker_process_under_a_request_s_time_limit(served_onnx, digits, tmp_path):
    """Keeping a sample decodes it whole: it waits its turn for a worker as a prediction does, and is given up with
    503 when that worker takes too long, instead of decoding in the HTTP process beside every other request."""
    import os
    import signal

    data, label = digits[0]
    settings = ServeSettings(served_onnx, backend="onnx", processes=True, workers=1, limits=Limits(max_seconds=1),
                             collect=tmp_path)
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        pid = test_client.app.state.pool.workers[0].process.pid
        os.kill(pid, signal.SIGSTOP)  # the one worker is held up (as by a huge image)
        try:
            held = test_client.post(f"/api/samples?label={label}", content=data)
        finally:
            os.kill(pid, signal.SIGKILL)  # as the pool kills a worker past its time
        assert held.status_code == 503 and "longer than 1 s" in held.json()["detail"]
        assert not any(tmp_path.rglob("*.png"))
        saved = test_client.post(f"/api/samples?label={label}", content=data)  # by the replacement worker
        assert saved.status_code == 200 and (tmp_path / saved.json()["path"]).is_file()
        empty = test_client.post(f"/api/samples?label={label}", content=b"")
        assert empty.status_code == 422 and empty.json()["detail"].startswith("empty body")
        pool = test_client.app.state.pool
        assert pool.restarts == 1 and pool.workers[0].process.pid != pid
        pool.waiting = 256  # as many requests wait as the limit allows: a sample is refused at once, as they are
        busy = test_client.post(f"/api/samples?label={label}", content=data)
        pool.waiting = 0
        assert busy.status_code == 503 and "requests are waiting" in busy.json()["detail"]


def test_a_sample_larger_than_a_drawing_needs_is_refused_before_it_is_decoded(served_onnx, tmp_path):
    """A sample is decoded whole to be kept: one of 8000x8000 pixels held the only worker for seconds while
    predictions waited behind it. Over the samples' own pixel limit it is refused from its header (413)."""
    big = io.BytesIO()
    Image.new("L", (3000, 2000), 255).save(big, "PNG")   # 6 megapixels, a few kB
    settings = ServeSettings(served_onnx, backend="onnx", collect=tmp_path)
    with TestClient(create_app(settings)) as test_client:
        refused = test_client.post("/api/samples?label=3", content=big.getvalue())
        assert refused.status_code == 413 and "pixels" in refused.json()["detail"]
        assert not any(tmp_path.rglob("*.png"))
        small = io.BytesIO()
        Image.new("L", (1000, 1000), 255).save(small, "PNG")
        assert test_client.post("/api/samples?label=3", content=small.getvalue()).status_code == 200


def test_collect_must_be_a_folder(tmp_path):
    from digitlab.cli import build_parser
    from digitlab.cli.serve import serve_settings

    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="--collect .* is not a folder"):
        serve_settings(build_parser().parse_args(["serve", "--collect", str(tmp_path / "file")]))
    assert serve_settings(build_parser().parse_args(["serve", "--collect", str(tmp_path / "new")])).collect == \
        str(tmp_path / "new")
    assert serve_settings(build_parser().parse_args(["serve"])).collect is None
