"""Evaluation: run an agent for N episodes and report success and score with 95% intervals."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

from rlft.agents.base import Agent
from rlft.agents.episode import Episode, rollout


@dataclass(frozen=True)
class EpisodeResult:
    """One episode: whether it succeeded, its final score, return and length, and its last
    ``info`` (what an env's ``episode_metrics`` reads)."""

    success: bool
    score: float
    ret: float
    steps: int
    info: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class EvalResult:
    """Aggregate of many episodes; intervals are 95% (Wilson for success, normal for score)."""

    name: str
    episodes: int
    success: float
    success_ci: tuple[float, float]
    score: float
    score_ci: tuple[float, float]
    mean_return: float
    mean_steps: float
    actions_per_s: float | None = None
    """Acting speed (the agent's ``act`` calls only), when measured."""
    metrics: dict[str, float] = field(default_factory=dict)
    """The env's own rates (its ``episode_metrics``; e.g. abstention on the research env)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (without ``actions_per_s`` and ``metrics`` when there are none). A
        metric no episode qualified for (NaN: always-abstain's "quoted before correct") is None,
        so the dict is strict JSON (``null``), not Python's ``NaN``."""
        d = asdict(self)
        if d["actions_per_s"] is None:
            del d["actions_per_s"]
        if not d["metrics"]:
            del d["metrics"]
        else:
            d["metrics"] = {k: None if v != v else v for k, v in d["metrics"].items()}
        return d


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (well-behaved at 0 and 1)."""
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_interval(values: Iterable[float], z: float = 1.96, lo: float = 0.0, hi: float = 1.0
                  ) -> tuple[float, float]:
    """Normal-approximation interval of a mean of values in ``[lo, hi]``, clipped to it."""
    v = np.asarray(list(values), dtype=float)
    if len(v) < 2:
        return (lo, hi) if len(v) == 0 else (float(v[0]), float(v[0]))
    half = z * v.std(ddof=1) / math.sqrt(len(v))
    return (max(lo, float(v.mean() - half)), min(hi, float(v.mean() + half)))


def mcnemar_p(only_a: int, only_b: int) -> float:
    """Exact two-sided McNemar p-value for two agents played on the same games: the chance of
    a split of the discordant games (``only_a`` won by the first alone, ``only_b`` by the
    second alone) at least this uneven if each were as likely to win any of them."""
    if only_a < 0 or only_b < 0:
        raise ValueError(f"counts of games cannot be negative: {only_a}, {only_b}")
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def paired_difference(a: Sequence[bool], b: Sequence[bool], z: float = 1.96) -> dict[str, Any]:
    """Two agents' successes on the same seeded games (``a[i]`` and ``b[i]`` are game ``i``):
    the mean difference ``a - b`` with its :func:`mean_interval` over the games' differences
    (in [-1, 1]), the discordant counts (``only_a``: games only ``a`` won; ``only_b``) and
    :func:`mcnemar_p`. Pairing removes the games' own difficulty from the comparison, so the
    interval is narrower than two independent ones whenever the agents tend to win the same
    games."""
    if len(a) != len(b) or not len(a):
        raise ValueError(f"paired results need the same, non-zero number of games: "
                         f"{len(a)} and {len(b)}")
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    only_a, only_b = int((d > 0).sum()), int((d < 0).sum())
    return {"difference": float(d.mean()), "ci": mean_interval(d, z, lo=-1.0, hi=1.0),
            "only_a": only_a, "only_b": only_b, "p": mcnemar_p(only_a, only_b)}


def run_episode(env: gym.Env, agent: Agent, *, seed: int | None = None,
                options: dict[str, Any] | None = None) -> EpisodeResult:
    """Play one episode of ``agent`` in ``env`` to its end (termination or truncation)."""
    ret, steps = 0.0, 0
    for step in rollout(env, agent, seed=seed, options=options):
        ret += step.reward
        steps += 1
    return _episode_result(step.next_info, ret, steps)


def _episode_result(info: dict[str, Any], ret: float, steps: int) -> EpisodeResult:
    """An ended episode's result from its last info, return and length."""
    return EpisodeResult(bool(info.get("success", False)), float(info.get("score", 0.0)), ret,
                         steps, dict(info))


def summarize(name: str, results: list[EpisodeResult],
              metrics: Callable[[list[dict[str, Any]]], dict[str, float]] | None = None
              ) -> EvalResult:
    """Aggregate episode results into an :class:`EvalResult` (with ``metrics`` of the episodes'
    last infos, when given)."""
    n = len(results)
    succ = [r.success for r in results]
    scores = [r.score for r in results]
    return EvalResult(
        name, n, float(np.mean(succ)) if n else 0.0, wilson_interval(int(sum(succ)), n),
        float(np.mean(scores)) if n else 0.0, mean_interval(scores),
        float(np.mean([r.ret for r in results])) if n else 0.0,
        float(np.mean([r.steps for r in results])) if n else 0.0,
        metrics=metrics([r.info for r in results]) if metrics is not None and n else {},
    )


def evaluate(env: gym.Env, agent: Agent, episodes: int, *, seed: int = 0, name: str = "agent",
             progress: Callable[[int], None] | None = None) -> EvalResult:
    """Run ``episodes`` episodes seeded ``seed, seed + 1, ...`` and summarise them (with the
    env's ``episode_metrics`` when it has them)."""
    results = []
    for i in range(episodes):
        results.append(run_episode(env, agent, seed=seed + i))
        if progress is not None:
            progress(i + 1)
    return summarize(name, results, getattr(env.unwrapped, "episode_metrics", None))


def evaluate_side_by_side(env: gym.Env, agent: Any, episodes: int, *, concurrency: int = 1,
                          seed: int = 0, name: str = "agent",
                          progress: Callable[[int], None] | None = None) -> EvalResult:
    """:func:`evaluate_concurrent` on ``env`` and copies of it (``gym.make(env.spec)``, closed
    here; ``env`` stays the caller's) when the agent decides turns together (it has
    ``act_many``) and ``concurrency`` > 1, up to that many episodes side by side;
    :func:`evaluate` on ``env`` one episode at a time otherwise. The same results either way
    for a greedy policy."""
    n_envs = min(concurrency, episodes)
    if n_envs <= 1 or not hasattr(agent, "act_many"):
        return evaluate(env, agent, episodes, seed=seed, name=name, progress=progress)
    copies: list[gym.Env] = []
    try:
        copies += [gym.make(env.spec) for _ in range(n_envs - 1)]
        return evaluate_concurrent([env, *copies], agent, episodes, seed=seed, name=name,
                                   progress=progress)
    finally:
        for copy in copies:
            copy.close()


def evaluate_concurrent(envs: Sequence[gym.Env], agent: Any, episodes: int, *, seed: int = 0,
                        name: str = "agent", progress: Callable[[int], None] | None = None,
                        on_end: Callable[[int, gym.Env, dict[str, Any], Any], None] | None = None
                        ) -> EvalResult:
    """:func:`evaluate` with the episodes spread over ``envs`` (instances of one env) and played
    side by side: each round, ``agent.act_many(episodes)``
    (:meth:`rlft.agents.policy.EpisodicPolicy.act_many`) decides the turns of every running
    episode at once, which a policy that scores turns in batches (the LM policy on a GPU) does
    in a few forward passes. Episode ``i`` is seeded ``seed + i`` and summarised in that order,
    as in :func:`evaluate`: a greedy policy gives the same results either way. ``on_end(i, env,
    info, action)`` is called as episode ``i`` ends, before its env starts another: what an
    analysis of the episodes reads of the env's state (its question, its gold path) and the
    last action."""
    if not envs:
        raise ValueError("evaluate_concurrent needs at least one env")
    results: list[EpisodeResult] = [None] * episodes  # type: ignore[list-item]
    started = finished = 0
    running: list[dict[str, Any]] = []

    def start(env: gym.Env) -> None:
        nonlocal started
        if started < episodes:
            obs, info = env.reset(seed=seed + started)
            episode = Episode()
            episode.observe(obs, info)
            running.append({"env": env, "i": started, "episode": episode, "ret": 0.0,
                            "steps": 0})
            started += 1

    for env in envs:
        start(env)
    while running:
        actions = agent.act_many([r["episode"] for r in running])
        playing, running = running, []
        for r, action in zip(playing, actions, strict=True):
            obs, reward, terminated, truncated, info = r["env"].step(action)
            r["ret"] += float(reward)
            r["steps"] += 1
            if terminated or truncated:
                results[r["i"]] = _episode_result(info, r["ret"], r["steps"])
                if on_end is not None:
                    on_end(r["i"], r["env"], info, action)
                finished += 1
                if progress is not None:
                    progress(finished)
                start(r["env"])
            else:
                r["episode"].observe(obs, info)
                running.append(r)
    return summarize(name, results, getattr(envs[0].unwrapped, "episode_metrics", None))


def table_cells(rows: Sequence[EvalResult | dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """``(header, rows of cells)`` of evaluation results: the one table layout that the
    markdown files and the terminal tables share. Rows are :class:`EvalResult` s or their dicts;
    an ``env`` column appears when the rows have one, ``actions/s`` when they have
    ``actions_per_s``."""
    dicts = [r.to_dict() if isinstance(r, EvalResult) else dict(r) for r in rows]
    with_env = any("env" in d for d in dicts)
    with_speed = any(d.get("actions_per_s") is not None for d in dicts)
    extra = list(dict.fromkeys(k for d in dicts for k in d.get("metrics", {})))
    header = (["env"] if with_env else []) + ["agent", "episodes", "success", "95% CI", "score",
                                              "95% CI", "steps"]
    header += ["actions/s"] if with_speed else []
    header += ["reward", *extra] if extra else []
    cells = []
    for d in dicts:
        row = [str(d.get("env", ""))] if with_env else []
        row += [str(d["name"]), str(d["episodes"]), f"{d['success']:.3f}",
                f"[{d['success_ci'][0]:.2f}, {d['success_ci'][1]:.2f}]", f"{d['score']:.3f}",
                f"[{d['score_ci'][0]:.2f}, {d['score_ci'][1]:.2f}]", f"{d['mean_steps']:.1f}"]
        row += [f"{d.get('actions_per_s', float('nan')):.1f}"] if with_speed else []
        if extra:
            row += [f"{d['mean_return']:+.2f}"]
            row += [rate_cell(d.get("metrics", {}).get(k)) for k in extra]
        cells.append(row)
    return header, cells


def rate_cell(value: float | None) -> str:
    """A metric's cell: ``-`` where no episode qualified (NaN) or the row lacks it."""
    return "-" if value is None or value != value else f"{value:.2f}"


def markdown_table(rows: Sequence[EvalResult | dict[str, Any]], note: str = "") -> str:
    """A markdown table of results: success and score with their 95% intervals (and a note
    line under it)."""
    header, cells = table_cells(rows)
    align = ["---" if h in ("env", "agent", "95% CI") else "---:" for h in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    if note:
        lines += ["", note]
    return "\n".join(lines)


def print_table(rows: Sequence[EvalResult | dict[str, Any]], title: str = "") -> None:
    """Print results in the terminal (rich), the same cells as :func:`markdown_table`."""
    from rich.console import Console
    from rich.table import Table

    header, cells = table_cells(rows)
    table = Table(title=title)
    for col in header:
        table.add_column(col, justify="left" if col in ("env", "agent") else "right")
    for row in cells:
        table.add_row(*row)
    Console(width=max(120, 15 * len(header))).print(table)
