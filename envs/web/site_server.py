"""Serve a :class:`~rlft.envs.web.site.Site` over HTTP on a loopback port.

The browser backend points Chromium at it. Serving from a thread of the env's own process keeps
each page fetch inside Chromium's network stack (about 1 ms), where a Playwright route handler
costs a round trip through the Playwright driver (about 12 ms measured here).

    server = SiteServer(site)          # http://127.0.0.1:<free port>
    ...
    server.close()
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rlft.envs.web.site import PageNotFound, Site


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: the connection (and its thread) is reused
    disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms delayed ACK

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        try:
            status, body = 200, self.server.site.page(self.path)[0]
        except PageNotFound as e:
            status, body = 404, str(e)
        except Exception as e:  # a bug in the site: show it instead of hanging the page
            status, body = 500, f"{type(e).__name__}: {e}"
        data = body.encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)
        except OSError:  # the page gave up on this request (timed out) meanwhile
            pass

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Silent: one line per page would flood training logs."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    site: Site


class SiteServer:
    """An HTTP server for ``site`` on ``127.0.0.1`` (a free port), run by a daemon thread.

    Args:
        site: the site to serve; ``GET path?query`` answers ``site.page(path?query)``.
    """

    def __init__(self, site: Site):
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.site = site
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.5}, daemon=True,
                                        name=f"rlft-site-server{self.origin[16:]}")
        self._thread.start()

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
