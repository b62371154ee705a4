"""Logging: one JSON object per line on stdout, through structlog (stdlib loggers too).

Each line is written to file descriptor 1 as it is made, with no buffer in the process:
a process killed at any moment has lost no line it logged (a write call per request
costs a few microseconds).
"""

import logging
import os
import sys
import time
from typing import Any

import orjson
import structlog

_SHARED: list[structlog.typing.Processor] = [
    structlog.processors.add_log_level,
    # Seconds since the epoch: a fraction of the cost of formatting ISO 8601 per line.
    structlog.processors.TimeStamper(fmt=None, key="ts"),
]


class LineLogger:
    """A structlog logger that writes each line to stdout's file descriptor (whatever
    Python's sys.stdout object is at the time) in whole."""

    def msg(self, message: bytes) -> None:
        line = memoryview(message + b"\n")
        while line:
            line = line[os.write(1, line) :]

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg


_lines = LineLogger()
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
