"""The openai engine: an OpenAI-compatible server the organisation already runs.

Every request goes to `POST {base_url}/chat/completions`, a bounded number at a time, and
each completion is yielded as soon as its answer arrives. The row constraint travels
with the request: the JSON schema as `response_format` (any server with JSON-schema
support: vLLM, llama.cpp, SGLang, TGI), or the row's regex through vLLM's own
`structured_outputs` extension (what the in-process engine gives guidance and outlines).

Prompts are data: the server must be on this machine (loopback) or on a host the user
named in the allow-list, which the egress guard then lets through. Nothing else is.

A server that requires a key gets it as a bearer token (`localgen.engines.auth`: from a
file or LOCALGEN_API_KEY); https servers are verified, against --ca-cert when given. A
server that drops the connection or answers "busy" (429, 502, 503, 504) is asked again
after 1, 2, 4 and 8 seconds; after that the run stops with one line, keeping every row
already received, and the same command resumes it.
"""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from queue import SimpleQueue
from typing import Any
from urllib.parse import urlsplit

from localgen.config import EngineSettings
from localgen.engines.auth import KEY_ENV, read_key, trusted
from localgen.engines.base import Completion, Feed
from localgen.errors import EngineError
from localgen.models.resolve import ModelRef
from localgen.offline import is_loopback_host
from localgen.planning.requests import Request

CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 600.0  # one row can wait behind a whole batch on a busy CPU server
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0)  # a dropped connection or a busy answer, asked again
BUSY = (429, 502, 503, 504)


def check_base_url(url: str, allow_hosts: Iterable[str] = ()) -> str:
    """The URL without a trailing slash, if it is http(s) on loopback or an allowed host."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EngineError(f"--base-url must be http://HOST:PORT/v1 or https://..., got {url!r}")
    host = parts.hostname
    if not is_loopback_host(host) and host not in set(allow_hosts):
        raise EngineError(
            f"refusing to send prompts to {host}: it is not this machine; "
            f"name it with --allow-host {host} (or LOCALGEN_ALLOW_HOSTS) to allow it"
        )
    return url.rstrip("/")


@dataclass(frozen=True)
class Server:
    """Where the requests go, with what they carry: the API root, the key (never shown:
    repr leaves it out) and what an https server is verified with."""

    url: str
    key: str | None = field(default=None, repr=False)
    verify: ssl.SSLContext | bool = field(default=True, repr=False)

    @classmethod
    def of(cls, settings: EngineSettings) -> Server:
        assert settings.base_url, "check_settings first"
        return cls(
            check_base_url(settings.base_url, settings.allow_hosts),
            read_key(settings.api_key_file),
            trusted(settings.ca_cert),
        )

    def client(self, connections: int = 100) -> Any:
        """An HTTP client for this server, with up to `connections` open at once."""
        import httpx

        return httpx.Client(
            timeout=httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            limits=httpx.Limits(max_connections=connections),
            trust_env=False,  # no proxy from the environment: the request goes where it says
            headers={"Authorization": f"Bearer {self.key}"} if self.key else None,
            verify=self.verify,
        )

    def refused_key(self, status: int) -> EngineError:
        """The one line for a 401 or 403: no key sent, or the wrong one."""
        if self.key is None:
            return EngineError(
                f"the server at {self.url} needs an API key (HTTP {status}): put it in a "
                f"file and pass --api-key-file FILE, or set {KEY_ENV}"
            )
        return EngineError(f"the server at {self.url} refused the API key (HTTP {status})")


def _server_error(response: Any) -> str:
    try:
        body = response.json()
        message = body.get("error", body)
        message = message.get("message", message) if isinstance(message, dict) else message
    except ValueError:
        message = response.text
    return f"HTTP {response.status_code}: {str(message).strip()[:300]}"


def served_model(server: Server, wanted: str | None) -> ModelRef:
    """Ask the server which models it serves; pick `wanted`, or the only one."""
    import httpx

    base_url = server.url
    url = f"{base_url}/models"
    try:
        with server.client() as client:
            response = client.get(url)
    except httpx.HTTPError as e:
        raise EngineError(f"cannot reach the server at {base_url}: {e}") from None
    if response.status_code in (401, 403):
        raise server.refused_key(response.status_code)
    if response.status_code != 200:
        raise EngineError(f"{url}: {_server_error(response)}")
    try:
        ids = [m["id"] for m in response.json()["data"]]
    except (ValueError, KeyError, TypeError):
        raise EngineError(f"{url} did not answer like an OpenAI-compatible server") from None
    if wanted is None:
        if len(ids) != 1:
            raise EngineError(
                f"the server at {base_url} serves {len(ids)} models ({', '.join(ids)}); "
                "choose one with --model"
            )
        wanted = ids[0]
    elif wanted not in ids:
        raise EngineError(
            f"the server at {base_url} does not serve {wanted!r}; it serves {', '.join(ids)}"
        )
    return ModelRef(name=wanted, path=None, config_hash="-", url=base_url)


class OpenAIEngine:
    name = "openai"
    context: int | None = None  # the server clamps max_tokens to what its context leaves

    def __init__(self, model: ModelRef, backend: str, concurrency: int, server: Server) -> None:
        assert model.url == server.url, "the openai engine needs a served model (served_model)"
        if concurrency < 1:
            raise ValueError("the openai engine needs room for at least one request")
        self.model = model
        self.backend = backend
        self.concurrency = concurrency
        self.server = server
        self.client = server.client(concurrency)
        self.closing = threading.Event()  # set by close(): threads stop waiting to retry
        self.sending = 0  # threads waiting for an answer (under `lock`)
        self.lock = threading.Lock()

    def body(self, request: Request) -> dict[str, Any]:
        """The chat-completions request: the prompt, sampling settings, seed and constraint."""
        body: dict[str, Any] = {
            "model": self.model.name,
            "messages": [{"role": "user", "content": request.prompt}],
            "temperature": request.temperature,
            "top_p": request.top_p,
            "max_tokens": request.max_tokens,
            "seed": request.seed,
            "logprobs": True,  # the sampled tokens' log-probabilities: Completion.mean_logprob
        }
        if self.backend == "grammar":
            body["structured_outputs"] = {"regex": request.schema.regex}
        else:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {
                    "name": "row",
                    "schema": request.schema.json_schema,
                    "strict": True,
                },
            }
        return body

    def _post(self, request: Request) -> Any:
        """The server's answer, asked again (RETRY_DELAYS_S) while the connection drops or
        the server says it is busy; EngineError once it stays gone."""
        import httpx

        url = f"{self.model.url}/chat/completions"
        attempt = 0
        while True:
            last = attempt == len(RETRY_DELAYS_S)
            try:
                response = self.client.post(url, json=self.body(request))
                if last or response.status_code not in BUSY:
                    return response
            except httpx.TimeoutException:
                raise  # the server is there, and slow: asking again would only add load
            except httpx.TransportError as e:
                if last:
                    waited = sum(RETRY_DELAYS_S[:attempt])
                    raise EngineError(
                        f"lost the server at {self.model.url} ({type(e).__name__}; "
                        f"{attempt + 1} attempts over {waited:.0f} s); the rows received "
                        "are kept: rerun the same command once it is back"
                    ) from None
            if self.closing.wait(RETRY_DELAYS_S[attempt]):
                raise EngineError("stopped")  # close() ended the wait: the run is over
            attempt += 1

    def _send(self, request: Request) -> Completion:
        import httpx

        try:
            response = self._post(request)
        except httpx.TimeoutException:
            return Completion(request.key, "", "error: timeout", 0, 0)
        except httpx.HTTPError as e:
            raise EngineError(f"lost the server at {self.model.url}: {e}") from None
        if response.status_code in (401, 403):
            raise self.server.refused_key(response.status_code)
        if response.status_code >= 500 or response.status_code == 429:
            return Completion(request.key, "", f"error: {_server_error(response)}", 0, 0)
        if response.status_code != 200:  # the request itself is wrong: so is every other
            raise EngineError(f"the server refused the request: {_server_error(response)}")
        try:
            answer = response.json()
            choice = answer["choices"][0]
            usage = answer.get("usage") or {}
            tokens = (choice.get("logprobs") or {}).get("content") or []
            logprobs = [float(t["logprob"]) for t in tokens if t.get("logprob") is not None]
            return Completion(
                key=request.key,
                text=choice["message"]["content"] or "",
                finish_reason=str(choice.get("finish_reason")),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                mean_logprob=sum(logprobs) / len(logprobs) if logprobs else None,
                cached_tokens=_cached_tokens(usage),
            )
        except (ValueError, KeyError, IndexError, TypeError):
            snippet = json.dumps(response.text[:200])
            raise EngineError(
                f"the server answered something other than a completion: {snippet}"
            ) from None

    def generate(self, requests: Iterable[Request] | Feed) -> Iterator[Completion]:
        """Up to `concurrency` requests in flight, each on a daemon thread of its own, and
        each answer yielded as it arrives. A run that stops (a refused request, an
        interrupt) does not wait for the answers still in flight: nothing will read them,
        and they end with the process instead of holding its exit up to the timeout."""
        feed = Feed.of(requests)
        answers: SimpleQueue[Completion | BaseException] = SimpleQueue()
        holding = 0  # sent, answer not yet read
        while True:
            room = self.concurrency - holding
            if (feed_room := feed.room(holding)) is not None:
                room = min(room, feed_room)
            for request in feed.take(room):
                thread = threading.Thread(
                    target=self._answer,
                    args=(request, answers),
                    name=f"localgen-{request.key}",
                    daemon=True,
                )
                with self.lock:
                    self.sending += 1
                try:
                    thread.start()
                except BaseException:
                    with self.lock:
                        self.sending -= 1
                    raise
                holding += 1
            if not holding:
                return
            answer = answers.get()
            holding -= 1
            if isinstance(answer, BaseException):
                raise answer
            yield answer

    def _answer(self, request: Request, answers: SimpleQueue[Completion | BaseException]) -> None:
        answer: Completion | BaseException
        try:
            answer = self._send(request)
        except BaseException as e:  # raised where the answers are read
            answer = e
        with self.lock:
            self.sending -= 1
            last = self.closing.is_set() and not self.sending
        answers.put(answer)
        if last:  # close() came while this request was in flight
            self.client.close()

    def close(self) -> None:
        self.closing.set()
        with self.lock:
            if self.sending:  # their connections are in use: the last one closes the client
                return
        self.client.close()


def _cached_tokens(usage: dict[str, Any]) -> int | None:
    """The prompt tokens the server's prefix cache served, where it reports them (vLLM's
    server with --enable-prompt-tokens-details, OpenAI's own API)."""
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens")
    return int(cached) if isinstance(cached, int) else None
