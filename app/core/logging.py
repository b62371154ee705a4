"""Logging: one JSON object per line on stdout, through structlog (stdlib loggers too).

Lines go into a buffer over stdout and are flushed every half second (see ``flush_logs``)
rather than one write call per request, which would cost a system call on the hot path
(and with PYTHONUNBUFFERED, as containers often set, stdout itself has no buffer).
"""

import asyncio
import io
import logging
import sys
import time
from typing import Any, BinaryIO

import orjson
import structlog

FLUSH_INTERVAL_SECONDS = 0.5

_SHARED: list[structlog.typing.Processor] = [
    structlog.processors.add_log_level,
    # Seconds since the epoch: a fraction of the cost of formatting ISO 8601 per line.
    structlog.processors.TimeStamper(fmt=None, key="ts"),
]


class BufferedLineLogger:
    """A structlog logger that writes lines into a buffered stream without flushing it."""

    def __init__(self) -> None:
        self.stream: BinaryIO | None = None

    def msg(self, message: bytes) -> None:
        if self.stream is not None:
            self.stream.write(message + b"\n")

    def flush(self) -> None:
        if self.stream is not None:
            self.stream.flush()

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg


# One instance: loggers cache it on first use, and configure_logging() repoints its stream.
_lines = BufferedLineLogger()
_access_enabled = True


def log_request(fields: dict[str, Any]) -> None:
    """The access log's line for one request, in the same shape as structlog's lines but
    rendered directly: its processor chain would cost every request several microseconds."""
    if _access_enabled:
        _lines.msg(orjson.dumps({**fields, "event": "request", "level": "info", "ts": time.time()}))


def configure_logging(level: str) -> None:
    global _access_enabled
    numeric = logging.getLevelNamesMapping()[level]
    _access_enabled = numeric <= logging.INFO
    if _lines.stream is None:
        # File descriptor 1 itself, whatever Python's sys.stdout object is at the time.
        _lines.stream = io.BufferedWriter(io.FileIO(1, "wb", closefd=False), 64 * 1024)
    logger = _lines
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=orjson.dumps),
        ],
        logger_factory=lambda *_args: logger,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    # Libraries (uvicorn, alembic, sqlalchemy) log through the stdlib: render them alike.
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.JSONRenderer(),
            ],
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *_SHARED],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)


async def flush_logs() -> None:
    """Run for the life of the server: push buffered log lines out twice a second."""
    try:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_SECONDS)
            _flush()
    finally:
        _flush()


def _flush() -> None:
    _lines.flush()
