"""The browser backend: parity with the text backend, observation modes, lifecycle and faults.

Every test drives a real headless Chromium (Playwright); nothing is mocked.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rlft.agents import RandomAgent
from rlft.envs.web.actions import ActionError, ParsedAction
from rlft.envs.web.browser import chromium_pids
from rlft.envs.web.env import WebEnv
from rlft.envs.web.render import render_html
from rlft.envs.web.site import PageNotFound, Site, page_html

# Queries whose URL encoding differs between Python's urlencode and the browser's form encoding.
ODD_QUERIES = ["men's 100% cotton & \"wool\" #1", "café ~ naïve + größe", "a/b?c=d;e"]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _query(url: str) -> tuple[str, list[tuple[str, str]]]:
    parts = urlsplit(url)
    return parts.path, parse_qsl(parts.query, keep_blank_values=True)


def _same_step(out_t: tuple, out_b: tuple, where: Any) -> dict[str, Any]:
    """Assert that a text-backend and a browser-backend step gave the same observation,
    reward, ends and info (URLs compared as path and parameters); returns the text info."""
    assert out_b[0] == out_t[0], where
    assert out_b[1:4] == out_t[1:4], where
    info_b, info_t = dict(out_b[4]), dict(out_t[4])
    assert _query(info_b.pop("url")) == _query(info_t.pop("url")), where
    assert info_b == info_t, where
    return out_t[4]


@pytest.fixture
def browser_shop():
    env = gym.make("rlft/Shop-v0", backend="browser", split="test")
    yield env
    env.close()


# -- parity ---------------------------------------------------------------------------------
def test_text_observations_equal_the_text_backend_over_60_random_episodes(browser_shop):
    text = gym.make("rlft/Shop-v0", split="test")
    agent = RandomAgent(text.action_space, seed=11)
    rng = np.random.default_rng(5)
    steps = 0
    for episode in range(60):
        obs_t, info_t = text.reset(seed=episode)
        obs_b, info_b = browser_shop.reset(seed=episode)
        assert obs_b == obs_t and info_b == info_t
        done = False
        while not done:
            action = agent.act(obs_t, info_t)
            if action.startswith("search[") and rng.random() < 0.3:
                action = f"search[{ODD_QUERIES[int(rng.integers(len(ODD_QUERIES)))]}]"
            out_t = text.step(action)
            info_t = _same_step(out_t, browser_shop.step(action), (episode, action))
            steps += 1
            obs_t, done = out_t[0], out_t[2] or out_t[3]
    text.close()
    assert steps >= 300


def test_html_mode_is_the_live_dom_and_renders_to_the_text_page():
    env = gym.make("rlft/Shop-v0", backend="browser", observation_mode="html")
    env.reset(seed=0)
    obs, *_ = env.step("search[wireless earbuds]")
    assert obs["page"].startswith("<!DOCTYPE html><html")
    text = gym.make("rlft/Shop-v0")
    text.reset(seed=0)
    obs_t, *_ = text.step("search[wireless earbuds]")
    assert render_html(obs["page"]).text == obs_t["page"]
    env.close()
    text.close()


# -- observation modes ----------------------------------------------------------------------
def test_axtree_lists_the_links_of_the_page():
    env = gym.make("rlft/Shop-v0", backend="browser", observation_mode="axtree")
    obs, info = env.reset(seed=0)
    assert "textbox" in obs["page"]
    obs, r, term, trunc, info = env.step("search[hiking boots]")
    assert '- link "Back to Search"' in obs["page"] and '- link "Next >"' in obs["page"]
    asin = info["valid_actions"][2][len("click["):-1]
    assert f'link "{asin}"' in obs["page"]
    obs, *_ = env.step(f"click[{asin}]")
    assert '- link "Buy Now"' in obs["page"] and "Page 1 (Total" not in obs["page"]
    env.close()


def test_screenshot_shape_viewport_and_content_changes():
    env = gym.make("rlft/Shop-v0", backend="browser", observation_mode="screenshot",
                   render_mode="rgb_array", backend_options={"viewport": (320, 240)})
    assert env.observation_space["page"].shape == (240, 320, 3)
    obs, _ = env.reset(seed=0)
    home = obs["page"]
    assert home.dtype == np.uint8 and home.shape == (240, 320, 3)
    assert env.observation_space.contains(obs)
    assert home.min() < 100 and home.max() == 255  # dark text on a white page
    obs, *_ = env.step("search[hiking boots]")
    assert obs["page"].shape == home.shape and not np.array_equal(obs["page"], home)
    frame = env.render()
    assert isinstance(frame, np.ndarray) and np.array_equal(frame, obs["page"])
    env.close()


def test_hard_store_expert_and_random_episodes_match_the_text_backend():
    """rlft/Shop-v1's labels (marketing colour names with spaces, "US 9", "50 ml") are
    clicked and scored the same in Chromium as in the text backend."""
    kwargs = {"split": "test", "num_products": 3000}
    text = gym.make("rlft/Shop-v1", **kwargs)
    browser = gym.make("rlft/Shop-v1", backend="browser", **kwargs)
    random_agent = RandomAgent(text.action_space, seed=3)
    wins = 0
    try:
        for episode in range(16):
            expert = text.unwrapped.expert()
            agent = expert if episode % 2 == 0 else random_agent
            obs_t, info_t = text.reset(seed=episode)
            obs_b, info_b = browser.reset(seed=episode)
            assert obs_b == obs_t and info_b == info_t
            done = False
            while not done:
                action = agent.act(obs_t, info_t)
                out_t = text.step(action)
                info_t = _same_step(out_t, browser.step(action), (episode, action))
                obs_t, done = out_t[0], out_t[2] or out_t[3]
            wins += agent is expert and info_t["success"]
    finally:
        text.close()
        browser.close()
    assert wins == 8


@pytest.mark.parametrize("mode", ["text", "html", "axtree", "screenshot"])
def test_check_env_on_every_browser_observation_mode(mode):
    env = gym.make("rlft/Shop-v0", backend="browser", observation_mode=mode,
                   render_mode="rgb_array", backend_options={"viewport": (200, 150)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    env.close()
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("kwargs, fragment", [
    ({"observation_mode": "axtree"}, "needs backend='browser'"),
    ({"observation_mode": "screenshot"}, "needs backend='browser'"),
    ({"render_mode": "rgb_array"}, "needs backend='browser'"),
    ({"backend": "browser", "backend_options": {"viewport": (5, 5)}}, "viewport"),
    ({"backend": "browser", "backend_options": {"timeout_s": 0}}, "timeout_s"),
    ({"backend_options": {"viewport": (5, 5)}}, "text backend takes no backend_options"),
])
def test_bad_browser_arguments_say_what_to_do(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        gym.make("rlft/Shop-v0", **kwargs)


# -- lifecycle --------------------------------------------------------------------------------
def test_one_browser_shared_by_envs_and_ended_by_the_last_close():
    assert chromium_pids() == []
    a = gym.make("rlft/Shop-v0", backend="browser")
    b = gym.make("rlft/Shop-v0", backend="browser")
    assert chromium_pids() == []  # launched lazily, at the first reset
    a.reset(seed=0)
    pids = chromium_pids()
    assert pids
    b.reset(seed=1)
    assert chromium_pids()[0] == pids[0]  # the same browser, a second context
    assert a.unwrapped._backend._context is not b.unwrapped._backend._context
    a.close()
    assert _alive(pids[0])
    obs, *_ = b.step("search[socks]")
    assert "Total results" in obs["page"]
    b.close()
    assert chromium_pids() == [] and not any(_alive(p) for p in pids)


def test_no_chromium_survives_an_interpreter_that_never_closed_its_envs():
    code = ("import gymnasium as gym, rlft.envs; from rlft.envs.web.browser import chromium_pids;"
            "e = gym.make('rlft/Shop-v0', backend='browser'); e.reset(seed=0);"
            "e.step('search[socks]'); print(*chromium_pids())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    pids = [int(p) for p in out.stdout.split()]
    assert pids
    deadline = time.monotonic() + 10  # the driver may still be reaping its children
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def test_killed_browser_truncates_the_step_and_is_relaunched_at_reset():
    env = gym.make("rlft/Shop-v0", backend="browser")
    env.reset(seed=0)
    env.step("search[hiking boots]")
    old = chromium_pids()
    os.kill(old[0], signal.SIGKILL)
    obs, r, term, trunc, info = env.step("click[Next >]")
    assert trunc and not term and r == 0.0
    assert "browser" in info["error"] and "reset" in info["error"]
    assert info["valid_actions"] == [] and info["action_error"] is None
    obs, r, term, trunc, info = env.step("click[Next >]")
    assert "episode is over" in info["action_error"]
    obs, info = env.reset(seed=0)
    assert chromium_pids() and chromium_pids()[0] != old[0]
    obs, r, term, trunc, info = env.step("search[hiking boots]")
    assert "Page 1 (Total results" in obs["page"] and not trunc
    env.close()
    assert chromium_pids() == []


def test_dead_playwright_driver_truncates_the_step_and_reset_starts_a_new_one():
    """Issue 17: when the driver (node) died, every later reset in the process raised
    "Playwright connection closed", on new envs too."""
    from rlft.envs.web.browser import _process_table

    env = gym.make("rlft/Shop-v0", backend="browser")
    env.reset(seed=0)
    env.step("search[hiking boots]")
    children, names = _process_table()
    drivers = [c for c in children.get(os.getpid(), []) if names[c].startswith("node")]
    assert len(drivers) == 1
    os.kill(drivers[0], signal.SIGKILL)
    time.sleep(0.5)
    obs, r, term, trunc, info = env.step("click[Next >]")
    assert trunc and "reset" in info["error"]
    obs, info = env.reset(seed=0)
    obs, r, term, trunc, info = env.step("search[hiking boots]")
    assert "Page 1 (Total results" in obs["page"] and not trunc
    other = gym.make("rlft/Shop-v0", backend="browser")
    obs, info = other.reset(seed=1)
    assert info["valid_actions"] == ["search[...]"]
    env.close()
    other.close()
    assert chromium_pids() == []


# -- a page that hangs, on a site that is not the shop -------------------------------------
class SlowSite(Site):
    """Pages linking to each other; ``/slow`` takes ``delay`` seconds to answer, ``/missing``
    and the off-site link lead nowhere."""

    delay = 3.0

    def get(self, url: str) -> str:
        if url.startswith("/slow"):
            time.sleep(self.delay)
        if url.startswith("/missing"):
            raise PageNotFound(f"no page at {url!r}")
        links = ('<a href="/slow">Slow page</a> <a href="/next">Next page</a> '
                 '<a href="/missing">Missing page</a> <a href="http://example.com/">Elsewhere</a>'
                 ' <a href="/next" onclick="for (;;) {}">Frozen link</a>')
        return page_html(url, f"<p>at {url}</p><div>{links}</div>")


class LinkEnv(WebEnv):
    """A minimal WebEnv over any Site: click links, no reward."""

    commands = frozenset({"click"})

    def _new_episode(self, options: dict[str, Any]) -> str:
        return "follow links"

    def _execute(self, action: ParsedAction) -> tuple[float, bool]:
        if not action.argument:
            raise ActionError("click needs a label")
        self._backend.click(action.argument)
        return 0.0, False

    def _valid_actions(self) -> list[str]:
        return [f"click[{c.label}]" for c in self._backend.page.clickables]


def test_page_hanging_past_the_timeout_truncates_with_an_error():
    env = LinkEnv(SlowSite(), backend="browser", backend_options={"timeout_s": 0.5})
    obs, info = env.reset(seed=0)
    assert obs["page"].startswith("at /") and info["valid_actions"] == [
        "click[Slow page]", "click[Next page]", "click[Missing page]", "click[Elsewhere]",
        "click[Frozen link]"]
    obs, r, term, trunc, info = env.step("click[Next page]")
    assert info["url"] == "/next" and not trunc
    for label in ("Missing page", "Elsewhere"):  # as the text backend: the site has no page
        with pytest.raises(PageNotFound):
            env.step(f"click[{label}]")
        assert env.unwrapped._backend.url == "/next"
    obs, r, term, trunc, info = env.step("click[Slow page]")  # the server answers after 3 s
    assert trunc and not term and "did not load within 0.5 s" in info["error"]
    obs, info = env.reset()
    assert info["url"] == "/" and obs["page"].startswith("at /")
    obs, r, term, trunc, info = env.step("click[Next page]")
    assert info["url"] == "/next" and not trunc
    env.close()


class SlowHomeSite(SlowSite):
    """A site whose home page answers after ``delay`` seconds while ``slow`` is set."""

    slow = True

    def get(self, url: str) -> str:
        if self.slow and url == "/":
            time.sleep(self.delay)
        return super().get(url)


def test_home_page_timeout_at_reset_is_reported_and_the_first_step_truncates():
    """Issue 17: a page-load timeout during reset() raised, ending a vector training loop."""
    site = SlowHomeSite()
    env = LinkEnv(site, backend="browser", backend_options={"timeout_s": 0.5})
    obs, info = env.reset(seed=0)
    assert "could not start" in info["error"] and "reset() tries again" in info["error"]
    assert obs["page"].startswith("Error: the episode could not start")
    assert info["valid_actions"] == []
    obs, r, term, trunc, info = env.step("click[Next page]")
    assert trunc and not term and r == 0.0 and "could not start" in info["error"]
    obs, r, term, trunc, info = env.step("click[Next page]")
    assert not trunc and "episode is over" in info["action_error"]
    site.slow = False
    obs, info = env.reset()
    assert "error" not in info and obs["page"].startswith("at /")
    obs, r, term, trunc, info = env.step("click[Next page]")
    assert info["url"] == "/next" and not trunc
    env.close()
    assert chromium_pids() == []


def test_a_fired_watchdog_reports_it_only_once_its_kill_has_finished():
    # the kill makes the guarded call fail at once, while the browser may still be exiting:
    # the step must not go on (and a test must not look) before the kill has returned
    from rlft.envs.web.browser import _Watchdog

    finished: list[float] = []

    def slow_kill():
        time.sleep(0.4)
        finished.append(time.monotonic())

    dog = _Watchdog(slow_kill, poll_s=0.01)
    dog.arm(0.0)
    while not dog._fired:
        time.sleep(0.005)
    assert dog.disarm() is True
    assert finished, "disarm returned before the kill finished"
    dog.arm(60.0)
    assert dog.disarm() is False


def test_a_deadline_passing_as_the_call_returns_fires_only_if_disarm_says_so():
    # The watchdog finds the deadline passed, and the guarded call returns and disarms at that
    # very moment: either disarm reports the kill (and waits for it) or the kill never comes.
    # Reporting "not fired" and killing afterwards would leave a step that succeeded with a
    # dead browser, and the next step failing for no reason it could tell.
    import threading

    from rlft.envs.web.browser import _Watchdog

    found, kills = threading.Event(), []

    class Paused(_Watchdog):
        def _past(self, deadline):
            late = super()._past(deadline)
            if late:  # hold the thread here while the call returns and disarms
                found.set()
                time.sleep(0.3)
            return late

    dog = Paused(lambda: kills.append(time.monotonic()), poll_s=0.01)
    dog.arm(0.0)
    assert found.wait(5.0)
    said = dog.disarm()
    time.sleep(0.1)  # a kill decided before the disarm would land by now
    assert said is True and len(kills) == 1


def test_page_whose_script_hangs_gets_its_browser_killed_and_relaunched():
    env = LinkEnv(SlowSite(), backend="browser", backend_options={"timeout_s": 0.5})
    env.reset(seed=0)
    browser = chromium_pids()[0]
    obs, r, term, trunc, info = env.step("click[Frozen link]")  # its onclick never returns
    assert trunc and "stopped responding for 0.5 s" in info["error"]
    assert not _alive(browser)
    obs, info = env.reset()
    assert chromium_pids()[0] != browser and obs["page"].startswith("at /")
    obs, r, term, trunc, info = env.step("click[Next page]")
    assert info["url"] == "/next" and not trunc
    env.close()


# -- vector envs ----------------------------------------------------------------------------
def test_async_vector_env_runs_one_browser_per_worker_and_leaves_none():
    parent = gym.make("rlft/Shop-Browser-v0")
    parent.reset(seed=0)  # the workers fork from a process whose browser is running
    envs = gym.make_vec("rlft/Shop-Browser-v0", num_envs=4, vectorization_mode="async")
    try:
        obs, infos = envs.reset(seed=0)
        assert len(set(obs["goal"])) > 1
        obs, *_ = envs.step(["search[socks]"] * 4)
        assert all("Total results" in p for p in obs["page"])
        browsers = [chromium_pids(w.pid) for w in envs.processes]
        assert all(browsers) and len({b[0] for b in browsers}) == 4
        assert not set(chromium_pids()) & {p for b in browsers for p in b}
        assert parent.unwrapped._backend._context.browser.is_connected()
    finally:
        envs.close()
    assert not any(_alive(p) for b in browsers for p in b)
    obs, *_ = parent.step("search[socks]")
    assert "Total results" in obs["page"]
    parent.close()
    assert chromium_pids() == []


class RelativeSite(Site):
    """Pages whose links are relative: they must resolve against the current page's URL."""

    home_url = "/dir/a"

    def get(self, url: str) -> str:
        links = ('<a href="b">Sibling</a> <a href="../up/c">Up</a> <a href="?page=2">Query</a> '
                 '<a href="/dir/a">Start</a> <form action="find"><input name="q"></form>')
        return page_html(url, f"<p>at {url}</p>{links}")


def test_relative_links_and_forms_resolve_like_the_text_backend():
    site = RelativeSite()
    text, browser = LinkEnv(site), LinkEnv(site, backend="browser")
    urls = []
    for env in (text, browser):
        env.reset(seed=0)
        trail = [env.unwrapped._backend.url]
        for label in ("Sibling", "Up", "Query", "Sibling", "Start", "Query"):
            obs, r, term, trunc, info = env.step(f"click[{label}]")
            trail.append((info["url"], obs["page"].splitlines()[0]))
        env.unwrapped._backend.search("two words")
        trail.append(env.unwrapped._backend.url)
        urls.append(trail)
        env.close()
    assert urls[1] == urls[0]
    assert urls[0][1:4] == [("/dir/b", "at /dir/b"), ("/up/c", "at /up/c"),
                            ("/up/c?page=2", "at /up/c?page=2")]
    assert urls[0][-1] == "/dir/find?q=two+words"
