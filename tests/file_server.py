"""A static file server on 127.0.0.1 for the download tests: serves a folder, counts GET requests
per path, and cuts ``TRUNCATED_PATH`` short (promises 1000 bytes, sends 10)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections import Counter
from contextlib import contextmanager
from pathlib import Path

TRUNCATED_PATH = "/truncated.txt"


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    requests: Counter

    def do_GET(self):
        self.requests[self.path] += 1
        if self.path == TRUNCATED_PATH:
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"0123456789")
            self.close_connection = True
            return
        super().do_GET()

    def log_message(self, *args):  # keep pytest output clean
        pass


@contextmanager
def serving_folder(folder: Path):
    """Yields ``(base URL, request counter)`` of a server on a free port serving ``folder``."""
    counter: Counter = Counter()
    handler = type("Handler", (_CountingHandler,), {"requests": counter})
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(folder))
    )
    # a short poll interval: shutdown() waits up to one interval (0.5 s by default)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", counter
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
