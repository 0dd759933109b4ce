"""One error shape for every 4xx: ``{"detail": [{"field", "message", "code", "index"?}]}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from billbridge.mapping.paths import dotted_path


class Problem(BaseModel):
    """What is wrong and where: ``field`` is a dotted path in the body (or a parameter name)."""

    field: str | None = None
    message: str
    code: str
    index: int | None = None


class ErrorBody(BaseModel):
    detail: list[Problem]


class ApiError(Exception):
    """A refusal with an HTTP status and field-level problems."""

    def __init__(self, status: int, problems: list[Problem], headers: dict[str, str] | None = None) -> None:
        super().__init__(problems[0].message if problems else str(status))
        self.status = status
        self.problems = problems
        self.headers = headers


def refuse(status: int, code: str, message: str, field: str | None = None) -> ApiError:
    return ApiError(status, [Problem(field=field, message=message, code=code)])


def location(loc: tuple[Any, ...] | list[Any]) -> str:
    """pydantic's error location as a dotted path, list positions in brackets: ``events[3].quantity``."""
    return dotted_path(loc)


def problems_of(exc: ValidationError, index: int | None = None) -> list[Problem]:
    return [
        Problem(field=location(e["loc"]) or None, message=e["msg"], code=e["type"], index=index)
        for e in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def _response(status: int, problems: list[Problem], headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(
        {"detail": [p.model_dump(exclude_none=True) for p in problems]}, status_code=status, headers=headers
    )


def error_response(exc: ApiError) -> JSONResponse:
    """The answer to a refusal, as the application's handler gives it."""
    return _response(exc.status, exc.problems, exc.headers)


def install(app: FastAPI) -> None:
    """Map our refusals, FastAPI's parameter validation and plain HTTP errors to the one shape."""

    async def api_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return error_response(exc)

    async def request_validation(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [
            Problem(field=location(list(e["loc"])[1:]) or location(e["loc"]), message=e["msg"], code=e["type"])
            for e in exc.errors()
        ]
        return _response(422, problems)

    async def http_error(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return _response(exc.status_code, [Problem(message=str(exc.detail), code="http_error")], exc.headers)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
