"""The worker: sends what the outbox holds (outbox.py) and runs the periodic
jobs, in one of two places (OUTBOX_WORKER):

- `thread` (the default, so `make run` needs nothing else): a thread inside
  each server process, started by the process's first request (never at import
  nor in a command). A message queued in this process wakes it at once; it also
  looks every OUTBOX_POLL_INTERVAL seconds for messages other instances queued
  and retries that came due.
- `external`: `flask --app oidc_provider worker` processes, as many as wanted
  (SIGTERM finishes the messages in hand, then exits).

Both run `Worker.run`. Up to OUTBOX_CONCURRENCY messages are sent at once, so
one slow server holds up one slot, not the queue. When the database is away
the worker logs one line and tries again later, waiting longer each time.

Periodic jobs (`job`) run once per interval across every worker: each has a
`ScheduledJob` row that a worker takes with a conditional UPDATE.
"""

from __future__ import annotations

import atexit
import os
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from flask import Flask, current_app, has_app_context
from sqlalchemy import event, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from . import delivery, logout, outbox, purge  # noqa: F401  (delivery and logout register their senders)
from .db import db, now
from .models import ScheduledJob

DB_RETRY_MAX = 60  # seconds: the longest wait between two tries while the database is away


@dataclass(frozen=True)
class Job:
    """A periodic job: `run()` is called in an app context about every `every` seconds."""

    name: str
    every: int
    run: Callable[[], None]


JOBS: dict[str, Job] = {}


def job(name: str, every: int) -> Callable[[Callable[[], None]], Callable[[], None]]:
    """Register `function` to run every `every` seconds on one worker of all
    instances (e.g. `@worker.job("purge", every=3600)`). It runs in an app
    context, commits its own work, and should finish within OUTBOX_LEASE."""

    def register(function: Callable[[], None]) -> Callable[[], None]:
        JOBS[name] = Job(name, every, function)
        return function

    return register


PURGE_EVERY = 3600  # seconds: expired rows are harmless for an hour; the purge is light


@job("purge", every=PURGE_EVERY)
def _purge() -> None:
    """Used and expired rows of every kind go (purge.py), on one worker of all instances."""
    purge.purge_expired(now())


def claim_job(item: Job) -> bool:
    """Take `item` for this run if it is due and no other worker holds it. Commits."""
    at = now()
    insert = pg_insert if db.engine.dialect.name == "postgresql" else sqlite_insert
    db.session.execute(insert(ScheduledJob).values(name=item.name, next_run_at=at).on_conflict_do_nothing())
    taken = db.session.execute(
        update(ScheduledJob)
        .where(
            ScheduledJob.name == item.name,
            ScheduledJob.next_run_at <= at,
            or_(ScheduledJob.claimed_until.is_(None), ScheduledJob.claimed_until <= at),
        )
        .values(
            claimed_until=at + timedelta(seconds=current_app.config["OUTBOX_LEASE"]),
            next_run_at=at + timedelta(seconds=item.every),
        )
    )
    db.session.commit()
    return taken.rowcount == 1


def run_job(item: Job) -> bool:
    """Run `item` if it is due (and this worker got it); True when it ran."""
    if not claim_job(item):
        return False
    error = None
    try:
        item.run()
    except Exception as exc:  # a job's failure is its own: logged, recorded, tried next time
        db.session.rollback()
        current_app.logger.exception("worker: job %s failed", item.name)
        error = f"{type(exc).__name__}: {exc}"[:500]
    db.session.execute(
        update(ScheduledJob)
        .where(ScheduledJob.name == item.name)
        .values(claimed_until=None, last_run_at=now(), last_error=error)
    )
    db.session.commit()
    return True


class Worker:
    """Sends due messages of one app and runs its due jobs, in a background
    thread (`start`), in the calling thread until stopped (`run`), or until
    nothing is due (`run_until_idle`)."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._reset()

    def _reset(self) -> None:
        self.pid = os.getpid()
        self.id = f"{self.pid}-{secrets.token_hex(6)}"  # claimed_by: who holds a message
        self.woken = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.lock = threading.Lock()
        self.in_flight: set[Future] = set()
        self.jobs_running: Future | None = None
        self.next_jobs_check = 0.0
        self.db_failures = 0

    # -- the thread inside a server process --------------------------------------------

    def start(self) -> bool:
        """Start the background thread, once per process; True if this call did."""
        if self.pid != os.getpid():  # a forked server process: the parent's thread is not here
            self._reset()
        if self.thread is not None:
            return False
        with self.lock:
            if self.thread is not None:
                return False
            self.thread = threading.Thread(target=self.run, name="outbox-worker", daemon=True)
            self.thread.start()
        atexit.register(_stop_at_exit, weakref.ref(self))
        return True

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def wake(self) -> None:
        """Look at the queue now (a message was queued in this process)."""
        self.woken.set()

    def stop(self, timeout: float = 30) -> None:
        """Finish the messages in hand, then stop; queued ones stay in the database."""
        self.stopping.set()
        self.woken.set()
        if self.thread is not None and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> None:
        """Send and run jobs until `stop` (or SIGTERM in the command)."""
        slots = self.app.config["OUTBOX_CONCURRENCY"]
        with (
            ThreadPoolExecutor(max_workers=slots, thread_name_prefix="outbox-send") as pool,
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-jobs") as jobs,
        ):
            while not self.stopping.is_set():
                self.woken.clear()
                free = slots - len(self.in_flight)
                started = self._fill(pool, free) if free > 0 else 0
                self._jobs(jobs)
                if self.db_failures:
                    self.woken.wait(self._db_wait())
                elif free == 0 or started < free:  # full, or nothing more is due
                    self.woken.wait(self.app.config["OUTBOX_POLL_INTERVAL"])

    def _fill(self, pool: ThreadPoolExecutor, free: int) -> int:
        """Claim up to `free` due messages and start sending them."""
        with self.app.app_context():
            try:
                claimed = outbox.claim(self.id, free)
            except SQLAlchemyError as exc:
                self._database_away(exc)
                return 0
            finally:
                db.session.remove()
        self.db_failures = 0
        for message_id in claimed:
            future = pool.submit(self._attempt, message_id)
            with self.lock:
                self.in_flight.add(future)
            future.add_done_callback(self._sent)
        return len(claimed)

    def _sent(self, future: Future) -> None:
        with self.lock:
            self.in_flight.discard(future)
        self.woken.set()  # a slot is free

    def _attempt(self, message_id: int) -> outbox.Attempt | None:
        with self.app.app_context():
            try:
                return outbox.attempt(message_id, self.id)
            except SQLAlchemyError as exc:  # its lease runs out; it is tried again then
                self._database_away(exc)
            except Exception:  # a defect must never stop the worker
                self.app.logger.exception("outbox: message %s", message_id)
            finally:
                db.session.remove()
        return None

    def _jobs(self, pool: ThreadPoolExecutor) -> None:
        """Start the due jobs (one at a time), looking at most once per poll interval."""
        if not JOBS or time.monotonic() < self.next_jobs_check:
            return
        if self.jobs_running is not None and not self.jobs_running.done():
            return
        self.next_jobs_check = time.monotonic() + self.app.config["OUTBOX_POLL_INTERVAL"]
        self.jobs_running = pool.submit(self.run_jobs)

    def run_jobs(self) -> int:
        """Run every registered job that is due; how many ran."""
        ran = 0
        for item in list(JOBS.values()):
            with self.app.app_context():
                try:
                    ran += run_job(item)
                except SQLAlchemyError as exc:
                    self._database_away(exc)
                finally:
                    db.session.remove()
        return ran

    def _database_away(self, exc: Exception) -> None:
        self.db_failures += 1
        reason = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        self.app.logger.error(
            "outbox worker: the database is unavailable (%s: %s); trying again in %d s",
            type(exc).__name__,
            reason,
            self._db_wait(),
        )

    def _db_wait(self) -> float:
        poll = self.app.config["OUTBOX_POLL_INTERVAL"]
        return min(DB_RETRY_MAX, poll * 2 ** min(self.db_failures - 1, 10))

    # -- in the calling thread (tests, `flask worker --once`) ---------------------------

    def run_until_idle(self, limit: int = 10_000) -> list[outbox.Attempt]:
        """Send every message due now, one after the other, until none is due
        (retries scheduled later wait), and run the due jobs. At most `limit`
        attempts; returns them."""
        attempts: list[outbox.Attempt] = []
        batch = self.app.config["OUTBOX_CONCURRENCY"]  # claimed as the thread claims them
        while len(attempts) < limit:
            with self.app.app_context():
                try:
                    claimed = outbox.claim(self.id, min(batch, limit - len(attempts)))
                finally:
                    db.session.remove()
            if not claimed:
                break
            for message_id in claimed:
                with self.app.app_context():
                    try:
                        attempts.append(outbox.attempt(message_id, self.id))
                    finally:
                        db.session.remove()
        self.run_jobs()
        return attempts


def _stop_at_exit(ref: weakref.ref[Worker]) -> None:
    worker = ref()
    if worker is not None and worker.pid == os.getpid():
        worker.stop(timeout=10)


def of(app: Flask) -> Worker:
    """The app's worker."""
    return app.extensions["outbox_worker"]


def _start_in_this_process() -> None:
    """First request of a serving process: the thread starts (once)."""
    of(current_app._get_current_object()).start()  # type: ignore[attr-defined]


def _wake_after_commit(session: Session) -> None:
    """A committed transaction queued a message: the worker of this process
    sends it now rather than at its next look."""
    if session.info.pop(outbox.WAKE, False) and has_app_context():
        worker = current_app.extensions.get("outbox_worker")
        if worker is not None:
            worker.wake()


def _forget_after_rollback(session: Session) -> None:
    session.info.pop(outbox.WAKE, None)


def init_app(app: Flask) -> None:
    """Give the app its worker; with OUTBOX_WORKER=thread, start it on the first request."""
    app.extensions["outbox_worker"] = Worker(app)
    if app.config["OUTBOX_WORKER"] == "thread":
        app.before_request(_start_in_this_process)
    if not event.contains(Session, "after_commit", _wake_after_commit):
        event.listen(Session, "after_commit", _wake_after_commit)
        event.listen(Session, "after_rollback", _forget_after_rollback)
