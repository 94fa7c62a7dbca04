import os
import socket
import threading

import pytest

from localgen.errors import EgressBlocked
from localgen.offline import OFFLINE_ENV, apply_offline_env, egress_guard, is_loopback_host


def test_offline_env_wins_over_user_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    apply_offline_env()
    for key, value in OFFLINE_ENV.items():
        assert os.environ[key] == value


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.1", True),
        ("::1", True),
        ("localhost", True),
        ("10.0.0.1", False),
        ("8.8.8.8", False),
        ("huggingface.co", False),
        ("::ffff:1.2.3.4", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_guard_refuses_and_counts_non_loopback() -> None:
    with egress_guard() as audit:
        with socket.socket() as s, pytest.raises(EgressBlocked, match="203.0.113.9:443"):
            s.connect(("203.0.113.9", 443))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, pytest.raises(EgressBlocked):
            s.connect_ex(("8.8.8.8", 80))  # how some libraries find their own address
        with pytest.raises(socket.gaierror):
            socket.getaddrinfo("huggingface.co", 443)
    assert audit.as_dict()["blocked_attempts"] == 3
    assert "huggingface.co:443 (lookup)" in audit.attempts


def test_guard_allows_loopback_and_restores_socket() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted = threading.Thread(target=lambda: server.accept()[0].close())
    accepted.start()
    real_connect = socket.socket.connect
    with egress_guard() as audit, socket.create_connection(("localhost", port), timeout=5):
        pass
    accepted.join(5)
    server.close()
    assert audit.attempts == []
    assert socket.socket.connect is real_connect
