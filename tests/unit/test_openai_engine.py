"""The openai engine against a small OpenAI-compatible stand-in server on loopback.

The stand-in answers each request with a row for the label its constraint allows, so
these tests check localgen's side: the request it sends, the allow-list, errors, retries
and the rows it stores. The real server (vLLM, started by `localgen serve`) is in
tests/integration/test_vllm.py.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from localgen.config import EngineSettings, GenerateConfig
from localgen.engines.loader import check_settings, resolve_engine_model
from localgen.engines.openai import check_base_url
from localgen.errors import EgressBlocked, EngineError
from localgen.generation.generate import generate
from localgen.offline import egress_guard
from tests.conftest import EXAMPLE_TASK


class StandIn:
    """What the stand-in server serves, and what it received."""

    def __init__(self) -> None:
        self.models = ["team-model"]
        self.bodies: list[dict[str, Any]] = []
        self.fail_first: dict[str, int] = {}  # label -> answers with HTTP 500 first
        self.status = 200

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.bodies.append(body)
        if self.status != 200:
            return self.status, {"error": {"message": "response_format is not supported"}}
        if "response_format" in body:
            schema = body["response_format"]["json_schema"]["schema"]
            label = schema["properties"]["label"]["enum"][0]
        else:  # the regex ends with the label literal: ..."label":"billing"\}
            label = body["structured_outputs"]["regex"].split('"label":"')[1]
            label = label.split('"')[0]
        if self.fail_first.get(label, 0) > 0:
            self.fail_first[label] -= 1
            return 500, {"error": {"message": "overloaded"}}
        text = json.dumps({"text": f"A message about {label} number {len(self.bodies)}."})
        row = text[:-1] + f', "label": "{label}"}}'
        return 200, {
            "choices": [{"message": {"content": row}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20},
        }


@pytest.fixture
def server() -> Iterator[tuple[str, StandIn]]:
    state = StandIn()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802
            assert self.path == "/v1/models"
            self._send(200, {"data": [{"id": m} for m in state.models]})

        def do_POST(self) -> None:  # noqa: N802
            assert self.path == "/v1/chat/completions"
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._send(*state.answer(body))

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    httpd.shutdown()
    httpd.server_close()


def _settings(url: str, **kwargs: Any) -> EngineSettings:
    return EngineSettings(name="openai", base_url=url, **kwargs)


def test_only_loopback_or_named_hosts() -> None:
    assert check_base_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000/v1"
    assert check_base_url("http://localhost:8000/v1") == "http://localhost:8000/v1"
    with pytest.raises(EngineError, match="refusing to send prompts to gpu01.corp"):
        check_base_url("http://gpu01.corp:8000/v1")
    assert check_base_url("https://gpu01.corp/v1", ["gpu01.corp"]) == "https://gpu01.corp/v1"
    with pytest.raises(EngineError, match="refusing to send prompts to 10.0.0.7"):
        check_base_url("http://10.0.0.7:8000/v1", ["gpu01.corp"])
    for bad in ("127.0.0.1:8000", "ftp://127.0.0.1/v1", "http:///v1"):
        with pytest.raises(EngineError, match="--base-url must be"):
            check_base_url(bad)
    with pytest.raises(EngineError, match="needs --base-url"):
        check_settings(EngineSettings(name="openai"))
    with pytest.raises(EngineError, match="--base-url is for --engine openai"):
        check_settings(EngineSettings(name="vllm", base_url="http://127.0.0.1:1/v1"))


def _own_address() -> str | None:
    """This machine's first non-loopback IPv4 address, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # UDP: sends nothing, picks the route's address
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") else address


def test_guard_lets_allowed_hosts_through_and_nothing_else() -> None:
    address = _own_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to connect to")
    server = socket.socket()
    server.bind((address, 0))
    server.listen(2)
    port = server.getsockname()[1]
    try:
        with egress_guard() as audit, socket.socket() as s, pytest.raises(EgressBlocked):
            s.connect((address, port))
        assert audit.attempts == [f"{address}:{port}"]
        with egress_guard([address]) as audit:
            with socket.create_connection((address, port), timeout=5):
                pass
            with socket.socket() as s, pytest.raises(EgressBlocked):
                s.connect(("203.0.113.9", 443))  # still refused: not on the list
        assert audit.as_dict()["allowed_hosts"] == [address]
        assert audit.attempts == ["203.0.113.9:443"]
    finally:
        server.close()
    # A name on the list may be looked up; other names may not.
    name = socket.gethostname()
    with egress_guard([name]):
        assert socket.getaddrinfo(name, 80)
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("huggingface.co", 443)


def test_the_served_model_is_found_or_named(server: tuple[str, StandIn]) -> None:
    url, state = server
    ref = resolve_engine_model(_settings(url), None)
    assert (ref.name, ref.path, ref.where) == ("team-model", None, url)
    with pytest.raises(EngineError, match="does not serve 'other'"):
        resolve_engine_model(_settings(url), "other")
    state.models = ["a", "b"]
    with pytest.raises(EngineError, match="serves 2 models \\(a, b\\); choose one"):
        resolve_engine_model(_settings(url), None)
    with pytest.raises(EngineError, match="cannot reach the server at http://127.0.0.1:9/v1"):
        resolve_engine_model(_settings("http://127.0.0.1:9/v1"), None)


@pytest.mark.parametrize("backend", ["json_schema", "grammar"])
def test_generate_through_a_server_stores_valid_rows(
    server: tuple[str, StandIn], tmp_path: Path, backend: str
) -> None:
    url, state = server
    state.fail_first = {"billing": 1}  # one overloaded answer: retried with a new seed
    config = GenerateConfig(
        task_path=EXAMPLE_TASK,
        out=tmp_path / "run",
        count=3,
        strategy=("zero-shot",),
        quiet=True,
        engine=_settings(url, backend=backend, concurrency=4),
    )
    result = generate(config)
    assert result.written == 12 and result.failures == []
    rows = pl.read_parquet(result.outputs[0])
    assert sorted(rows["label"].value_counts().rows()) == [
        ("account_access", 3),
        ("billing", 3),
        ("bug", 3),
        ("feature_request", 3),
    ]
    assert set(rows["model"]) == {"team-model"} and set(rows["model_path"]) == {url}
    assert set(rows["engine"]) == {"openai"}
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["engine"]["name"] == "openai" and manifest["engine"]["backend"] == backend
    assert manifest["model"]["path"] == url
    assert manifest["tokens"]["completion"] == 20 * 12
    # 13 row requests (the failed billing one was sent again), then one label check per
    # row; each carried its constraint.
    checks = [b for b in state.bodies if "Which category" in b["messages"][0]["content"]]
    assert len(state.bodies) == 13 + 12 and len(checks) == 12
    assert all(b["temperature"] == 0.0 for b in checks)
    first = state.bodies[0]
    assert first["model"] == "team-model" and first["max_tokens"] > 0
    assert isinstance(first["seed"], int) and first["messages"][0]["role"] == "user"
    key = "response_format" if backend == "json_schema" else "structured_outputs"
    assert all(key in b for b in state.bodies)


def test_a_refused_request_stops_the_run_with_the_servers_reason(
    server: tuple[str, StandIn], tmp_path: Path
) -> None:
    url, state = server
    state.status = 400
    config = GenerateConfig(
        task_path=EXAMPLE_TASK, out=tmp_path / "run", count=1, quiet=True, engine=_settings(url)
    )
    with pytest.raises(EngineError, match="HTTP 400: response_format is not supported"):
        generate(config)
    assert not (tmp_path / "run").exists()  # nothing was stored, so nothing is left


def test_serve_passes_localgens_engine_settings_to_vllms_server(tmp_path: Path) -> None:
    from localgen.config import ServeConfig
    from localgen.engines.server import server_command
    from localgen.models.resolve import ModelRef

    model = ModelRef("m", tmp_path / "m", "-")
    cpu = server_command(model, ServeConfig(port=8123), gpu=False)
    flags = dict(zip(cpu[3::2], cpu[4::2], strict=False))  # after python -m module
    assert cpu[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert flags["--model"] == str(tmp_path / "m") and flags["--host"] == "127.0.0.1"
    assert flags["--port"] == "8123" and flags["--served-model-name"] == "m"
    assert json.loads(cpu[cpu.index("--structured-outputs-config") + 1]) == {
        "backend": "guidance",
        "disable_any_whitespace": True,
    }
    assert "--enforce-eager" in cpu and "--no-enable-chunked-prefill" in cpu
    assert "--tensor-parallel-size" not in cpu
    gpu = server_command(
        model,
        ServeConfig(backend="outlines", tensor_parallel_size=4, data_parallel_size=2),
        gpu=True,
    )
    assert "--enforce-eager" not in gpu  # CUDA graphs and the card's dtype on a GPU
    assert gpu[gpu.index("--tensor-parallel-size") + 1] == "4"
    assert gpu[gpu.index("--data-parallel-size") + 1] == "2"
    # vLLM refuses the whitespace setting for its outlines backend.
    assert json.loads(gpu[gpu.index("--structured-outputs-config") + 1]) == {"backend": "outlines"}
