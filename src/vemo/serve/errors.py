"""Errors a request can end in, each with its HTTP status, a stable code for programs and a sentence for people."""

from __future__ import annotations


class ServeError(Exception):
    """A request that cannot be served; rendered as `{"error": code, "detail": message}` with `status`."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def body(self) -> dict[str, str]:
        return {"error": self.code, "detail": self.message}


def too_large(limit_bytes: int) -> ServeError:
    limit = f"{limit_bytes / 1e6:g} MB"
    return ServeError(
        413, "too_large", f"the file is larger than this server accepts ({limit}; vemo serve --max-upload-mb)"
    )


def too_long(seconds: float, limit_s: float) -> ServeError:
    accepted = f"this server accepts up to {limit_s:g} s (vemo serve --max-seconds)"
    return ServeError(422, "too_long", f"the video is {seconds:.0f} s long; {accepted}")
