"""Rejections the edge answers with: HTTP status, a stable machine code and a message naming the problem."""

from __future__ import annotations

from typing import Any


class Rejected(Exception):
    """Input we refuse. Never retriable as sent: the client must change the request."""

    retriable = False

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            err["details"] = self.details
        return {"error": err}


def bad_request(code: str, message: str, details: list[dict[str, Any]] | None = None) -> Rejected:
    return Rejected(400, code, message, details)


def too_large(message: str) -> Rejected:
    return Rejected(413, "payload_too_large", message)
