"""Tiny pretrained-model stand-ins for fast tests: real HF models built from small configs,
with tokenizers trained offline on the Shop env's own text (no model hub here)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def shop_corpus() -> tuple[str, ...]:
    """Goals and pages of a few expert Shop episodes: text to train tokenizers on."""
    import gymnasium as gym

    import rlft.envs  # noqa: F401

    env = gym.make("rlft/Shop-v0")
    expert = env.unwrapped.expert()
    texts = []
    for seed in range(20):
        obs, info = env.reset(seed=seed)
        while True:
            texts += [obs["goal"], obs["page"], *info["valid_actions"]]
            obs, _, term, trunc, info = env.step(expert.act(obs, info))
            if term or trunc:
                break
    env.close()
    return tuple(texts)


def make_tiny_bert(directory: Path) -> Path:
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
    return directory
