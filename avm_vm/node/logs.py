"""The node's log: the `avm.node` logger, and the handler `avm node` writes it with.

One line per record on stderr: text (time, level, logger, message) or, with
``--log-format json``, one JSON object (time, level, logger, message and the record's extra
fields, such as a failed run's kind and duct). A server under abuse must not drown its disk
in repeated lines (a flood of refused connections, resets), so the handler counts repeats
within a window and writes each count once when the window ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import TextIO

from avm_vm.trace import CallFailure

logger = logging.getLogger("avm.node")
LOG_WINDOW = 10.0  # seconds over which repeated log lines are counted, not written
LOG_BUDGET = 100  # distinct lines written per window; past it, lines are only counted
_NUMBERS = re.compile(r"\d+")


class SummaryHandler(logging.StreamHandler):
    """The node's log: one line per record, except that a line already written in the
    current window (numbers such as ports and counts aside) is only counted, and so is any
    line past `LOG_BUDGET` in a window. When the window ends, each count is written once as
    a summary, so a flood of refusals or resets costs a few lines, not megabytes."""

    def __init__(self, stream: TextIO, window: float = LOG_WINDOW, budget: int = LOG_BUDGET):
        super().__init__(stream)
        self.window, self.budget = window, budget
        self.opened = time.monotonic()  # the current window's start
        # line with numbers masked → [the first record, repeats]
        self.seen: dict[str, list] = {}
        self.muted = 0  # lines past the budget

    def emit(self, record: logging.LogRecord) -> None:
        self._roll(time.monotonic())
        try:
            line = record.getMessage()
        except Exception:  # a bad format: logging's own report of it
            self.handleError(record)
            return
        key = _NUMBERS.sub("#", line)
        seen = self.seen.get(key)
        if seen is not None:
            seen[1] += 1
        elif len(self.seen) >= self.budget:
            self.muted += 1
        else:
            self.seen[key] = [record, 0]
            super().emit(record)

    def summarize(self, final: bool = False) -> None:
        """Write the counts of a window that is over (the node calls this now and then), or
        with ``final`` those of the current one (when the node stops)."""
        with self.lock:  # type: ignore[union-attr]
            self._roll(time.monotonic(), final)

    def _roll(self, now: float, final: bool = False) -> None:
        if now - self.opened < self.window and not final:
            return
        span = now - self.opened
        summaries = [
            _summary(first, f"{first.getMessage()} (and {repeats} more like it in {span:.0f} s)")
            for first, repeats in self.seen.values()
            if repeats
        ]
        if self.muted:
            muted = logging.makeLogRecord({"name": logger.name, "levelname": "WARNING"})
            summaries.append(
                _summary(muted, f"{self.muted} more log lines in {span:.0f} s not shown")
            )
        if summaries:
            with suppress(OSError, ValueError):  # stderr is gone: nothing to tell
                self.stream.write("".join(f"{self.format(item)}\n" for item in summaries))
                self.flush()
        self.opened, self.seen, self.muted = now, {}, 0


def _summary(first: logging.LogRecord, text: str) -> logging.LogRecord:
    """A summary line as a record of its own, stamped now, at the level of the line it counts."""
    return logging.makeLogRecord(
        {"name": first.name, "levelno": first.levelno, "levelname": first.levelname, "msg": text}
    )


class _OneLineFormatter(logging.Formatter):
    """``2026-01-02T03:04:05.678Z WARNING avm.node: message``, the message's line breaks
    escaped: text a peer sent (an ``error``) cannot forge log lines. A traceback, which only
    a bug logs, keeps its lines."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _utc(record.created)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return _one_line(super().formatMessage(record))


# What every record has; anything else on a record came as ``extra`` and is shown in JSON.
_STANDARD = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the extra fields, and a
    traceback when a bug logged one (JSON escapes line breaks, so a record is one line)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update((key, value) for key, value in vars(record).items() if key not in _STANDARD)
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def _utc(created: float) -> str:
    return datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


LOG_FORMATS = {"text": _OneLineFormatter, "json": JsonFormatter}


def configure_logging(level: str, form: str = "text") -> SummaryHandler:
    """Send the node's log (and asyncio's) to stderr, one line per record in ``form``
    ("text" or "json"), from ``level`` ("debug", "info", "warning", "error") up."""
    handler = SummaryHandler(sys.stderr)
    handler.setFormatter(LOG_FORMATS[form]())
    threshold = logging.getLevelName(level.upper())
    quiet = max(threshold, logging.WARNING)  # libraries: only what goes wrong
    for name, least in (("avm", threshold), ("asyncio", quiet), ("aiohttp", quiet)):
        target = logging.getLogger(name)
        target.handlers[:] = [handler]
        target.setLevel(least)
        target.propagate = False
    return handler


def log_loop_error(loop: asyncio.AbstractEventLoop, context: dict) -> None:
    """The event loop's error handler: an OS error (out of file handles on accept, a reset)
    is an expected condition and gets one line; anything else is a bug, with its traceback."""
    error = context.get("exception")
    if isinstance(error, OSError):
        logger.warning("%s: %s", context["message"], error)
    else:
        logger.error("%s", context["message"], exc_info=error)


def log_failed_run(run: int, kind: str, text: str, location: str | None, duct: Sequence) -> None:
    """A run that failed, once, with its reason and the duct it failed in (object, behavior
    and call id of each call, outermost first)."""
    path = " > ".join(f"obj:{obj} {behavior}#{call}" for obj, behavior, call in duct)
    where = f" at {location}" if location else ""
    logger.warning(
        "run %d failed: %s: %s%s%s",
        run,
        kind,
        text,
        where,
        f" (duct {path})" if path else "",
        extra={
            "run": run,
            "kind": kind,
            "reason": text,
            "location": location,
            "duct": [list(link) for link in duct],
        },
    )


def log_failed_call(run: int, failure: CallFailure) -> None:
    """A client's call that answered nothing because its target failed: why, once."""
    where = f" at {failure.location}" if failure.location else ""
    logger.warning(
        "run %d: the called object failed: %s: %s%s",
        run,
        failure.kind,
        failure.message,
        where,
        extra={
            "run": run,
            "kind": failure.kind,
            "reason": failure.message,
            "location": failure.location,
        },
    )
