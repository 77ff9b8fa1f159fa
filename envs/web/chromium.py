"""Finding (and, for the set-up, installing) a Chromium for the browser backend.

Order: the ``RLFT_CHROMIUM`` environment variable, Playwright's own Chromium, then Debian's
``/usr/bin/chromium``. ``rlft setup-browser`` (run by ``make test``/``make demo``) installs one.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys

SETUP_COMMAND = "rlft setup-browser"
SYSTEM_CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")

#: Flags this closed network needs: no background traffic, no sandbox as root, no GPU.
LAUNCH_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--disable-quic",
)


class ChromiumNotFound(RuntimeError):
    """No Chromium could be found; the message names the set-up command."""


def _playwright_chromium() -> str | None:
    root = os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or os.path.expanduser("~/.cache/ms-playwright")
    for pattern in ("chromium-*/chrome-linux*/chrome", "chromium_headless_shell-*/chrome-*/headless_shell"):
        found = sorted(glob.glob(os.path.join(root, pattern)))
        if found:
            return found[-1]
    return None


def find_chromium() -> str:
    """The path of the Chromium to launch, or raise :class:`ChromiumNotFound`."""
    env = os.environ.get("RLFT_CHROMIUM")
    if env:
        if os.path.isfile(env) and os.access(env, os.X_OK):
            return env
        raise ChromiumNotFound(f"RLFT_CHROMIUM={env!r} is not an executable file")
    for path in (_playwright_chromium(), *SYSTEM_CHROMIUM, shutil.which("chromium")):
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise ChromiumNotFound(
        "no Chromium found for the browser backend. Run `make setup` or "
        f"`{SETUP_COMMAND}` (installs Playwright's Chromium, or Debian's `chromium` as root), "
        "or point RLFT_CHROMIUM at a Chromium executable."
    )


def install_chromium() -> str:
    """Make a Chromium available: Playwright's download, else ``apt-get install chromium`` as
    root. Returns the path found; raises :class:`ChromiumNotFound` with what to do otherwise."""
    try:
        return find_chromium()
    except ChromiumNotFound:
        pass
    proc = subprocess.run([sys.executable, "-m", "playwright", "install", "chromium"],
                          capture_output=True, text=True)
    if proc.returncode == 0:
        return find_chromium()
    print("Playwright could not download its Chromium (no route to its CDN?); "
          "trying Debian's chromium package.", file=sys.stderr)
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env)
        return find_chromium()
    raise ChromiumNotFound(
        "could not install a Chromium: Playwright's download failed and this user cannot run "
        "apt-get. Install Debian/Ubuntu's `chromium` package (sudo apt-get install chromium), "
        "or set RLFT_CHROMIUM to a Chromium executable."
    )
