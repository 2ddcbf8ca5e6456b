"""A process's end of the shipper: start it, feed it, wait for it, replace it.

One ``Pipeline`` is shared by a client and all its ``child()`` loggers. Its
state is keyed to the pid that created it: the first call in a forked child
notices the new pid and re-derives everything process-local (locks, counters,
inbox) without taking any lock the parent may have held at fork time. The
pipe's write end is kept, so a fleet forked from one process shares that
process's shipper, and what the parent logged before the fork is delivered
once, by the shipper that already holds it.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import mmap
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Final

import orjson
from orjson import dumps  # bound once: the log path calls it on every entry

from logwell import _inbox, _stats
from logwell._channel import (
    FRAME_MAX,
    ChannelClosed,
    ChannelFull,
    Producer,
    open_pipe,
    wait_writable,
    write_frame,
)
from logwell._encoding import ALTERED, TRUNCATED, encode
from logwell.config import is_loopback_host
from logwell.errors import LogwellError, LogwellErrorCode
from logwell.types import LogwellConfig, Stats

logger = logging.getLogger("logwell")
logger.addHandler(logging.NullHandler())

#: A shipper silent this long is taken for hung (SIGSTOP, a deadlock) and replaced.
STALL_TIMEOUT: Final = 5.0
#: A shipper that has not started reading after this long is taken for hung.
STARTUP_LIMIT: Final = 30.0
#: A shipper silent this long is checked for being alive at all.
DEAD_AFTER: Final = 1.0
#: How often the log path looks after the shipper and reads its notes (when no
#: notifier thread does), checked every TEND_STRIDE entries.
TEND_EVERY: Final = 1.0
TEND_STRIDE: Final = 8
#: How long a log call may wait for a shipper that is still starting up
#: (an interpreter and urllib3 take a few hundred milliseconds to load).
STARTUP_GRACE: Final = 3.0
#: After a failed start, log calls wait this long before trying again (doubling).
RESTART_PAUSE: Final = 1.0
MAX_RESTART_PAUSE: Final = 60.0
#: The same diagnostic is logged at most once per this many seconds.
DIAGNOSTIC_EVERY: Final = 10.0
_NOTIFIER_POLL: Final = 0.5

# Reasons an entry is dropped before it reaches the shipper.
QUEUE_FULL: Final = "queue_full"
TOO_LARGE: Final = "too_large"
INVALID: Final = "invalid"
AFTER_SHUTDOWN: Final = "after_shutdown"
SHIPPER_LOST: Final = "shipper_lost"
NO_SHIPPER: Final = "no_shipper"
_LOCAL_REASONS: Final = (QUEUE_FULL, TOO_LARGE, INVALID, AFTER_SHUTDOWN, SHIPPER_LOST, NO_SHIPPER)

_SHIPPER_SETTINGS: Final = (
    "api_key", "endpoint", "batch_size", "flush_interval", "max_queue_size", "max_retries",
    "timeout", "shutdown_timeout", "max_batch_bytes", "max_queue_bytes", "retry_backoff",
    "retry_backoff_max", "max_retry_after",
)
_live: weakref.WeakSet[Pipeline] = weakref.WeakSet()
# Shippers still draining after their owner stopped waiting; reaped when they end.
_unreaped: list[subprocess.Popen[bytes]] = []


def _reap() -> None:
    _unreaped[:] = [process for process in _unreaped if process.poll() is None]


def _read(counter: itertools.count[int]) -> int:
    """The value of an ``itertools.count`` without advancing it.

    Counting with ``next()`` is atomic under the GIL, unlike ``+= 1``.
    """
    return int(repr(counter)[6:-1])


class _Channel:
    """One shipper generation: the pipe, its shared counters, and maybe its process."""

    def __init__(self, fd: int, block: mmap.mmap, nonce: str,
                 process: subprocess.Popen[bytes] | None, guard_fd: int | None = None) -> None:
        self.fd = fd
        self.guard_fd = guard_fd
        self.block = block
        self.nonce = nonce
        self.process = process  # set only in the process that started the shipper
        self.started = time.monotonic()
        self.subscribed = 0  # the pid that asked this shipper for on_flush notes

    def shipper_pid(self) -> int:
        return _stats.read_header(self.block).shipper_pid

    def starting(self) -> bool:
        """The shipper process exists but has not yet begun to read."""
        waited = time.monotonic() - self.started
        return waited < STARTUP_GRACE and _stats.heartbeat_age(self.block) == float("inf")

    def trouble(self) -> str | None:
        """Why this shipper must be replaced ("exited", "stopped answering"), or None.

        A shipper that has not beaten yet is only slow to start (an interpreter on a
        loaded machine), unless its process is gone or STARTUP_LIMIT has passed.
        """
        age = _stats.heartbeat_age(self.block)
        since_start = time.monotonic() - self.started
        silent = min(age, since_start)
        if silent < DEAD_AFTER:
            return None
        if age == float("inf"):
            silent = 0.0 if since_start < STARTUP_LIMIT else since_start
        if self.process is not None:
            gone = self.process.poll() is not None
        else:
            pid = self.shipper_pid()
            gone = bool(pid) and not _is_shipper(pid)
        if gone:
            return "exited"
        return "stopped answering" if silent > STALL_TIMEOUT else None

    def close(self) -> None:
        """Let go of this process's ends of the pipe."""
        os.close(self.fd)
        if self.guard_fd is not None:
            os.close(self.guard_fd)
            self.guard_fd = None

    def disown(self) -> None:
        """Forget the shipper's process handle in a forked child.

        Only the parent can wait for its child; the copy in a forked process is
        marked settled so that it neither waits for the shipper nor warns about it.
        """
        if self.process is not None:
            self.process.returncode = 0
            self.process = None


class Pipeline:
    """Producer side of the process-isolated pipeline."""

    def __init__(self, config: LogwellConfig) -> None:
        self._settings: dict[str, Any] = {name: config.get(name) for name in _SHIPPER_SETTINGS}
        self._settings["ca_certs"] = config.get("ca_certs")
        self._endpoint = config["endpoint"]
        self._max_entry_bytes = config["max_entry_bytes"]
        self.shutdown_timeout: float = config["shutdown_timeout"]
        self._on_error: Callable[[Exception], None] | None = config.get("on_error")
        self._on_flush: Callable[[int], None] | None = config.get("on_flush")
        # Callbacks get a thread of their own; without them no thread is started,
        # which keeps a pre-fork master thread-free for forks that skip Python's
        # after-fork handling (uWSGI forks from C).
        self._callbacks = self._on_error is not None or self._on_flush is not None
        self._channel: _Channel | None = None
        self._stopped = False
        self._closed = False
        self._restart_after = 0.0
        self._failed_starts = 0
        self._reset_process_state()
        _live.add(self)

    def __repr__(self) -> str:
        return f"<Pipeline endpoint={self._endpoint!r} pid={self._pid}>"

    def _reset_process_state(self) -> None:
        """Everything that belongs to one process; called again first thing after a fork."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._producer = Producer(self._pid)
        self._entry_head = self._producer.entry_head
        self._sent = itertools.count()
        self._altered = itertools.count()
        self._truncated = itertools.count()
        self._dropped = {reason: itertools.count() for reason in _LOCAL_REASONS}
        self._reported = dict.fromkeys(_LOCAL_REASONS, 0)
        self._carried = [0] * len(_stats.Slot._fields)  # counters of shippers that are gone
        self._sent_before = 0  # entries sent into channels that are gone
        self._lost_in_shipper = 0  # entries sent to a shipper that died holding them
        self._dispatch_lock = threading.RLock()
        self._inbox_lock = threading.Lock()  # a callback may call flush()
        self._message_ids = itertools.count()
        self._flush_tokens = itertools.count(1)
        inherited = getattr(self, "_inbox", None)
        if inherited is not None:  # the parent's socket: close our copy, bind our own later
            inherited.close()
        self._inbox: _inbox.Inbox | None = None
        self._notifier: threading.Thread | None = None
        self._notifier_stop = threading.Event()
        self._restarts = 0
        self._diagnosed: dict[str, float] = {}
        self._pending_errors: deque[LogwellError] = deque()
        self._next_tend = 0.0
        if self._channel is not None:
            self._channel.disown()  # a forked child shares the shipper but does not own it
            self._start_notifier()

    # -- the log call's path -------------------------------------------------------------

    def submit(self, entry: dict[str, Any], plain: bool = False) -> None:
        """Encode one entry and hand it to the shipper; never blocks, never raises.

        ``plain`` is the caller's word that the message is a non-blank string, the
        metadata a dict or absent, and any lineNumber valid: then one orjson call
        is all the encoding there is (the common case, kept free of checks).
        """
        if self._pid != os.getpid():
            self._reset_process_state()
        if self._stopped:
            next(self._dropped[AFTER_SHUTDOWN])
            return
        data = None
        if plain:
            try:
                data = dumps(entry)
            except Exception:  # unknown types, cycles, big ints: the slow path
                pass
        if data is None or len(data) > self._max_entry_bytes:
            try:
                data, flags = encode(entry, self._max_entry_bytes)
            except Exception:  # a __str__ that lies about its type, say
                next(self._dropped[INVALID])
                return
        else:
            flags = 0
        if flags:
            if flags & ALTERED:
                next(self._altered)
            if flags & TRUNCATED:
                next(self._truncated)
            if len(data) > self._max_entry_bytes:
                next(self._dropped[TOO_LARGE])
                return
        channel = self._channel or self._start()
        if channel is None:
            next(self._dropped[NO_SHIPPER])
            return
        frame = self._entry_head + data + b"\n"
        try:
            if len(frame) <= FRAME_MAX:
                os.write(channel.fd, frame)  # the common case, inlined: one atomic write
            else:
                self._producer.send(channel.fd, data, self._message_ids)
        except (BlockingIOError, ChannelFull):
            if channel.starting() and self._send_when_started(channel, data):
                return
            next(self._dropped[QUEUE_FULL])
            trouble = channel.trouble()
            if trouble is not None:
                self._lose(channel, trouble)
            return
        except (OSError, ChannelClosed):
            next(self._dropped[SHIPPER_LOST])
            self._lose(channel, "exited")
            return
        if not next(self._sent) % TEND_STRIDE:
            self._tend(channel)

    def _tend(self, channel: _Channel) -> None:
        """At most once a second: replace a shipper in trouble, and read its notes.

        Diagnostics read here go to the ``logwell`` logger; user callbacks never
        run on this path (when there are any, the notifier thread reads the notes).
        """
        now = time.monotonic()
        if now < self._next_tend:
            return
        self._next_tend = now + TEND_EVERY
        trouble = channel.trouble()
        if trouble is not None:
            self._lose(channel, trouble)
        elif self._callbacks:
            if self._notifier is None:  # parked for a fork: bring it back
                self._start_notifier()
        else:
            inbox = self._own_inbox(channel)
            self._dispatch(inbox.receive(0.0) if inbox is not None else [])

    def _send_when_started(self, channel: _Channel, data: bytes) -> bool:
        """Wait out the shipper's start-up instead of dropping the first burst of entries."""
        while channel.starting() and not self._exited(channel):
            wait_writable(channel.fd, 0.05)
            try:
                self._producer.send(channel.fd, data, self._message_ids)
            except ChannelFull:
                continue
            except ChannelClosed:
                return False
            next(self._sent)
            return True
        return False

    def start(self) -> None:
        """Start the shipper now rather than at the first log call."""
        if self._pid != os.getpid():
            self._reset_process_state()
        if self._channel is None:
            self._start()

    def drop(self, reason: str) -> None:
        """Count an entry the client refused before encoding it."""
        if self._pid != os.getpid():
            self._reset_process_state()
        next(self._dropped[reason])

    # -- starting and losing the shipper ------------------------------------------------

    def _start(self) -> _Channel | None:
        with self._lock:
            if self._channel is not None:
                return self._channel
            if self._closed or time.monotonic() < self._restart_after:
                return None
            try:
                self._channel = self._spawn()
                if self._callbacks:
                    self._start_notifier(locked=True)
            except Exception as exc:  # no interpreter, no memory, no fds: log calls go on
                self._restart_after = time.monotonic() + RESTART_PAUSE
                self._report(LogwellError(
                    f"could not start the shipper process: {exc}", LogwellErrorCode.NETWORK_ERROR,
                    retryable=True))
                return None
            return self._channel

    def _spawn(self) -> _Channel:
        _reap()
        read_fd, write_fd = open_pipe()
        stats_fd, block = _stats.create()
        nonce = secrets.token_hex(8)
        settings = {**self._settings, "nonce": nonce, "read_fd": read_fd, "stats_fd": stats_fd}
        command = [sys.executable, *(["-P"] if sys.version_info >= (3, 11) else []),
                   "-m", "logwell._shipper"]
        process = None
        try:
            process = subprocess.Popen(
                command, stdin=subprocess.PIPE, pass_fds=(read_fd, stats_fd), close_fds=True,
                start_new_session=True,
            )
            assert process.stdin is not None
            with process.stdin:
                process.stdin.write(orjson.dumps(settings))
        except BaseException:
            if process is not None:  # it died before reading its settings
                process.kill()
                process.wait()
            os.close(write_fd)
            os.close(read_fd)
            block.close()
            raise
        finally:
            os.close(stats_fd)
        # An application that restored SIGPIPE's default action would be killed by a
        # write into a pipe nobody reads; a spare read end turns that write into
        # "pipe full", and the shipper's heartbeat tells that it is gone.
        if signal.getsignal(signal.SIGPIPE) == signal.SIG_DFL:
            guard_fd: int | None = read_fd
        else:
            os.close(read_fd)
            guard_fd = None
        return _Channel(write_fd, block, nonce, process, guard_fd)

    def _lose(self, channel: _Channel, how: str) -> None:
        """Give up a shipper that died or hangs; count what it took with it."""
        with self._lock:
            if self._channel is not channel:
                return
            self._channel = None
            slot = _stats.read_slot(channel.block, self._pid)
            sent_now = _read(self._sent)
            settled = slot.delivered + slot.rejected + slot.failed + slot.dropped
            lost = max(0, sent_now - self._sent_before - settled)
            self._lost_in_shipper += lost
            self._sent_before = sent_now
            for index in (_stats.DELIVERED, _stats.REJECTED, _stats.FAILED, _stats.DROPPED,
                          _stats.ALTERED):
                self._carried[index] += slot[index]
            self._restarts += 1
            # A shipper that never came up (a broken install, say) is not restarted in a
            # tight loop: each failed start doubles the pause, up to a minute.
            if _stats.heartbeat_age(channel.block) == float("inf"):
                self._failed_starts += 1
                pause = min(MAX_RESTART_PAUSE, RESTART_PAUSE * 2 ** (self._failed_starts - 1))
                self._restart_after = time.monotonic() + pause
            else:
                self._failed_starts = 0
            pid = channel.shipper_pid()
            if how != "exited" and pid and _is_shipper(pid):
                try:  # hung: it must not wake up later and deliver what we count as lost
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            if channel.process is not None:
                try:
                    channel.process.wait(1.0)
                except subprocess.TimeoutExpired:
                    channel.disown()
            channel.close()
        self._report(LogwellError(
            f"the shipper process (pid {pid}) {how}; {lost} entries it held were lost, "
            "a new shipper starts with the next log call", LogwellErrorCode.NETWORK_ERROR,
            retryable=False))

    # -- waiting for the shipper ------------------------------------------------------

    def flush(self, timeout: float) -> bool:
        """Wait until everything this process sent is settled; False on timeout.

        Errors found meanwhile are reported before it returns.
        """
        if self._pid != os.getpid():
            self._reset_process_state()
        if self._notifier is None and self._channel is not None:
            self._start_notifier()  # parked for a fork, say
        try:
            return self._flush(timeout)
        finally:
            self._dispatch([])

    def _flush(self, timeout: float) -> bool:
        channel = self._channel
        if channel is None or self._closed:
            return True
        deadline = time.monotonic() + timeout
        inbox = self._own_inbox(channel)
        token = next(self._flush_tokens)
        frame = self._producer.flush_frame(token)
        while True:
            try:
                write_frame(channel.fd, frame)
                break
            except ChannelFull:
                if not wait_writable(channel.fd, min(0.05, deadline - time.monotonic())):
                    if time.monotonic() >= deadline:
                        return False
                    trouble = channel.trouble()
                    if trouble is not None:
                        self._lose(channel, trouble)
                        return True
            except ChannelClosed:
                self._lose(channel, "exited")
                return True
        while _stats.read_slot(channel.block, self._pid).flushed_token < token:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if inbox is None:
                time.sleep(min(left, 0.01))
            else:
                self._dispatch(inbox.receive(min(left, 0.05)))
            trouble = channel.trouble()
            if trouble is not None:
                self._lose(channel, trouble)
                return True
        if inbox is not None:
            self._dispatch(inbox.receive(0.0))
        return True

    @staticmethod
    def _exited(channel: _Channel) -> bool:
        return channel.process is not None and channel.process.poll() is not None

    def shutdown(self, timeout: float) -> bool:
        """Flush, let go of the shipper, and stop taking entries. Idempotent."""
        if self._pid != os.getpid():
            self._reset_process_state()
        if self._closed:
            return True
        deadline = time.monotonic() + timeout
        self._stopped = True
        done = self.flush(timeout)
        with self._lock:
            if self._closed:
                return done
            self._closed = True
            channel = self._channel
        self._stop_notifier()
        if channel is not None:
            channel.close()
            if channel.process is not None:
                # The shipper exits once every process of the fleet has let go of the pipe,
                # and once it has drained; past our deadline it finishes on its own.
                try:
                    channel.process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    _unreaped.append(channel.process)
                channel.process = None
        if self._inbox is not None:
            self._dispatch(self._inbox.receive(0.0))
            self._inbox.close()
            self._inbox = None
        return done

    # -- accounting -------------------------------------------------------------------

    def stats(self) -> Stats:
        if self._pid != os.getpid():
            self._reset_process_state()
        channel = self._channel
        slot = _stats.read_slot(channel.block, self._pid) if channel else _stats.Slot()
        header = _stats.read_header(channel.block) if channel else _stats.Header()
        totals = [a + b for a, b in zip(slot, self._carried, strict=True)]
        dropped = {reason: _read(counter) for reason, counter in self._dropped.items()}
        logged = _read(self._sent) + sum(dropped.values())
        dropped[SHIPPER_LOST] += self._lost_in_shipper
        dropped["backlog_full"] = totals[_stats.DROPPED]
        settled = (totals[_stats.DELIVERED] + totals[_stats.REJECTED] + totals[_stats.FAILED]
                   + totals[_stats.DROPPED] + self._lost_in_shipper)
        return Stats(
            logged=logged,
            delivered=totals[_stats.DELIVERED],
            rejected=totals[_stats.REJECTED],
            failed=totals[_stats.FAILED],
            dropped=dropped,
            backlog=max(0, _read(self._sent) - settled),
            altered=_read(self._altered) + totals[_stats.ALTERED],
            truncated=_read(self._truncated),
            shipper={
                "pid": header.shipper_pid,
                "restarts": self._restarts,
                "requests": header.requests,
                "retries": header.retries,
                "backlog": header.backlog,
                "backlog_bytes": header.backlog_bytes,
                "delivered": header.delivered,
                "failed": header.failed,
                "dropped": header.dropped,
            },
        )

    def pending(self) -> int:
        return self.stats()["backlog"]

    # -- notes and callbacks ----------------------------------------------------------

    def _own_inbox(self, channel: _Channel) -> _inbox.Inbox | None:
        """This process's inbox for ``channel``'s shipper, bound on first use."""
        with self._inbox_lock:
            if self._inbox is not None and self._inbox.nonce != channel.nonce:
                self._inbox.close()  # the shipper was replaced: its notes go elsewhere
                self._inbox = None
            if self._inbox is None:
                try:
                    self._inbox = _inbox.Inbox(channel.nonce, self._pid)
                except OSError:
                    return None
            return self._inbox

    def _start_notifier(self, locked: bool = False) -> None:
        """Run callbacks on a thread of their own: started with the shipper, after a fork
        in the child's first call, and in the parent within a second of a fork parking it."""
        if not locked:
            with self._lock:
                self._start_notifier(locked=True)
            return
        if self._notifier is not None or self._closed or not self._callbacks:
            return
        channel = self._channel
        if self._on_flush is not None and channel is not None and channel.subscribed != self._pid:
            try:  # ask for a note per delivered batch; only on_flush needs them
                write_frame(channel.fd, self._producer.subscribe_frame())
                channel.subscribed = self._pid
            except (ChannelFull, ChannelClosed):
                pass  # asked again when the notifier next starts
        stop = self._notifier_stop = threading.Event()
        thread = threading.Thread(
            target=self._notify_forever, args=(stop,), name="logwell-notifier", daemon=True)
        self._notifier = thread
        thread.start()

    def _notify_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            channel = self._channel
            inbox = self._own_inbox(channel) if channel is not None else None
            if inbox is None:
                stop.wait(_NOTIFIER_POLL)
                self._dispatch([])
            else:
                self._dispatch(inbox.receive(_NOTIFIER_POLL))

    def _stop_notifier(self) -> None:
        thread = self._notifier
        if thread is None or thread is threading.current_thread():
            return
        self._notifier_stop.set()
        if self._inbox is not None:
            self._inbox.poke({"kind": "wake"})
        thread.join(1.0)
        self._notifier = None

    def _dispatch(self, notes: list[dict[str, Any]]) -> None:
        with self._dispatch_lock:
            self._dispatch_locked(notes)

    def _dispatch_locked(self, notes: list[dict[str, Any]]) -> None:
        while self._pending_errors:
            self._deliver_error(self._pending_errors.popleft())
        for reason in (QUEUE_FULL, TOO_LARGE, NO_SHIPPER):
            count = _read(self._dropped[reason])
            if count > self._reported[reason]:
                fresh = count - self._reported[reason]
                self._reported[reason] = count
                self._deliver_error(LogwellError(
                    _LOCAL_DROP_MESSAGES[reason].format(count=fresh),
                    LogwellErrorCode.QUEUE_OVERFLOW if reason != TOO_LARGE
                    else LogwellErrorCode.VALIDATION_ERROR))
        for note in notes:
            kind = note.get("kind")
            if kind == "flushed" and self._on_flush is not None:
                self._call(self._on_flush, int(note.get("count", 0)))
            elif kind == "error":
                try:
                    code = LogwellErrorCode(note.get("code"))
                except ValueError:
                    code = LogwellErrorCode.SERVER_ERROR
                count = note.get("count", 0)
                self._deliver_error(LogwellError(
                    f"{note.get('message', '')} ({count} entries)", code,
                    note.get("status"), bool(note.get("retryable"))))

    def _report(self, error: LogwellError) -> None:
        """Queue an error for the notifier: a log call never runs callbacks or logging."""
        self._pending_errors.append(error)

    def _deliver_error(self, error: LogwellError) -> None:
        """Hand an error to ``on_error``, or to the ``logwell`` logger, at a bounded rate."""
        if self._on_error is not None:
            self._call(self._on_error, error)
            return
        now = time.monotonic()
        if now - self._diagnosed.get(error.code.value, -DIAGNOSTIC_EVERY) >= DIAGNOSTIC_EVERY:
            self._diagnosed[error.code.value] = now
            logger.warning("logwell: %s", error)

    def _call(self, callback: Callable[[Any], None], argument: object) -> None:
        try:
            callback(argument)
        except Exception:
            now = time.monotonic()
            if now - self._diagnosed.get("callback", -DIAGNOSTIC_EVERY) >= DIAGNOSTIC_EVERY:
                self._diagnosed["callback"] = now
                logger.exception("logwell: a callback raised; the SDK carries on")


_LOCAL_DROP_MESSAGES: Final = {
    QUEUE_FULL: "the channel to the shipper was full; {count} entries were dropped",
    TOO_LARGE: "{count} entries stayed larger than max_entry_bytes after truncation and "
    "were dropped",
    NO_SHIPPER: "no shipper process could be started; {count} entries were dropped",
}


def _is_shipper(pid: int) -> bool:
    """Whether ``pid`` is still a logwell shipper (and not a process that reused its pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"logwell._shipper" in f.read()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except OSError:
            return True
        return not os.path.isdir("/proc/self")  # no procfs: trust that the pid is alive


def warn_if_plain_http(endpoint: str) -> None:
    """One warning when the API key would cross a network unencrypted."""
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        logger.warning(
            "logwell: endpoint %s uses plain http; the API key travels unencrypted. "
            "Use https for any server that is not on this machine.", endpoint)


def _park_notifiers() -> None:
    """Stop notifier threads before os.fork(), so that the fork sees no thread of ours.

    Only to keep Python's warning about forking a threaded process away: nothing
    depends on it, and forks that skip this hook stay correct.
    """
    for pipeline in list(_live):
        if pipeline._pid == os.getpid():
            thread = pipeline._notifier
            pipeline._stop_notifier()
            if thread is not None:
                _wait_until_thread_exited(thread)


def _wait_until_thread_exited(thread: threading.Thread, timeout: float = 0.2) -> None:
    """Wait until the OS thread behind a joined ``thread`` is really gone.

    Before Python 3.13, ``join()`` returns when the thread has finished its Python
    work, a moment before the OS thread exits; Python 3.12 counts OS threads
    (``/proc/self/stat``) when it decides to warn at os.fork(), so without this
    wait the warning still came from us now and then.
    """
    path = f"/proc/self/task/{thread.native_id}"
    deadline = time.monotonic() + timeout
    while thread.native_id is not None and os.path.exists(path):
        if time.monotonic() >= deadline:
            return
        time.sleep(0.0005)


def _shutdown_all() -> None:
    for pipeline in list(_live):
        try:
            pipeline.shutdown(pipeline.shutdown_timeout)
        except Exception:
            logger.exception("logwell: shutdown at exit failed")
    _reap()
    for process in _unreaped:
        process.returncode = 0  # still draining, on its own clock: not ours to wait for


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_park_notifiers)
atexit.register(_shutdown_all)
