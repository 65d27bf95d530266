"""The serving engine: the one thread that runs the model, fed by a queue of requests.

Why one thread: a PyTorch module is not made to be called from several threads at once (a KV
cache, eval/train mode and the CUDA stream are shared state), and the web server answers requests
on an event loop and a thread pool. So the web side never touches the model: it puts jobs on this
engine's queue and reads results back through an asyncio queue, and a single worker thread does
every forward pass.

Scheduling: the worker keeps up to ``max_concurrent`` generations active; requests beyond that
wait in the queue (at most ``max_queue``, then the server answers 503). Other model calls
(classification, the attention page) run on the same thread between steps. Before every step the
worker checks each request for cancellation (the client went away) and its deadline.

- Batched (the default; `gptlab.serve.batcher`): every active generation advances in ONE forward
  per step over a shared per-row KV cache; a new request joins after its own prefill (long prompts
  in chunks between decode steps), a finished or cancelled one leaves and frees its rows.
- Interleaved (``batching=False``, and always for recurrent models): one decode step per request
  in turn, each request driving `gptlab.generate.decode_steps` with its own KV cache. Kept to
  compare against (``gptlab serve --no-batching``, bench/serve.py --sweep).

On both paths each request samples its own logits with its own ``torch.Generator`` seeded from
the request, in `decode_steps`' order, so what a request generates does not depend on what else is
running (a seeded request gives the same text alone or under load), and for a seed, the first
choice of a request with n=1 is the text ``gptlab.generate.generate_text`` gives for that seed.
With n > 1 the choices are one batch drawing from one generator (as `generate` does for a batch),
so they differ from each other and are reproducible together. Tokens become text, logprob
entries and client events in `gptlab.serve.choices`, the same code for both paths.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gptlab.errors import GptlabError
from gptlab.generate import RecordingSampler, Sampler, decode_steps
from gptlab.model.modes import model_device
from gptlab.serve.batcher import DEFAULT_PREFILL_CHUNK, Batcher, can_batch
from gptlab.serve.choices import Choices, ChoiceText

__all__ = ["ChoiceText", "Engine", "EngineError", "GenerationJob", "Handle"]

log = logging.getLogger("gptlab.serve")


class EngineError(Exception):
    """A request the engine could not serve: ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str, code: str | None = None, type: str = "server_error"):
        super().__init__(message)
        self.status, self.message, self.code, self.type = status, message, code, type


def overloaded(max_queue: int) -> EngineError:
    return EngineError(503, f"the server is busy ({max_queue} requests waiting); retry later", "overloaded")


def timed_out(timeout_s: float) -> EngineError:
    return EngineError(504, f"generation did not finish within {timeout_s:g} s", "timeout")


@dataclass
class GenerationJob:
    """One request: ``n`` completions of ``prompt_ids``. ``top_logprobs``: None = no logprobs,
    k >= 0 = the sampled token's logprob plus its k most likely alternatives."""

    prompt_ids: list[int]
    max_tokens: int
    sampler: Sampler
    n: int = 1
    stops: Sequence[str] = ()
    seed: int | None = None
    top_logprobs: int | None = None
    timeout_s: float = 60.0
    cancelled: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.timeout_s
        if self.seed is None:  # still one generator per request: the global RNG is shared state
            self.seed = secrets.randbits(63)


class Handle:
    """The web side's end of a job: events arrive on an asyncio queue of the loop that submitted
    it (the worker thread hands them over with ``call_soon_threadsafe``)."""

    def __init__(self, job: GenerationJob, loop: asyncio.AbstractEventLoop) -> None:
        self.job = job
        self._loop = loop
        self._queue: asyncio.Queue[dict] = asyncio.Queue()

    def emit(self, event: dict) -> None:  # called from the worker thread
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:  # the event loop is gone (server shutting down): nobody is listening
            self.job.cancelled.set()

    async def next_event(self, timeout: float | None = None) -> dict:
        """The next event: ``{"type": "delta", "choices": [...]}``, ``{"type": "done", ...}`` or
        ``{"type": "error", "error": EngineError}``; asyncio.TimeoutError after ``timeout`` s."""
        return await asyncio.wait_for(self._queue.get(), timeout)

    def cancel(self) -> None:
        """Stop the generation at its next step (a no-op once it has finished)."""
        self.job.cancelled.set()


class _Active:
    """A generation on the interleaving path: `decode_steps` driven one step at a time."""

    def __init__(self, handle: Handle, model, tokenizer) -> None:
        job = handle.job
        self.handle, self.job = handle, job
        self.recorder = RecordingSampler(job.sampler)
        device = model_device(model)
        generator = torch.Generator(device=device).manual_seed(job.seed)
        self.steps = decode_steps(
            model, [list(job.prompt_ids)] * job.n, job.max_tokens, self.recorder, tokenizer.eot_id, generator
        )
        self.choices = Choices(tokenizer, job.n, job.stops, job.max_tokens, job.top_logprobs, handle.emit)

    def close(self) -> None:
        self.steps.close()

    def step(self) -> bool:
        """One decode step for every choice; emit what became text. False once every choice is done."""
        next_ids = next(self.steps)
        return self.choices.advance(next_ids, self.recorder.logits)


class _Call:
    """Any other model call (classification, attention), run on the worker thread."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.future: concurrent.futures.Future = concurrent.futures.Future()


class Engine:
    """Owns the model: `submit` a generation, `call` anything else; `close` stops the worker.
    ``stats`` counts requests, decode steps, cancellations and time-outs (for /healthz and tests)."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        max_concurrent: int = 8,
        max_queue: int = 64,
        batching: bool = True,
        prefill_chunk: int = DEFAULT_PREFILL_CHUNK,
    ) -> None:
        if max_concurrent < 1 or max_queue < 1:
            raise ValueError("max_concurrent and max_queue must be >= 1")
        self.model, self.tokenizer = model, tokenizer
        self.max_concurrent, self.max_queue = max_concurrent, max_queue
        # batching needs a per-row KV cache: recurrent models always interleave
        self._batcher = Batcher(model, tokenizer, prefill_chunk) if batching and can_batch(model) else None
        self.batching = self._batcher is not None
        self._pending: deque[Handle | _Call] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._stats = dict(
            requests=0, completed=0, cancelled=0, timed_out=0, failed=0, steps=0, active=0, queued=0, rows=0
        )
        self._thread = threading.Thread(target=self._run, name="gptlab-serve-engine", daemon=True)
        self._thread.start()

    @property
    def stats(self) -> dict[str, int]:
        with self._cond:
            return {**self._stats, "queued": len(self._pending)}

    def _count(self, key: str, by: int = 1) -> None:
        with self._cond:
            self._stats[key] += by

    def _enqueue(self, item: Handle | _Call) -> None:
        with self._cond:
            if self._closed:
                raise EngineError(503, "the server is shutting down", "shutting_down")
            if len(self._pending) >= self.max_queue:
                raise overloaded(self.max_queue)
            self._pending.append(item)
            self._cond.notify()

    def submit(self, job: GenerationJob) -> Handle:
        """Queue a generation; call from the event loop that will read the handle's events."""
        handle = Handle(job, asyncio.get_running_loop())
        self._enqueue(handle)
        self._count("requests")
        return handle

    async def call(self, fn: Callable[[], Any], timeout_s: float) -> Any:
        """Run ``fn()`` on the model's thread and return its result (its exception is raised here)."""
        item = _Call(fn)
        self._enqueue(item)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(item.future), timeout_s)
        except asyncio.TimeoutError:
            item.future.cancel()  # not started yet: it will be skipped
            raise timed_out(timeout_s) from None

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker after the step in progress; waiting requests get a 503."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # ------------------------------------------------------------------------------- the worker

    def _run(self) -> None:
        active: list[_Active] = []  # the interleaving path's generations
        batch = self._batcher
        while True:
            with self._cond:
                running = len(batch) if batch is not None else len(active)
                while not self._closed and not self._pending and not running:
                    self._cond.wait()
                if self._closed:
                    left = list(self._pending)
                    self._pending.clear()
                    break
                calls, starts, keep, expired = [], [], deque(), []
                now = time.monotonic()
                for item in self._pending:
                    if isinstance(item, _Call):
                        calls.append(item)
                    elif item.job.cancelled.is_set() or now > item.job.deadline:
                        expired.append(item)  # gone or too late while waiting: never started
                    elif running + len(starts) < self.max_concurrent:
                        starts.append(item)
                    else:
                        keep.append(item)
                self._pending = keep
                self._stats["active"] = running + len(starts)
            for handle in expired:
                self._drop_waiting(handle)
            for call in calls:
                self._run_call(call)
            if batch is not None:
                self._batch_round(batch, starts)
                continue
            for handle in starts:
                try:
                    active.append(_Active(handle, self.model, self.tokenizer))
                except Exception as e:  # noqa: BLE001 - reported to the client, the worker goes on
                    self._fail(handle, e)
            active = [a for a in active if self._step(a)]
            with self._cond:
                self._stats["active"] = len(active)
        shutdown = EngineError(503, "the server is shutting down", "shutting_down")
        for item in left:
            if isinstance(item, _Call):
                if item.future.set_running_or_notify_cancel():
                    item.future.set_exception(shutdown)
            else:
                item.emit({"type": "error", "error": shutdown})
        for a in active:
            a.handle.emit({"type": "error", "error": shutdown})
            a.close()
        for seq in list(batch or ()):
            seq.handle.emit({"type": "error", "error": shutdown})
            batch.remove(seq)

    def _batch_round(self, batch: Batcher, starts: list[Handle]) -> None:
        """Admit the new requests, drop the cancelled and late ones, then one batched step."""
        for handle in starts:
            try:
                batch.admit(handle)
            except Exception as e:  # noqa: BLE001 - reported to the client, the worker goes on
                self._fail(handle, e)
        now = time.monotonic()
        for seq in list(batch):
            if seq.job.cancelled.is_set():
                self._count("cancelled")
                batch.remove(seq)
            elif now > seq.job.deadline:
                self._count("timed_out")
                seq.handle.emit({"type": "error", "error": timed_out(seq.job.timeout_s)})
                batch.remove(seq)
        try:
            sampled, finished, failed = batch.step()
        except Exception as e:  # noqa: BLE001 - a bug in the batcher: fail everyone, keep serving
            log.exception("batched step failed")
            failed, sampled, finished = [(seq, e) for seq in batch], [], []
            batch.reset()
        for seq, e in failed:
            self._fail(seq.handle, e)
        with self._cond:
            self._stats["steps"] += len(sampled)
            self._stats["completed"] += len(finished)
            self._stats["active"] = len(batch)
            self._stats["rows"] = batch.cache.n

    def _drop_waiting(self, handle: Handle) -> None:
        if handle.job.cancelled.is_set():
            self._count("cancelled")
        else:
            self._count("timed_out")
            handle.emit({"type": "error", "error": timed_out(handle.job.timeout_s)})

    def _run_call(self, call: _Call) -> None:
        if not call.future.set_running_or_notify_cancel():
            return
        try:
            call.future.set_result(call.fn())
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            call.future.set_exception(e)

    def _fail(self, handle: Handle, e: Exception) -> None:
        self._count("failed")
        if isinstance(e, EngineError):
            error = e
        elif isinstance(e, GptlabError):  # the request's fault (e.g. an empty prompt), not the server's
            error = EngineError(400, str(e), "invalid_request", "invalid_request_error")
        else:
            log.exception("generation failed")
            error = EngineError(500, f"generation failed: {type(e).__name__}: {e}", "generation_failed")
        handle.emit({"type": "error", "error": error})

    def _step(self, a: _Active) -> bool:
        """Advance one generation by one step; False when it is over (finished, cancelled, failed)."""
        job = a.job
        if job.cancelled.is_set():
            self._count("cancelled")
            a.close()
            return False
        if time.monotonic() > job.deadline:
            self._count("timed_out")
            a.handle.emit({"type": "error", "error": timed_out(job.timeout_s)})
            a.close()
            return False
        try:
            going = a.step()
        except Exception as e:  # noqa: BLE001
            a.close()
            self._fail(a.handle, e)
            return False
        self._count("steps")
        if not going:
            self._count("completed")
            a.close()
        return going
