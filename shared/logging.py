"""Structured logs: one JSON object a line on stderr, with any `extra=` fields kept."""

import logging
import logging.config
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

_STANDARD_ATTRIBUTES = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "at": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRIBUTES}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def logging_config(level: str) -> dict[str, Any]:
    """Every process's logging as a dictConfig: JSON lines on stderr. Faust's worker takes it too, so its
    own lines are JSON like everyone else's."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": sys.stderr}},
        "root": {"level": level, "handlers": ["stderr"]},
    }


def configure_logging(level: str) -> None:
    logging.config.dictConfig(logging_config(level))
