"""Logging: one JSON object per line on stdout, through structlog (stdlib loggers too).

Lines go into a buffer over stdout and are flushed every half second (see ``flush_logs``)
rather than one write call per request, which would cost a system call on the hot path
(and with PYTHONUNBUFFERED, as containers often set, stdout itself has no buffer).
"""

import asyncio
import io
import logging
import sys
from typing import BinaryIO

import orjson
import structlog

FLUSH_INTERVAL_SECONDS = 0.5

_SHARED: list[structlog.typing.Processor] = [
    structlog.processors.add_log_level,
    # Seconds since the epoch: a fraction of the cost of formatting ISO 8601 per line.
    structlog.processors.TimeStamper(fmt=None, key="ts"),
]


_access_stream: io.BufferedWriter | None = None


class BufferedLineLogger:
    """A structlog logger that writes lines into a buffered stream without flushing it."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream

    def msg(self, message: bytes) -> None:
        self._stream.write(message + b"\n")

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg


def configure_logging(level: str) -> None:
    numeric = logging.getLevelNamesMapping()[level]
    global _access_stream
    if _access_stream is None:
        _access_stream = io.BufferedWriter(
            io.FileIO(sys.stdout.fileno(), "wb", closefd=False), buffer_size=64 * 1024
        )
    logger = BufferedLineLogger(_access_stream)
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
    if _access_stream is not None:
        _access_stream.flush()
