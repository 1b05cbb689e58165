"""The REST API fuzzed from the schema it publishes (schemathesis): whatever a client sends within that schema or
just outside it, the server answers without a 5xx, with a status and a body the schema describes, and stays up.

The app is the threaded one over the bundled ONNX model, as `create_app` builds it; schemathesis runs its lifespan.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance, status_code_conformance
from starlette.testclient import TestClient

from digitlab.serve.app import create_app
from digitlab.serve.settings import Limits, ServeSettings

APP = create_app(ServeSettings(backend="onnx", limits=Limits(max_batch_files=4, max_pixels=4_000_000)))
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_breaks_the_server(case):
    case.call_and_validate(checks=[not_a_server_error, status_code_conformance, response_schema_conformance])


def test_the_server_still_answers_after_the_fuzzing():
    with TestClient(APP) as client:
        assert client.get("/api/health").json()["status"] == "ok"



# The same app started with --collect, so /api/samples saves what it is sent: into a folder that is made only when
# the first sample is saved, and removed after this module's tests.
COLLECTED = Path(tempfile.gettempdir()) / f"digitlab-fuzz-collected-{os.getpid()}"
COLLECTING = create_app(ServeSettings(backend="onnx", limits=Limits(max_batch_files=4, max_pixels=4_000_000),
                                      collect=COLLECTED))
collecting = schemathesis.openapi.from_asgi("/openapi.json", COLLECTING).include(path="/api/samples")


@pytest.fixture(scope="module", autouse=True)
def _remove_collected():
    yield
    shutil.rmtree(COLLECTED, ignore_errors=True)


@collecting.parametrize()
@settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_sample_breaks_a_collecting_server(case):
    case.call_and_validate(checks=[not_a_server_error, status_code_conformance, response_schema_conformance])
    for png in COLLECTED.rglob("*.png"):  # whatever was saved is a whole image with its sidecar
        assert png.with_suffix(".json").is_file()
