"""Serving saved runs over HTTP (`ensayo serve`, the optional extra `ensayo[serve]`): a FastAPI app per set
of runs (`app`), dynamic batching (`batching`), the request and answer models (`schemas`), the page at /
(`page/`) and the uvicorn runner (`server`)."""

from ensayo.serving.app import ServeOptions, create_app
from ensayo.serving.server import parse_targets, serve

__all__ = ["ServeOptions", "create_app", "parse_targets", "serve"]
