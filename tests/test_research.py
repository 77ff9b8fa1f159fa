"""The Research env: corpus, questions and splits, graders, commands, rewards and the expert."""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys

import gymnasium as gym
import pytest

from rlft.envs.web.research.corpus import build_corpus
from rlft.envs.web.research.grader import (
    DEFAULT_REWARDS,
    check_rewards,
    exact_match,
    grade,
    normalize_answer,
    token_f1,
)
from rlft.envs.web.research.questions import SPLITS, question_pool
from rlft.envs.web.research.schema import BY_NAME, UNSEEN_RELATIONS
from rlft.envs.web.research.viewport import HEIGHT, SCROLL

R = DEFAULT_REWARDS


@pytest.fixture(scope="module")
def env():
    e = gym.make("rlft/Research-v0", split="test")
    yield e
    e.close()


def _corpus_digest(size: int = 5000, seed: int = 0) -> str:
    h = hashlib.sha256()
    for e in build_corpus(size, seed).entities:
        h.update(repr((e.title, e.aliases, sorted(e.facts.items()), e.missing, e.paragraphs,
                       e.mentions)).encode())
    return h.hexdigest()


# -- corpus ---------------------------------------------------------------------------------
def test_corpus_size_kinds_facts_and_prose():
    corpus = build_corpus()
    assert len(corpus) >= 5000 and build_corpus() is corpus, "built once per process"
    assert {e.kind for e in corpus.entities} == {"person", "place", "organisation", "species",
                                                 "invention", "event"}
    assert len({e.title.casefold() for e in corpus.entities}) == len(corpus)
    missing = sum(len(e.missing) for e in corpus.entities)
    assert 500 < missing < 3000, "some literal facts are absent from the corpus"
    from rlft.envs.web.research.env import build_site

    site = build_site()
    for e in corpus.entities[::97]:
        assert len(e.paragraphs) >= 3
        prose = " ".join(e.paragraphs)
        for fact in e.facts.values():
            assert fact.sentence in prose and fact.text in fact.sentence
        lines = site.page(f"/wiki/{e.slug}")[1].text.splitlines()
        for rel in BY_NAME:
            stated = any(line.startswith(f"{BY_NAME[rel].label}:") for line in lines)
            assert stated == (rel in e.facts), (e.title, rel)
        assert all(0 <= i < len(corpus) and i != e.index for i in e.mentions)


def test_corpus_is_deterministic_across_processes_and_seeds():
    here = _corpus_digest()
    code = ("import sys; sys.path.insert(0, 'tests'); from test_research import _corpus_digest;"
            "print(_corpus_digest())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONHASHSEED": "987"},
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == here
    assert _corpus_digest(200, 1) != _corpus_digest(200, 2)


def test_article_page_has_infobox_links_and_search_form():
    from rlft.envs.web.research.env import build_site

    site = build_site()
    person = next(e for e in site.corpus.entities if e.kind == "person" and "employer" in e.facts)
    html, page = site.page(f"/wiki/{person.slug}")
    employer = site.corpus.entities[person.facts["employer"].target]
    assert page.search is not None and page.search.action == "/search"
    link = page.find(employer.title)
    assert link is not None and link.href == f"/wiki/{employer.slug}"
    assert f"<a href=\"/wiki/{employer.slug}\">" in html
    assert person.facts["employer"].sentence in page.text


def test_bm25_search_finds_the_article_by_title():
    from rlft.envs.web.research.search import build_search

    engine = build_search()
    corpus = engine.corpus
    for e in corpus.entities[::500]:
        assert engine.search(e.title)[0] == e.index
    assert engine.search("zzqx vvqk") == ()


# -- questions and splits --------------------------------------------------------------------
def test_splits_are_disjoint_and_unseen_holds_out_relations():
    pools = {s: question_pool(s) for s in SPLITS}
    texts = {s: {q.text for q in qs} for s, qs in pools.items()}
    anchors = {s: {q.path[0][0] for q in qs} for s, qs in pools.items() if s != "unseen"}
    for a in ("train", "val", "test"):
        for b in ("val", "test", "unseen"):
            if a != b:
                assert not texts[a] & texts[b]
    assert not anchors["train"] & anchors["test"] and not anchors["val"] & anchors["test"]
    train_relations = {rel for q in pools["train"] for _, rel in q.path}
    assert not train_relations & set(UNSEEN_RELATIONS)
    assert all(any(rel in UNSEEN_RELATIONS for _, rel in q.path) for q in pools["unseen"])
    for s in ("test", "unseen"):
        hops = {q.hops for q in pools[s]}
        assert hops == {1, 2, 3}
        unanswerable = sum(not q.answerable for q in pools[s])
        assert 0.03 < unanswerable / len(pools[s]) < 0.3


def test_question_answers_follow_the_hop_path():
    corpus = build_corpus()
    for q in question_pool("test")[:200]:
        for (entity, rel), (nxt, _) in zip(q.path, q.path[1:], strict=False):
            assert corpus.entities[entity].facts[rel].target == nxt
        last, rel = q.path[-1]
        fact = corpus.entities[last].facts.get(rel)
        assert (fact is None) == (not q.answerable)
        if fact is not None:
            assert q.answer == fact.text


# -- graders --------------------------------------------------------------------------------
def test_normalisation():
    assert normalize_answer("The  Corvane Works!") == "corvane works"
    assert normalize_answer("48,200") == normalize_answer("48200") == "48200"
    assert normalize_answer("Denn, Ilvara") == "denn ilvara"
    assert normalize_answer("an Owl") == "owl"


def test_exact_match_uses_aliases():
    refs = ("Thilbury", "Thilbury, Unail Downs")
    assert exact_match("thilbury, unail downs.", refs)
    assert exact_match("THE THILBURY", refs)
    assert not exact_match("Thilbury town", refs)
    assert not exact_match("anything", ())


def test_token_f1_partial_credit():
    assert token_f1("Kousfuth Faimthen", ["Kousfuth Faimthen"]) == 1.0
    assert token_f1("Faimthen", ["Kousfuth Faimthen"]) == pytest.approx(2 / 3)
    assert token_f1("Kousfuth Faimthen Smith", ["Kousfuth Faimthen"]) == pytest.approx(0.8)
    assert token_f1("nothing here", ["Kousfuth Faimthen"]) == 0.0
    assert token_f1("x", []) == 0.0


def test_abstention_table_sparse_and_shaped():
    refs = ("Kousfuth Faimthen",)
    kw = dict(rewards=R)
    assert grade("q", "kousfuth faimthen", refs, reward_mode="sparse", **kw).reward == 1.0
    assert grade("q", "Faimthen", refs, reward_mode="sparse", **kw).reward == -1.0
    shaped = grade("q", "Faimthen", refs, reward_mode="shaped", **kw)
    assert shaped.reward == pytest.approx(-1 + 2 * 2 / 3) and shaped.score == pytest.approx(2 / 3)
    assert not shaped.success
    abstain = grade("q", None, refs, reward_mode="sparse", **kw)
    assert (abstain.reward, abstain.score, abstain.success) == (0.0, 0.0, False)
    right_abstain = grade("q", None, (), reward_mode="shaped", **kw)
    assert (right_abstain.reward, right_abstain.success) == (1.0, True)
    assert grade("q", "a guess", (), reward_mode="shaped", **kw).reward == -1.0
    table = check_rewards({"wrong": -3})
    assert table == {"correct": 1.0, "abstain": 0.0, "wrong": -3.0}
    assert grade("q", "no", refs, reward_mode="sparse", rewards=table).reward == -3.0
    for bad in ({"right": 1.0}, {"wrong": math.nan}, {"correct": "1"}, [1, 0, -1]):
        with pytest.raises(ValueError):
            check_rewards(bad)


def test_custom_grader_is_called_and_clipped():
    calls = []

    def judge(question, answer, references):
        calls.append((question, answer, tuple(references)))
        return {"close": 0.6, "far": -4.0, "nan": math.nan}[answer]

    kw = dict(rewards=R, grader=judge)
    close = grade("Q?", "close", ("A", "B"), reward_mode="sparse", **kw)
    assert (close.reward, close.score, close.success) == (1.0, 0.6, True)
    assert grade("Q?", "far", ("A",), reward_mode="shaped", **kw).reward == -1.0
    assert grade("Q?", "nan", ("A",), reward_mode="shaped", **kw).score == 0.0
    assert calls[0] == ("Q?", "close", ("A", "B"))


# -- the env --------------------------------------------------------------------------------
def test_reset_observation_and_valid_actions(env):
    obs, info = env.reset(seed=0, options={"question_index": 3})
    q = env.unwrapped.question
    assert obs["goal"] == q.text and q == question_pool("test")[3]
    assert "rlft wiki" in obs["page"] and "-- lines 1-" in obs["page"]
    va = info["valid_actions"]
    assert va[-2:] == ["answer[...]", "abstain"] and "search[...]" in va and "back" not in va
    assert info["answered"] is False and info["abstained"] is False and info["score"] == 0.0


def test_navigation_commands(env):
    env.reset(seed=0, options={"question_index": 0})
    q = env.unwrapped.question
    title = env.unwrapped.wiki.corpus.entities[q.path[0][0]].title
    obs, r, term, trunc, info = env.step(f"search[{title}]")
    assert info["url"].startswith("/search?q=") and f"click[{title}]" in info["valid_actions"]
    assert "back" in info["valid_actions"] and r == 0.0 and not term
    obs, *_, info = env.step(f"click[{title.lower()}]")
    assert info["action_error"] is None and info["url"].endswith(title.replace(" ", "_"))
    lines = env.unwrapped.layout.lines
    assert obs["page"].splitlines()[:HEIGHT] == list(lines[:HEIGHT])
    assert len(lines) > HEIGHT
    obs, *_, info = env.step("scroll[down]")
    # a screen less two lines of overlap, so a sentence of up to 3 lines is wholly in view
    assert env.unwrapped.cursor == SCROLL == HEIGHT - 2 and "scroll[up]" in info["valid_actions"]
    assert obs["page"].splitlines()[0] == lines[SCROLL]
    env.step("top")
    assert env.unwrapped.cursor == 0
    last_line = lines[-1]
    obs, *_, info = env.step(f"find[{last_line}]")
    assert info["action_error"] is None and last_line in obs["page"]
    obs, *_, info = env.step("back")
    assert info["url"].startswith("/search?q=") and env.unwrapped.cursor == 0
    obs, *_, info = env.step("back")
    assert info["url"] == "/"
    obs, *_, info = env.step("back")
    assert "no previous page" in info["action_error"]


def test_click_requires_the_link_in_view_and_quote_an_exact_span(env):
    corpus = env.unwrapped.wiki.corpus
    e = max(corpus.entities[:300], key=lambda x: len(x.mentions))
    env.reset(seed=0)
    env.step(f"search[{e.title}]")
    env.step(f"click[{e.title}]")
    layout = env.unwrapped.layout
    hidden = [lab for lab in layout.links(HEIGHT, len(layout.lines))
              if lab not in layout.links(0, HEIGHT)]
    assert hidden, "a long article has links below the viewport"
    *_, info = env.step(f"click[{hidden[-1]}]")
    assert "not in view" in info["action_error"]
    *_, info = env.step("click[No Such Page]")
    assert "no link" in info["action_error"]
    sentence = next(iter(e.facts.values())).sentence
    obs, *_, info = env.step(f"quote[{sentence.upper()}]")
    assert info["action_error"] is None
    assert f'[1] {e.title}: "{sentence}"' in obs["page"], "the page's own span is kept"
    *_, info = env.step(f"quote[{sentence}]")
    assert info["action_error"] == "already quoted"
    *_, info = env.step("quote[this sentence is not on the page]")
    assert "exact span" in info["action_error"]


def test_answer_and_abstain_rewards_and_info():
    env = gym.make("rlft/Research-v0", split="test", reward_mode="shaped",
                   rewards={"correct": 2.0, "abstain": 0.5, "wrong": -1.0})
    pool = env.unwrapped.questions
    i = next(k for k, q in enumerate(pool) if q.answerable and " " in q.answer)
    env.reset(seed=0, options={"question_index": i})
    answer = pool[i].answer
    obs, r, term, trunc, info = env.step(f"answer[{answer.split()[0]}]")
    f1 = token_f1(answer.split()[0], pool[i].references)
    assert term and r == pytest.approx(-1 + 3 * f1) and info["score"] == pytest.approx(f1)
    assert info["answered"] and not info["success"] and info["valid_actions"] == []
    *_, info = env.step("abstain")
    assert "episode is over" in info["action_error"]
    env.reset(seed=0, options={"question_index": i})
    _, r, term, _, info = env.step("abstain")
    assert term and r == 0.5 and info["abstained"] and info["score"] == 0.0
    j = next(k for k, q in enumerate(pool) if not q.answerable)
    env.reset(seed=0, options={"question_index": j})
    _, r, _, _, info = env.step("abstain")
    assert r == 2.0 and info["success"] and info["score"] == 1.0
    env.reset(seed=0, options={"question_index": j})
    _, r, _, _, info = env.step("answer[1843]")
    assert r == -1.0 and not info["success"]
    env.close()


def test_evidence_reward_pays_each_gold_sentence_once_whatever_the_ending():
    env = gym.make("rlft/Research-v0", split="test", evidence_reward=0.6)
    u = env.unwrapped
    i = next(k for k, q in enumerate(u.questions) if q.answerable and q.hops == 2)
    for ending in ("answer", "abstain"):
        obs, info = env.reset(seed=0, options={"question_index": i})
        expert, rewards, done = u.expert(), [], False
        while not done:
            action = expert.act()
            if ending == "abstain" and action.startswith("answer["):
                action = "abstain"
            obs, r, term, trunc, info = env.step(action)
            rewards.append((action, r))
            done = term or trunc
        quotes = [r for a, r in rewards if a.startswith("quote[")]
        assert quotes == [pytest.approx(0.3), pytest.approx(0.3)]  # 0.6 / 2 hops each
        assert info["evidence"] == 2 and info["quotes"] == 2
        # the ending pays as without the bonus: +1 correct, 0 abstaining
        assert rewards[-1][1] == (1.0 if ending == "answer" else 0.0)
        assert all(r == 0 for a, r in rewards[:-1] if not a.startswith("quote["))
    # a sentence that states no gold fact earns nothing
    env.reset(seed=0, options={"question_index": i})
    gold = set(u.gold_sentences())
    other = next(s for s in viewport_sentences_of(u) if s not in gold)
    _, r, _, _, info = env.step(f"quote[{other}]")
    assert r == 0.0 and info["evidence"] == 0 and info["quotes"] == 1
    with pytest.raises(ValueError, match="evidence_reward"):
        gym.make("rlft/Research-v0", evidence_reward=-1)
    env.close()


def viewport_sentences_of(env) -> list[str]:
    """The full sentences of the page in view (the home page's, at the start)."""
    import re

    return [s for s in re.split(r"(?<=[.!?])\s+", env.visible_text()) if s.endswith(".")]


def test_grader_kwarg_replaces_exact_match():
    env = gym.make("rlft/Research-v0", split="test",
                   grader=lambda q, a, refs: 1.0 if a == "yes" else 0.0)
    env.reset(seed=0, options={"question_index": next(
        k for k, q in enumerate(env.unwrapped.questions) if q.answerable)})
    _, r, _, _, info = env.step("answer[yes]")
    assert r == 1.0 and info["success"]
    env.close()


def test_step_limit_truncates_with_zero_reward():
    env = gym.make("rlft/Research-v0", split="test")
    env.reset(seed=1)
    for _ in range(env.spec.max_episode_steps):
        _, r, term, trunc, info = env.step("top")
        assert r == 0.0 and not term
    assert trunc and not info["answered"]
    env.close()


def test_bad_arguments_and_kwargs():
    with pytest.raises(ValueError, match="reward_mode"):
        gym.make("rlft/Research-v0", reward_mode="dense")
    with pytest.raises(ValueError, match="grader"):
        gym.make("rlft/Research-v0", grader="gpt")
    with pytest.raises(ValueError, match="rewards"):
        gym.make("rlft/Research-v0", rewards={"oops": 1})
    env = gym.make("rlft/Research-v0")
    with pytest.raises(ValueError, match="question_index"):
        env.unwrapped.reset(options={"question_index": 10**9})
    env.reset(seed=0)
    for action, msg in [("back[x]", "no argument"), ("answer[]", "needs an argument"),
                        ("scroll[left]", "'down' or 'up'"), ("scroll[up]", "already at the top"),
                        ("find[zzzqqq]", "does not occur"), ("fly[away]", "unknown command")]:
        *_, info = env.step(action)
        assert msg in info["action_error"], (action, info["action_error"])
    env.close()


def test_answerable_filter_keeps_one_kind_of_question():
    every = question_pool("test")
    for answerable in (True, False):
        env = gym.make("rlft/Research-v0", split="test", answerable=answerable)
        kept = env.unwrapped.questions
        assert kept == tuple(q for q in every if q.answerable == answerable)
        assert 0 < len(kept) < len(every)
        for seed in range(5):
            _, info = env.reset(seed=seed)
            assert info["answerable"] is answerable
        *_, info = env.step("abstain")
        assert info["success"] is not answerable  # abstaining is right exactly when unanswerable
        env.close()
    with pytest.raises(ValueError, match="answerable must be True, False or None"):
        gym.make("rlft/Research-v0", answerable="no")


def test_unanswerable_share_sets_the_mix_and_replays_by_seed():
    env = gym.make("rlft/Research-v0", split="train", unanswerable_share=0.5)
    questions = env.unwrapped.questions
    assert questions == question_pool("train")  # indices are the split's own
    drawn = [env.reset(seed=seed)[1] for seed in range(400)]
    share = sum(not i["answerable"] for i in drawn) / len(drawn)
    assert 0.4 < share < 0.6  # the split's own mix is about 0.07
    assert all(questions[i["question_index"]].answerable is i["answerable"] for i in drawn)
    again = [env.reset(seed=seed)[1]["question_index"] for seed in range(400)]
    assert again == [i["question_index"] for i in drawn]  # a seed replays its question
    for edge in (0.0, 1.0):
        env = gym.make("rlft/Research-v0", split="test", unanswerable_share=edge)
        assert {env.reset(seed=s)[1]["answerable"] for s in range(30)} == {edge == 0.0}
    for bad in (1.5, -0.1, True, "half"):
        with pytest.raises(ValueError, match="unanswerable_share must be a number in"):
            gym.make("rlft/Research-v0", unanswerable_share=bad)
    with pytest.raises(ValueError, match="give one of them"):
        gym.make("rlft/Research-v0", unanswerable_share=0.2, answerable=False)


@pytest.mark.parametrize("split", ["test", "unseen"])
def test_expert_succeeds(split):
    env = gym.make("rlft/Research-v0", split=split)
    expert = env.unwrapped.expert()
    pool = env.unwrapped.questions
    n, wins, used = 150, 0, set()
    for i in range(n):
        obs, info = env.reset(seed=i, options={"question_index": (i * 7) % len(pool)})
        expert.reset()
        for _ in range(env.spec.max_episode_steps):
            action = expert.act(obs, info)
            used.add(action.split("[")[0])
            obs, r, term, trunc, info = env.step(action)
            assert info["action_error"] is None, (action, info["action_error"])
            if term or trunc:
                break
        wins += info["success"]
    assert wins / n >= 0.95
    assert {"search", "click", "quote", "answer", "abstain", "scroll"} <= used
    env.close()


@pytest.mark.parametrize("split", ["train", "test", "unseen"])
def test_every_expert_action_is_a_candidate(split):
    """Imitation can represent the expert: on its own trajectories each of its actions is one
    of the concrete candidates that policies choose from (the observation alone proposes them:
    names from the goal and quotes, sentences in view, answers from the quotes)."""
    from rlft.agents import ExpertAgent
    from rlft.agents.episode import rollout
    from rlft.wrappers.valid_actions import expand_valid_actions

    env = gym.make("rlft/Research-v0", split=split)
    expert, steps, commands = ExpertAgent(env), 0, set()
    for seed in range(80):
        for step in rollout(env, expert, seed=seed):
            cands = {c.casefold() for c in expand_valid_actions(
                step.obs["goal"], step.info["valid_actions"], page=step.obs["page"])}
            assert step.action.casefold() in cands, (step.action, sorted(cands)[:10])
            commands.add(step.action.split("[")[0])
            steps += 1
    assert {"search", "click", "quote", "answer"} <= commands and steps > 300
    env.close()


def test_html_observation_mode():
    env = gym.make("rlft/Research-v0", observation_mode="html")
    obs, _ = env.reset(seed=0)
    assert obs["page"].startswith("<!DOCTYPE html>") and 'name="q"' in obs["page"]
    env.close()
