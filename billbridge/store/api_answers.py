"""The write API's kept answers: a request sent with an ``Idempotency-Key`` is answered once, and the
answer replayed to the same request sent again (see ``api.idempotency``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from billbridge.store.models import ApiAnswer, table_of, utcnow

_ANSWERS = table_of(ApiAnswer)
_CLAIM = {
    "postgresql": postgresql.insert(_ANSWERS).on_conflict_do_nothing().returning(_ANSWERS.c.id),
    "sqlite": sqlite.insert(_ANSWERS).on_conflict_do_nothing().returning(_ANSWERS.c.id),
}
PENDING = 0  # the status of a claimed key whose request is being answered (in the same transaction)


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    etag: str | None = None


def claim(session: Session, key: str, fingerprint: str) -> tuple[str, Answer] | None:
    """Take ``key`` for the request of ``fingerprint`` in the caller's transaction (None: taken, answer
    it and :func:`keep` the answer before commit), or the fingerprint and answer of the request that
    took it first. On PostgreSQL a concurrent transaction holding the key makes this wait for its end;
    on SQLite the write transaction holds the database."""
    statement = _CLAIM[session.get_bind().dialect.name].values(
        key=key, fingerprint=fingerprint, status=PENDING, body={}, created_at=utcnow()
    )
    if session.execute(statement).first() is not None:
        return None
    row = session.execute(select(ApiAnswer).where(ApiAnswer.key == key)).scalar_one()
    return row.fingerprint, Answer(row.status, row.body, row.etag)


def keep(session: Session, key: str, answer: Answer) -> None:
    """The answer to the request that claimed ``key``, committed with what the request changed."""
    row = session.execute(select(ApiAnswer).where(ApiAnswer.key == key)).scalar_one()
    row.status, row.body, row.etag = answer.status, answer.body, answer.etag
