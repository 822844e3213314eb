"""Which failures the consumer waits out and which it counts towards the dead letter."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from shared.consumer import Poison, describe_error, is_transient


class DriverError(Exception):
    def __init__(self, sqlstate: str) -> None:
        super().__init__(f"driver error {sqlstate}: cédula 8-123-4567")
        self.sqlstate = sqlstate


def dbapi(sqlstate: str) -> DBAPIError:
    return DBAPIError("INSERT ...", {"id_number": "8-123-4567"}, DriverError(sqlstate))


@pytest.mark.parametrize("sqlstate", ["53300", "57P01", "08006", "40001", "40P01"])
def test_outages_and_conflicts_are_waited_out(sqlstate: str) -> None:
    assert is_transient(dbapi(sqlstate))


@pytest.mark.parametrize("sqlstate", ["23505", "22012", "42P01"])
def test_bugs_and_bad_data_are_not(sqlstate: str) -> None:
    assert not is_transient(dbapi(sqlstate))


def test_integrity_error_is_retried_as_a_failure_not_waited_out() -> None:
    error = IntegrityError("INSERT ...", {}, DriverError("23505"))
    assert not is_transient(error)


def test_connection_failures_are_transient() -> None:
    assert is_transient(OperationalError("SELECT 1", {}, DriverError("08001")))
    assert is_transient(ConnectionRefusedError())
    assert not is_transient(ValueError("a bug"))
    assert not is_transient(Poison("not JSON"))


def test_a_described_sql_error_carries_no_parameters() -> None:
    text = describe_error(dbapi("23505"))
    assert "8-123-4567" not in text
    assert text == "DBAPIError(DriverError)"
