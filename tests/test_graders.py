"""Graders as data (rlft.envs.graders): each kind against hand-computed values, config errors
that name the field, and the research env graded by a config."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import gymnasium as gym
import pytest

from rlft.envs.graders import (
    METRICS,
    Grader,
    GraderConfigError,
    GraderError,
    build_grader,
)
from rlft.envs.web.research.grader import token_f1

OUT = "{{sample.output_text}}"
ANSWER = "{{item.answer}}"


def check(operation: str) -> dict:
    return {"type": "string_check", "input": OUT, "reference": ANSWER, "operation": operation}


def similar(metric: str, **extra) -> dict:
    return {"type": "text_similarity", "input": OUT, "reference": ANSWER,
            "evaluation_metric": metric, **extra}


def score(config, output: str, answer: str) -> float:
    return build_grader(config).grade({"output_text": output}, {"answer": answer})


# -- string_check ---------------------------------------------------------------------------
def test_string_check_operations():
    out, ref = "It was Thilbury, Unail Downs.", "thilbury"
    assert score(check("ilike"), out, ref) == 1.0
    assert score(check("like"), out, ref) == 0.0, "like is case-sensitive"
    assert score(check("like"), out, "Thilbury") == 1.0
    assert score(check("ilike"), out, "Corvane") == 0.0
    assert score(check("eq"), "Thilbury", "Thilbury") == 1.0
    assert score(check("eq"), "Thilbury", "thilbury") == 0.0
    assert score(check("ne"), "Thilbury", "thilbury") == 1.0


# -- templates ------------------------------------------------------------------------------
def test_templates_embedded_spaced_and_indexed():
    grader = build_grader({"type": "string_check", "input": "Answer: {{ sample.output_text }}!",
                           "reference": "Answer: {{item.references.1}}!", "operation": "eq"})
    item = {"answer": "a", "references": ["a", "Thilbury"]}
    assert grader.grade({"output_text": "Thilbury"}, item) == 1.0
    assert grader.grade({"output_text": "a"}, item) == 0.0


def test_unknown_template_path_names_the_field_and_path():
    grader = build_grader({**check("eq"), "reference": "{{item.refrence}}"})
    with pytest.raises(GraderConfigError, match=r"grader\.reference: .*'item\.refrence'.*"
                                                r"keys answer"):
        grader.grade({"output_text": "x"}, {"answer": "x"})
    with pytest.raises(GraderConfigError, match=r"grader\.input: unknown template path "
                                                r"'output_text'"):
        build_grader({**check("eq"), "input": "{{output_text}}"})


# -- text_similarity ------------------------------------------------------------------------
def test_fuzzy_match_is_the_indel_ratio():
    # LCS("kitten", "sitting") = "ittn" (4 characters): 2 * 4 / (6 + 7)
    assert score(similar("fuzzy_match"), "kitten", "sitting") == pytest.approx(8 / 13)
    assert score(similar("fuzzy_match"), "same", "same") == 1.0
    # pass_threshold turns it into pass / fail
    assert score(similar("fuzzy_match", pass_threshold=0.6), "kitten", "sitting") == 1.0
    assert score(similar("fuzzy_match", pass_threshold=0.7), "kitten", "sitting") == 0.0


def test_bleu_identical_and_disjoint():
    text = "the cat sat on the mat"
    assert score(similar("bleu"), text, text) == pytest.approx(1.0)
    assert score(similar("bleu"), text, "quarterly revenue fell sharply") == 0.0


def test_rouge_by_hand():
    out, ref = "a cat on the mat", "the cat sat on the mat"
    # LCS = cat on the mat (4 tokens) of 5 and 6: F = 2 * 4 / (5 + 6)
    assert score(similar("rouge_l"), out, ref) == pytest.approx(8 / 11)
    # shared bigrams: "on the", "the mat" -> P = 2/4, R = 2/5, F = 2 * 2 / (4 + 5)
    assert score(similar("rouge_2"), out, ref) == pytest.approx(4 / 9)
    assert score(similar("rouge_l"), ref, ref) == 1.0


def test_f1_is_the_research_token_f1():
    # normalised: "red brick house" vs "red house": P = 2/3, R = 1, F1 = 0.8
    assert score(similar("f1"), "the red brick house", "a red house") == pytest.approx(0.8)
    assert token_f1("the red brick house", ["a red house"]) == pytest.approx(0.8)


def test_cosine_of_sentence_embeddings():
    grader = build_grader(similar("cosine"))

    def cos(a: str, b: str) -> float:
        return grader.score({"output_text": a}, {"answer": b})

    assert cos("a cat sat on the mat", "a cat sat on the mat") == pytest.approx(1.0, abs=1e-5)
    related = cos("a cat sat on the mat", "a kitten rested on the rug")
    unrelated = cos("a cat sat on the mat", "quarterly tax revenue fell sharply")
    assert related > unrelated + 0.2


# -- python ---------------------------------------------------------------------------------
def test_python_grader_source_and_function():
    source = ("def grade(sample, item):\n"
              "    return len(sample['output_text']) / len(item['answer'])\n")
    assert score({"type": "python", "source": source}, "hello", "0123456789") == 0.5
    assert score({"type": "python", "source": source}, "hello", "abc") == 1.0, "clipped"
    assert score({"type": "python", "source": source, "pass_threshold": 0.6}, "hello",
                 "0123456789") == 0.0
    fn = {"type": "python", "function": lambda s, i: float(s["output_text"] == i["answer"])}
    assert score(fn, "x", "x") == 1.0 and score(fn, "x", "y") == 0.0


def test_python_grader_errors_name_the_field():
    with pytest.raises(GraderConfigError, match=r"grader\.source: invalid Python"):
        build_grader({"type": "python", "source": "def grade(sample, item) return 1"})
    with pytest.raises(GraderConfigError, match=r"grader\.source: .*grade\(sample, item\)"):
        build_grader({"type": "python", "source": "def score(sample, item):\n    return 1\n"})
    with pytest.raises(GraderConfigError, match=r"grader\.source: the code raised ModuleNotFoundError"):
        build_grader({"type": "python", "source": "import no_such_module_here\n"})
    broken = build_grader({"type": "python", "source": "def grade(s, i):\n    return 1 / 0\n"})
    with pytest.raises(GraderError, match=r"grader\.source: grade\(\) raised ZeroDivision"):
        broken.grade({"output_text": ""}, {})
    text = build_grader({"type": "python", "source": "def grade(s, i):\n    return 'yes'\n"})
    with pytest.raises(GraderError, match="must return a number"):
        text.grade({"output_text": ""}, {})


# -- multi ----------------------------------------------------------------------------------
def test_multi_formula():
    config = {"type": "multi", "graders": {"exact": check("eq"), "fuzzy": similar("fuzzy_match")},
              "calculate_output": "0.5 * exact + 0.5 * fuzzy"}
    assert score(config, "kitten", "sitting") == pytest.approx(0.5 * 0 + 0.5 * 8 / 13)
    assert score(config, "kitten", "kitten") == 1.0
    config["calculate_output"] = "max(exact, fuzzy) - abs(-0.1) * (2 - 1)"
    assert score(config, "kitten", "sitting") == pytest.approx(8 / 13 - 0.1)
    config["calculate_output"] = "min(exact, fuzzy, 1) + -exact"
    assert score(config, "kitten", "sitting") == 0.0
    config["calculate_output"] = "fuzzy / exact"
    with pytest.raises(GraderError, match="division by zero"):
        score(config, "kitten", "sitting")


# -- config errors --------------------------------------------------------------------------
@pytest.mark.parametrize(("config", "message"), [
    ({"type": "multi", "graders": {"fuzzy": similar("blue")}, "calculate_output": "fuzzy"},
     "grader.graders.fuzzy.evaluation_metric: must be one of " + ", ".join(METRICS)
     + "; got 'blue'"),
    ({"type": "label_model"}, "grader.type: must be one of string_check, text_similarity, "
                              "python, score_model, multi; got 'label_model'"),
    ({"input": OUT}, "grader.type: required"),
    ({"type": "string_check", "input": OUT, "operation": "eq"},
     "grader.reference: required for a string_check grader"),
    ({**check("eq"), "weight": 2}, "grader.weight: unknown field for a string_check grader"),
    ({**check("regex")}, "grader.operation: must be one of eq, ne, like, ilike; got 'regex'"),
    ({**check("eq"), "input": 3}, "grader.input: must be a string; got 3"),
    ({**similar("f1"), "pass_threshold": "high"}, "grader.pass_threshold: must be a finite"),
    ({"type": "multi", "graders": {"a": check("eq")}, "calculate_output": "a + b"},
     "grader.calculate_output: 'b' is not a grader of this multi grader"),
    ({"type": "multi", "graders": {"a": check("eq")}, "calculate_output": "a ** 2"},
     "grader.calculate_output: 'a ** 2' is not allowed (Pow)"),
    ({"type": "multi", "graders": {"a": check("eq")}, "calculate_output": "__import__('os')"},
     "grader.calculate_output: \"__import__('os')\" is not allowed (Call)"),
    ({"type": "multi", "graders": {"a": check("eq")}, "calculate_output": "a.real"},
     "grader.calculate_output: 'a.real' is not allowed (Attribute)"),
    ({"type": "multi", "graders": {"a": check("eq")}, "calculate_output": "abs(a, a)"},
     "grader.calculate_output: abs() takes one argument"),
    ({"type": "multi", "graders": {"a": check("eq")}, "calculate_output": "a +"},
     "grader.calculate_output: not a valid formula"),
    ({"type": "multi", "graders": {"max": check("eq")}, "calculate_output": "max"},
     "grader.graders.max: a sub-grader's name must be an identifier"),
    ({"type": "multi", "graders": {"a": {"type": "multi", "graders": {"b": {"type": "x"}},
                                         "calculate_output": "b"}}, "calculate_output": "a"},
     "grader.graders.a.graders.b.type: must be one of"),
    ({"type": "python"}, "grader.source: a python grader needs exactly one of"),
    ({"type": "score_model", "model": "m", "input": "rate it"},
     "grader.input: must be a non-empty list of messages"),
    ({"type": "score_model", "model": "m", "input": [{"role": "judge", "content": "x"}]},
     "grader.input.0.role: must be one of system, developer, user, assistant; got 'judge'"),
    ({"type": "score_model", "model": "m", "input": [{"role": "user", "content": "x"}],
      "range": [1, 0]}, "grader.range: low must be below high"),
    ({"type": "score_model", "model": "/no/such/model/dir",
      "input": [{"role": "user", "content": "x"}]}, "grader.model: cannot load"),
    ([1, 2], "grader: must be a grader config dict"),
    ("not json", "grader: a grader string must be a JSON config"),
])
def test_config_errors_name_the_field(config, message):
    with pytest.raises(GraderConfigError) as raised:
        build_grader(config)
    assert message in str(raised.value)
    assert isinstance(raised.value, ValueError)


def test_json_string_callable_and_research_hook():
    grader = build_grader(json.dumps(check("ilike")))
    assert isinstance(grader, Grader) and build_grader(grader) is grader
    # the research env's hook: item.answer is the first reference
    assert grader("Q?", "It is THILBURY", ["Thilbury", "Thilbury, Unail Downs"]) == 1.0
    assert grader("Q?", "anything", []) == 1.0, "'' is a substring of everything"
    seen = []
    wrapped = build_grader(lambda q, a, refs: seen.append((q, a, refs)) or 7.0)
    assert wrapped("Q?", "A", ("R",)) == 1.0 and seen == [("Q?", "A", ["R"])]
    assert wrapped.grade({"output_text": "A"}, {"question": "Q", "references": ["R"]}) == 1.0
    uses_question = build_grader({"type": "python", "source": (
        "def grade(sample, item):\n"
        "    return float(item['question'] == 'Q?' and item['references'] == ['x', 'y'])\n")})
    assert uses_question("Q?", "x", ("x", "y")) == 1.0


def test_import_stays_light():
    code = ("import sys, rlft.envs, rlft.envs.graders as g;"
            "g.build_grader({'type': 'string_check', 'input': 'a', 'reference': 'a',"
            " 'operation': 'eq'});"
            "print(sorted(m for m in ('transformers', 'rapidfuzz', 'sacrebleu', 'rouge_score')"
            " if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# -- score_model ----------------------------------------------------------------------------
WORDS = ("rate the answer from 0 to 9 question answer reference is it correct "
         "### System User Assistant <| |> system user assistant end").split()


def _save_tiny_llama(directory, kind: str, chat_template: bool = False):
    """A 1-layer Llama over a word-level vocabulary (digits are tokens): ``random`` weights,
    ``uniform`` (all logits equal) or ``nine`` (all mass on the token "9")."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from rlft.agents.tiny_models import CHAT_TEMPLATE

    vocab = {w: i for i, w in enumerate(dict.fromkeys(
        ["<unk>", "<pad>", "<eos>", *map(str, range(10)), *WORDS]))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   eos_token="<eos>")
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=256, pad_token_id=1, eos_token_id=2,
                         bos_token_id=None)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        if kind == "uniform":
            model.lm_head.weight.zero_()
        elif kind == "nine":
            # every token embeds to ones and no layer writes to the residual stream, so the
            # final hidden state is all ones and only the "9" row of the head scores it
            model.model.embed_tokens.weight.fill_(1.0)
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
            model.lm_head.weight.zero_()
            model.lm_head.weight[vocab["9"]] = 4.0
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def tiny_llamas(tmp_path_factory):
    root = tmp_path_factory.mktemp("score_models")
    return {kind: _save_tiny_llama(root / kind, kind, chat_template=(kind == "chat"))
            for kind in ("random", "chat", "uniform", "nine")}


def judge(model: str, **extra) -> dict:
    return {"type": "score_model", "model": model, "input": [
        {"role": "developer", "content": "rate the answer from 0 to 9"},
        {"role": "user", "content": f"question {{{{item.question}}}} answer {OUT} "
                                    f"reference {ANSWER}"}], **extra}


def test_score_model_is_deterministic_and_in_range(tiny_llamas):
    sample, item = {"output_text": "correct"}, {"question": "is it", "answer": "correct"}
    for kind in ("random", "chat"):
        grader = build_grader(judge(tiny_llamas[kind]))
        prompt = grader.prompt(sample, item)
        assert "answer correct reference correct" in prompt
        assert prompt.startswith("<|system|>" if kind == "chat" else "### System")
        value = grader.grade(sample, item)
        assert 0.0 <= value <= 1.0
        assert grader.grade(sample, item) == value
        assert build_grader(judge(tiny_llamas[kind])).grade(sample, item) == value


def test_score_model_expectation_over_digits_and_range(tiny_llamas):
    sample, item = {"output_text": "x"}, {"question": "q", "answer": "y"}
    # all logits equal: E[digit] = 4.5 -> 4.5 / 9
    uniform = build_grader(judge(tiny_llamas["uniform"]))
    assert uniform.grade(sample, item) == pytest.approx(0.5)
    wide = build_grader(judge(tiny_llamas["uniform"], range=[0, 10]))
    assert wide.score(sample, item) == pytest.approx(5.0) and wide.grade(sample, item) == 1.0
    nine = build_grader(judge(tiny_llamas["nine"]))
    assert nine.grade(sample, item) == pytest.approx(1.0, abs=1e-4)
    # a multi formula sees the raw value in the range
    multi = build_grader({"type": "multi", "graders": {"judge": judge(
        tiny_llamas["uniform"], range=[0, 10])}, "calculate_output": "judge / 10"})
    assert multi.grade(sample, item) == pytest.approx(0.5)


# -- the research env -----------------------------------------------------------------------
RESEARCH_GRADER = {"type": "multi", "graders": {
    "match": check("ilike"), "f1": similar("f1")},
    "calculate_output": "0.5 * match + 0.5 * f1"}


def test_research_env_with_a_grader_config():
    env = gym.make("rlft/Research-v0", split="test", reward_mode="shaped",
                   grader=RESEARCH_GRADER)
    assert isinstance(env.unwrapped.grader, Grader)
    pool = env.unwrapped.questions
    i = next(k for k, q in enumerate(pool) if q.answerable and len(q.answer.split()) >= 2)
    expert = env.unwrapped.expert()
    obs, info = env.reset(seed=0, options={"question_index": i})
    expert.reset()
    for _ in range(env.spec.max_episode_steps):
        obs, reward, term, trunc, info = env.step(expert.act(obs, info))
        if term or trunc:
            break
    assert term and info["answered"] and info["success"]
    assert reward == 1.0 and info["score"] == 1.0
    # half credit: not the answer (match 0), token F1 f against the canonical answer
    env.reset(seed=0, options={"question_index": i})
    first = pool[i].answer.split()[0]
    *_, reward, term, _, info = env.step(f"answer[{first}]")
    f1 = token_f1(first, [pool[i].answer])
    assert 0 < f1 < 1 and info["score"] == pytest.approx(0.5 * f1)
    assert reward == pytest.approx(-1 + 2 * 0.5 * f1) and not info["success"]
    env.close()
    env = gym.make("rlft/Research-v0", split="test", grader=json.dumps(RESEARCH_GRADER))
    env.reset(seed=0, options={"question_index": i})
    *_, reward, _, _, info = env.step(f"answer[{pool[i].answer}]")
    assert reward == 1.0 and info["success"]
    env.close()
    with pytest.raises(GraderConfigError, match=r"grader\.graders\.f1\.evaluation_metric"):
        gym.make("rlft/Research-v0", grader={**RESEARCH_GRADER, "graders": {
            "f1": similar("blue")}})
