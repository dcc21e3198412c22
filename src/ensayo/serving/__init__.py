"""Serving saved runs over HTTP (`ensayo serve`, the optional extra `ensayo-ml[serve]`): the app (`app`), the runs it
holds (`models`), its protocols (`json_api`, `mlflow_protocol`, `page`), its limits and errors (`options`,
`errors`), dynamic batching (`batching`), the request and answer models (`schemas`) and the uvicorn runner
(`server`). Names are imported on first use, so that the CLI reads `ServeOptions` without FastAPI."""

from __future__ import annotations

from ensayo.lazy import exports

_EXPORTS = {"ServeOptions": "ensayo.serving.options", "create_app": "ensayo.serving.app",
            "parse_targets": "ensayo.serving.server", "serve": "ensayo.serving.server"}
__all__ = sorted(_EXPORTS)

__getattr__ = exports("ensayo.serving", _EXPORTS)
