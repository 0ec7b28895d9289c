"""The reference trainer's model as the planner sees it (``make run`` and the GPU check).

The trainer builds a Llama-style decoder (RMSNorm, rotary, GQA, SwiGLU, untied
embeddings by default); these are the same shapes as a planner ``ModelSpec``.
"""

from __future__ import annotations

from typing import Any

from runtime.train.config import default_ffn_hidden


def model_spec(
    name: str,
    *,
    layers: int,
    hidden: int,
    heads: int,
    kv_heads: int,
    vocab: int,
    ffn_hidden: int = 0,
) -> Any:
    """A ``planner.ModelSpec`` of the trainer's model with these shapes (``ffn_hidden`` 0:
    the SwiGLU width the trainer picks when ``--ffn-hidden`` is not given)."""
    import planner

    return planner.ModelSpec(
        name=name,
        num_layers=layers,
        hidden_size=hidden,
        num_attention_heads=heads,
        num_kv_heads=kv_heads,
        ffn_hidden_size=ffn_hidden or default_ffn_hidden(hidden),
        vocab_size=vocab,
    )
