"""A test that needs RabbitMQ or PostgreSQL carries ``@pytest.mark.connected``; one that does
not is refused before it reaches a service, so ``-m "not connected"`` never needs them."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import VhostPool, _erlang_binary

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]


def test_tests_that_ask_for_a_service_without_the_marker_fail_before_touching_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeini("[pytest]\nmarkers =\n    connected: needs the services\n")
    pytester.makepyfile(
        test_sample="""
        import pytest
        from tests import support

        def test_asks_for_the_broker(amqp_url):
            pass

        async def test_asks_for_the_database(pg_url):
            pass

        def test_reaches_for_the_database_by_hand():
            support.pg_base()

        @pytest.mark.connected
        def test_marked_and_using_nothing():
            pass

        def test_needs_nothing():
            pass
        """
    )
    # No service answers here: a test that got as far as connecting would fail differently.
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("DEFENSA311_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:1/")
    monkeypatch.setenv("DEFENSA311_TEST_DATABASE_URL", "postgresql+asyncpg://x@127.0.0.1:1/x")
    result = pytester.runpytest_subprocess(
        "-p", "tests.conftest", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto"
    )
    result.assert_outcomes(passed=2, failed=1, errors=2)
    output = result.stdout.str()
    assert output.count("mark it @pytest.mark.connected") >= 3  # on CI the hint says it twice
    assert "is not reachable" not in output


def test_vhost_names_are_refused_if_they_could_break_out_of_an_erlang_binary() -> None:
    assert _erlang_binary("d311-test-0a1b2c3d4e") == '<<"d311-test-0a1b2c3d4e">>'
    with pytest.raises(ValueError):
        _erlang_binary('x">>, evil(), <<"')


def test_a_vhost_pool_hands_out_each_vhost_once_and_removes_them_in_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[tuple[list[str], list[str]]] = []
    pool = VhostPool(batch=3)
    monkeypatch.setattr(
        pool, "_change", lambda *, make, drop: calls.append((list(make), list(drop)))
    )
    taken = []
    for _ in range(4):  # as tests do: take one, use it, give it back
        taken.append(pool.take())
        pool.give_back(taken[-1])
    pool.close()
    assert len(set(taken)) == 4
    assert [len(make) for make, _ in calls] == [3, 3, 0]
    assert calls[1][1] == taken[:3]  # the second batch removes the three used before it
    assert sorted(calls[2][1]) == sorted(taken[3:] + calls[1][0][:2])  # the rest at the end
