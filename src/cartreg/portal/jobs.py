"""The portal's one registry writer, its shared reader, and the background worker.

DuckDB lets one process write a file, and a read-only and a read-write connection cannot be
open in one process at once. So:

* :class:`Readers` keeps one read-only connection for all page requests (each request reads
  through its own cursor; opening a DuckDB connection costs tens of milliseconds). It holds the
  registry's shared lock while open, and lets go of it when the portal is idle for a moment, so
  that command-line writers (``cartreg users add``) get their turn.
* Every registry write of the portal (sessions, uploads, stored versions, decisions, query
  actions, merges, audit rows) runs on the :class:`Writer` thread, one after the other, each in
  its own short ``open_registry(write=True)`` taken after the readers have closed theirs. Pages
  wait for one short write at most, never for a queue of them.
* The slow part of a submission (unpacking, ingest, validation) runs on the :class:`Worker`
  thread *outside* the registry; only its final store goes through the writer.

Audit rows of page views are buffered and written by the writer within about a second
(``PortalConfig.audit_flush_seconds``), together with the next write, so viewing never waits
for a write. A crash loses at most that last second of view records; the state-changing actions
record their audit rows in the write that performs them.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from cartreg.portal.audit import AuditEvent, append_events
from cartreg.registry.store import Registry, RegistryLockedError, open_registry, transaction

T = TypeVar("T")
log = logging.getLogger("cartreg.portal")


GIVE_WAY_SECONDS = 0.3  # > 2 polls of another process waiting for the registry's lock


class Readers:
    """One read-only registry connection shared by the page requests, closed for each write."""

    def __init__(
        self,
        registry: Path,
        *,
        lock_timeout: float,
        idle_seconds: float = 1.0,
        hold_seconds: float = 5.0,
    ) -> None:
        self.registry = registry
        self.lock_timeout = lock_timeout
        self.idle_seconds = idle_seconds
        self.hold_seconds = hold_seconds
        self._opened_at = 0.0
        self._reopen_at = 0.0  # after a release, wait this long: another process's turn
        self._cond = threading.Condition()
        self._open: tuple[ExitStack, Registry] | None = None
        self._active = 0
        self._writing = False
        self._last_used = 0.0
        self._mine = threading.local()  # reads this thread holds (a nested read never waits)

    @contextmanager
    def read(self) -> Iterator[Registry]:
        """A registry to read through a cursor of the shared connection; waits (up to the
        lock timeout) while the writer writes."""
        nested = getattr(self._mine, "depth", 0) > 0
        with self._cond:
            if not nested and not self._cond.wait_for(
                lambda: not self._writing, timeout=self.lock_timeout
            ):
                raise RegistryLockedError(
                    "the registry is busy with a long write (a merge?)",
                    where=str(self.registry),
                    hint="try again in a moment",
                )
            if self._open is None:
                pause = self._reopen_at - time.monotonic()
                if pause > 0:  # a command-line writer polls the lock every 0.1 s
                    time.sleep(pause)
                stack = ExitStack()
                shared = stack.enter_context(
                    open_registry(self.registry, lock_timeout=self.lock_timeout)
                )
                self._open = (stack, shared)
                self._opened_at = time.monotonic()
            cursor = self._open[1].conn.cursor()
            self._active += 1
        self._mine.depth = getattr(self._mine, "depth", 0) + 1
        try:
            yield Registry(self.registry, cursor, writable=False)
        finally:
            self._mine.depth -= 1
            cursor.close()
            with self._cond:
                self._active -= 1
                self._last_used = time.monotonic()
                self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Close the shared connection (after the reads in flight) for the writer's turn."""
        with self._cond:
            self._writing = True
            try:
                self._cond.wait_for(lambda: self._active == 0)
                self._close()
            except BaseException:
                self._writing = False
                self._cond.notify_all()
                raise
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()

    def release_if_idle(self) -> None:
        """Let go of the shared lock between reads when no page has read for ``idle_seconds``,
        or the connection has been open for ``hold_seconds`` (a page polling a job's progress
        must not keep command-line writers out)."""
        now = time.monotonic()
        with self._cond:
            if self._active == 0 and (
                now - self._last_used > self.idle_seconds
                or now - self._opened_at > self.hold_seconds
            ):
                if self._open is not None:
                    self._reopen_at = now + GIVE_WAY_SECONDS
                self._close()

    def close(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._active == 0, timeout=self.lock_timeout)
            self._close()

    def _close(self) -> None:
        if self._open is not None:
            stack, _ = self._open
            self._open = None
            stack.close()


@dataclass
class _Call:
    fn: Callable[[Registry], Any]
    audit: Sequence[AuditEvent]
    future: Future[Any]


class Writer:
    """Runs write jobs one at a time on its own thread; flushes buffered audit rows."""

    def __init__(
        self, registry: Path, readers: Readers, *, lock_timeout: float, flush_seconds: float
    ) -> None:
        self.registry = registry
        self.readers = readers
        self.lock_timeout = lock_timeout
        self.flush_seconds = flush_seconds
        self._calls: queue.Queue[_Call | None] = queue.Queue()
        self._buffer: list[AuditEvent] = []
        self._buffer_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="cartreg-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Finish the queued calls, write the buffered audit rows, and stop."""
        if self._thread.is_alive():
            self._calls.put(None)
            self._thread.join(timeout)

    def submit(self, fn: Callable[[Registry], T], *, audit: Sequence[AuditEvent] = ()) -> Future[T]:
        """Queue ``fn(registry)`` (an open, writable registry); ``audit`` is appended after it
        returns, with the buffered view records."""
        future: Future[T] = Future()
        self._calls.put(_Call(fn, tuple(audit), future))
        return future

    def call(self, fn: Callable[[Registry], T], *, audit: Sequence[AuditEvent] = ()) -> T:
        """Run ``fn`` on the writer and wait for its result (its exception is raised here)."""
        return self.submit(fn, audit=audit).result()

    def record(self, *events: AuditEvent) -> None:
        """Buffer audit rows; the writer appends them within ``flush_seconds``."""
        with self._buffer_lock:
            self._buffer.extend(events)

    def _take_buffer(self) -> list[AuditEvent]:
        with self._buffer_lock:
            events, self._buffer = self._buffer, []
        return events

    def _restore_buffer(self, events: list[AuditEvent]) -> None:
        with self._buffer_lock:
            self._buffer[:0] = events

    def _run(self) -> None:
        while True:
            try:
                call = self._calls.get(timeout=self.flush_seconds)
            except queue.Empty:
                self._flush()
                self.readers.release_if_idle()
                continue
            if call is None:
                self._flush()
                return
            if not call.future.set_running_or_notify_cancel():
                continue
            self._execute(call)

    def _execute(self, call: _Call) -> None:
        buffered = self._take_buffer()
        try:
            with self._open() as reg:
                try:
                    result = call.fn(reg)
                except BaseException as exc:
                    if isinstance(exc, KeyboardInterrupt | SystemExit):
                        raise
                    call.future.set_exception(exc)
                    self._append(reg, buffered)
                    return
                self._append(reg, [*buffered, *call.audit])
                call.future.set_result(result)
        except BaseException as exc:  # the registry could not be opened (locked, corrupt)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            self._restore_buffer(buffered)
            if not call.future.done():
                call.future.set_exception(exc)

    @contextmanager
    def _open(self) -> Iterator[Registry]:
        with (
            self.readers.exclusive(),
            open_registry(self.registry, write=True, lock_timeout=self.lock_timeout) as reg,
        ):
            yield reg

    def _append(self, reg: Registry, events: list[AuditEvent]) -> None:
        if not events:
            return
        with transaction(reg):
            append_events(reg, events)

    def _flush(self) -> None:
        events = self._take_buffer()
        if not events:
            return
        try:
            with self._open() as reg:
                self._append(reg, events)
        except Exception as exc:  # keep the rows and retry at the next flush
            self._restore_buffer(events)
            log.warning("audit rows not written yet (%s); retrying", type(exc).__name__)


@dataclass
class Progress:
    """What a background job is doing, for its page (thread-safe)."""

    kind: str
    key: int
    stage: str = "queued"
    steps: list[tuple[float, str]] = field(default_factory=list)
    finished: bool = False
    failed: bool = False
    message: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def note(self, stage: str, text: str | None = None) -> None:
        with self._lock:
            self.stage = stage
            self.steps.append((time.time(), text or stage))

    def finish(self, message: str, *, failed: bool = False) -> None:
        with self._lock:
            self.stage = "failed" if failed else "done"
            self.failed = failed
            self.finished = True
            self.message = message
            self.steps.append((time.time(), message))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "stage": self.stage,
                "finished": self.finished,
                "failed": self.failed,
                "message": self.message,
                "steps": [text for _, text in self.steps[-20:]],
            }


class Worker:
    """Runs long jobs (an upload's ingest and validation, a merge) one at a time."""

    def __init__(self) -> None:
        self._jobs: queue.Queue[tuple[Progress, Callable[[Progress], None]] | None] = queue.Queue()
        self._progress: dict[tuple[str, int], Progress] = {}
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="cartreg-worker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout)

    def enqueue(self, kind: str, key: int, job: Callable[[Progress], None]) -> Progress:
        progress = Progress(kind, key)
        progress.note("queued", "waiting for the worker")
        with self._lock:
            self._progress[(kind, key)] = progress
        self._jobs.put((progress, job))
        return progress

    def progress(self, kind: str, key: int) -> Progress | None:
        with self._lock:
            return self._progress.get((kind, key))

    def idle(self) -> bool:
        with self._lock:
            return all(p.finished for p in self._progress.values())

    def _run(self) -> None:
        while True:
            item = self._jobs.get()
            if item is None:
                return
            progress, job = item
            try:
                job(progress)
            except BaseException as exc:  # the job reports its own errors; this is a bug
                if isinstance(exc, KeyboardInterrupt | SystemExit):
                    raise
                log.error(
                    "background job %s %s failed: %s",
                    progress.kind,
                    progress.key,
                    type(exc).__name__,
                )
                if not progress.finished:
                    progress.finish("internal error; the coordinator has been told", failed=True)
