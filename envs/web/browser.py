"""The browser backend: a web env's site in a real headless Chromium driven by Playwright.

* **Serving.** Each env gets its own browser context, pointed at a
  :class:`~rlft.envs.web.site_server.SiteServer` that the env owns: a loopback HTTP server
  thread answering from the Python :class:`~rlft.envs.web.site.Site` (no external server; a
  Playwright route handler works too but costs ~12 ms per page here). Host-name lookups are
  disabled in the browser, so nothing off the loopback can be reached.
* **Acting.** Actions are DOM interactions in the page: ``click`` clicks the first link or
  button whose label matches, ``search`` types into the page's search box and submits its form.
  A small injected script (``browser_page.js``) turns the resulting link/form navigation into a
  same-origin fetch plus an in-place document swap (it keeps the page URL itself and resolves
  links against it), so a step costs one Playwright round trip instead of a full page load.
  It waits on the fetch, never on a fixed sleep. Events are dispatched by DOM methods
  (``element.click()``, ``form.requestSubmit()``), not by synthesised mouse or keyboard input.
* **Faults.** The page times out its own fetches (``timeout_s``); a watchdog kills the browser
  if a page's scripts hang for ``timeout_s + 2`` s.
* **Observing.** The live DOM is serialised and rendered with the one
  :func:`~rlft.envs.web.render.render_html`, so the ``text`` observation and the valid actions
  equal the text backend's; ``axtree`` is ``locator("body").aria_snapshot()`` and
  ``screenshot`` a ``uint8`` RGB array of the viewport.
* **Lifecycle.** One Chromium per Python process, launched lazily and shared by every env of the
  process; one context per env. The last :meth:`BrowserBackend.close` ends the browser and
  returns once its processes have exited (an ``atexit`` hook does it for envs never closed).
  A browser that crashed or was killed is relaunched at the next :meth:`BrowserBackend.goto` (the env's ``reset``); a failed or timed-out
  load raises :class:`~rlft.envs.web.site.BackendError`, which the env turns into
  ``truncated=True`` with ``info["error"]``.
"""

from __future__ import annotations

import atexit
import io
import os
import signal
import threading
import time
from importlib import resources
from typing import Any

import numpy as np

from rlft.envs.web.actions import ActionError
from rlft.envs.web.chromium import LAUNCH_ARGS, ChromiumNotFound, find_chromium
from rlft.envs.web.render import RenderedPage, render_html
from rlft.envs.web.site import BackendError, PageNotFound, Site
from rlft.envs.web.site_server import SiteServer

#: Default viewport (width, height) of screenshots, in CSS pixels.
DEFAULT_VIEWPORT = (800, 600)
#: Default seconds a page may take to load before the step is truncated.
DEFAULT_TIMEOUT_S = 10.0
#: Seconds past the timeout after which a page that stopped answering gets its browser killed.
WATCHDOG_GRACE_S = 2.0
#: Added to chromium.LAUNCH_ARGS: resolve no host names (pages come from 127.0.0.1 only).
_ISOLATION_ARGS = ("--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",)

_PAGE_SCRIPT = resources.files("rlft.envs.web").joinpath("browser_page.js").read_text("utf-8")


class _Watchdog:
    """A daemon thread that calls ``on_expiry`` once an armed deadline has passed.

    Arming and disarming only set a number under an uncontended lock (no thread start, no
    wake-up), so it can guard every step; the thread looks at the deadline every ``poll_s``
    seconds. The lock makes "the deadline passed" and "disarmed in time" exclusive: a deadline
    that passes as the guarded call returns either fires and :meth:`disarm` says so, or never
    fires.
    """

    def __init__(self, on_expiry: Any, poll_s: float = 0.25):
        self._on_expiry = on_expiry
        self._poll_s = poll_s
        self._lock = threading.Lock()
        self._deadline: float | None = None
        self._fired = False
        self._handled = threading.Event()  # set once a fired deadline's on_expiry returned
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float) -> None:
        """Fire about ``seconds`` from now unless :meth:`disarm` comes first."""
        with self._lock:
            self._fired = False
            self._handled.clear()
            self._deadline = time.monotonic() + seconds
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="rlft-browser-watchdog")
            self._thread.start()

    def disarm(self, wait_s: float = 30.0) -> bool:
        """Cancel the deadline; True if it had already fired, and then only once ``on_expiry``
        has returned (up to ``wait_s``): the fired deadline's kill makes the guarded call fail
        at once, while the process it killed may still be exiting, and a caller that went on
        would find it alive."""
        with self._lock:
            self._deadline = None
            fired = self._fired
        if fired:
            self._handled.wait(wait_s)
        return fired

    def _past(self, deadline: float | None) -> bool:
        """Whether ``deadline`` (armed, or None) has passed (called under the lock)."""
        return deadline is not None and time.monotonic() > deadline

    def _run(self) -> None:
        while True:
            time.sleep(self._poll_s)
            with self._lock:
                fire = self._past(self._deadline)
                if fire:
                    self._deadline, self._fired = None, True
            if fire:
                try:
                    self._on_expiry()
                finally:
                    self._handled.set()


class _SharedBrowser:
    """The process's one Playwright driver and Chromium, reference-counted by backends."""

    def __init__(self) -> None:
        self._forget()

    def _forget(self) -> None:
        self.owner = os.getpid()
        self.playwright: Any = None
        self.browser: Any = None
        self.users = 0
        self.watchdog = _Watchdog(self.kill)

    def _own(self) -> None:
        # A forked child (async vector env worker) must not touch its parent's driver.
        if self.owner != os.getpid():
            self._forget()

    def acquire(self) -> None:
        """Count one more backend using the browser."""
        self._own()
        self.users += 1

    def get(self) -> Any:
        """The running browser; (re)launched if it was never started, crashed or was killed."""
        self._own()
        if self.browser is not None and self.browser.is_connected():
            return self.browser
        self.browser = None
        if self.playwright is not None and not _driver_alive():
            self._restart_driver()
        try:
            self.browser = self._launch()
        except ChromiumNotFound:
            raise
        except Exception:
            # The Playwright driver itself may be gone (its node process died): every call
            # through it fails with "connection closed" until a fresh driver is started.
            self._restart_driver()
            self.browser = self._launch()
        return self.browser

    def _launch(self) -> Any:
        if self.playwright is None:
            from playwright.sync_api import sync_playwright

            self.playwright = sync_playwright().start()
        return self.playwright.chromium.launch(
            executable_path=find_chromium(), args=[*LAUNCH_ARGS, *_ISOLATION_ARGS],
            headless=True
        )

    def _restart_driver(self) -> None:
        """Forget a dead Playwright driver (stopping what is left of it) so the next
        :meth:`_launch` starts a new one."""
        playwright, self.playwright, self.browser = self.playwright, None, None
        if playwright is not None:
            try:
                playwright.stop()
            except Exception:  # its connection is already closed
                pass

    def discard_if_dead(self) -> None:
        """Forget the browser if its process is gone, so :meth:`get` launches a new one."""
        self._own()
        if self.browser is not None and not _browser_alive():
            browser, self.browser = self.browser, None
            try:
                browser.close()
            except Exception:
                pass

    def kill(self) -> None:
        """Kill this process's Chromium (SIGKILL), e.g. when a page hangs; thread-safe."""
        if self.owner != os.getpid():
            return
        for pid in chromium_pids()[:1]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            _wait_exit([pid])  # SIGKILL is delivered asynchronously: return once it is gone

    def release(self) -> None:
        """One backend fewer; the last one ends the browser and the driver."""
        self._own()
        self.users = max(0, self.users - 1)
        if self.users == 0:
            self.shutdown()

    def shutdown(self) -> None:
        """End the browser and the Playwright driver of this process (no-op if not running)."""
        self._own()
        browser, playwright = self.browser, self.playwright
        self.browser = self.playwright = None
        try:
            pids = chromium_pids() if browser is not None or playwright is not None else []
        except OSError:  # no /proc: trust Playwright to end them
            pids = []
        if browser is not None:
            try:
                browser.close()
            except Exception:  # already dead: nothing left to close
                pass
        if playwright is not None:
            playwright.stop()
        # The browser's helper processes exit shortly after; wait, and end any that do not.
        for pid in _wait_exit(pids):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _wait_exit(pids)


_SHARED = _SharedBrowser()
atexit.register(_SHARED.shutdown)


def _is_chromium(name: str) -> bool:
    return "chrom" in name or "headless_shell" in name


def _process_table() -> tuple[dict[int, list[int]], dict[int, str]]:
    """``(children by parent pid, name by pid)`` of the live processes, from ``/proc``."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] == "Z":  # a zombie is dead, just not yet reaped
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        names[int(entry)] = name
    return children, names


def chromium_pids(root: int | None = None) -> list[int]:
    """Process ids of the Chromium processes that ``root`` (default: this process) launched
    through its Playwright driver; other processes' browsers (e.g. those of async vector env
    workers, which are children too) are not included.

    Reads ``/proc`` (Linux). The first pid is the browser's main process.
    """
    root = os.getpid() if root is None else root
    children, names = _process_table()
    found, todo = [], [root]
    while todo:
        pid = todo.pop(0)
        for child in sorted(children.get(pid, [])):
            if _is_chromium(names[child]):
                found.append(child)
                todo.append(child)
            elif pid == root and names[child].startswith("node"):  # the Playwright driver
                todo.append(child)
    return found


def _driver_alive() -> bool:
    """Whether this process's Playwright driver (a ``node`` child process) is running."""
    try:
        children, names = _process_table()
    except OSError:  # no /proc: trust Playwright's view
        return True
    return any(names[c].startswith("node") for c in children.get(os.getpid(), []))


def _running(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie (a zombie is dead, just not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _wait_exit(pids: list[int], timeout_s: float = 5.0) -> list[int]:
    """Wait up to ``timeout_s`` for ``pids`` to exit; returns those still running."""
    deadline = time.monotonic() + timeout_s
    left = [p for p in pids if _running(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.02)
        left = [p for p in left if _running(p)]
    return left


def _browser_alive() -> bool:
    """Whether this process still has a Chromium process running."""
    try:
        return bool(chromium_pids())
    except OSError:  # no /proc: trust Playwright's view
        return True


class BrowserBackend:
    """Browse ``site`` in headless Chromium; same interface as :class:`TextBackend`.

    Attributes ``url`` (path and query), ``html`` (the serialised live DOM) and ``page`` (its
    :class:`RenderedPage`) describe the current page.

    Args:
        site: the simulated site, served on a loopback port.
        viewport: ``(width, height)`` of the page and of screenshots.
        timeout_s: seconds a page may take to load before :class:`BackendError` is raised.
    """

    def __init__(self, site: Site, *, viewport: tuple[int, int] = DEFAULT_VIEWPORT,
                 timeout_s: float = DEFAULT_TIMEOUT_S):
        try:
            width, height = (int(v) for v in viewport)
        except (TypeError, ValueError):
            width = height = 0
        if not (16 <= width <= 4096 and 16 <= height <= 4096):
            raise ValueError(f"viewport must be (width, height) in [16, 4096]; got {viewport!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 seconds; got {timeout_s!r}")
        self.site = site
        self.viewport = (width, height)
        self.timeout_s = float(timeout_s)
        self.url = site.home_url
        self.html = ""
        self.page: RenderedPage = RenderedPage("")
        self._server: SiteServer | None = None
        self._context: Any = None
        self._tab: Any = None
        self._acquired = False
        self._broken = False

    # -- browser plumbing ----------------------------------------------------------------
    def _open(self) -> None:
        """A fresh context and page (relaunching the browser if it is gone)."""
        self._discard_context()
        if not self._acquired:
            _SHARED.acquire()
            self._acquired = True
        browser = _SHARED.get()
        if self._server is None:
            self._server = SiteServer(self.site)
        width, height = self.viewport
        self._context = browser.new_context(viewport={"width": width, "height": height})
        self._context.set_default_timeout(self.timeout_s * 1000)
        self._context.add_init_script(_PAGE_SCRIPT)
        self._tab = self._context.new_page()
        self._tab.goto(self._server.origin + self.site.home_url, wait_until="domcontentloaded")
        self._broken = False

    def _discard_context(self) -> None:
        context, self._context, self._tab = self._context, None, None
        if context is not None:
            try:
                context.close()
            except Exception:  # the browser died with it
                pass

    def _act(self, kind: str, arg: str) -> None:
        """Run one action in the page and take the page it leads to."""
        if self._tab is None:
            raise BackendError("the browser has no page yet; call reset() first")
        if self._broken:
            raise BackendError("the browser failed earlier in this episode; call reset()")
        # The page times its own loads out; a page whose scripts hang cannot, so a watchdog
        # kills the browser (the next reset relaunches it) if the page stops answering.
        _SHARED.watchdog.arm(self.timeout_s + WATCHDOG_GRACE_S)
        try:
            result = self._tab.evaluate(
                "([k, a, t]) => window.__rlft.act(k, a, t)", [kind, arg, self.timeout_s * 1000]
            )
        except Exception as e:
            self._broken = True
            if _SHARED.watchdog.disarm():
                raise BackendError(f"the page stopped responding for {self.timeout_s:g} s; the "
                                   "browser was killed and reset() relaunches it") from e
            raise BackendError(f"the browser failed ({type(e).__name__}: {_first_line(e)}); "
                               "reset() relaunches it") from e
        if _SHARED.watchdog.disarm():  # the deadline passed as the page answered
            self._broken = True
            raise BackendError(f"the page answered only at its {self.timeout_s:g} s deadline, "
                               "as the browser was killed; reset() relaunches it")
        if result.get("missing"):
            raise ActionError(f"{kind} found nothing to act on in the browser page")
        if result.get("timeout"):
            self._broken = True
            raise BackendError(f"the page did not load within {self.timeout_s:g} s")
        if result.get("status") == 404:
            raise PageNotFound(result.get("error") or "page not found")
        if result.get("error") is not None:
            self._broken = True
            raise BackendError(f"the page failed to load: {result['error']}")
        self.url, self.html = result["url"], result["html"]
        self.page = render_html(self.html)

    # -- backend interface ---------------------------------------------------------------
    def goto(self, url: str) -> None:
        """Load ``url``; on a new, crashed or broken browser first (re)open one."""
        alive = (self._tab is not None and not self._broken and not self._tab.is_closed()
                 and self._context.browser is not None and self._context.browser.is_connected())
        if not alive:
            try:
                self._open()
            except ChromiumNotFound:
                raise
            except Exception:
                # The browser may have died without Playwright noticing yet: relaunch once.
                _SHARED.discard_if_dead()
                try:
                    self._open()
                except ChromiumNotFound:
                    raise
                except Exception as e:
                    self._broken = True
                    raise BackendError(f"could not open a browser page: {_first_line(e)}") from e
            if url == self.site.home_url:  # just loaded by the navigation that opened the page
                self._act("read", url)
                return
        self._act("goto", url)

    def click(self, label: str) -> None:
        """Click the link or button labelled ``label`` (case-insensitive) in the page."""
        target = self.page.find(label)
        if target is None:
            raise ActionError(f"no clickable {label!r} on this page")
        if not target.href:
            raise ActionError(f"{label!r} cannot be clicked here")
        self._act("click", target.label)

    def search(self, query: str) -> None:
        """Type ``query`` into the page's search box and submit its form."""
        if self.page.search is None:
            raise ActionError("there is no search box on this page")
        self._act("search", query)

    def axtree(self) -> str:
        """The accessibility tree of the page body (``aria_snapshot``), as YAML text."""
        if self._tab is None or self._broken:
            return ""
        try:
            return self._tab.locator("body").aria_snapshot()
        except Exception:
            self._broken = True
            return ""

    def screenshot(self) -> np.ndarray:
        """The viewport as a ``uint8`` array of shape ``(height, width, 3)``."""
        width, height = self.viewport
        if self._tab is None or self._broken:
            return np.zeros((height, width, 3), dtype=np.uint8)
        try:
            # caret="initial": no style injection to hide carets (no input keeps focus)
            png = self._tab.screenshot(type="png", caret="initial")
        except Exception:
            self._broken = True
            return np.zeros((height, width, 3), dtype=np.uint8)
        from PIL import Image

        with Image.open(io.BytesIO(png)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)

    def close(self) -> None:
        """Release this env's context; the last backend to close ends the browser."""
        self._discard_context()
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._acquired:
            self._acquired = False
            _SHARED.release()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
