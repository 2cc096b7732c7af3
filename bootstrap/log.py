"""Logging for a program that runs before the service: one line per event on stderr.

Secrets (ACL token, cookie, anything a service marks secret) are registered with ``redact``
and replaced by ``***`` in every record, whatever logger emitted it: a filter on the handler
is the last line of defence, after the code's own care never to log them.
"""

from __future__ import annotations

import logging
import sys

LOGGER_NAME = "cluster-bootstrap"
log = logging.getLogger(LOGGER_NAME)


class _Redactor(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg, record.args = self.scrub(record.getMessage()), None
        return True


_redactor = _Redactor()


def redact(secret: str | None) -> None:
    """Never let ``secret`` reach a log line from now on (short strings are ignored)."""
    if secret and len(secret) >= 4:
        _redactor.secrets.add(secret)


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``***`` (for lines not logged)."""
    return _redactor.scrub(text)


def mask(secret: str | None) -> str:
    """How a secret is shown to a person (``doctor``): whether it is set, never its value."""
    if not secret:
        return "(none)"
    return f"*** ({len(secret)} characters)"


def setup(debug: bool = False) -> None:
    """Send our records (and the libraries') to stderr through the redacting filter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cluster-bootstrap: %(message)s"))
    handler.addFilter(_redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    log.setLevel(logging.DEBUG if debug else logging.INFO)
