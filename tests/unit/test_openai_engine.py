"""The openai engine against a small OpenAI-compatible stand-in server on loopback.

The stand-in answers each request with a row for the label its constraint allows, so
these tests check localgen's side: the request it sends, the allow-list, errors, retries
and the rows it stores. The real server (vLLM, started by `localgen serve`) is in
tests/integration/test_vllm.py.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from localgen.config import EngineSettings, GenerateConfig
from localgen.engines import openai
from localgen.engines.loader import check_settings, resolve_engine_model
from localgen.engines.openai import Server, check_base_url
from localgen.errors import EgressBlocked, EngineError, UsageError
from localgen.generation.generate import generate
from localgen.offline import egress_guard
from tests.helpers import EXAMPLE_TASK


class StandIn:
    """What the stand-in server serves, and what it received."""

    def __init__(self) -> None:
        self.models = ["team-model"]
        self.bodies: list[dict[str, Any]] = []
        self.fail_first: dict[str, int] = {}  # label -> answers with HTTP 500 first
        self.busy_first = 0  # answers with HTTP 503 first (any request)
        self.status = 200
        self.key: str | None = None  # the bearer key it requires
        self.authorizations: list[str | None] = []
        self.answers_left: int | None = None  # then it drops every connection, like a kill
        # Once this many requests have come: HTTP 400 to the first, no answer to the rest.
        self.refuse_then_stall: int | None = None
        self.all_in = threading.Event()  # they have all come
        self.released = threading.Event()  # what stalls waits for this

    def allowed(self, authorization: str | None) -> bool:
        self.authorizations.append(authorization)
        return self.key is None or authorization == f"Bearer {self.key}"

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.bodies.append(body)
        if self.status != 200:
            return self.status, {"error": {"message": "response_format is not supported"}}
        if self.busy_first > 0:
            self.busy_first -= 1
            return 503, {"error": {"message": "loading"}}
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
    lock = threading.Lock()

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
            if not state.allowed(self.headers.get("Authorization")):
                return self._send(401, {"error": "Unauthorized"})
            self._send(200, {"data": [{"id": m} for m in state.models]})

        def do_POST(self) -> None:  # noqa: N802
            assert self.path == "/v1/chat/completions"
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if state.refuse_then_stall is not None:
                with lock:
                    state.bodies.append(body)
                    first = len(state.bodies) == 1
                    if len(state.bodies) == state.refuse_then_stall:
                        state.all_in.set()
                if not first:
                    state.released.wait()
                    return
                state.all_in.wait(timeout=30)
                return self._send(400, {"error": {"message": "prompt too long"}})
            if state.answers_left is not None:
                if state.answers_left <= 0:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)  # gone, mid-request
                    return
                state.answers_left -= 1
            if not state.allowed(self.headers.get("Authorization")):
                return self._send(401, {"error": "Unauthorized"})
            self._send(*state.answer(body))

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", state
    state.released.set()
    httpd.shutdown()
    httpd.server_close()


def _settings(url: str, **kwargs: Any) -> EngineSettings:
    return EngineSettings(name="openai", base_url=url, **kwargs)


def _config(tmp_path: Path, engine: EngineSettings, **kwargs: Any) -> GenerateConfig:
    """A quiet run of the example task into tmp_path / "run" through `engine`."""
    return GenerateConfig(
        task_path=EXAMPLE_TASK, out=tmp_path / "run", quiet=True, engine=engine, **kwargs
    )


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
    config = _config(
        tmp_path, _settings(url, backend=backend, concurrency=4), count=3, strategy=("zero-shot",)
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
    config = _config(tmp_path, _settings(url), count=1)
    with pytest.raises(EngineError, match="HTTP 400: response_format is not supported"):
        generate(config)
    assert not (tmp_path / "run").exists()  # nothing was stored, so nothing is left


def test_a_refused_request_ends_the_process_without_waiting_for_the_others(
    server: tuple[str, StandIn], tmp_path: Path
) -> None:
    """The first answer refuses the request and the server never answers the others: the
    command still exits at once with the one line, not when their timeout comes."""
    url, state = server
    state.refuse_then_stall = 8  # the 8 requests of -n 2: all in flight when the first is refused
    args = [str(EXAMPLE_TASK), "--out", str(tmp_path / "run"), "-n", "2", "--quiet"]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "localgen", "generate", *args, "--engine", "openai",
         "--base-url", url, "--concurrency", "8"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert time.monotonic() - started < 60  # not the 600 s the others could wait
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == "Error: the server refused the request: HTTP 400: prompt too long"
    assert state.all_in.is_set()  # seven were still waiting for answers
    assert not (tmp_path / "run").exists()


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
    assert "--enable-prompt-tokens-details" in cpu  # usage says what the prefix cache served
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


def test_a_key_goes_as_a_bearer_token_and_never_into_what_is_written(
    server: tuple[str, StandIn], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, state = server
    state.key = "sk-team-7f3a9c"
    monkeypatch.delenv("LOCALGEN_API_KEY", raising=False)
    with pytest.raises(EngineError, match="needs an API key \\(HTTP 401\\).*--api-key-file"):
        resolve_engine_model(_settings(url), None)
    wrong = tmp_path / "wrong.key"
    wrong.write_text("sk-not-it\n")
    with pytest.raises(EngineError, match="refused the API key \\(HTTP 401\\)$"):
        resolve_engine_model(_settings(url, api_key_file=wrong), None)
    key_file = tmp_path / "team.key"
    key_file.write_text(state.key + "\n")  # a trailing newline, as editors leave it
    config = _config(tmp_path, _settings(url, api_key_file=key_file), count=1)
    assert generate(config).written == 4
    assert state.authorizations[-1] == f"Bearer {state.key}"
    monkeypatch.setenv("LOCALGEN_API_KEY", state.key)  # or from the environment
    assert generate(replace(config, out=tmp_path / "env", engine=_settings(url))).written == 4
    manifest = json.loads((tmp_path / "env" / "manifest.json").read_text())
    assert manifest["engine"]["api_key_from"] == "LOCALGEN_API_KEY"
    for folder in (tmp_path / "run", tmp_path / "env"):
        for path in folder.rglob("*"):
            assert not path.is_file() or state.key.encode() not in path.read_bytes(), path
    assert state.key not in repr(Server.of(_settings(url, api_key_file=key_file)))


def test_a_key_file_that_is_not_a_key_is_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    with pytest.raises(UsageError, match="give the key alone, on one line"):
        Server.of(_settings("http://127.0.0.1:9/v1", api_key_file=empty))
    with pytest.raises(UsageError, match="no such file"):
        Server.of(_settings("http://127.0.0.1:9/v1", api_key_file=tmp_path / "missing"))
    with pytest.raises(EngineError, match="--api-key-file is for --engine openai, not vllm"):
        check_settings(EngineSettings(api_key_file=empty))


def test_a_busy_server_is_asked_again(
    server: tuple[str, StandIn], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai, "RETRY_DELAYS_S", (0.01, 0.01, 0.01))
    url, state = server
    state.busy_first = 3  # a server still loading: 503 three times, then answers
    config = _config(tmp_path, _settings(url, concurrency=1), count=1, check_labels=False)
    result = generate(config)
    assert result.written == 4 and result.failures == []
    assert len(state.bodies) == 4 + 3  # the three busy answers were asked again


def test_a_server_gone_mid_run_stops_with_one_line_keeps_the_rows_and_resumes(
    server: tuple[str, StandIn], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(openai, "RETRY_DELAYS_S", (0.01, 0.02))
    url, state = server
    state.answers_left = 5  # then the server is gone
    config = _config(
        tmp_path,
        _settings(url, concurrency=1),
        count=3,
        strategy=("zero-shot",),
        shard_rows=100,  # the five rows received are still buffered when the server goes
        check_labels=False,
    )
    with pytest.raises(EngineError, match="lost the server at .*3 attempts.*rerun the same"):
        generate(config)
    kept = pl.read_parquet(tmp_path / "run" / "shards")
    assert kept.height == 5
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["counts"]["stored"] == 5
    state.answers_left = None  # the server is back
    result = generate(config)
    assert result.resumed == 5 and result.written == 12
    rows = pl.read_parquet(tmp_path / "run" / "synthetic.parquet")
    assert rows["request_key"].n_unique() == 12 and rows.height == 12
    assert (
        kept.sort("request_key")["text"].to_list()
        == rows.filter(pl.col("request_key").is_in(kept["request_key"].to_list()))
        .sort("request_key")["text"]
        .to_list()
    )


def test_serve_refuses_the_network_without_a_key_and_hands_vllm_the_key_privately(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from localgen.config import ServeConfig
    from localgen.engines.server import check_access, server_command, server_env
    from localgen.models.resolve import ModelRef

    monkeypatch.setenv("VLLM_API_KEY", "left-over-from-elsewhere")
    with pytest.raises(UsageError, match="lets anyone who can reach port 8000 use the model"):
        check_access(ServeConfig(host="0.0.0.0"), None)
    assert check_access(ServeConfig(host="0.0.0.0", no_auth=True), None) == [
        "warning: serving on 0.0.0.0 without a key (--no-auth)"
    ]
    [clear] = check_access(ServeConfig(host="10.1.2.3"), "k")
    assert "without TLS" in clear
    assert check_access(ServeConfig(), None) == []  # loopback: no key needed
    with pytest.raises(UsageError, match="both --ssl-certfile and --ssl-keyfile"):
        check_access(ServeConfig(ssl_certfile=tmp_path / "cert.pem"), "k")
    with pytest.raises(UsageError, match="--no-auth, but a key was given"):
        check_access(ServeConfig(no_auth=True), "k")
    cert, private = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("c")
    private.write_text("p")
    tls = ServeConfig(host="10.1.2.3", ssl_certfile=cert, ssl_keyfile=private)
    assert check_access(tls, "k") == []
    command = server_command(ModelRef("m", tmp_path / "m", "-"), tls, gpu=False)
    assert command[command.index("--ssl-certfile") + 1] == str(cert)
    assert command[command.index("--ssl-keyfile") + 1] == str(private)
    assert "--api-key" not in command and "sk-secret" not in " ".join(command)
    assert server_env("sk-secret")["VLLM_API_KEY"] == "sk-secret"  # the environment only
    assert "VLLM_API_KEY" not in server_env(None)  # no key means none, whatever was set


def test_what_the_servers_prefix_cache_served_is_read_where_it_is_reported() -> None:
    from localgen.engines.openai import _cached_tokens

    assert _cached_tokens({"prompt_tokens_details": {"cached_tokens": 64}}) == 64
    assert _cached_tokens({"prompt_tokens_details": {"cached_tokens": 0}}) == 0
    assert _cached_tokens({"prompt_tokens": 100}) is None
    assert _cached_tokens({"prompt_tokens_details": None}) is None
