"""The node's log: the `avm.node` logger, and the handler `avm node` writes it with.

One plain line per record on stderr. A server under abuse must not drown its disk in
repeated lines (a flood of refused connections, resets), so the handler counts repeats
within a window and writes each count once when the window ends.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sys
import time
from contextlib import suppress
from typing import TextIO

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
        self.seen: dict[str, list] = {}  # line with numbers masked → [line, repeats]
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
            self.seen[key] = [line, 0]
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
        lines = [
            f"{line} (and {repeats} more like it in {span:.0f} s)"
            for line, repeats in self.seen.values()
            if repeats
        ]
        if self.muted:
            lines.append(f"{self.muted} more log lines in {span:.0f} s not shown")
        if lines:
            with suppress(OSError, ValueError):  # stderr is gone: nothing to tell
                self.stream.write("".join(f"{_one_line(line)}\n" for line in lines))
                self.flush()
        self.opened, self.seen, self.muted = now, {}, 0


class _OneLineFormatter(logging.Formatter):
    """The message alone, its line breaks escaped: text a peer sent (an ``error``) cannot
    forge log lines. A traceback, which only a bug logs, keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return _one_line(super().formatMessage(record))


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def configure_logging(level: str) -> SummaryHandler:
    """Send the node's log (and asyncio's) to stderr, one plain line per record, from
    ``level`` ("debug", "info", "warning", "error") up."""
    handler = SummaryHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter("%(message)s"))
    threshold = logging.getLevelName(level.upper())
    for name, least in (("avm", threshold), ("asyncio", max(threshold, logging.WARNING))):
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
