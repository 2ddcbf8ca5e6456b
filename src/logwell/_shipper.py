"""The shipper process: drains the channel, batches, and POSTs with retries.

It runs as ``python -m logwell._shipper``, a fresh interpreter that never
imports the application, and reads its settings (the API key among them)
from standard input, so the key is in no command line and no environment.

Two threads: the reader empties the pipe into the backlog as fast as frames
arrive, so producers rarely find the pipe full; the sender (main thread)
takes batches from the head of the backlog and delivers them one at a time.
The shipper lives as long as any process holds the write end of the pipe:
when the last one exits, even by SIGKILL, the reader sees end-of-file and
the shipper delivers what it holds within ``shutdown_timeout`` and exits.
"""

from __future__ import annotations

import logging
import os
import random
import select
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from typing import Any, Final

import orjson

from logwell import _inbox, _stats
from logwell._batching import encode_body, take_batch
from logwell._channel import Entry, FrameReader, Subscribe
from logwell._encoding import replace_nul
from logwell._retry import Backoff, Verdict, classify, parse_retry_after
from logwell._stats import (
    ALTERED,
    BACKLOG,
    DELIVERED,
    DROPPED,
    FAILED,
    FLUSHED,
    RECEIVED,
    REJECTED,
)
from logwell._transport import Transport, parse_accepted
from logwell.errors import LogwellErrorCode

#: How often the reader proves it is alive in shared memory.
HEARTBEAT: Final = 0.1
#: After a 401, send nothing for this long: the key will not fix itself sooner.
AUTH_PAUSE: Final = 60.0
#: Overflow notes go out at most this often per producer.
OVERFLOW_NOTE_EVERY: Final = 1.0
_READ_SIZE: Final = 1 << 20
#: Pause after a small read; the pipe holds far more than arrives meanwhile.
COALESCE: Final = 0.002
#: A request still hanging this long after the drain deadline is abandoned: the
#: shipper counts what it holds as failed and exits (urllib3 would wait 'timeout').
ABANDON_GRACE: Final = 0.5

Batch = list[tuple[int, bytes]]


class Shipper:
    """The backlog, its accounting, and the delivery loop."""

    def __init__(self, settings: dict[str, Any], read_fd: int, publisher: _stats.Publisher,
                 transport: Transport) -> None:
        self._read_fd = read_fd
        self._publisher = publisher
        self._header = publisher.header
        self._transport = transport
        self._nonce: str = settings["nonce"]
        self._batch_size: int = settings["batch_size"]
        self._flush_interval: float = settings["flush_interval"]
        self._max_queue_size: int = settings["max_queue_size"]
        self._max_queue_bytes: int = settings["max_queue_bytes"]
        self._max_batch_bytes: int = settings["max_batch_bytes"]
        self._max_retries: int = settings["max_retries"]
        self._drain_timeout: float = settings["shutdown_timeout"]
        self._backoff = Backoff(
            settings["retry_backoff"], settings["retry_backoff_max"], settings["max_retry_after"]
        )
        self._cond = threading.Condition()
        self._backlog: deque[tuple[int, bytes]] = deque()
        self._backlog_bytes = 0
        self._waiting_since: float | None = None
        self._next_seq = 0  # sequence number the next accepted entry gets
        self._head_seq = 0  # oldest entry not yet delivered or failed
        self._markers: deque[tuple[int, int, int]] = deque()  # (seq, pid, token)
        self._deadline: float | None = None  # set when draining before exit
        self._reading = True
        self._auth_paused_until = 0.0
        self._overflow: Counter[int] = Counter()
        self._overflow_noted = 0.0
        self._notes = _inbox.sender()
        self._producers: set[int] = set()  # every pid seen, for _abandon()
        self._subscribers: set[int] = set()  # pids with on_flush: a note per delivered batch

    # -- reader thread ---------------------------------------------------------------

    def read_forever(self) -> None:
        """Move frames from the pipe into the backlog until every writer is gone."""
        reader = FrameReader()
        while True:
            ready, _, _ = select.select([self._read_fd], [], [], HEARTBEAT)
            data = os.read(self._read_fd, _READ_SIZE) if ready else None
            with self._cond:
                if data == b"":
                    break
                if data:
                    touched = set()
                    for item in reader.feed(data):
                        touched.add(item.pid)
                        if isinstance(item, Entry):
                            self._accept(item.pid, item.data)
                        elif isinstance(item, Subscribe):
                            self._subscribers.add(item.pid)
                        else:
                            self._markers.append((self._next_seq, item.pid, item.token))
                    self._header[_stats.H_MALFORMED] = reader.malformed
                    self._producers |= touched
                    self._complete_markers()
                    self._publisher.publish(touched)
                    self._cond.notify()
                else:
                    self._publisher.beat()
                self._note_overflow()
            if data and len(data) < _READ_SIZE // 4 and self._deadline is None:
                # Let frames gather: one read of many costs producers fewer wake-ups.
                time.sleep(COALESCE)
        with self._cond:
            self._reading = False
            self.begin_drain()

    def _accept(self, pid: int, data: bytes) -> None:
        slot = self._publisher.slot(pid)
        slot[RECEIVED] += 1
        self._header[_stats.H_RECEIVED] += 1
        if (
            len(self._backlog) >= self._max_queue_size
            or self._backlog_bytes + len(data) > self._max_queue_bytes
        ):
            slot[DROPPED] += 1
            self._header[_stats.H_DROPPED] += 1
            self._overflow[pid] += 1
            return
        if b"\\u0000" in data:  # would fail the whole batch on the server
            data = replace_nul(data)
            slot[ALTERED] += 1
        if not self._backlog:
            self._waiting_since = time.monotonic()
        self._backlog.append((pid, data))
        self._backlog_bytes += len(data)
        self._next_seq += 1
        slot[BACKLOG] += 1
        self._header[_stats.H_BACKLOG] = len(self._backlog)
        self._header[_stats.H_BACKLOG_BYTES] = self._backlog_bytes

    def _note_overflow(self) -> None:
        now = time.monotonic()
        if not self._overflow or now - self._overflow_noted < OVERFLOW_NOTE_EVERY:
            return
        self._overflow_noted = now
        for pid, count in self._overflow.items():
            self._note(pid, {
                "kind": "error", "code": LogwellErrorCode.QUEUE_OVERFLOW.value, "count": count,
                "message": f"the shipper's backlog is full ({self._max_queue_size} entries or "
                f"{self._max_queue_bytes} bytes); {count} newer entries were dropped",
            })
        self._overflow.clear()

    # -- sender (main thread) ----------------------------------------------------------

    def begin_drain(self) -> None:
        """Deliver what is held, for at most the drain timeout, then stop."""
        if self._deadline is None:
            self._deadline = time.monotonic() + self._drain_timeout
            self._header[_stats.H_DRAINING] = 1
            self._cond.notify_all()
            # The deadline cannot cut short a request that hangs (a server that accepts
            # and never answers holds it for 'timeout'): this timer makes it hold for the
            # process, so that an orphaned shipper never outlives shutdown_timeout by more.
            watchdog = threading.Timer(self._drain_timeout + ABANDON_GRACE, self._abandon)
            watchdog.daemon = True
            watchdog.start()

    def _abandon(self) -> None:
        """Still here past the drain deadline: count every unsettled entry as failed, exit."""
        with self._cond:
            error = self._error(
                LogwellErrorCode.NETWORK_ERROR,
                f"shutdown_timeout ({self._drain_timeout}s) passed while a request to the "
                "server was still unanswered", None, retryable=False)
            for pid in self._producers:
                slot = self._publisher.slot(pid)
                left = slot[BACKLOG]  # in the backlog or in the request that hangs
                if left > 0:
                    slot[FAILED] += left
                    slot[BACKLOG] = 0
                    self._header[_stats.H_FAILED] += left
                    self._note(pid, {**error, "count": left})
            for _, pid, token in self._markers:  # wake whoever still waits in flush()
                slot = self._publisher.slot(pid)
                slot[FLUSHED] = max(slot[FLUSHED], token)
                self._note(pid, {"kind": "wake", "token": token})
            self._markers.clear()
            self._backlog.clear()
            self._header[_stats.H_BACKLOG] = self._header[_stats.H_BACKLOG_BYTES] = 0
            self._publisher.publish()
            os._exit(0)

    def send_forever(self) -> None:
        while True:
            with self._cond:
                batch = self._next_batch()
            if batch is None:
                return
            self._deliver(batch)
            with self._cond:
                self._head_seq += len(batch)
                self._complete_markers()
                self._publisher.publish()

    def _next_batch(self) -> Batch | None:
        """Wait for a batch worth sending; None once drained or past the deadline."""
        while True:
            now = time.monotonic()
            if self._deadline is not None and now >= self._deadline:
                self._fail_backlog()
                return None
            if not self._backlog:
                if self._deadline is not None and not self._reading:
                    return None
                self._cond.wait(self._remaining(None))
                continue
            waited = now - (self._waiting_since or now)
            if (
                self._deadline is not None
                or len(self._backlog) >= self._batch_size
                or self._backlog_bytes >= self._max_batch_bytes
                or waited >= self._flush_interval
                or (self._markers and self._markers[0][0] > self._head_seq)
            ):
                batch = take_batch(self._backlog, self._batch_size, self._max_batch_bytes)
                self._backlog_bytes -= sum(len(data) for _, data in batch)
                self._header[_stats.H_BACKLOG] = len(self._backlog)
                self._header[_stats.H_BACKLOG_BYTES] = self._backlog_bytes
                self._waiting_since = now if self._backlog else None
                return batch
            self._cond.wait(self._remaining(self._flush_interval - waited))

    def _remaining(self, wait: float | None) -> float | None:
        if self._deadline is None:
            return wait
        left = max(0.0, self._deadline - time.monotonic())
        return left if wait is None else min(wait, left)

    def _fail_backlog(self) -> None:
        batch = list(self._backlog)
        self._backlog.clear()
        self._backlog_bytes = 0
        if batch:
            self._resolve(batch, FAILED, self._error(
                LogwellErrorCode.NETWORK_ERROR,
                f"shutdown_timeout ({self._drain_timeout}s) passed before these entries "
                "could be delivered", None, retryable=False))
            self._head_seq += len(batch)
            self._complete_markers()
            self._publisher.publish()

    def _deliver(self, batch: Batch) -> None:
        """Send one batch, splitting on 413 and to isolate an entry that fails the batch."""
        # Bisecting a batch to find an entry that fails it with 500 takes about two
        # requests per halving; those do not eat into max_retries.
        bisect_allowance = 2 * len(batch).bit_length() if len(batch) > 1 else 0
        parts: list[tuple[Batch, bool]] = [(batch, False)]
        requests = retries = failures = 0
        while parts:
            part, from_split = parts.pop()
            if time.monotonic() < self._auth_paused_until:
                self._resolve(part, FAILED, None)
                continue
            if self._deadline is not None and time.monotonic() >= self._deadline:
                self._resolve(part, FAILED, self._error(
                    LogwellErrorCode.NETWORK_ERROR,
                    "shutdown_timeout passed while retrying", None, retryable=False))
                continue
            left = None if self._deadline is None else max(0.01, self._deadline - time.monotonic())
            answer = self._transport.post(encode_body([data for _, data in part]), left)
            requests += 1
            self._header[_stats.REQUESTS] += 1
            verdict = classify(answer.status)
            if verdict is Verdict.DELIVERED:
                failures = 0
                self._settle(part, answer.body)
            elif verdict is Verdict.SPLIT and len(part) > 1:
                half = len(part) // 2
                parts += [(part[half:], True), (part[:half], True)]
            elif verdict is Verdict.UNAUTHORIZED:
                self._auth_paused_until = time.monotonic() + AUTH_PAUSE
                self._resolve(part, FAILED, self._error(
                    LogwellErrorCode.UNAUTHORIZED,
                    "the server refused the API key (401); check 'api_key' in your Logwell "
                    f"config. Sending pauses for {AUTH_PAUSE:.0f}s; entries are dropped meanwhile",
                    401, retryable=False))
            elif verdict is not Verdict.RETRY:
                self._resolve(part, FAILED, self._error(
                    LogwellErrorCode.VALIDATION_ERROR,
                    f"the server refused the batch as final: {_excerpt(answer.body)}",
                    answer.status, retryable=False))
            else:
                allowed = self._max_retries + (bisect_allowance if answer.status == 500 else 0)
                poison_suspect = len(part) == 1 and from_split and failures >= 1
                if retries >= allowed or poison_suspect:
                    code = (LogwellErrorCode.RATE_LIMITED if answer.status == 429 else
                            LogwellErrorCode.NETWORK_ERROR if answer.status is None else
                            LogwellErrorCode.SERVER_ERROR)
                    why = answer.error or f"HTTP {answer.status} {_excerpt(answer.body)}"
                    self._resolve(part, FAILED, self._error(
                        code, f"gave up after {requests} requests: {why}", answer.status,
                        retryable=True))
                    continue
                if answer.status == 500 and len(part) > 1 and failures >= 1:
                    half = len(part) // 2
                    parts += [(part[half:], True), (part[:half], True)]
                else:
                    parts.append((part, from_split))
                retry_after = parse_retry_after(answer.retry_after, time.time())
                delay = self._backoff.delay(failures, random.random(), retry_after)
                failures += 1
                retries += 1
                self._header[_stats.RETRIES] += 1
                self._sleep(delay)

    def _sleep(self, seconds: float) -> None:
        """Wait before a retry; a drain that starts meanwhile cuts the wait to its deadline."""
        end = time.monotonic() + seconds
        with self._cond:
            while (left := end - time.monotonic()) > 0:
                if self._deadline is not None:
                    left = min(left, self._deadline - time.monotonic())
                    if left <= 0:
                        return
                self._cond.wait(left)

    def _settle(self, part: Batch, body: bytes) -> None:
        accepted = parse_accepted(body, len(part))
        if not accepted.rejected:
            self._resolve(part, DELIVERED, None)
            return
        delivered = [e for i, e in enumerate(part) if i not in accepted.rejected]
        rejected = [e for i, e in enumerate(part) if i in accepted.rejected]
        self._resolve(delivered, DELIVERED, None)
        detail = "; ".join(accepted.errors[:3]) or "no reason given"
        self._resolve(rejected, REJECTED, self._error(
            LogwellErrorCode.VALIDATION_ERROR, f"the server rejected entries: {detail}", 200,
            retryable=False))

    def _resolve(self, part: Iterable[tuple[int, bytes]], outcome: int,
                 error: dict[str, Any] | None) -> None:
        """Count entries as delivered, rejected or failed, and tell their processes."""
        counts = Counter(pid for pid, _ in part)
        total_key = {DELIVERED: _stats.H_DELIVERED, REJECTED: _stats.H_REJECTED,
                     FAILED: _stats.H_FAILED}[outcome]
        with self._cond:
            for pid, count in counts.items():
                slot = self._publisher.slot(pid)
                slot[outcome] += count
                slot[BACKLOG] -= count
                self._header[total_key] += count
            self._publisher.publish(counts)
        for pid, count in counts.items():
            if outcome == DELIVERED:
                if pid in self._subscribers:
                    self._note(pid, {"kind": "flushed", "count": count})
            elif error is not None:
                self._note(pid, {**error, "count": count})

    def _complete_markers(self) -> None:
        """Answer the flush markers whose earlier entries are all settled."""
        while self._markers and self._markers[0][0] <= self._head_seq:
            _, pid, token = self._markers.popleft()
            slot = self._publisher.slot(pid)
            slot[FLUSHED] = max(slot[FLUSHED], token)
            self._publisher.publish((pid,))
            self._note(pid, {"kind": "wake", "token": token})

    @staticmethod
    def _error(code: LogwellErrorCode, message: str, status: int | None,
               retryable: bool) -> dict[str, Any]:
        return {"kind": "error", "code": code.value, "message": message, "status": status,
                "retryable": retryable}

    def _note(self, pid: int, note: dict[str, Any]) -> None:
        _inbox.send_note(self._notes, _inbox.address(self._nonce, pid), note)


def _excerpt(body: bytes) -> str:
    text = body[:200].decode("utf-8", "replace").strip()
    return text or "(empty body)"


def main() -> None:
    """Entry point of the shipper process."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the application to handle
    quiet = logging.getLogger("urllib3")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    settings = orjson.loads(sys.stdin.buffer.read())
    sys.stdin.close()
    block = _stats.attach(settings["stats_fd"])
    publisher = _stats.Publisher(block, os.getpid())
    transport = Transport(
        settings["endpoint"], settings.pop("api_key"), settings["timeout"], settings["ca_certs"]
    )
    shipper = Shipper(settings, settings["read_fd"], publisher, transport)

    def on_sigterm(signum: int, frame: object) -> None:
        with shipper._cond:
            shipper.begin_drain()

    signal.signal(signal.SIGTERM, on_sigterm)
    reader = threading.Thread(target=shipper.read_forever, name="logwell-reader", daemon=True)
    reader.start()
    shipper.send_forever()
    transport.close()


if __name__ == "__main__":
    main()
