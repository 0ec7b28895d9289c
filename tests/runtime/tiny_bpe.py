"""A tiny byte-level BPE tokenizer like Llama 3's, and tokenizer_config.json variants.

Trained with ``tokenizers`` on the Python reference prose the trainer's default corpus
uses (``runtime.train.data.load_documents("pydoc")``), vocabulary 512, with Llama 3's
special tokens and a post-processor that adds ``<|begin_of_text|>`` as Llama 3's
tokenizer.json does. The fixtures (tests/runtime/conftest.py) write it as a checkpoint's
files; tests import the constants from here (a conftest is never imported by name).
"""

from __future__ import annotations

from typing import Any

BOS = "<|begin_of_text|>"
EOS = "<|end_of_text|>"
EOT = "<|eot_id|>"
SPECIAL_TOKENS = (BOS, EOS, "<|start_header_id|>", "<|end_header_id|>", EOT)
"""Llama 3's special tokens that its chat format uses."""
LLAMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "<|start_header_id|>{{ message['role'] }}<|end_header_id|>\n\n"
    "{{ message['content'] | trim }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
"""The shape of Llama 3 Instruct's chat template (its date and tool handling left out)."""
PLAIN_CONFIG = {"bos_token": BOS, "eos_token": EOS}
"""tokenizer_config.json of a base model: no chat template, BOS from the post-processor."""
CHAT_CONFIG = {
    "bos_token": {"content": BOS, "special": True},
    "eos_token": EOT,
    "chat_template": LLAMA3_CHAT_TEMPLATE,
}
"""tokenizer_config.json of an instruct model: Llama 3's template, EOS the end of turn."""


def train_bpe() -> Any:
    """A byte-level BPE (vocabulary 512) trained on the pydoc corpus, as the tiny
    checkpoints' (examples/make_tiny_hf.py) with Llama 3's chat tokens."""
    from examples.make_tiny_hf import train_tokenizer

    return train_tokenizer(vocab=512, special_tokens=SPECIAL_TOKENS)
