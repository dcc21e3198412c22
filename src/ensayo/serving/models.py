"""The runs a server holds, of two kinds: a classifier answers rows (gathered into batches with other requests'
rows), a generator writes text. Each is loaded once and warmed up; the protocols (`json_api`, `mlflow_protocol`,
the page) only parse requests and shape answers, and answer through these, which answer through
`ensayo.runs.answer`."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar

from fastapi.sse import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from ensayo import layout
from ensayo.features.rows import example_rows, prompts_of, rows_to_table
from ensayo.recipe.schema import NAME
from ensayo.runs import answer
from ensayo.runs.saved import SavedRun
from ensayo.serving.batching import Batcher
from ensayo.serving.options import ServeOptions
from ensayo.serving.schemas import predict_request_model, row_model

NO_FILES = Path("/nonexistent")  # a model without file inputs writes nothing


class ServedModel:
    """One run as the server holds it."""

    kind: ClassVar[str]
    settings: ClassVar[type[answer.Settings]]  # what a request may set besides its rows

    def __init__(self, name: str, run: SavedRun, options: ServeOptions) -> None:
        self.name, self.run, self.options = name, run, options
        self._identity = {**run.identity(), "name": name}  # read from the run's files once, not per answer

    @staticmethod
    def of(name: str, run: SavedRun, options: ServeOptions) -> ServedModel:
        return (ServedClassifier if run.can_predict else ServedGenerator)(name, run, options)

    def identity(self) -> dict[str, str]:
        return dict(self._identity)

    def endpoints(self) -> dict[str, str]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        described = {**self.run.describe(), **self.identity(), "endpoints": self.endpoints(), "content_type": None,
                     "stats": {}}
        files = {field.name for field in self.run.fields if field.values.kind == "file"}
        described["examples"] = [{key: f"/v1/models/{self.name}/examples/{value}" if key in files else value
                                  for key, value in example.items()} for example in described["examples"]]
        return described

    def example_file(self, name: str) -> Path | None:
        """An example's file by its name (never a path: the name is checked), or None."""
        if not NAME.match(name):
            return None
        path = self.run.path / layout.EXAMPLE_FILES / name
        return path if path.is_file() else None

    def warm_up(self) -> None:
        """One answer at start-up, so that the first client does not wait for it."""

    def close(self) -> None:
        """Stop what the model runs beside the event loop."""

    async def invoke(self, rows: Sequence[Any], settings: Any) -> list[Any]:
        """The answers to rows with checked settings: what MLflow's protocol asks of any model."""
        raise NotImplementedError


class ServedClassifier(ServedModel):
    """A classifier: rows from concurrent requests become one model call (`Batcher`)."""

    kind = "classifier"
    settings = answer.Ranking

    def __init__(self, name: str, run: SavedRun, options: ServeOptions) -> None:
        super().__init__(name, run, options)
        self.batcher = Batcher(run.predict_proba, options.batch_rows, options.batch_wait_ms / 1000, name)
        self.row = row_model(run, name)
        self.request = predict_request_model(name, self.row, options.max_rows)
        self.has_files = any(field.values.kind == "file" for field in run.fields)
        # uploads are decoded and checked on one thread per model: one request is prepared while the model
        # answers others, and the preparing never crowds the model's own thread off the CPU
        self.preparing = ThreadPoolExecutor(1, thread_name_prefix=f"ensayo-{name}-files") if self.has_files else None

    def endpoints(self) -> dict[str, str]:
        base = f"/v1/models/{self.name}"
        return {"predict": f"{base}/predict", "invocations": f"{base}/invocations"}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "content_type": "multipart/form-data" if self.has_files else "application/json",
                "stats": self.batcher.stats()}

    def warm_up(self) -> None:
        with tempfile.TemporaryDirectory(prefix="ensayo-warmup-") as folder:
            self.batcher.predict_now(rows_to_table(self.run.fields, example_rows(self.run.fields), Path(folder)))

    def close(self) -> None:
        self.batcher.close()
        if self.preparing is not None:
            self.preparing.shutdown(wait=False, cancel_futures=True)

    async def answer(self, rows: Sequence[Any], ranking: answer.Ranking) -> list[dict[str, Any]]:
        """Each row's likeliest labels with their probabilities, best first."""
        if not self.has_files:  # checking a few values is quicker than a hop to a thread
            probabilities = await self.batcher.predict(rows_to_table(self.run.fields, rows, NO_FILES))
        else:
            with tempfile.TemporaryDirectory(prefix="ensayo-request-") as folder:  # the uploads, while predicted
                loop = asyncio.get_running_loop()
                table = await loop.run_in_executor(self.preparing, rows_to_table, self.run.fields, rows, Path(folder))
                notes = await loop.run_in_executor(self.preparing, self.run.notes, table) \
                    if self.run.takes_notes else None
                probabilities = await self.batcher.predict(table)
            return answer.records(*answer.rank(probabilities, self.run.output.classes, ranking.top_k,
                                               ranking.all_classes), notes)
        return answer.records(*answer.rank(probabilities, self.run.output.classes, ranking.top_k,
                                           ranking.all_classes))

    async def invoke(self, rows: Sequence[Any], settings: Any) -> list[Any]:
        return await self.answer(rows, settings)


class ServedGenerator(ServedModel):
    """A generator: each request's text is sampled on a thread of the pool, a token at a time."""

    kind = "generator"
    settings = answer.Sampling

    def endpoints(self) -> dict[str, str]:
        base = f"/v1/models/{self.name}"
        return {"generate": f"{base}/generate", "invocations": f"{base}/invocations"}

    def warm_up(self) -> None:
        with answer.inference_mode():
            next(iter(self.run.sample("", answer.Sampling(length=1))), None)

    def stream(self, prompt: str, sampling: answer.Sampling) -> Iterator[ServerSentEvent]:
        """Server-Sent Events: one `token` event per token, then `done` with the whole text."""
        tokens = self.run.sample(prompt, sampling)
        text = []
        while True:
            with answer.inference_mode():  # each step may run on another thread of the pool: set it per step
                token = next(tokens, None)
            if token is None:
                break
            text.append(token)
            yield ServerSentEvent(data=token, event="token")
        yield ServerSentEvent(data={"text": "".join(text), "model": self.identity()}, event="done")

    def texts(self, prompts: list[str], sampling: answer.Sampling) -> list[str]:
        with answer.inference_mode():
            return ["".join(self.run.sample(prompt, sampling)) for prompt in prompts]

    async def invoke(self, rows: Sequence[Any], settings: Any) -> list[Any]:
        return await run_in_threadpool(self.texts, prompts_of(rows), settings)
