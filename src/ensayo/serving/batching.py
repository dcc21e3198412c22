"""Dynamic batching: concurrent requests to one model become one call. While the model works, requests
queue; the next call takes every waiting one (and, when the last call answered more than one request, waits
`max_wait` seconds at most for more, up to `max_rows` rows), so that many single rows cost one pass of the
network instead of one each, and a lone client is not kept waiting for company that does not come."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

from ensayo.runs import answer

Predict = Callable[[pl.DataFrame], np.ndarray]
Pending = tuple[pl.DataFrame, asyncio.Future]


class Batcher:
    """`await batcher.predict(table)`: the table's probabilities, computed with whatever else arrived at the
    same time. Calls run one at a time on the batcher's own thread, off the event loop."""

    def __init__(self, predict: Predict, max_rows: int = 2048, max_wait: float = 0.002, name: str = "model") -> None:
        self._predict = predict
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.calls = 0  # model calls made, and the rows and requests they answered
        self.rows = 0
        self.requests = 0
        self._gathered = 0  # requests the last call answered: more than one, and the next call waits for company
        self._queue: asyncio.Queue[Pending] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task[None] | None = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix=f"ensayo-{name}")
        self._lock = threading.Lock()

    async def predict(self, table: pl.DataFrame) -> np.ndarray:
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:  # a queue belongs to one event loop
            self._queue, self._loop = asyncio.Queue(), loop
            self._worker = loop.create_task(self._work(self._queue))
        future: asyncio.Future = loop.create_future()
        await self._queue.put((table, future))
        return await future

    def predict_now(self, table: pl.DataFrame) -> np.ndarray:
        """One call on the caller's thread (the warm-up), counted like any other."""
        return self._call(table, 1)

    def _call(self, table: pl.DataFrame, requests: int) -> np.ndarray:
        with self._lock, answer.inference_mode():
            probabilities = self._predict(table)
            self.calls += 1
            self.rows += table.height
            self.requests += requests
        return probabilities

    async def _work(self, queue: asyncio.Queue[Pending]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            rows = batch[0][0].height
            deadline = loop.time() + (self.max_wait if self._gathered > 1 else 0.0)
            while rows < self.max_rows:
                try:
                    waiting = queue.get_nowait()
                except asyncio.QueueEmpty:
                    left = deadline - loop.time()
                    if left <= 0:
                        break
                    try:
                        waiting = await asyncio.wait_for(queue.get(), left)
                    except TimeoutError:
                        break
                batch.append(waiting)
                rows += waiting[0].height
            await self._answer(batch)

    async def _answer(self, batch: list[Pending]) -> None:
        loop = asyncio.get_running_loop()
        live = [(table, future) for table, future in batch if not future.done()]  # a client may have gone
        if not live:
            return
        self._gathered = len(live)
        try:
            merged = pl.concat([table for table, _ in live], how="vertical_relaxed") if len(live) > 1 else live[0][0]
            probabilities = await loop.run_in_executor(self._thread, self._call, merged, len(live))
        except Exception as error:
            if len(live) == 1:
                if not live[0][1].done():
                    live[0][1].set_exception(error)
                return
            for one in live:  # one request's rows broke the call: answer each alone, so only it fails
                await self._answer([one])
            return
        start = 0
        for table, future in live:
            if not future.done():
                future.set_result(probabilities[start: start + table.height])
            start += table.height

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._thread.shutdown(wait=False, cancel_futures=True)

    def stats(self) -> dict[str, int]:
        return {"model_calls": self.calls, "rows": self.rows, "requests": self.requests}

