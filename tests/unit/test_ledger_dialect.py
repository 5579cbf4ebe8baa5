"""The dialects: each statement in its driver's placeholders, and which errors are temporary."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from eventcron.ledger import LedgerError
from eventcron.ledger.dialect import Dialect, PostgreSQL, SQLite, dialect_for
from eventcron.ledger.queries import Outcome


@pytest.mark.parametrize("dialect", [SQLite(), PostgreSQL()], ids=["sqlite", "postgresql"])
@pytest.mark.parametrize("rows", [1, 2, 500])
def test_record_statements_take_one_parameter_per_placeholder(dialect: Dialect,
                                                              rows: int) -> None:
    other = "%s" if dialect.placeholder == "?" else "?"
    # updated_at, then the VALUES rows; a settled row also names the owner.
    cases: tuple[tuple[Outcome, int, int], ...] = (("delivered", 4, 1), ("settled", 6, 2))
    for outcome, width, extra in cases:
        sql = dialect.record_sql(outcome, rows)
        assert "{" not in sql and other not in sql
        assert sql.count(dialect.placeholder) == width * rows + extra
        assert dialect.record_sql(outcome, rows) is sql  # rendered once


def test_each_claim_is_in_its_drivers_placeholders() -> None:
    assert "%s" not in SQLite()._pick + SQLite()._take
    claim = PostgreSQL()._claim
    assert "?" not in claim and claim.count("%s") == 6 and "FOR UPDATE SKIP LOCKED" in claim


def test_sqlite_enqueue_has_ten_parameters_a_row() -> None:
    sql = SQLite()._insert_sql(3)
    assert sql.count("?") == 30 and sql.count("'pending', 0)") == 3


def test_another_database_is_refused() -> None:
    with pytest.raises(LedgerError, match="must be SQLite or PostgreSQL, not 'mysql'"):
        dialect_for("mysql")


class _Driver(Exception):
    """A driver error carrying what the real ones carry."""

    def __init__(self, text: str, *, sqlite_errorcode: int | None = None,
                 sqlstate: str | None = None) -> None:
        super().__init__(text)
        if sqlite_errorcode is not None:
            self.sqlite_errorcode = sqlite_errorcode
        if sqlstate is not None:
            self.sqlstate = sqlstate


def _operational(orig: Exception) -> OperationalError:
    return OperationalError("SELECT 1", {}, orig)


def test_a_busy_sqlite_file_is_temporary_an_unwritable_one_is_not() -> None:
    sqlite = SQLite()
    assert sqlite.temporary(_operational(_Driver("x", sqlite_errorcode=sqlite3.SQLITE_BUSY)))
    assert not sqlite.temporary(_operational(
        _Driver("attempt to write a readonly database", sqlite_errorcode=sqlite3.SQLITE_READONLY)))
    assert sqlite.temporary(_operational(_Driver("database is locked")))
    assert not sqlite.temporary(IntegrityError("INSERT", {}, _Driver("UNIQUE")))


def test_an_unreachable_server_is_temporary_a_wrong_login_is_not() -> None:
    pg = PostgreSQL()
    assert pg.temporary(_operational(_Driver("connection refused")))
    assert not pg.temporary(_operational(_Driver("x", sqlstate="28P01")))
    assert not pg.temporary(_operational(_Driver("x", sqlstate="3D000")))
    assert not pg.temporary(_operational(_Driver('FATAL: role "nobody" does not exist')))
