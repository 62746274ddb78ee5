"""A tiny random-weight MarianMT (ru -> en shaped) saved like a hub model, for tests.

Two sentencepiece models are trained from a few lines in well under a second; the vocab
holds their pieces; a 1-layer MarianConfig keeps generation at a few milliseconds a token.
Random weights give nonsense, so tests check the path, not the wording. The special
tokens are never picked (their logits are pushed down): every output is a fixed number of
real pieces, never empty.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

SOURCE_LINES = [
    "красивый пейзаж с горами",
    "рыжая лиса в снегу на закате",
    "кот в космосе, масляная живопись",
    "старый город у моря ночью",
    "a red fox in the snow",
]
TARGET_LINES = [
    "a beautiful landscape with mountains",
    "a red fox in the snow at sunset",
    "a cat in space, oil painting",
    "an old town by the sea at night",
]
SPECIALS = ("</s>", "<unk>", "<pad>")  # ids 0, 1, 2


def _train_spm(lines: list[str], path: Path, vocab_size: int) -> list[str]:
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines * 20),
        model_writer=model,
        vocab_size=vocab_size,
        model_type="unigram",
        character_coverage=1.0,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    path.write_bytes(model.getvalue())
    processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
    return [processor.id_to_piece(i) for i in range(processor.get_piece_size())]


def save_tiny_marian(directory: Path, max_length: int = 12) -> Path:
    """Write the model, tokenizer files and config to ``directory``; returns it. Every
    translation is ``max_length`` pieces long (the model never ends one itself): a few
    milliseconds each, more for a deliberately slow model."""
    import torch
    from transformers import MarianConfig, MarianMTModel

    directory.mkdir(parents=True, exist_ok=True)
    source = _train_spm(SOURCE_LINES, directory / "source.spm", 60)
    target = _train_spm(TARGET_LINES, directory / "target.spm", 50)
    vocab: dict[str, int] = {}
    for piece in (*SPECIALS, *source, *target):
        vocab.setdefault(piece, len(vocab))
    # Only Latin pieces of the target model come out: a "translation" never holds Cyrillic.
    latin = {vocab[p] for p in target if p not in SPECIALS and re.fullmatch(r"[\u2581a-z,]+", p)}
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"source_lang": "ru", "target_lang": "en", "model_max_length": 512, "separate_vocabs": False})
    )
    config = MarianConfig(
        vocab_size=len(vocab),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=512,
        pad_token_id=2,
        eos_token_id=0,
        decoder_start_token_id=2,
        forced_eos_token_id=0,
        scale_embedding=True,
        init_std=0.5,  # weights large enough that different inputs give different outputs
    )
    torch.manual_seed(0)
    model = MarianMTModel(config).eval()
    with torch.no_grad():  # never a special or Cyrillic token: the output is always Latin pieces
        banned = [i for i in range(len(vocab)) if i not in latin]
        model.final_logits_bias[:, banned] = -1e4
    model.generation_config.max_length = max_length
    model.save_pretrained(directory)
    return directory
