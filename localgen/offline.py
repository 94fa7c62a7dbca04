"""Keep every run on the machine: offline settings for the libraries, and a socket guard.

`apply_offline_env()` must run before vLLM, transformers or huggingface_hub are imported:
they read these variables at import time. `EgressGuard` refuses, and counts, any
connection or name lookup that would leave the machine while a run is in progress.
This module does not filter traffic of other processes; it guards this Python process.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from localgen.errors import EgressBlocked

# Read by huggingface_hub, transformers, vLLM and the trackers several dependencies use.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "VLLM_DO_NOT_TRACK": "1",
    "DO_NOT_TRACK": "1",
    "OUTLINES_DISABLE_TELEMETRY": "1",
    "RAY_USAGE_STATS_ENABLED": "0",
    "TOKENIZERS_PARALLELISM": "false",
    # vLLM otherwise finds its own address by "connecting" a UDP socket to 8.8.8.8.
    "VLLM_HOST_IP": "127.0.0.1",
}


def apply_offline_env() -> None:
    """Set the offline variables (unconditionally: a user's HF_HUB_OFFLINE=0 must not win)."""
    os.environ.update(OFFLINE_ENV)


def is_loopback_host(host: str) -> bool:
    """True for 'localhost', 127.0.0.0/8, ::1 and unix-style empty hosts."""
    if host in ("", "localhost", "localhost.localdomain", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@dataclass
class EgressAudit:
    """What the guard saw during a run; goes into every manifest."""

    attempts: list[str] = field(default_factory=list)
    allowed: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": "loopback only" if not self.allowed else "loopback and allowed hosts",
            "allowed_hosts": list(self.allowed),
            "blocked_attempts": len(self.attempts),
            "blocked": self.attempts[:20],  # a sample is enough to find the culprit
        }


class BlockedLookup(socket.gaierror, EgressBlocked):
    """A refused DNS lookup: a gaierror to the library that asked, EgressBlocked to us."""

    def __str__(self) -> str:
        return str(self.args[1]) if len(self.args) > 1 else super().__str__()


_lock = threading.Lock()


def _addresses(hosts: Iterable[str]) -> set[str]:
    """The IP addresses the allowed hosts resolve to (looked up once, before the guard)."""
    found: set[str] = set()
    for host in hosts:
        with contextlib.suppress(OSError):  # a host that does not resolve is not reached
            found.update(str(info[4][0]) for info in socket.getaddrinfo(host, None))
    return found


@contextmanager
def egress_guard(allow: Iterable[str] = ()) -> Iterator[EgressAudit]:
    """Refuse non-loopback connections and DNS lookups of other hosts while in the block.

    `allow` names hosts the user allowed explicitly (an on-prem inference server): their
    lookups, and connections to the addresses they resolve to, go through."""
    audit = EgressAudit(allowed=tuple(sorted(set(allow))))
    allowed_names = {h.lower() for h in allow}
    allowed_addresses = _addresses(allowed_names)
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def refuse(what: str) -> EgressBlocked:
        with _lock:
            audit.attempts.append(what)
        return EgressBlocked(f"localgen is offline: refused network access to {what}")

    def check_address(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = str(address[0])
            if not is_loopback_host(host) and host not in allowed_addresses:
                raise refuse(f"{host}:{address[1]}")

    def connect(self: socket.socket, address: Any) -> None:
        check_address(self, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        check_address(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if (
            name is not None
            and not is_loopback_host(str(name))
            and str(name).lower() not in allowed_names
        ):
            raise BlockedLookup(socket.EAI_NONAME, str(refuse(f"{name}:{port} (lookup)")))
        return real_getaddrinfo(host, port, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign,assignment]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
    socket.getaddrinfo = getaddrinfo
    try:
        yield audit
    finally:
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
        socket.getaddrinfo = real_getaddrinfo
