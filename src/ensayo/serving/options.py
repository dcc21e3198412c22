"""The limits and batching of a server, declared once: `ensayo serve`'s options, the Python API's and the app's
defaults all come from here."""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass
class ServeOptions:
    """Limits and batching of a server (`ensayo serve --help` names each)."""

    max_rows: int = 1024  # rows in one request
    max_upload_mb: float = 16.0  # bytes in one request body
    # rows in one model call, gathered from concurrent requests: 32 clients sending 64 titles were served
    # 11,100 / 12,200 / 14,000 rows/s at 256 / 1,024 / 2,048 (int8 demo CNN, benchmarks/serving.py)
    batch_rows: int = 2048
    batch_wait_ms: float = 2.0  # how long a call waits for more requests once the model is free (when the last
    # call answered several: a lone client does not wait)
    device: str = "cpu"  # where the models answer: cpu, cuda or auto
    engine: str = "torch"  # what runs the networks: torch, or onnx (the export of `ensayo export --format onnx`)

    def __post_init__(self) -> None:
        low = {"max_rows": 1, "max_upload_mb": 0.001, "batch_rows": 1, "batch_wait_ms": 0}
        bad = [f"{name} is {getattr(self, name)!r}: at least {least}" for name, least in low.items()
               if getattr(self, name) < least]
        if bad:
            raise ValueError("; ".join(bad))

    @property
    def max_bytes(self) -> int:
        return int(self.max_upload_mb * 2**20)


LIMITS = tuple(field.name for field in fields(ServeOptions))
