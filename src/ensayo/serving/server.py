"""`ensayo serve`: runs named on the command line, served by uvicorn with one or more worker processes."""

from __future__ import annotations

import gc
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from ensayo.models import run_recipe
from ensayo.recipe.schema import NAME
from ensayo.runs.saved import load_run
from ensayo.serving.app import create_app
from ensayo.serving.options import ServeOptions

CONFIG_VARIABLE = "ENSAYO_SERVE_CONFIG"  # how worker processes learn what to serve


def parse_targets(targets: list[str]) -> dict[str, Path]:
    """`[NAME=]RUN` arguments as name -> run directory; a run's name is its recipe's unless given."""
    if not targets:
        raise ValueError("name at least one run to serve: ensayo serve [NAME=]RUN ...")
    named: dict[str, Path] = {}
    for target in targets:
        name, _, path = target.partition("=") if "=" in target and not Path(target).exists() else ("", "", target)
        run_dir = Path(path)
        if not run_dir.is_dir():
            raise FileNotFoundError(f"{run_dir}: no such run directory")
        name = name or run_recipe(run_dir).name
        if not NAME.match(name):
            raise ValueError(f"{target}: a model name is letters, digits, '.', '_' or '-' (got {name!r}); "
                             "give one with NAME=RUN")
        if name in named:
            raise ValueError(f"two runs are named {name!r}: name one of them with NAME=RUN")
        named[name] = run_dir
    return named


def app_from_environment() -> FastAPI:
    """The app of one worker process, from the configuration the parent left in the environment."""
    # the event loop and the model's thread share the GIL: hand it over every millisecond rather than every 5,
    # so that a request does not wait behind the Python part of another's model call
    sys.setswitchinterval(0.001)
    config = json.loads(os.environ[CONFIG_VARIABLE])
    options = config["options"]
    runs = {name: load_run(path, engine=options["engine"], device=options["device"])
            for name, path in config["runs"].items()}
    app = create_app(runs, ServeOptions(**options))  # loaded and warmed up
    # what is loaded now lives as long as the server: out of the collector's full passes, which walked the runs'
    # vocabularies every few seconds under load (up to 65 ms each: the int8 demo's p99 at 8 clients x 64 titles)
    gc.collect()
    gc.freeze()
    return app


def serve(targets: dict[str, Path], host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          options: ServeOptions | None = None, access_log: bool = False) -> None:
    """Serve the runs until interrupted. Each worker loads every run once and warms it up."""
    options = options or ServeOptions()
    if options.device != "cpu":  # a device the machine lacks is refused here, before any worker starts
        from ensayo.training import pick_device

        pick_device(options.device)
    if options.engine != "torch" and workers > 1:  # and a run the engine cannot answer with (no export, a
        for path in targets.values():  # generator), before workers fail one by one; one worker loads it here
            load_run(path, engine=options.engine, device=options.device)
    os.environ[CONFIG_VARIABLE] = json.dumps({"runs": {k: str(v.resolve()) for k, v in targets.items()},
                                              "options": asdict(options)})
    if workers > 1:
        uvicorn.run("ensayo.serving.server:app_from_environment", factory=True, host=host, port=port,
                    workers=workers, access_log=access_log, log_level="info")
    else:
        uvicorn.run(app_from_environment(), host=host, port=port, access_log=access_log, log_level="info")
