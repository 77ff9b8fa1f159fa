"""Graders as data: build answer graders from JSON configs in the public (OpenAI-style) format.

    from rlft.envs.graders import build_grader

    grader = build_grader({"type": "string_check", "input": "{{sample.output_text}}",
                           "reference": "{{item.answer}}", "operation": "ilike"})
    grader.grade({"output_text": "It is Thilbury."}, {"answer": "thilbury"})    # 1.0
    gym.make("rlft/Research-v0", grader={...})   # the same config as the env's grader

A grader scores a ``sample`` (the model's output, ``{"output_text": ...}``) against an ``item``
(the task's data; the research env passes ``{"question", "answer", "references"}``). Strings in
a config may hold templates, ``{{sample.output_text}}`` or ``{{ item.answer }}`` (dotted paths
into the two dicts, integer segments index lists), alone or inside longer text. Kinds (``type``):

* ``string_check``: ``input``, ``reference``, ``operation`` in ``eq`` | ``ne`` | ``like``
  (the reference is a substring of the input) | ``ilike`` (the same, ignoring case): 1 or 0.
* ``text_similarity``: ``input``, ``reference``, ``evaluation_metric`` in ``fuzzy_match``
  (rapidfuzz ``fuzz.ratio`` / 100: the normalised Indel similarity, ``2 * matches / total
  characters``), ``bleu`` (sacrebleu sentence BLEU / 100), ``rouge_1`` .. ``rouge_5`` and
  ``rouge_l`` (rouge-score F-measure, no stemming), ``f1`` (SQuAD token F1,
  :func:`rlft.envs.web.research.grader.token_f1`) or ``cosine`` (cosine similarity of the
  bundled all-MiniLM-L6-v2 sentence embeddings); optional ``pass_threshold``.
* ``python``: ``source``, code defining ``grade(sample, item) -> float``, or (from Python) a
  callable under ``function``; optional ``pass_threshold``. The code runs in this process with
  its full rights: use configs you trust.
* ``score_model``: ``model`` (a local causal LM directory, an HF name, or the bundled
  ``SmolLM2-135M-Instruct``), ``input`` (chat messages
  ``{"role", "content"}`` with templates), ``range`` (default ``[0, 1]``); optional
  ``pass_threshold``. The value is the expected rating over the next-token probabilities of
  the digits 0-9 after the prompt, ``E / 9`` mapped linearly onto ``range``. No sampling.
* ``multi``: ``graders`` (``{name: config}``) and ``calculate_output``, a formula over the
  names with numbers, ``+ - * /``, parentheses, ``min``, ``max`` and ``abs``.

Every kind also takes ``name``. ``pass_threshold`` turns the value into 1 (``>=`` threshold)
or 0. :meth:`Grader.score` is the raw value (a ``score_model`` with ``range: [0, 10]`` gives up
to 10, and ``multi`` formulas combine raw values); :meth:`Grader.grade` clips it to [0, 1]
(NaN -> 0). A bad config raises :class:`GraderConfigError` naming the field, e.g.
``grader.graders.fuzzy.evaluation_metric: must be one of ...; got 'blue'``; so does a
template path the graded data lacks. A ``python`` grader that raises or returns a non-number,
or a ``multi`` formula that divides by zero, raises :class:`GraderError` naming the field.

The metric libraries, transformers and the sentence encoder are imported on first use, and
models are loaded once per process, so importing this module (and ``rlft.envs``) stays cheap.
"""

from __future__ import annotations

import ast
import json
import keyword
import math
import numbers
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from rlft.envs.web.research.grader import token_f1

__all__ = ["GRADER_TYPES", "METRICS", "OPERATIONS", "Grader", "GraderConfigError",
           "GraderError", "Template", "build_grader", "clip01", "cosine_similarity",
           "similarity"]

#: ``string_check`` operations.
OPERATIONS: tuple[str, ...] = ("eq", "ne", "like", "ilike")
#: ``text_similarity`` metrics.
METRICS: tuple[str, ...] = ("bleu", "cosine", "f1", "fuzzy_match", "rouge_1", "rouge_2",
                            "rouge_3", "rouge_4", "rouge_5", "rouge_l")
#: Roles a ``score_model`` message may have (``developer`` is rendered as ``system``).
ROLES: tuple[str, ...] = ("system", "developer", "user", "assistant")
#: Functions a ``multi`` formula may call.
FORMULA_FUNCTIONS: dict[str, Callable[..., float]] = {"min": min, "max": max, "abs": abs}
_BINARY_OPS: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv}
_UNARY_OPS: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.USub: operator.neg, ast.UAdd: operator.pos}
_TEMPLATE = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_TEMPLATE_ROOTS = ("sample", "item")
#: The encoder's token budget per text for ``cosine`` (all-MiniLM-L6-v2 was trained on 256).
COSINE_MAX_TOKENS = 256

Sample = Mapping[str, Any]
Item = Mapping[str, Any]


class GraderConfigError(ValueError):
    """A grader config (or a template path it uses) is invalid; ``path`` names the field, e.g.
    ``grader.graders.fuzzy.evaluation_metric``."""

    def __init__(self, path: str, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = path


class GraderError(RuntimeError):
    """A grader failed while grading (a ``python`` grader raised or returned a non-number, a
    ``multi`` formula divided by zero)."""


# -- config helpers ----------------------------------------------------------------------------
def _check_fields(cfg: Mapping[str, Any], path: str, kind: str, required: Sequence[str],
                  optional: Sequence[str] = ()) -> None:
    """Raise on a missing required field or an unknown one."""
    for key in required:
        if key not in cfg:
            raise GraderConfigError(f"{path}.{key}", f"required for a {kind} grader")
    allowed = {"type", "name", *required, *optional}
    for key in cfg:
        if key not in allowed:
            raise GraderConfigError(f"{path}.{key}", f"unknown field for a {kind} grader; "
                                    f"allowed: {', '.join(sorted(allowed))}")
    if "name" in cfg and not isinstance(cfg["name"], str):
        raise GraderConfigError(f"{path}.name", f"must be a string; got {cfg['name']!r}")


def _string(cfg: Mapping[str, Any], key: str, path: str) -> str:
    value = cfg[key]
    if not isinstance(value, str):
        raise GraderConfigError(f"{path}.{key}", f"must be a string; got {value!r}")
    return value


def _choice(cfg: Mapping[str, Any], key: str, path: str, allowed: Sequence[str]) -> str:
    value = cfg[key]
    if value not in allowed:
        raise GraderConfigError(f"{path}.{key}",
                                f"must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value):
        raise GraderConfigError(path, f"must be a finite number; got {value!r}")
    return float(value)


def _threshold(cfg: Mapping[str, Any], path: str) -> float | None:
    if cfg.get("pass_threshold") is None:
        return None
    return _number(cfg["pass_threshold"], f"{path}.pass_threshold")


def _apply_threshold(value: float, threshold: float | None) -> float:
    if threshold is None:
        return value
    return 1.0 if value >= threshold else 0.0


def clip01(value: float) -> float:
    """``value`` clipped to [0, 1]; NaN -> 0."""
    value = float(value)
    return min(1.0, max(0.0, value)) if not math.isnan(value) else 0.0


# -- templates ---------------------------------------------------------------------------------
class Template:
    """A config string with ``{{sample.x}}`` / ``{{item.y.z}}`` holes, checked when built.

    Args:
        text: the string from the config.
        path: the field it came from (named in errors).
    """

    def __init__(self, text: str, path: str):
        self.text, self.path = text, path
        self.paths: list[tuple[str, ...]] = []
        for match in _TEMPLATE.finditer(text):
            dotted = match.group(1)
            parts = tuple(dotted.split("."))
            if parts[0] not in _TEMPLATE_ROOTS or not all(parts):
                raise GraderConfigError(path, f"unknown template path {dotted!r}; paths start "
                                        f"with 'sample.' or 'item.'")
            self.paths.append(parts)

    def render(self, sample: Sample, item: Item) -> str:
        """The text with every hole replaced by the value it names (lists and dicts as JSON);
        raise :class:`GraderConfigError` naming a path the data lacks."""
        if not self.paths:
            return self.text
        roots = {"sample": sample, "item": item}

        def fill(match: re.Match[str]) -> str:
            value = self._lookup(roots, match.group(1))
            if isinstance(value, str):
                return value
            if isinstance(value, (Mapping, list, tuple)):
                return json.dumps(value, ensure_ascii=False, default=str)
            return str(value)

        return _TEMPLATE.sub(fill, self.text)

    def _lookup(self, roots: Mapping[str, Any], dotted: str) -> Any:
        parts = dotted.split(".")
        value: Any = roots[parts[0]]
        for i, part in enumerate(parts[1:], 1):
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif isinstance(value, (list, tuple)) and part.isdigit() \
                    and int(part) < len(value):
                value = value[int(part)]
            else:
                where = ".".join(parts[:i])
                have = (f"; it has keys {', '.join(sorted(map(str, value)))}"
                        if isinstance(value, Mapping) else
                        f"; it is a list of {len(value)}" if isinstance(value, (list, tuple))
                        else f"; it is a {type(value).__name__}")
                raise GraderConfigError(self.path, f"template path {dotted!r} not found: no "
                                        f"{part!r} in {where}{have}")
        return value


# -- graders -----------------------------------------------------------------------------------
class Grader:
    """A grader built from a config: :meth:`score` (raw), :meth:`grade` (clipped to [0, 1]),
    and ``grader(question, answer, references)``, the research env's hook.

    Attributes:
        kind: the config's ``type``.
        name: the config's ``name`` (or the key in a ``multi`` grader's ``graders``).
        config: the config it was built from.
    """

    kind = ""

    def __init__(self, config: Mapping[str, Any], name: str | None = None):
        self.config = dict(config)
        self.name = config.get("name", name)

    def score(self, sample: Sample, item: Item) -> float:
        """The raw value for ``sample`` against ``item`` (not clipped)."""
        raise NotImplementedError

    def grade(self, sample: Sample, item: Item) -> float:
        """The grade in [0, 1]: :meth:`score` clipped (NaN -> 0)."""
        return clip01(self.score(sample, item))

    def __call__(self, question: str, answer: str, references: Sequence[str]) -> float:
        """The grade of ``answer`` as the research env asks for it: sample
        ``{"output_text": answer}``, item ``{"question", "answer": references[0] or "",
        "references"}``."""
        refs = list(references)
        return self.grade({"output_text": answer},
                          {"question": question, "answer": refs[0] if refs else "",
                           "references": refs})

    def __repr__(self) -> str:
        label = f" {self.name!r}" if self.name else ""
        return f"<{type(self).__name__}{label}>"


class StringCheckGrader(Grader):
    """``string_check``: 1.0 when ``input`` ``operation`` ``reference`` holds, else 0.0."""

    kind = "string_check"

    def __init__(self, cfg: Mapping[str, Any], path: str, name: str | None = None):
        super().__init__(cfg, name)
        _check_fields(cfg, path, self.kind, ("input", "reference", "operation"))
        self.input = Template(_string(cfg, "input", path), f"{path}.input")
        self.reference = Template(_string(cfg, "reference", path), f"{path}.reference")
        self.operation = _choice(cfg, "operation", path, OPERATIONS)

    def score(self, sample: Sample, item: Item) -> float:
        """1.0 or 0.0."""
        a, b = self.input.render(sample, item), self.reference.render(sample, item)
        if self.operation == "eq":
            return float(a == b)
        if self.operation == "ne":
            return float(a != b)
        if self.operation == "like":
            return float(b in a)
        return float(b.casefold() in a.casefold())


class TextSimilarityGrader(Grader):
    """``text_similarity``: ``evaluation_metric`` of ``input`` against ``reference``."""

    kind = "text_similarity"

    def __init__(self, cfg: Mapping[str, Any], path: str, name: str | None = None):
        super().__init__(cfg, name)
        _check_fields(cfg, path, self.kind, ("input", "reference", "evaluation_metric"),
                      ("pass_threshold",))
        self.input = Template(_string(cfg, "input", path), f"{path}.input")
        self.reference = Template(_string(cfg, "reference", path), f"{path}.reference")
        self.metric = _choice(cfg, "evaluation_metric", path, METRICS)
        self.threshold = _threshold(cfg, path)

    def score(self, sample: Sample, item: Item) -> float:
        """The metric's value (or 1/0 against ``pass_threshold``)."""
        value = similarity(self.metric, self.input.render(sample, item),
                           self.reference.render(sample, item))
        return _apply_threshold(value, self.threshold)


class PythonGrader(Grader):
    """``python``: ``grade(sample, item)`` from ``source`` (or the callable ``function``)."""

    kind = "python"

    def __init__(self, cfg: Mapping[str, Any], path: str, name: str | None = None):
        super().__init__(cfg, name)
        _check_fields(cfg, path, self.kind, (), ("source", "function", "pass_threshold"))
        self.path = path
        self.threshold = _threshold(cfg, path)
        if ("source" in cfg) == ("function" in cfg):
            raise GraderConfigError(f"{path}.source", "a python grader needs exactly one of "
                                    "'source' (code defining grade(sample, item)) or "
                                    "'function' (a callable)")
        if "function" in cfg:
            if not callable(cfg["function"]):
                raise GraderConfigError(f"{path}.function",
                                        f"must be callable; got {cfg['function']!r}")
            self.function: Callable[[Sample, Item], Any] = cfg["function"]
            self.field = f"{path}.function"
            return
        self.field = f"{path}.source"
        source = _string(cfg, "source", path)
        try:
            code = compile(source, f"<{self.field}>", "exec")
        except SyntaxError as e:
            raise GraderConfigError(self.field, f"invalid Python: {e}") from e
        namespace: dict[str, Any] = {"__name__": "rlft_grader"}
        try:
            exec(code, namespace)  # noqa: S102 - the user's own grader code, by design
        except Exception as e:
            raise GraderConfigError(self.field, f"the code raised "
                                    f"{type(e).__name__}: {e}") from e
        function = namespace.get("grade")
        if not callable(function):
            raise GraderConfigError(self.field, "the code must define a function "
                                    "grade(sample, item) -> float")
        self.function = function

    def score(self, sample: Sample, item: Item) -> float:
        """What ``grade(sample, item)`` returns (or 1/0 against ``pass_threshold``)."""
        try:
            value = self.function(sample, item)
        except Exception as e:
            raise GraderError(f"{self.field}: grade() raised {type(e).__name__}: {e}") from e
        if isinstance(value, bool) or isinstance(value, numbers.Real):
            return _apply_threshold(float(value), self.threshold)
        raise GraderError(f"{self.field}: grade() must return a number; got {value!r}")


class ScoreModelGrader(Grader):
    """``score_model``: a local causal LM rates the rendered chat with a digit 0-9; the value
    is the expected digit over its next-token probabilities, ``E / 9`` mapped onto ``range``.

    Each digit's probability sums the tokens ``"d"`` and ``" d"`` (when either is one token),
    renormalised over the ten digits. The prompt is the tokenizer's chat template with the
    generation prompt, else the plain ``### Role`` format
    (:func:`rlft.wrappers.chat.render_prompt`, as the LM policy prompts). The model is loaded
    when the grader is built, once per process and name.
    """

    kind = "score_model"

    def __init__(self, cfg: Mapping[str, Any], path: str, name: str | None = None):
        super().__init__(cfg, name)
        _check_fields(cfg, path, self.kind, ("model", "input"), ("range", "pass_threshold"))
        self.model_name = _string(cfg, "model", path)
        messages = cfg["input"]
        if not isinstance(messages, list) or not messages:
            raise GraderConfigError(f"{path}.input", f"must be a non-empty list of messages "
                                    f"{{'role', 'content'}}; got {messages!r}")
        self.messages: list[tuple[str, Template]] = []
        for i, m in enumerate(messages):
            where = f"{path}.input.{i}"
            if not isinstance(m, Mapping):
                raise GraderConfigError(where, f"must be a message {{'role', 'content'}}; "
                                        f"got {m!r}")
            extra = set(m) - {"role", "content", "type"}
            if extra:
                raise GraderConfigError(f"{where}.{sorted(extra)[0]}", "unknown message field; "
                                        "allowed: content, role, type")
            for key in ("role", "content"):
                if key not in m:
                    raise GraderConfigError(f"{where}.{key}", "required in a message")
            if m.get("type", "message") != "message":
                raise GraderConfigError(f"{where}.type", f"must be 'message'; got {m['type']!r}")
            role = _choice(m, "role", where, ROLES)
            self.messages.append((role, Template(_string(m, "content", where),
                                                 f"{where}.content")))
        low_high = cfg.get("range", [0, 1])
        if not isinstance(low_high, (list, tuple)) or len(low_high) != 2:
            raise GraderConfigError(f"{path}.range", f"must be [low, high]; got {low_high!r}")
        self.low = _number(low_high[0], f"{path}.range.0")
        self.high = _number(low_high[1], f"{path}.range.1")
        if not self.low < self.high:
            raise GraderConfigError(f"{path}.range", f"low must be below high; got {low_high!r}")
        self.threshold = _threshold(cfg, path)
        try:
            self.tokenizer, self.model = _causal_lm(self.model_name)
        except (OSError, ValueError) as e:
            raise GraderConfigError(f"{path}.model", f"cannot load {self.model_name!r}: "
                                    f"{e}") from e
        self.digit_ids = _digit_token_ids(self.tokenizer, f"{path}.model")

    def prompt(self, sample: Sample, item: Item) -> str:
        """The rendered chat as the model reads it."""
        from rlft.wrappers.chat import render_prompt

        messages = [{"role": "system" if role == "developer" else role,
                     "content": content.render(sample, item)}
                    for role, content in self.messages]
        return render_prompt(messages, self.tokenizer)

    def expected_digit(self, sample: Sample, item: Item) -> float:
        """The expected rating in [0, 9] under the model's next-token distribution."""
        import torch

        ids = self.tokenizer(self.prompt(sample, item), add_special_tokens=False,
                             return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            logits = self.model(input_ids=ids.to(self.model.device)).logits[0, -1]
            probs = torch.softmax(logits.double(), dim=-1).cpu()
        mass = torch.stack([probs[list(tokens)].sum() for tokens in self.digit_ids])
        total = float(mass.sum())
        if not total > 0:
            return float("nan")
        return float((mass * torch.arange(10, dtype=mass.dtype)).sum()) / total

    def score(self, sample: Sample, item: Item) -> float:
        """``low + E / 9 * (high - low)`` (or 1/0 against ``pass_threshold``)."""
        value = self.low + self.expected_digit(sample, item) / 9 * (self.high - self.low)
        return _apply_threshold(value, self.threshold)


class MultiGrader(Grader):
    """``multi``: ``calculate_output`` over the raw scores of named sub-graders."""

    kind = "multi"

    def __init__(self, cfg: Mapping[str, Any], path: str, name: str | None = None):
        super().__init__(cfg, name)
        _check_fields(cfg, path, self.kind, ("graders", "calculate_output"))
        children = cfg["graders"]
        if not isinstance(children, Mapping) or not children:
            raise GraderConfigError(f"{path}.graders", f"must be a non-empty dict "
                                    f"{{name: grader config}}; got {children!r}")
        self.graders: dict[str, Grader] = {}
        for key, child in children.items():
            where = f"{path}.graders.{key}"
            if not isinstance(key, str) or not key.isidentifier() or keyword.iskeyword(key) \
                    or key in FORMULA_FUNCTIONS:
                raise GraderConfigError(where, "a sub-grader's name must be an identifier "
                                        "(letters, digits, _) other than min, max and abs")
            self.graders[key] = _build(child, where, key)
        self.formula = _string(cfg, "calculate_output", path)
        self.tree = _parse_formula(self.formula, set(self.graders), f"{path}.calculate_output")
        self.field = f"{path}.calculate_output"

    def score(self, sample: Sample, item: Item) -> float:
        """The formula's value over the sub-graders' :meth:`Grader.score`."""
        values: dict[str, float] = {}
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Name) and node.id in self.graders and node.id not in values:
                values[node.id] = self.graders[node.id].score(sample, item)
        try:
            return float(_evaluate(self.tree.body, values))
        except ZeroDivisionError as e:
            raise GraderError(f"{self.field}: division by zero in {self.formula!r} with "
                              f"{values}") from e


class CallableGrader(Grader):
    """A plain ``grader(question, answer, references) -> float`` behind the Grader interface."""

    kind = "callable"

    def __init__(self, function: Callable[[str, str, Sequence[str]], float]):
        super().__init__({}, getattr(function, "__name__", None))
        self.function = function

    def score(self, sample: Sample, item: Item) -> float:
        """``function(item["question"], sample["output_text"], item["references"])``."""
        refs = item.get("references")
        if refs is None:
            refs = [item["answer"]] if item.get("answer") else []
        return float(self.function(str(item.get("question", "")),
                                   str(sample.get("output_text", "")), list(refs)))

    def __call__(self, question: str, answer: str, references: Sequence[str]) -> float:
        """The wrapped function's output, clipped to [0, 1]."""
        return clip01(self.function(question, answer, list(references)))


GRADER_TYPES: dict[str, type[Grader]] = {
    cls.kind: cls for cls in (StringCheckGrader, TextSimilarityGrader, PythonGrader,
                              ScoreModelGrader, MultiGrader)}


def build_grader(config: Mapping[str, Any] | str | Grader | Callable[..., float]) -> Grader:
    """A :class:`Grader` from a config dict, a JSON string of one, or a callable.

    A :class:`Grader` is returned as is; any other callable is taken as the research env's
    ``grader(question, answer, references) -> float`` and wrapped. Raise
    :class:`GraderConfigError` (a ValueError) naming the bad field, rooted at ``grader``.
    """
    if isinstance(config, Grader):
        return config
    if callable(config) and not isinstance(config, Mapping):
        return CallableGrader(config)
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as e:
            raise GraderConfigError("grader", f"a grader string must be a JSON config; {e}: "
                                    f"{config[:80]!r}") from e
    return _build(config, "grader")


def _build(config: Any, path: str, name: str | None = None) -> Grader:
    if not isinstance(config, Mapping):
        raise GraderConfigError(path, f"must be a grader config dict (or a JSON string of one, "
                                f"or a callable); got {config!r}")
    kind = config.get("type")
    if kind is None:
        raise GraderConfigError(f"{path}.type", f"required; one of "
                                f"{', '.join(GRADER_TYPES)}")
    if kind not in GRADER_TYPES:
        raise GraderConfigError(f"{path}.type", f"must be one of {', '.join(GRADER_TYPES)}; "
                                f"got {kind!r}")
    return GRADER_TYPES[kind](config, path, name)


# -- metrics -----------------------------------------------------------------------------------
def similarity(metric: str, text: str, reference: str) -> float:
    """``metric`` (one of :data:`METRICS`) of ``text`` against ``reference``: 1 for the same
    text; ``cosine`` may be negative, the others lie in [0, 1]."""
    if metric == "fuzzy_match":
        from rapidfuzz import fuzz

        return fuzz.ratio(text, reference) / 100.0
    if metric == "bleu":
        import sacrebleu

        return min(1.0, sacrebleu.sentence_bleu(text, [reference]).score / 100.0)
    if metric.startswith("rouge_"):
        key = "rougeL" if metric == "rouge_l" else metric.replace("_", "")
        return float(_rouge(key).score(reference, text)[key].fmeasure)
    if metric == "f1":
        return token_f1(text, [reference])
    if metric == "cosine":
        return cosine_similarity(text, reference)
    raise ValueError(f"metric must be one of {', '.join(METRICS)}; got {metric!r}")


@lru_cache(maxsize=8)
def _rouge(key: str):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer([key], use_stemmer=False)


@lru_cache(maxsize=1)
def _sentence_encoder():
    """The project's frozen all-MiniLM-L6-v2 :class:`rlft.agents.text_encoder.TextEncoder`,
    loaded once per process."""
    from rlft.agents.defaults import DEFAULT_ENCODER
    from rlft.agents.text_encoder import TextEncoder

    return TextEncoder(DEFAULT_ENCODER, max_length=COSINE_MAX_TOKENS)


def cosine_similarity(text: str, reference: str) -> float:
    """Cosine similarity of the two texts' mean-pooled MiniLM embeddings (in [-1, 1])."""
    import torch

    encoder = _sentence_encoder()
    # _encode, not the encoder's memoising forward: graded outputs rarely repeat, and the memo
    # would grow with every answer of a training run.
    with torch.inference_mode():
        a, b = encoder._encode([text, reference])
    return float((a * b).sum().clamp(-1.0, 1.0))


# -- score_model helpers -----------------------------------------------------------------------
@lru_cache(maxsize=4)
def _causal_lm(name_or_path: str):
    """``(tokenizer, model)`` in eval mode, loaded once per process (``SmolLM2-135M-Instruct``
    is the bundled offline model, as for the LM policy: :func:`rlft.agents.pretrained_lm.resolve_lm`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlft.agents.pretrained_lm import resolve_lm

    path = resolve_lm(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()
    model.requires_grad_(False)
    return tokenizer, model


def _digit_token_ids(tokenizer: Any, path: str) -> list[tuple[int, ...]]:
    """For each digit 0-9, the ids of ``"d"`` and ``" d"`` that are single tokens."""
    out = []
    for d in range(10):
        ids = set()
        for text in (str(d), f" {d}"):
            encoded = tokenizer.encode(text, add_special_tokens=False)
            if len(encoded) == 1 and encoded[0] != tokenizer.unk_token_id:
                ids.add(int(encoded[0]))
        if not ids:
            raise GraderConfigError(path, f"the tokenizer has no single token for the digit {d}; "
                                    f"a score_model needs digits 0-9 as tokens")
        out.append(tuple(sorted(ids)))
    return out


# -- multi formulas ----------------------------------------------------------------------------
_ALLOWED = "numbers, grader names, + - * /, parentheses, min, max, abs"


def _parse_formula(formula: str, names: set[str], path: str) -> ast.Expression:
    """Parse ``formula`` and check that it uses only :data:`_ALLOWED` constructs and names."""
    try:
        tree = ast.parse(formula.strip(), mode="eval")
    except SyntaxError as e:
        raise GraderConfigError(path, f"not a valid formula: {formula!r} ({e.msg})") from e

    def check(node: ast.AST) -> None:
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
            check(node.left)
            check(node.right)
        elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPS:
            check(node.operand)
        elif isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
                and not isinstance(node.value, bool):
            pass
        elif isinstance(node, ast.Name):
            if node.id not in names:
                raise GraderConfigError(path, f"{node.id!r} is not a grader of this multi "
                                        f"grader; its graders: {', '.join(sorted(names))}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in FORMULA_FUNCTIONS and not node.keywords:
            fn, arity = node.func.id, len(node.args)
            if (fn == "abs") != (arity == 1) or arity == 0:
                wanted = "one argument" if fn == "abs" else "two or more arguments"
                raise GraderConfigError(path, f"{fn}() takes {wanted}; got {arity} in "
                                        f"{formula!r}")
            for arg in node.args:
                if isinstance(arg, ast.Starred):
                    raise GraderConfigError(path, f"disallowed *args in {formula!r}")
                check(arg)
        else:
            what = type(getattr(node, "op", node)).__name__
            raise GraderConfigError(path, f"{ast.unparse(node)!r} is not allowed ({what}); "
                                    f"a formula may use {_ALLOWED}")

    check(tree.body)
    return tree


def _evaluate(node: ast.AST, values: Mapping[str, float]) -> float:
    """The value of a checked formula node."""
    if isinstance(node, ast.BinOp):
        return _BINARY_OPS[type(node.op)](_evaluate(node.left, values),
                                          _evaluate(node.right, values))
    if isinstance(node, ast.UnaryOp):
        return _UNARY_OPS[type(node.op)](_evaluate(node.operand, values))
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.Name):
        return values[node.id]
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    return float(FORMULA_FUNCTIONS[node.func.id](*(_evaluate(a, values) for a in node.args)))
