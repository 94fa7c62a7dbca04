"""The credentials of the HTTP path: the API key a server requires (`localgen serve`) or a
client sends (`--engine openai`), and the certificate authority a client trusts.

A key comes from a file (`--api-key-file`) or the LOCALGEN_API_KEY variable, never from
the command line, where every user of the machine can read it (`ps`). It is held in
memory only: no manifest, row, log line or error message holds it, and the vLLM child
gets it through its environment (VLLM_API_KEY), not its arguments.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from localgen.errors import UsageError

KEY_ENV = "LOCALGEN_API_KEY"


def read_key(path: Path | None) -> str | None:
    """The key in `path`, else in LOCALGEN_API_KEY, else None."""
    if path is None:
        return os.environ.get(KEY_ENV, "").strip() or None
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise UsageError(f"--api-key-file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--api-key-file {path}: cannot read it ({e})") from None
    if not key or any(c.isspace() for c in key):  # a line break, or two words
        raise UsageError(f"--api-key-file {path}: give the key alone, on one line")
    return key


def key_source(path: Path | None) -> str | None:
    """Where the key comes from, for the manifest and messages (never the key itself)."""
    if path is not None:
        return f"--api-key-file {path}"
    return KEY_ENV if read_key(None) else None


def trusted(ca_cert: Path | None) -> ssl.SSLContext | bool:
    """What an https client verifies the server with: the system's authorities, or the
    one in `ca_cert` (an organisation's own, or a self-signed server certificate)."""
    if ca_cert is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(ca_cert))
    except (OSError, ssl.SSLError) as e:
        raise UsageError(f"--ca-cert {ca_cert}: not a readable PEM certificate ({e})") from None
