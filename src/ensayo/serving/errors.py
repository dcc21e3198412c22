"""Errors and limits of the web service: every refusal is a 4xx whose JSON says where the problem is and what it
is (`ErrorBody`), never a 500; a body over the size limit is refused before it is read."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.body_limit import RequestBodyLimitMiddleware

from ensayo.features.rows import InputError
from ensayo.serving.schemas import ErrorBody

ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 404, 413, 415, 422)}


def error(status: int, loc: list[str | int], message: str, kind: str = "value_error") -> HTTPException:
    return HTTPException(status, detail=[{"loc": loc, "msg": message, "type": kind}])


def input_error(problem: InputError, where: list[str | int]) -> HTTPException:
    """A 422 naming the row and field of a value the model cannot take."""
    loc: list[str | int] = [*where]
    if problem.row is not None and where[-1] == "rows":
        loc.append(problem.row)
    if problem.field:
        loc.append(problem.field)
    return error(422, loc, problem.message)


def unknown_model(name: str, served: dict[str, Any]) -> HTTPException:
    return error(404, ["path", "name"], f"no model {name!r} here (served: {', '.join(served)})", "not_found")


class DeclaredSizeLimit:
    """A body whose Content-Length passes the limit gets a 413 in JSON before any of it is read. Starlette's
    limit stays behind it for bodies sent without a length (chunked), which it cuts short."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            declared = dict(scope.get("headers") or []).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > self.max_bytes:
                message = (f"the request body is {int(declared):,} bytes; this server takes at most "
                           f"{self.max_bytes:,} (ensayo serve --max-upload-mb)")
                response = JSONResponse({"detail": [{"loc": ["body"], "msg": message, "type": "too_large"}]}, 413)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def add_limits_and_errors(app: FastAPI, max_bytes: int) -> None:
    """The body size limit (declared and streamed) and the shape of every validation error."""
    app.add_middleware(RequestBodyLimitMiddleware, max_body_size=max_bytes)  # a body sent without a length
    app.add_middleware(DeclaredSizeLimit, max_bytes=max_bytes)  # outermost

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, problem: RequestValidationError) -> JSONResponse:
        errors = problem.errors()
        if any(tuple(e.get("loc", ())) == ("body",) and e.get("type") == "model_attributes_type" for e in errors):
            # a body that was not read as JSON, because it was not sent as JSON
            sent = request.headers.get("content-type", "").split(";")[0] or "no content type"
            return JSONResponse({"detail": [{"loc": ["header", "content-type"], "type": "unsupported_media_type",
                                             "msg": f"this endpoint takes JSON: send the body with Content-Type: "
                                                    f"application/json (it came as {sent})"}]}, status_code=415)
        details = [{"loc": list(e.get("loc", [])), "msg": e.get("msg", ""), "type": e.get("type", "")}
                   for e in errors]
        return JSONResponse({"detail": details}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def unreadable_body(request: Request, problem: StarletteHTTPException) -> Any:
        cause = problem.__cause__
        if problem.status_code != 400 or cause is None:
            return await http_exception_handler(request, problem)
        message = f"the body is not UTF-8 text ({cause.reason} at byte {cause.start}); send JSON as UTF-8" \
            if isinstance(cause, UnicodeDecodeError) else f"the body could not be read: {cause}"
        return JSONResponse({"detail": [{"loc": ["body"], "msg": message, "type": "body_unreadable"}]},
                            status_code=400)
