"""RedisThrottle over TLS, as an ACL user and over a Unix socket, from the URLs users write
(``client_from_url``).

TLS: a ``redis-server`` of the session with a TLS port, its certificate signed by a throwaway
CA (``trustme``); the client checks it against that CA (``?ssl_ca_certs=``), and the host name
too when asked (``&ssl_check_hostname=true``).  ACL: a user whose rules allow what the throttle
needs and nothing else (the commands of its script, on the keys under its prefix), logged in
with ``redis://user:password@host``; a password with reserved characters is percent-encoded.
The recipes of docs/redis.md ("Engines") are these.
"""

from __future__ import annotations

import gc
import itertools
import ssl
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import coredis
import pytest

from tests.redis.conftest import connect_cluster
from throttle_trio.redis import (
    BackendUnavailable,
    GCRALimit,
    RedisBackendError,
    RedisThrottle,
    client_from_url,
)
from throttle_trio.testing import redis_server as start_redis_server

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.redis.conftest import RedisServer, TLSServer
    from throttle_trio.testing import RedisClusterServer

pytestmark = [
    pytest.mark.anyio,
    # coredis 6.9 leaves a failed connection's anyio memory streams unclosed (a refused
    # certificate, a wrong password); their __del__ warns when collected: the tests that fail
    # connections collect them (as test_failures.py).
    pytest.mark.filterwarnings(
        r"ignore:Exception ignored in. <function MemoryObject(Send|Receive)Stream.__del__"
        r":pytest.PytestUnraisableExceptionWarning"
    ),
]

# What a RedisThrottle needs, and nothing else: its script's commands (EVALSHA, and SCRIPT LOAD
# after a restart or SCRIPT FLUSH; the script calls TIME, HMGET, HSET, EXISTS, TYPE, PEXPIREAT
# and DEL), on the keys under its prefix.
THROTTLE_RULES = (
    "resetkeys",
    "~throttle_trio:*",
    "resetchannels",
    "-@all",
    "+evalsha",
    "+script|load",
    "+time",
    "+hmget",
    "+hset",
    "+exists",
    "+type",
    "+pexpireat",
    "+del",
)


async def admits_settles_and_reads(client: Any, name: str) -> None:
    """A throttle's round trips through ``client``: admission, settle, the shared state."""
    throttle = RedisThrottle(client, name, tokens=GCRALimit(1000, per=3600, burst=1000))
    async with throttle.reserve(tokens=100) as slot:
        await slot.settle(tokens=40)
    assert (await throttle.state()).available["tokens"] == pytest.approx(960, abs=0.1)
    assert throttle.statistics().round_trips == 3


def tls_url(tls_server: TLSServer, host: str = "127.0.0.1", query: str = "") -> str:
    return f"rediss://{host}:{tls_server.tls_port}?ssl_ca_certs={quote(str(tls_server.ca))}{query}"


@pytest.mark.parametrize(
    "query", ["", "&ssl_check_hostname=true", "&ssl_cert_reqs=required"], ids=str
)
async def test_rediss_with_the_ca_admits(tls_server: TLSServer, name: str, query: str) -> None:
    """``rediss://host:port?ssl_ca_certs=ca.pem``: the server's certificate is checked
    against the CA; with ``ssl_check_hostname=true``, its name against the URL's host."""
    async with client_from_url(tls_url(tls_server, "localhost", query)) as client:
        await admits_settles_and_reads(client, name)


async def test_rediss_refuses_a_certificate_of_an_unknown_ca(
    tls_server: TLSServer, name: str
) -> None:
    """Without ``ssl_ca_certs`` the system's CAs do not know the server's: the throttle fails
    with BackendUnavailable, caused by the certificate check (never an unverified link)."""
    async with client_from_url(f"rediss://127.0.0.1:{tls_server.tls_port}") as client:
        throttle = RedisThrottle(client, name, requests=GCRALimit(10), redis_timeout=5.0)
        with pytest.raises(BackendUnavailable) as caught:
            await throttle.acquire(requests=1)
    causes = []
    error: BaseException | None = caught.value
    while error is not None:
        causes.append(error)
        error = error.__cause__ or error.__context__
    assert any(isinstance(cause, ssl.SSLCertVerificationError) for cause in causes), causes
    # The message says why, not only that coredis could not connect.
    assert "SSLCertVerificationError" in str(caught.value), str(caught.value)
    del caught, causes
    gc.collect()


async def test_rediss_with_a_client_certificate_admits_where_one_is_required(
    tls_server: TLSServer, name: str
) -> None:
    """Mutual TLS (``tls-auth-clients yes``): ``&ssl_certfile=...&ssl_keyfile=...`` present
    the client's certificate; without them the server refuses the link (BackendUnavailable)."""
    required = [*tls_server.options, "--tls-auth-clients", "yes"]
    with start_redis_server("redis-server", tls_options=required) as server:
        base = f"rediss://127.0.0.1:{server.tls_port}?ssl_ca_certs={quote(str(tls_server.ca))}"
        client_files = (
            f"&ssl_certfile={quote(str(tls_server.client_cert))}"
            f"&ssl_keyfile={quote(str(tls_server.client_key))}"
        )
        async with client_from_url(base + client_files) as client:
            await admits_settles_and_reads(client, name)
        async with client_from_url(base) as client:
            throttle = RedisThrottle(client, name, requests=GCRALimit(10), redis_timeout=5.0)
            with pytest.raises(BackendUnavailable):
                await throttle.acquire(requests=1)
    gc.collect()


async def test_rediss_cluster_admits_on_every_node(
    tls_cluster: RedisClusterServer, tls_server: TLSServer, name: str
) -> None:
    """``rediss+cluster://host:tls_port?ssl_ca_certs=...``: the client discovers the other
    nodes' TLS ports from the one named and reaches each over TLS; throttles on the slots of
    all three nodes admit, and one survives SCRIPT FLUSH on every node."""
    ca = quote(str(tls_server.ca))
    url = f"rediss+cluster://127.0.0.1:{tls_cluster.tls_port}?ssl_ca_certs={ca}"
    async with connect_cluster(url) as client:
        names: dict[int, str] = {}  # node -> a throttle name whose slot it serves
        for i in itertools.count():
            slot = await client.cluster_keyslot(f"throttle_trio:{{{name}-{i}}}")
            # redis_cluster() gives each of the 3 nodes an equal range of slots, in order.
            names.setdefault(
                next(n for n in range(3) if slot < (n + 1) * 16384 // 3), f"{name}-{i}"
            )
            if len(names) == 3:
                break
        for throttle_name in names.values():
            await admits_settles_and_reads(client, throttle_name)
        await client.script_flush()
        await admits_settles_and_reads(client, f"{name}-after-flush")


async def test_a_unix_socket_url_admits(tmp_path: Path, name: str) -> None:
    """``unix:///path/to/redis.sock``: the same throttle over a Unix socket (a private server
    with ``unixsocket``)."""
    sock = tmp_path / "redis.sock"
    with start_redis_server("redis-server", options=["--unixsocket", str(sock)]):
        async with client_from_url(f"unix://{sock}") as client:
            await admits_settles_and_reads(client, name)


@pytest.fixture
async def admin(redis_server: RedisServer) -> AsyncIterator[coredis.Redis[bytes]]:
    async with redis_server.client() as client:
        yield client


async def make_user(admin: coredis.Redis[bytes], *rules: str) -> tuple[str, str]:
    """A new ACL user with ``rules`` and a password that needs percent-encoding in a URL."""
    user, password = f"throttler-{uuid.uuid4().hex[:8]}", "p@ss:w/rd%?#1"
    assert await admin.acl_setuser(user, "on", f">{password}", *rules)
    return user, password


def user_url(port: int, user: str, password: str) -> str:
    return f"redis://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{port}"


async def test_an_acl_user_with_the_throttles_rules_admits(
    redis_server: RedisServer, admin: coredis.Redis[bytes], name: str
) -> None:
    """``redis://user:password@host:port`` with the least the throttle needs; the script is
    loaded again after SCRIPT FLUSH with that user's rights too."""
    user, password = await make_user(admin, *THROTTLE_RULES)
    try:
        async with client_from_url(user_url(redis_server.port, user, password)) as client:
            await admits_settles_and_reads(client, name)
            await admin.script_flush()
            await admits_settles_and_reads(client, f"{name}-again")
    finally:
        await admin.acl_deluser([user])


async def test_wrong_password_and_keys_outside_the_users_rights_are_clear_errors(
    redis_server: RedisServer, admin: coredis.Redis[bytes], name: str
) -> None:
    """A wrong password, or a prefix the user may not touch: RedisBackendError saying so (the
    password is not in the message)."""
    user, password = await make_user(admin, *THROTTLE_RULES)
    try:
        async with client_from_url(user_url(redis_server.port, user, "wrong")) as client:
            throttle = RedisThrottle(client, name, requests=GCRALimit(10))
            with pytest.raises(RedisBackendError, match="AuthenticationFailureError") as caught:
                await throttle.acquire(requests=1)
            assert password not in str(caught.value)
        async with client_from_url(user_url(redis_server.port, user, password)) as client:
            other = RedisThrottle(client, name, requests=GCRALimit(10), prefix="elsewhere")
            with pytest.raises(RedisBackendError, match="no permissions to access one of the keys"):
                await other.acquire(requests=1)
    finally:
        await admin.acl_deluser([user])
    gc.collect()


async def test_tls_and_acl_together(tls_server: TLSServer, name: str) -> None:
    """``rediss://user:password@host:port?ssl_ca_certs=...``: both at once."""
    async with coredis.Redis(port=tls_server.port) as admin:
        user, password = await make_user(admin, *THROTTLE_RULES)
    url = tls_url(tls_server).replace(
        "rediss://", f"rediss://{quote(user, safe='')}:{quote(password, safe='')}@"
    )
    async with client_from_url(url) as client:
        await admits_settles_and_reads(client, name)
