"""Tiny HF models built from configs, with tokenizers trained offline on the Shop env's text.

No model hub is needed: these are real ``transformers`` models (a BERT encoder for the choice
policy, a Llama causal LM for the LM policy) with random weights, saved with
``save_pretrained`` so that every code path that takes a name or path can be exercised fast.
``rlft.agents.tiny_models.make_tiny_llama(dir)`` is also what the LM benchmark trains.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def shop_corpus(episodes: int = 20) -> tuple[str, ...]:
    """Goals, pages and actions of expert Shop episodes: text to train tokenizers on."""
    import gymnasium as gym

    import rlft.envs  # noqa: F401
    from rlft.agents.episode import rollout
    from rlft.agents.expert_agent import ExpertAgent

    env = gym.make("rlft/Shop-v0")
    expert = ExpertAgent(env)
    texts = []
    for seed in range(episodes):
        for step in rollout(env, expert, seed=seed):
            texts += [step.obs["goal"], step.obs["page"], *step.info["valid_actions"]]
    env.close()
    return tuple(texts)


def make_tiny_bert(directory: str | Path) -> Path:
    """Save a 2-layer, 32-wide BERT with a WordPiece tokenizer trained here to ``directory``."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(shop_corpus(), trainers.WordPieceTrainer(
        vocab_size=800, special_tokens=specials))
    fast = BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                             cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    config = BertConfig(vocab_size=fast.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128)
    import torch

    torch.manual_seed(0)
    BertModel(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return Path(directory)


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def make_tiny_llama(directory: str | Path, chat_template: bool = False, hidden: int = 48,
                    layers: int = 2) -> Path:
    """Save a small Llama (``layers`` x ``hidden``) with a byte-level BPE tokenizer trained
    here; ``chat_template=True`` gives the tokenizer a minimal chat template."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(shop_corpus(), trainers.BpeTrainer(
        vocab_size=1200, special_tokens=["<|pad|>", "<|eos|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|eos|>",
                                   pad_token="<|pad|>")
    if chat_template:
        fast.chat_template = CHAT_TEMPLATE
    config = LlamaConfig(vocab_size=len(fast), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=2048, eos_token_id=fast.eos_token_id,
                         pad_token_id=fast.pad_token_id, bos_token_id=None)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return Path(directory)


def make_tiny_clip(directory: str | Path, captions: tuple[str, ...] = (), hidden: int = 32,
                   layers: int = 2, image_size: int = 32, patch_size: int = 8) -> Path:
    """Save a small CLIP (``layers`` x ``hidden`` towers, ``image_size`` images) with a
    word-level tokenizer trained here on ``captions`` (default: tabletop goal words)."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    words = captions or tuple(
        f"put the {c} {o} in a {d} bowl" for c in ("red", "green", "blue", "yellow", "brown",
                                                  "gray", "cyan", "orange", "purple", "pink",
                                                  "white")
        for o in ("block", "blocks", "duck", "mug") for d in ("red", "green", "blue"))
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(words, trainers.WordLevelTrainer(
        special_tokens=["<pad>", "<unk>", "<bos>", "<eos>"]))
    bos, eos = tok.token_to_id("<bos>"), tok.token_to_id("<eos>")
    tok.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", bos), ("<eos>", eos)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>",
                                   bos_token="<bos>", eos_token="<eos>")
    config = CLIPConfig(
        text_config={"vocab_size": len(fast), "hidden_size": hidden,
                     "intermediate_size": 2 * hidden, "num_hidden_layers": layers,
                     "num_attention_heads": 2,
                     "max_position_embeddings": 32, "eos_token_id": eos, "bos_token_id": bos,
                     "pad_token_id": fast.pad_token_id},
        vision_config={"image_size": image_size, "patch_size": patch_size,
                       "hidden_size": hidden, "intermediate_size": 2 * hidden,
                       "num_hidden_layers": layers, "num_attention_heads": 2},
        projection_dim=hidden)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(directory)
    fast.save_pretrained(directory)
    return Path(directory)
