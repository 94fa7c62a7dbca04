"""`localgen serve`: vLLM's OpenAI-compatible server for a local model, on loopback.

The server is vLLM's own (`vllm.entrypoints.openai.api_server`), started as a child
process with the settings localgen's in-process engine uses: offline, the same CPU
settings, and the same structured-output backend with whitespace off, so that
`--engine openai --backend grammar` produces the rows the in-process engine would.
localgen waits until the server answers, says where it is, and stops it on Ctrl-C.

Anything but loopback needs a key (`--api-key-file` or LOCALGEN_API_KEY; `--no-auth` to
serve without one knowingly), which vLLM gets through its environment (VLLM_API_KEY), not
its command line; `--ssl-certfile` and `--ssl-keyfile` serve https.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time

from localgen.config import ServeConfig
from localgen.engines.auth import KEY_ENV, read_key
from localgen.engines.base import BACKENDS
from localgen.engines.vllm_setup import (
    ENV_DEFAULTS,
    INSTALL_HINT,
    cpu_dtype,
    cpu_options,
    structured_outputs,
)
from localgen.errors import EngineError, UsageError
from localgen.models.context import context_length
from localgen.models.resolve import ModelRef, resolve_model
from localgen.offline import OFFLINE_ENV, is_loopback_host
from localgen.progress import Say, silent

START_TIMEOUT_S = 600.0


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def server_command(model: ModelRef, config: ServeConfig, gpu: bool) -> list[str]:
    """The vLLM server command line for a local model folder."""
    context = context_length(config.max_model_len, model.path)
    command = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model.path),
        "--served-model-name",
        config.name or model.name,
        "--host",
        config.host,
        "--port",
        str(config.port),
        "--max-model-len",
        str(context),
        "--seed",
        str(config.seed),
        "--structured-outputs-config",
        json.dumps(structured_outputs(config.backend)),
        "--generation-config",
        "vllm",  # sampling defaults from the request, not from the model folder
        "--enable-prompt-tokens-details",  # usage says what the prefix cache served
    ]
    if config.tensor_parallel_size > 1:
        command += ["--tensor-parallel-size", str(config.tensor_parallel_size)]
    if config.data_parallel_size > 1:
        command += ["--data-parallel-size", str(config.data_parallel_size)]
    if not gpu:  # the settings of localgen's in-process CPU engine
        cpu = cpu_options(context)
        command += ["--enforce-eager", "--dtype", cpu_dtype(), "--no-enable-chunked-prefill"]
        command += ["--max-num-batched-tokens", str(cpu["max_num_batched_tokens"])]
        command += ["--block-size", str(cpu["block_size"])]
    if config.ssl_certfile is not None and config.ssl_keyfile is not None:
        command += ["--ssl-certfile", str(config.ssl_certfile)]
        command += ["--ssl-keyfile", str(config.ssl_keyfile)]
    return command


def server_env(key: str | None) -> dict[str, str]:
    """The vLLM child's environment: offline, and the key (or none) localgen decided on,
    whatever VLLM_API_KEY the caller's environment held."""
    env = ENV_DEFAULTS | dict(os.environ) | OFFLINE_ENV
    env.pop("VLLM_API_KEY", None)
    env.pop(KEY_ENV, None)
    return env | ({"VLLM_API_KEY": key} if key else {})


def check_access(config: ServeConfig, key: str | None) -> list[str]:
    """Refuse a server anyone on the network could use, or half a TLS setting; return
    the warnings that remain."""
    if (config.ssl_certfile is None) != (config.ssl_keyfile is None):
        raise UsageError("give both --ssl-certfile and --ssl-keyfile, or neither")
    for path in (config.ssl_certfile, config.ssl_keyfile):
        if path is not None and not path.is_file():
            raise UsageError(f"{path}: no such file")
    if config.no_auth and key:
        raise UsageError(f"--no-auth, but a key was given (--api-key-file or {KEY_ENV})")
    if is_loopback_host(config.host):
        return []
    if key is None and not config.no_auth:
        raise UsageError(
            f"serving on {config.host} lets anyone who can reach port {config.port} use the "
            f"model: give it a key (--api-key-file FILE, or {KEY_ENV}), or pass --no-auth"
        )
    if key is None:
        return [f"warning: serving on {config.host} without a key (--no-auth)"]
    if config.ssl_certfile is None:
        return [
            f"warning: serving on {config.host} without TLS: the key and the prompts cross "
            "the network in clear text (add --ssl-certfile and --ssl-keyfile)"
        ]
    return []


def wait_until_ready(
    url: str, process: subprocess.Popen[bytes], timeout: float = START_TIMEOUT_S
) -> None:
    """Poll the server's /health until it answers; fail if the process exits first.
    /health needs no key, and the probe of our own child on loopback carries no data, so
    it does not verify the certificate (made for the name clients use)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EngineError(
                f"the vLLM server exited with code {process.returncode} before it was ready "
                "(its log is above)"
            )
        try:
            health = httpx.get(f"{url}/health", timeout=2.0, trust_env=False, verify=False)
            if health.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1.0)
    raise EngineError(f"the vLLM server did not answer at {url} within {timeout:.0f} s")


def serve(config: ServeConfig, say: Say = silent) -> int:
    """Run the server on the model `config` names until Ctrl-C or SIGTERM; return its exit
    code."""
    # Only whether it is installed: importing vLLM here would cost seconds, and the server
    # process imports it anyway.
    if importlib.util.find_spec("vllm") is None:
        raise EngineError(f"vLLM is not installed: {INSTALL_HINT}")
    if config.backend not in BACKENDS["vllm"]:
        choices = ", ".join(BACKENDS["vllm"])
        raise UsageError(f"--backend {config.backend}: vLLM's server takes one of {choices}")
    key = read_key(config.api_key_file)
    for warning in check_access(config, key):
        say(warning)
    model = resolve_model(config.model, say)
    host = config.host if config.host not in ("0.0.0.0", "::") else "127.0.0.1"
    scheme = "https" if config.ssl_certfile is not None else "http"
    url = f"{scheme}://{host}:{config.port}"
    command = server_command(model, config, _has_cuda())
    process = subprocess.Popen(command, env=server_env(key))

    def stop(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        wait_until_ready(url, process)
        keyed = "; clients send the key" if key else ""
        say(
            f"serving {config.name or model.name} at {url}/v1 "
            f"(--engine openai --base-url {url}/v1{keyed}); stop with Ctrl-C"
        )
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
