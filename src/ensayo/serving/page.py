"""The page at `/`: a form per model, built in the browser from `/v1/models` (its defaults included), with
everything it needs served from the package (nothing fetched from elsewhere)."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles


def add_page(app: FastAPI) -> None:
    page = resources.files("ensayo.serving") / "page"

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse((page / "index.html").read_text(encoding="utf-8"))

    app.mount("/page", StaticFiles(directory=str(page)), name="page")
