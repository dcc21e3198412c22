"""The web service over saved runs (Ludwig's `serve.py`, per model): a FastAPI app that loads and warms up
each run once (`models`), then speaks three protocols over them: the JSON API (`json_api`), MLflow's scoring
protocol (`mlflow_protocol`) and the page (`page`), within one set of limits and errors (`errors`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from ensayo import __version__
from ensayo.runs.saved import SavedRun
from ensayo.serving.errors import add_limits_and_errors
from ensayo.serving.json_api import add_json_api, add_unknown_actions
from ensayo.serving.mlflow_protocol import add_mlflow_protocol
from ensayo.serving.models import ServedModel
from ensayo.serving.options import ServeOptions
from ensayo.serving.page import add_page
from ensayo.serving.schemas import ErrorBody


def create_app(models: dict[str, SavedRun], options: ServeOptions | None = None) -> FastAPI:
    """The app serving `models` (name -> run), each warmed up; the first is the one `/invocations` uses."""
    options = options or ServeOptions()
    if not models:
        raise ValueError("nothing to serve: give at least one run")
    served = {name: ServedModel.of(name, run, options) for name, run in models.items()}
    for model in served.values():
        model.warm_up()

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for model in served.values():
            model.close()

    # /docs and /redoc with Swagger UI and ReDoc served from the package, not from a CDN: they work offline
    app = FastAPIOffline(title="ensayo", version=__version__, lifespan=lifespan,
                         description="Models trained by ensayo: " + ", ".join(served),
                         responses={413: {"model": ErrorBody}})
    app.state.served = served
    add_limits_and_errors(app, options.max_bytes)
    add_page(app)
    add_json_api(app, served)
    add_mlflow_protocol(app, served)
    add_unknown_actions(app, served)
    return app
