"""A Hugging Face checkpoint's own tokenizer, read without transformers.

``load_tokenizer(dir)`` opens ``dir/tokenizer.json`` with the ``tokenizers`` library and
reads beside it what the fast tokenizer of transformers would: the BOS/EOS tokens
(``tokenizer_config.json``'s ``bos_token``/``eos_token``, a string or a dict with
``"content"``, else ``config.json``'s ``bos_token_id``/``eos_token_id``), whether a
sequence starts with BOS (``add_bos_token`` — Llama 2 and Mistral write ``true`` — else
whatever ``tokenizer.json``'s post-processor adds, as Llama 3's ``TemplateProcessing``
does), and the ``chat_template`` the model is served with.

Text is always encoded with ``add_special_tokens=False`` and BOS is put in front by
``runtime.train.sft_format`` once, only when the rendered example does not already start
with it (Llama 3's chat template writes ``{{ bos_token }}`` itself), so BOS is never
doubled. Special tokens written as text (``<|eot_id|>``) still map to their ids: they are
added tokens of tokenizer.json, which the tokenizer matches before its model runs.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tokenizers

from runtime.train.data import DataError


@dataclass(frozen=True)
class Tokenizer:
    """The checkpoint's tokenizer with the special tokens fine-tuning needs."""

    inner: tokenizers.Tokenizer
    """The ``tokenizers`` tokenizer of ``tokenizer.json``."""
    directory: Path
    """The checkpoint directory it was read from."""
    bos_id: int | None
    """Beginning-of-sequence id; None where the model has none (Qwen2)."""
    bos_token: str | None
    """BOS as text, passed to chat templates as ``bos_token``."""
    eos_id: int
    """End-of-sequence id: appended after every response, inside the loss."""
    eos_token: str
    """EOS as text, passed to chat templates as ``eos_token``."""
    add_bos: bool
    """Whether every example starts with BOS (as the tokenizer does at serving time)."""
    chat_template: str | None
    """``tokenizer_config.json``'s Jinja chat template; None: the plain template."""
    vocab_size: int
    """Ids the tokenizer can produce, added tokens included. A model's embedding may have
    more rows (padded vocabularies), never fewer."""
    digest: str
    """sha256 (hex) of tokenizer.json and the special-token settings: part of the corpus
    fingerprint, so ranks or a resumed run with another tokenizer are caught."""

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, no special tokens added (BOS is handled by the caller)."""
        return list(self.inner.encode(text, add_special_tokens=False).ids)


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(
            f"{path}: not readable JSON ({exc}); restore the checkpoint's file"
        ) from exc
    if not isinstance(value, dict):
        raise DataError(f"{path}: not a JSON object; restore the checkpoint's file")
    return value


def _token_text(value: Any, path: Path, field: str) -> str | None:
    """A special token as written in tokenizer_config.json: a string, {"content": ...} or null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return str(value["content"])
    raise DataError(f"{path}: {field} must be a string or an object with 'content'; got {value!r}")


def _special(
    inner: tokenizers.Tokenizer,
    name: str,
    tok_config: dict[str, Any],
    model_config: dict[str, Any],
    directory: Path,
) -> tuple[int | None, str | None]:
    """(id, text) of ``bos`` or ``eos`` from tokenizer_config.json, else config.json."""
    tok_path = directory / "tokenizer_config.json"
    field = f"{name}_token"
    if field in tok_config:
        text = _token_text(tok_config[field], tok_path, field)
        if text is None:  # written as null: the model has no such token
            return None, None
        token_id = inner.token_to_id(text)
        if token_id is None:
            raise DataError(
                f"{tok_path}: {field} {text!r} is not a token of tokenizer.json; "
                "use the checkpoint's own tokenizer files"
            )
        return int(token_id), text
    raw = model_config.get(f"{name}_token_id")
    if isinstance(raw, list) and raw:  # Llama 3.1 lists several EOS ids; the first is EOS
        raw = raw[0]
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw, inner.id_to_token(raw)
    return None, None


def _adds_bos(inner: tokenizers.Tokenizer, bos_id: int | None, tok_config: dict[str, Any]) -> bool:
    flag = tok_config.get("add_bos_token")
    if isinstance(flag, bool):
        return flag and bos_id is not None
    if bos_id is None:
        return False
    # No flag: the post-processor decides, as it does for the fast tokenizer of transformers.
    with_special = inner.encode("a", add_special_tokens=True).ids
    plain = inner.encode("a", add_special_tokens=False).ids
    return bool(with_special) and with_special[0] == bos_id and (not plain or plain[0] != bos_id)


def load_tokenizer(directory: Path) -> Tokenizer:
    """The tokenizer of checkpoint ``directory``; a missing or bad file is a ``DataError``."""
    directory = Path(directory)
    path = directory / "tokenizer.json"
    if not path.is_file():
        raise DataError(
            f"{directory} has no tokenizer.json; fine-tuning reads the checkpoint's own "
            "tokenizer (save it with tokenizer.save_pretrained into that directory)"
        )
    try:
        inner = tokenizers.Tokenizer.from_file(str(path))
    except Exception as exc:  # the Rust library raises a bare Exception on a bad file
        raise DataError(
            f"{path}: the tokenizers library cannot read it ({exc}); "
            "restore the checkpoint's tokenizer.json"
        ) from exc
    tok_config = _read_json(directory / "tokenizer_config.json")
    model_config = _read_json(directory / "config.json")
    bos_id, bos_token = _special(inner, "bos", tok_config, model_config, directory)
    eos_id, eos_token = _special(inner, "eos", tok_config, model_config, directory)
    if eos_id is None or eos_token is None:
        raise DataError(
            f"{directory}: no EOS token (tokenizer_config.json eos_token or config.json "
            "eos_token_id); add eos_token to tokenizer_config.json"
        )
    template = tok_config.get("chat_template")
    if isinstance(template, list):  # several named templates: transformers uses "default"
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        template = named.get("default")
    if template is not None and not isinstance(template, str):
        raise DataError(
            f"{directory / 'tokenizer_config.json'}: chat_template must be a string; "
            "fix or remove it"
        )
    add_bos = _adds_bos(inner, bos_id, tok_config)
    digest = hashlib.sha256(path.read_bytes())
    digest.update(repr((bos_id, eos_id, add_bos, template)).encode())
    return Tokenizer(
        inner=inner,
        directory=directory,
        bos_id=bos_id,
        bos_token=bos_token,
        eos_id=eos_id,
        eos_token=eos_token,
        add_bos=add_bos,
        chat_template=template,
        vocab_size=int(inner.get_vocab_size(with_added_tokens=True)),
        digest=digest.hexdigest(),
    )
