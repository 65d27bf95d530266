"""``gptlab serve``: an OpenAI-compatible HTTP API for a run directory, and a web playground.

- `gptlab.serve.app.create_app` builds the FastAPI app: its state, API key and CORS, and the
  routes of `gptlab.serve.routes` (module-level functions over ``app.state``), answering in the
  shapes of `gptlab.serve.formats`, within a `gptlab.serve.limits.ServeLimits`;
- `gptlab.serve.engine.Engine` owns the model: one worker thread runs every model call, so the
  web side never calls the model from two threads at once;
- `gptlab.serve.schemas` holds the request bodies (unknown fields refused, ranges checked);
- `gptlab.serve.guards` refuses foreign Host headers (DNS rebinding) and slow clients, and holds
  the limits uvicorn runs with;
- ``static/index.html`` is the playground page served at ``/``.

FastAPI and uvicorn are the optional extra ``gptlab[serve]``; nothing here imports them at
``import gptlab`` time.
"""

from __future__ import annotations


def create_app(*args, **kwargs):
    """See `gptlab.serve.app.create_app` (imported on first use: it needs FastAPI)."""
    from gptlab.serve.app import create_app as _create_app

    return _create_app(*args, **kwargs)


__all__ = ["create_app"]
