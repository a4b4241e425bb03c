"""Dynamic batching: requests that meet in one worker are scored by one ONNX Runtime call.

Each request is validated and encoded on its own (a bad one is answered alone, before batching),
then hands its ``(ids, dense)`` rows to the worker's ``Batcher`` and awaits its own slice of the
probabilities. Inference runs on one thread per process, so batches run one after another and
the event loop keeps reading, parsing and encoding the next requests meanwhile.

When a request arrives and the inference thread is idle:

- if every scoring request in flight in this worker is already waiting here (a lone request, or
  the last of a burst), the batch runs at once: nothing else could join, so waiting is pure delay;
- else it waits for the others, at most ``window_s`` after the first of the batch, and runs as
  soon as all of them are in or the rows reach ``max_rows``.

While a batch runs, arrivals queue; when it finishes, the queue runs at once as the next batch (up
to ``max_rows`` rows; a request larger than that runs alone). Under load batches grow by
themselves; a lone request never waits. A batch holds one model version: across a reload the
requests of each version run in their own calls. Rows do not interact in the graph (no
normalisation across the batch), so each request gets the rows it would have got alone
(tests/test_batching.py). ``window_s`` 0 turns batching off: every request is its own call, still
on the inference thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from unitarget.serving.runtime import ExportedModel


@dataclass
class _Item:
    """One request waiting for its probabilities."""

    model: ExportedModel
    ids: np.ndarray
    dense: np.ndarray
    future: asyncio.Future[np.ndarray]


class Batcher:
    """One worker's batcher (see the module docstring). ``in_flight`` counts the scoring requests this worker is
    serving now (the guard's counter), ``observe(requests, rows)`` records each batch for ``/metrics``."""

    def __init__(self, *, window_s: float, max_rows: int, in_flight: Callable[[], int],
                 observe: Callable[[int, int], None]) -> None:
        self.window_s = window_s
        self.max_rows = max_rows
        self._in_flight = in_flight
        self._observe = observe
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="unitarget-onnx")
        self._pending: list[_Item] = []
        self._running = 0  # requests in the batch on the inference thread; 0: idle
        self._timer: asyncio.TimerHandle | None = None

    async def score(self, model: ExportedModel, ids: np.ndarray, dense: np.ndarray) -> np.ndarray:
        """(N, T) probabilities of one encoded request, from a batch shared with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        if self.window_s <= 0:
            self._observe(1, len(ids))
            return await loop.run_in_executor(self._executor, model.run_graph, ids, dense)
        item = _Item(model, ids, dense, loop.create_future())
        self._pending.append(item)
        if not self._running:
            rows = sum(len(i.ids) for i in self._pending)
            if rows >= self.max_rows or self._in_flight() <= len(self._pending):
                self._dispatch()
            elif self._timer is None:
                self._timer = loop.call_later(self.window_s, self._dispatch)
        return await item.future

    def close(self) -> None:
        """Stop the inference thread once the batch on it has finished (at shutdown)."""
        if self._timer is not None:
            self._timer.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _dispatch(self) -> None:
        """Start the next batch on the inference thread, unless one is running (its end starts the next)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending = [item for item in self._pending if not item.future.done()]  # cancelled: client gone
        if self._running or not self._pending:
            return
        model, batch, rest, rows = self._pending[0].model, [], [], 0
        for item in self._pending:
            if item.model is model and (not batch or rows + len(item.ids) <= self.max_rows):
                batch.append(item)
                rows += len(item.ids)
            else:
                rest.append(item)
        self._pending, self._running = rest, len(batch)
        self._observe(len(batch), rows)
        work = asyncio.get_running_loop().run_in_executor(self._executor, _run, model, batch)
        work.add_done_callback(lambda done: self._finished(batch, done))

    def _finished(self, batch: list[_Item], done: asyncio.Future[list[np.ndarray]]) -> None:
        """Hand each request its rows (or the batch's error), then start whatever queued meanwhile."""
        self._running = 0
        error = done.exception() if not done.cancelled() else asyncio.CancelledError()
        for i, item in enumerate(batch):
            if item.future.done():
                continue
            if error is not None:
                item.future.set_exception(error)
            else:
                item.future.set_result(done.result()[i])
        if self._pending:
            self._dispatch()


def _run(model: ExportedModel, batch: list[_Item]) -> list[np.ndarray]:
    """One ONNX Runtime call over the batch's rows, split back per request (on the inference thread)."""
    if len(batch) == 1:
        return [model.run_graph(batch[0].ids, batch[0].dense)]
    probabilities = model.run_graph(np.concatenate([item.ids for item in batch]),
                                    np.concatenate([item.dense for item in batch]))
    bounds = np.cumsum([len(item.ids) for item in batch])[:-1]
    return np.split(probabilities, bounds)
