"""Property-based fuzz: no action string raises, and invalid ones leave the state unchanged."""

from __future__ import annotations

import gymnasium as gym
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ENV = gym.make("rlft/Shop-v0", split="test").unwrapped
LABELS = ["Buy Now", "Next >", "< Prev", "Back to Search", "Description", "black", "B0", "9"]

actions = st.one_of(
    st.text(max_size=80),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    st.builds(lambda c, a: f"{c}[{a}]", st.sampled_from(["click", "search", "CLICK", "buy", ""]),
              st.one_of(st.text(max_size=40), st.sampled_from(LABELS))),
    st.builds(lambda c, a, tail: f"{c}[{a}{tail}", st.sampled_from(["click", "search"]),
              st.text(max_size=20), st.sampled_from(["", "]]", "[", "]x"])),
    st.text(min_size=500, max_size=600),
)

_START = {"n": 0}


def _state(env):
    return (env._backend.url, env.goal_text, env._done)


@settings(max_examples=1200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefix=st.sampled_from(["", "search[red dress]", "search[wireless earbuds]"]),
       action=actions)
def test_any_string_is_safe_and_invalid_ones_change_nothing(prefix, action):
    _START["n"] += 1
    ENV.reset(seed=_START["n"] % 17)
    if prefix:
        ENV.step(prefix)
        first = next((a for a in ENV._valid_actions() if a.startswith("click[B0")), None)
        if first and _START["n"] % 2:
            ENV.step(first)
    before = _state(ENV)
    obs, reward, term, trunc, info = ENV.step(action)
    assert isinstance(obs["page"], str) and ENV.observation_space.contains(obs)
    if info["action_error"] is not None:
        assert _state(ENV) == before
        assert reward == 0.0 and not term
        assert obs["page"].startswith("Error: ")
    else:  # only well-formed commands are accepted
        assert isinstance(action, str) and action.strip().lower().startswith(("click[", "search["))
