"""throttle_trio's pytest plugin, tried in throwaway projects (pytester) as a user would: no
conftest, both backends, virtual time; and inert in a suite that does not use it."""

from __future__ import annotations

import shutil
import textwrap

import pytest

pytest_plugins = ["pytester"]

# A user's test file: the marker on the module, nothing else to set up.
VIRTUAL = """
import anyio
import pytest

import throttle_trio as tt

pytestmark = pytest.mark.tt_virtual_clock


async def test_paced(tt_backend):
    limiter = tt.RateLimiter(tt.TokenBucket(rate=8, per=1, burst=2))
    sent_at = []
    for _ in range(4):
        await limiter.acquire()
        sent_at.append(anyio.current_time())
    assert sent_at == [0, 0, 0.125, 0.25]  # exact on both loops
    assert tt_backend in ("asyncio", "trio")


@pytest.mark.parametrize("hours", [1, 2])
async def test_each_test_gets_a_fresh_clock(hours):
    assert anyio.current_time() == 0
    await anyio.sleep(hours * 3600)  # free on a virtual clock
    assert anyio.current_time() == hours * 3600


def test_a_plain_test_under_the_mark_runs_once():
    pass
"""


def test_async_tests_run_on_both_loops_on_virtual_time(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=VIRTUAL)
    result = pytester.runpytest("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=7)
    result.stdout.fnmatch_lines_random(
        [
            "*test_paced?asyncio? PASSED*",
            "*test_paced?trio? PASSED*",
            "*test_each_test_gets_a_fresh_clock?asyncio-2? PASSED*",
            "*test_each_test_gets_a_fresh_clock?trio-2? PASSED*",
        ]
    )
    assert "test_a_plain_test_under_the_mark_runs_once PASSED" in result.stdout.str()


def test_hypothesis_tests_get_a_fresh_clock_per_example(pytester: pytest.Pytester) -> None:
    """A synchronous @given test takes tt_backend and runs each example with run_virtual; an
    async @given test runs through anyio (asyncio gets a new loop per example)."""
    pytester.makepyfile(
        test_props="""
        import anyio
        import pytest
        from hypothesis import given, settings, strategies as st

        import throttle_trio as tt
        from throttle_trio.testing import run_virtual
        from throttle_trio.testing.oracle import TokenBucketLimit
        from throttle_trio.testing.strategies import workloads
        from throttle_trio.testing import Recorder, play


        @pytest.mark.tt_virtual_clock
        @settings(max_examples=20, deadline=None)
        @given(workload=workloads(max_cost=2))
        def test_never_too_fast(tt_backend, workload):
            async def main():
                return await play(workload, tt.RateLimiter(tt.TokenBucket(8, burst=2)))

            played = run_virtual(main, backend=tt_backend)
            assert played.start == 0  # a fresh clock for every example
            Recorder().check(TokenBucketLimit(8, burst=2))
            from throttle_trio.testing.oracle import check
            check(played.log, TokenBucketLimit(8, burst=2), tolerance=1e-6).assert_ok()


        @pytest.mark.tt_virtual_clock(backends=["asyncio"])
        @settings(max_examples=10, deadline=None)
        @given(n=st.integers(1, 100))
        async def test_async_given(n):
            start = anyio.current_time()
            await anyio.sleep(n)
            assert anyio.current_time() - start == n
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


def test_the_fake_provider_fixture_runs_on_the_tests_clock(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_client="""
        import anyio
        import httpx
        import pytest

        import throttle_trio as tt
        from throttle_trio.httpx import ThrottledTransport

        pytestmark = [pytest.mark.tt_virtual_clock, pytest.mark.tt_fake_llm(rpm=60, latency=0.5)]


        async def test_a_throttled_client(tt_fake_llm, tt_fake_llm_transport):
            throttle = tt.Throttle(requests=tt.TokenBucket(60, per=60, burst=5))
            transport = ThrottledTransport(tt_fake_llm_transport, throttle=throttle)
            body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
            async with httpx.AsyncClient(transport=transport, base_url="http://fake/v1") as client:

                async def ask():
                    (await client.post("/chat/completions", json=body)).raise_for_status()

                async with anyio.create_task_group() as tasks:
                    for _ in range(10):
                        tasks.start_soon(ask)
            assert tt_fake_llm.stats.admitted == 10
            assert tt_fake_llm.stats.rate_limited == 0
            assert anyio.current_time() == 5.5  # 5 at once, then one a second, + latency
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_a_user_anyio_backend_fixture_is_overridden_only_where_marked(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def anyio_backend():
            return "asyncio"  # the real clock
        """
    )
    pytester.makepyfile(
        test_mixed="""
        import anyio
        import pytest

        @pytest.mark.anyio
        async def test_theirs():
            assert anyio.current_time() > 1  # the machine's monotonic clock

        @pytest.mark.tt_virtual_clock(start=1000)
        async def test_ours():
            assert anyio.current_time() == 1000
        """
    )
    result = pytester.runpytest("-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines_random(["*test_theirs PASSED*", "*test_ours?trio? PASSED*"])


SUITE_WITHOUT_THE_PLUGIN = """
import anyio
import pytest

@pytest.mark.anyio
async def test_anyio_default_backends(anyio_backend):
    await anyio.sleep(0)

def test_sync():
    assert True

@pytest.mark.parametrize("x", [1, 2])
def test_param(x):
    assert x
"""


def test_it_is_inert_in_a_suite_that_does_not_use_it(pytester: pytest.Pytester) -> None:
    """The same tests, the same ids, the same outcomes with the plugin and without it."""
    pytester.makepyfile(test_theirs=SUITE_WITHOUT_THE_PLUGIN)
    common = ["-p", "no:cacheprovider", "-p", "no:looptime_plugin", "-v"]
    with_plugin = pytester.runpytest(*common)
    without = pytester.runpytest(*common, "-p", "no:throttle_trio")
    with_plugin.assert_outcomes(passed=5)
    without.assert_outcomes(passed=5)

    def ids(result: pytest.RunResult) -> list[str]:
        return sorted(line.split()[0] for line in result.outlines if " PASSED" in line)

    assert ids(with_plugin) == ids(without)
    assert "test_anyio_default_backends[trio]" in "".join(ids(with_plugin))


def test_looptime_plugin_is_blocked_without_pytest_asyncio(pytester: pytest.Pytester) -> None:
    """looptime's own plugin errors on every async test without pytest-asyncio; with
    throttle_trio's plugin loaded it is blocked (it could do nothing there anyway)."""
    pytester.makepyfile(test_theirs=SUITE_WITHOUT_THE_PLUGIN)
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=5)
    broken = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:throttle_trio")
    broken.assert_outcomes(passed=1, errors=4)  # looptime's AttributeError, as documented


def test_a_bad_marker_is_a_clear_collection_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.tt_virtual_clock(backends=["curio"])
        async def test_x():
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*backends must be among ('asyncio', 'trio'), got ('curio',)*"])


def test_the_markers_are_registered(pytester: pytest.Pytester) -> None:
    """--strict-markers accepts them, and pytest --markers documents them."""
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["*tt_virtual_clock(backends=*", "*tt_fake_llm(**kwargs)*"])


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_the_redis_fixtures(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_redis="""
        import socket

        def command(url, *words):
            host, port = url.removeprefix("redis://").split(":")
            payload = f"*{len(words)}\\r\\n" + "".join(f"${len(w)}\\r\\n{w}\\r\\n" for w in words)
            with socket.create_connection((host, int(port)), timeout=10) as sock:
                sock.sendall(payload.encode())
                return sock.recv(64)

        def test_write(tt_redis_url):
            assert command(tt_redis_url, "SET", "k", "v") == b"+OK\\r\\n"

        def test_each_test_starts_empty(tt_redis_url, tt_redis_server):
            assert tt_redis_url == tt_redis_server.url
            assert command(tt_redis_url, "DBSIZE") == b":0\\r\\n"
        """
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_pytest_trio_users_keep_their_tests(pytester: pytest.Pytester) -> None:
    """With pytest-trio loaded (in its default mode and in trio_mode), its trio tests use the
    fake provider fixture with its own autojump clock, and ours still run on both loops."""
    pytest.importorskip("pytest_trio")
    pytester.makepyfile(
        test_mix=textwrap.dedent(
            """
            import anyio
            import httpx
            import pytest
            import trio


            @pytest.mark.trio
            async def test_pytest_trio(autojump_clock, tt_fake_llm, tt_fake_llm_transport):
                await trio.sleep(10)
                assert trio.current_time() == 10
                async with httpx.AsyncClient(transport=tt_fake_llm_transport) as client:
                    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
                    response = await client.post("http://fake/v1/chat/completions", json=body)
                assert response.status_code == 200


            @pytest.mark.tt_virtual_clock
            async def test_ours(tt_backend):
                await anyio.sleep(5)
                assert anyio.current_time() == 5
            """
        )
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=3)
