"""A real uvicorn server for the serve tests: the app on 127.0.0.1 and a free port, in a thread,
run with the options `gptlab serve` gives uvicorn (gptlab.serve.guards.uvicorn_options)."""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import uvicorn

from gptlab.serve.guards import uvicorn_options


@contextmanager
def serving(app, **options):
    """Yields ``(url, port)``; stopped (lifespan included) on exit. ``options`` go to
    uvicorn_options (header deadline, connection limit, ...)."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        timeout_graceful_shutdown=2,
        **uvicorn_options(**options),
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "the server did not stop"
