"""Property-based fuzz of the Research env: no action string raises, and rejected actions leave
the state (page, viewport, history, quotes, episode) unchanged."""

from __future__ import annotations

import gymnasium as gym
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ENV = gym.make("rlft/Research-v0", split="test").unwrapped
COMMANDS = ["search", "click", "find", "scroll", "back", "top", "quote", "answer", "abstain",
            "CLICK", "Scroll", "buy", ""]
ARGS = ["down", "up", "Wiki home", "", " ", "[", "]", "population", "was born in", "Thilbury"]

actions = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    st.sampled_from(["back", "top", "abstain", "scroll", "find", "answer", "quote"]),
    st.builds(lambda c, a: f"{c}[{a}]", st.sampled_from(COMMANDS),
              st.one_of(st.text(max_size=40), st.sampled_from(ARGS))),
    st.builds(lambda c, a, tail: f"{c}[{a}{tail}", st.sampled_from(COMMANDS),
              st.text(max_size=20), st.sampled_from(["", "]]", "[", "]x"])),
    st.text(min_size=500, max_size=600),
)

_N = {"n": 0}


def _state(env):
    return (env._backend.url, env.cursor, tuple(env.history), tuple(env.quotes), env._done,
            env.goal_text, env.answered, env.abstained)


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from([(), ("search[population of a town]",),
                               ("search[founder]", "scroll[down]")]),
       action=actions)
def test_any_string_is_safe_and_invalid_ones_change_nothing(prefix, action):
    _N["n"] += 1
    obs, info = ENV.reset(seed=_N["n"] % 23)
    for a in prefix:
        obs, r, term, trunc, info = ENV.step(a)
    links = [a for a in info["valid_actions"] if a.startswith("click[") and a != "click[Wiki home]"]
    if links and _N["n"] % 2:
        ENV.step(links[0])
    before = _state(ENV)
    obs, reward, term, trunc, info = ENV.step(action)
    assert isinstance(obs["page"], str) and ENV.observation_space.contains(obs)
    assert isinstance(reward, float) and not trunc
    if info["action_error"] is not None:
        assert _state(ENV) == before
        assert reward == 0.0 and not term
        assert obs["page"].startswith("Error: ")
    else:
        command = action.strip().split("[")[0].strip().lower()
        assert command in ENV.commands
        assert term == (command in ("answer", "abstain"))
        assert 0.0 <= info["score"] <= 1.0
