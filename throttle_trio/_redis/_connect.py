"""A coredis client from a URL, so that simple uses and the CLI need not build one.

``redis://[[user]:password@]host[:port][/db]`` and ``rediss://`` (TLS) give a
``coredis.Redis``; ``unix:///path/to/socket`` a Redis over a Unix socket.  The same schemes with
``+cluster`` (``redis+cluster://host:port``, ``rediss+cluster://``) give a
``coredis.RedisCluster`` that discovers the other nodes from the one named.  Query parameters
are coredis's (for example ``?ssl_cert_reqs=none`` or ``?ssl_ca_certs=/path/ca.pem``).  The
user name, password and path are percent-decoded (``p%40ss`` is ``p@ss``), as in redis-py.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

import coredis
from coredis.connection import TCPLocation

__all__ = ["client_from_url", "redacted"]

_PLAIN = ("redis", "rediss", "unix")


def client_from_url(url: str) -> coredis.Redis[Any] | coredis.RedisCluster[Any]:
    """A new, not yet entered, coredis client for ``url`` (see the module docstring).

    Enter it (``async with client:``) in one long-lived task, as coredis requires.

    Raises:
        TypeError: ``url`` is not a string.
        ValueError: the scheme is not one of the above (the message names it; the password,
            if any, is not shown).
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, got {type(url).__name__}")
    scheme = urlsplit(url).scheme.lower()
    base, plus, kind = scheme.partition("+")
    if not plus and base in _PLAIN:
        return coredis.Redis.from_url(url, decode_components=True)
    if plus and kind == "cluster" and base in ("redis", "rediss"):
        plain = base + url[len(scheme) :]
        parts = urlsplit(plain)
        # The startup node as coredis wants it (its from_url passes a dict, which it deprecates).
        node = TCPLocation(host=unquote(parts.hostname or "localhost"), port=parts.port or 6379)
        return coredis.RedisCluster.from_url(plain, decode_components=True, startup_nodes=[node])
    raise ValueError(
        "url must start with redis://, rediss://, unix://, redis+cluster:// or "
        f"rediss+cluster://, got {redacted(url)!r}"
    )


def redacted(url: str) -> str:
    """``url`` with its password replaced by ``***``, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit(
        (parts.scheme, f"{user}:***@{host}{port}", parts.path, parts.query, parts.fragment)
    )
