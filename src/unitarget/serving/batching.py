"""Dynamic batching: requests that meet in one worker are scored by one ONNX Runtime call.

Each request is validated and its extra features checked on its own (a bad one is answered alone,
before batching), then hands its ``Part`` (user, context, candidates, time) to the worker's
``Batcher`` and awaits its own rows: probabilities and OOV flags. A batch is encoded in one
``RequestEncoder.encode_many`` call on the event loop (one set of look-ups and array operations
per feature for all its requests: the encoder's fixed cost per call, about 0.2 ms, is paid once
per batch, docs/benchmarks.md), then scored by one ONNX Runtime call on the worker's inference
thread, so batches run one after another and the event loop keeps reading and validating the
next requests meanwhile. Encoding stays on the event loop: on the inference thread it would
contend with the loop for the GIL, which a busy thread holds up to the switch interval (5 ms).

When a request arrives and the inference thread is idle:

- if every scoring request in flight in this worker is already waiting here (a lone request, or
  the last of a burst), the batch runs at once: nothing else could join, so waiting is pure delay;
- else it waits for the others, at most ``window_s`` after the first of the batch, and runs as
  soon as all of them are in or the rows reach ``max_rows``.

While a batch runs, arrivals queue; when it finishes, the queue runs at once as the next batch (up
to ``max_rows`` rows; a request larger than that runs alone). Under load batches grow by
themselves; a lone request never waits. A batch holds one model version: across a reload the
requests of each version run in their own calls. Rows do not interact in the graph (no
normalisation across the batch) nor in the encoder, so each request gets the rows it would have
got alone (tests/test_serving_batching.py, tests/test_request_encoding.py). ``window_s`` 0 turns
batching off: every request is encoded and scored on its own, still on the inference thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from unitarget.serving.encoding import Encoded, Part
from unitarget.serving.runtime import ExportedModel


#: One request's answer: its (N, T) probabilities and its OOV flags (field -> (N,) bool).
Rows = tuple[np.ndarray, dict[str, np.ndarray]]


@dataclass
class _Item:
    """One request waiting for its rows."""

    model: ExportedModel
    part: Part
    future: asyncio.Future[Rows]


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

    async def score(self, model: ExportedModel, part: Part) -> Rows:
        """Probabilities and OOV flags of one request (``part`` passed ``check_features``), encoded and scored in a
        batch shared with whatever else is waiting."""
        loop = asyncio.get_running_loop()
        if self.window_s <= 0:
            self._observe(1, len(part.candidates))
            encoded = model.request_encoder.encode_many([part])
            return await loop.run_in_executor(self._executor, model.run_graph, encoded.ids, encoded.dense), \
                encoded.flags
        item = _Item(model, part, loop.create_future())
        self._pending.append(item)
        if not self._running:
            rows = sum(len(i.part.candidates) for i in self._pending)
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
        """Encode the next batch here, on the event loop, and start its ONNX Runtime call on the inference thread,
        unless one is running (its end starts the next)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending = [item for item in self._pending if not item.future.done()]  # cancelled: client gone
        if self._running or not self._pending:
            return
        model, batch, rest, rows = self._pending[0].model, [], [], 0
        for item in self._pending:
            if item.model is model and (not batch or rows + len(item.part.candidates) <= self.max_rows):
                batch.append(item)
                rows += len(item.part.candidates)
            else:
                rest.append(item)
        self._pending, self._running = rest, len(batch)
        self._observe(len(batch), rows)
        try:
            encoded = model.request_encoder.encode_many([item.part for item in batch])
        except Exception as error:  # a bug, not bad input (that was refused before batching): fail this batch only
            self._finished(batch, error)
            return
        work = asyncio.get_running_loop().run_in_executor(self._executor, model.run_graph, encoded.ids, encoded.dense)
        work.add_done_callback(lambda done: self._finished(batch, _outcome(done), encoded))

    def _finished(self, batch: list[_Item], outcome: np.ndarray | BaseException, encoded: Encoded | None = None) -> None:
        """Hand each request its rows (or the batch's error), then start whatever queued meanwhile."""
        self._running = 0
        for i, item in enumerate(batch):
            if item.future.done():
                continue
            if isinstance(outcome, BaseException):
                item.future.set_exception(outcome)
            else:
                assert encoded is not None
                item.future.set_result((outcome[encoded.bounds[i]:encoded.bounds[i + 1]], encoded.flags_of(i)))
        if self._pending:
            self._dispatch()


def _outcome(done: asyncio.Future[np.ndarray]) -> np.ndarray | BaseException:
    """The (N, T) probabilities of a finished call, or why there are none."""
    if done.cancelled():
        return asyncio.CancelledError()
    return done.exception() or done.result()
