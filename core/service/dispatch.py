"""Commit first, then send: a work row (job, evaluation, replay-set build) is committed `queued`
before its task goes to the broker, and records when the broker took it (`enqueued_at`).

A row whose task never reached the broker (the broker was down, the API died in between) keeps
`enqueued_at` NULL; `resend_undispatched`, which every worker runs each lease period and which
can be called on its own, sends it once the broker is back. A row whose task reached a broker
that has restarted since may have lost it with the broker's memory; `resend_lost` sends it
again. The database stays the truth: a task whose row is no longer queued does nothing, so a
task sent twice is harmless.
"""

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.errors import BrokerUnavailableError
from core.service.leases import WorkTable, work_noun
from core.service.models import Evaluation, Job, JobState, ReplaySet, utcnow

logger = logging.getLogger(__name__)

# (kind, row id): sends the row's task to the broker; raises whatever the broker client raises.
Send = Callable[[str, str], None]
WORK_KINDS: dict[str, WorkTable] = {"job": Job, "evaluation": Evaluation, "replay_set": ReplaySet}


def dispatch(session: Session, kind: str, row_id: str, send: Send, *, retry_after: int) -> None:
    """Send the task of a committed row and record it; BrokerUnavailableError when the broker
    cannot take it (the row stays queued and the sweeper sends it later)."""
    noun = work_noun(WORK_KINDS[kind])
    try:
        send(kind, row_id)
    except Exception as error:  # the broker client's errors vary by transport (kombu, redis)
        logger.warning("%s=%s not sent, broker unreachable: %s", kind, row_id, error)
        raise BrokerUnavailableError(
            f"the task queue (broker) cannot be reached, so {noun} {row_id} could not be started "
            f"now; it is saved as queued and is sent automatically once the broker is back "
            f"(follow it by its id rather than submitting again): {type(error).__name__}",
            retry_after=retry_after,
        ) from error
    mark_enqueued(session, kind, row_id)


def mark_enqueued(session: Session, kind: str, row_id: str) -> None:
    table = WORK_KINDS[kind]
    session.execute(
        update(table)
        .where(table.id == row_id, table.enqueued_at.is_(None))
        .values(enqueued_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.commit()


def resend_undispatched(
    session: Session, *, grace_seconds: float, send: Send
) -> list[tuple[str, str]]:
    """Send the tasks of queued rows that never reached the broker and are older than the grace
    period (a younger one may be on its way from the API); returns (kind, id) of those sent.
    A broker still away raises, and the next round tries again."""
    cutoff = utcnow() - timedelta(seconds=grace_seconds)
    sent = []
    for kind, table in WORK_KINDS.items():
        stranded = session.scalars(
            select(table.id)
            .where(
                table.state == JobState.QUEUED,
                table.enqueued_at.is_(None),
                table.created_at <= cutoff,
            )
            .order_by(table.created_at)
        ).all()
        for row_id in stranded:
            send(kind, row_id)
            mark_enqueued(session, kind, row_id)
            logger.warning("%s=%s sent: its task had not reached the broker", kind, row_id)
            sent.append((kind, row_id))
    return sent


# Clocks of the broker's machine and of the processes that stamped `enqueued_at` may differ by
# this much; a row sent this soon after the broker started is sent again (harmless) rather than
# risked.
CLOCK_SKEW_SECONDS = 10.0
# Redis gives its uptime in whole seconds: two sweeps read its start time up to this far apart.
START_TIME_RESOLUTION = timedelta(seconds=1)


def resend_lost(
    session: Session, *, broker_started_at: datetime, send: Send
) -> list[tuple[str, str]]:
    """Send again the tasks of queued rows sent before the broker last started: a broker that
    restarted without its messages (Redis without its append-only file, or one that crashed
    before writing them) lost them, and nothing else would ever run these rows. Returns (kind,
    id) of those sent."""
    before = broker_started_at + timedelta(seconds=CLOCK_SKEW_SECONDS)
    sent = []
    for kind, table in WORK_KINDS.items():
        stale = session.scalars(
            select(table.id)
            .where(table.state == JobState.QUEUED, table.enqueued_at < before)
            .order_by(table.created_at)
        ).all()
        for row_id in stale:
            send(kind, row_id)
            # Stamped after `before` (as the next sweep reads it), so that the next sweep,
            # seconds later, does not send it once more.
            session.execute(
                update(table)
                .where(table.id == row_id)
                .values(enqueued_at=max(utcnow(), before + START_TIME_RESOLUTION))
                .execution_options(synchronize_session=False)
            )
            session.commit()
            logger.warning("%s=%s sent again: the broker restarted after it was sent", kind, row_id)
            sent.append((kind, row_id))
    return sent
