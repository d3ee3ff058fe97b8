"""The API's errors: each carries its HTTP status and the JSON body MedPerf's server would send."""

from __future__ import annotations

NON_FIELD = "non_field_errors"


class ApiError(Exception):
    """An error answered as JSON with `status` and `body`."""

    status = 500
    headers: dict[str, str] = {}

    def __init__(self, body: dict | None = None):
        self.body = body if body is not None else {"detail": self.default_detail}
        super().__init__(self.body)

    default_detail = "A server error occurred."


class Invalid(ApiError):
    """400 with `{field: [messages]}` (`non_field_errors` for rules across fields)."""

    status = 400

    def __init__(self, errors: dict | str):
        if isinstance(errors, str):
            errors = {NON_FIELD: [errors]}
        super().__init__(errors)


class NotAuthenticated(ApiError):
    status = 401
    headers = {"WWW-Authenticate": 'Bearer realm="api"'}
    default_detail = "Authentication credentials were not provided."


class Forbidden(ApiError):
    status = 403
    default_detail = "You do not have permission to perform this action."


class NotFound(ApiError):
    status = 404
    default_detail = "Not found."


class TooLarge(ApiError):
    """413 for a request body over Settings.max_body_bytes (MedPerf's Django refuses those too)."""

    status = 413

    def __init__(self, limit: int):
        super().__init__({"detail": f"Request body is larger than the server accepts ({limit} bytes)."})


class ParseError(ApiError):
    """400 for a body that is not JSON."""

    status = 400

    def __init__(self, detail: str):
        super().__init__({"detail": detail})
