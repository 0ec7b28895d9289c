"""Instruction records: parsing a JSONL file, rendering, and tokenising with a loss mask.

Records, one JSON object per line (blank lines skipped; other keys are ignored):

- ``{"prompt": str, "response": str}``, optionally with ``"system": str``;
- ``{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}``: the
  loss is on every assistant turn;
- Alpaca's ``{"instruction": str, "input": str (optional), "output": str}``: the user
  turn is the instruction, then a blank line and the input when it is not empty.

Every record becomes a list of messages. A bad record is a ``DataError`` naming the file,
the line and the fix, raised while the corpus is built at setup, never mid-run.

Rendering. With a ``chat_template`` in tokenizer_config.json the messages are rendered
with it in Jinja's immutable sandbox, set up as transformers'
``apply_chat_template`` does (``trim_blocks``, ``lstrip_blocks``, ``raise_exception``,
``tojson``), so the model is tuned on the format it will be served with. Otherwise the
plain template, per message::

    ### System:\\n{content}\\n\\n      ### User:\\n{content}\\n\\n
    ### Assistant:\\n{content}<EOS>

Loss mask. The text is split into segments — the context before an assistant turn (no
loss) and the assistant turn (loss) — and each segment is tokenised on its own, so the
mask is exact. A chat template's segments come from rendering prefixes: the context
before assistant turn i is ``render(messages[:i], add_generation_prompt=True)`` minus
what was rendered before, the turn is ``render(messages[:i+1])`` minus that. A template
that rewrites earlier turns when later ones are added (Qwen3 drops old reasoning) cannot
be split so and is refused for that record. EOS follows every response inside the loss;
a chat template that already ends the turn with EOS (``<|eot_id|>``, ``<|im_end|>``,
``</s>``) gets no second one. BOS starts the example when the tokenizer adds it, unless
the rendered text already starts with it.

Tokenising per segment can differ from tokenising the whole rendered string at a segment
boundary: a BPE merge across the boundary is not made (byte-level BPE pre-tokenizers
split at whitespace and punctuation, so this needs a boundary inside a word), and a
SentencePiece-style ``Metaspace`` pre-tokenizer (Llama 2, Mistral) prepends "▁" to each
segment. The model then sees a valid tokenisation of the same text that the server may
encode slightly differently at the start of a response; we accept it for an exact mask,
as torchtune does: ``Llama3Tokenizer.tokenize_messages`` (torchtune/models/llama3/
_tokenizer.py) tokenises message by message and concatenates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from runtime.train.data import DataError
from runtime.train.sft_tokenizer import Tokenizer

ROLES = ("system", "user", "assistant")
"""Roles a chat record may use."""
SHAPES = (
    '{"prompt": ..., "response": ..., "system": ... (optional)}',
    '{"messages": [{"role": ..., "content": ...}, ...]}',
    '{"instruction": ..., "input": ... (optional), "output": ...}',
)
"""The accepted record shapes, as error messages list them."""
PLAIN_HEADERS = {"system": "### System:\n", "user": "### User:\n", "assistant": "### Assistant:\n"}
"""Headers of the plain template (used when the tokenizer has no chat template)."""


@dataclass(frozen=True)
class Record:
    """One parsed line of the data file."""

    line: int
    """1-based line number in the file."""
    messages: tuple[tuple[str, str], ...]
    """(role, content) in order; at least one assistant turn."""
    key: str
    """Canonical JSON of the line: the train/validation split hashes it."""


def _string(value: Any, where: str, field: str) -> str:
    if value is None:
        raise DataError(f"{where}: {field} is missing or null; write it as a JSON string")
    if not isinstance(value, str):
        raise DataError(
            f"{where}: {field} is {type(value).__name__}, not a string; write it as a JSON string"
        )
    return value


def _response(value: Any, where: str, field: str) -> str:
    text = _string(value, where, field)
    if not text.strip():
        raise DataError(f"{where}: {field} is empty; every record needs a response to learn")
    return text


def _chat_messages(raw: Any, where: str) -> list[tuple[str, str]]:
    if not isinstance(raw, list) or not raw:
        raise DataError(f"{where}: messages must be a non-empty list of {{role, content}} objects")
    messages: list[tuple[str, str]] = []
    for index, message in enumerate(raw):
        field = f"messages[{index}]"
        if not isinstance(message, dict):
            raise DataError(f"{where}: {field} is not an object; write {{role, content}}")
        role = message.get("role")
        if role not in ROLES:
            raise DataError(f"{where}: {field}.role is {role!r}; use one of {', '.join(ROLES)}")
        if role == "assistant":
            content = _response(message.get("content"), where, f"{field}.content")
        else:
            content = _string(message.get("content"), where, f"{field}.content")
        messages.append((str(role), content))
    if not any(role == "assistant" for role, _ in messages):
        raise DataError(f"{where}: messages has no assistant turn; add the answer to learn")
    return messages


def parse_record(obj: Any, where: str) -> list[tuple[str, str]]:
    """The messages of one decoded line; ``where`` is ``file:line`` for errors."""
    if not isinstance(obj, dict):
        raise DataError(
            f"{where}: a record must be a JSON object, not {type(obj).__name__}; "
            f"write one of {' | '.join(SHAPES)}"
        )
    if "messages" in obj:
        return _chat_messages(obj["messages"], where)
    if "prompt" in obj and "response" in obj:
        prompt = _string(obj["prompt"], where, "prompt")
        pair = [("user", prompt), ("assistant", _response(obj["response"], where, "response"))]
        if "system" in obj:
            return [("system", _string(obj["system"], where, "system")), *pair]
        return pair
    if "instruction" in obj and "output" in obj:
        instruction = _string(obj["instruction"], where, "instruction")
        extra = _string(obj.get("input", ""), where, "input")
        user = f"{instruction}\n\n{extra}" if extra.strip() else instruction
        return [("user", user), ("assistant", _response(obj["output"], where, "output"))]
    keys = ", ".join(sorted(obj)) or "none"
    raise DataError(
        f"{where}: unknown record shape (keys: {keys}); write one of {' | '.join(SHAPES)}"
    )


def read_records(path: Path) -> list[Record]:
    """Every record of the JSONL file ``path``, in order; blank lines skipped."""
    if not path.is_file():
        raise DataError(f"--data {path}: no such file; pass a JSONL file of instruction records")
    records: list[Record] = []
    with path.open(encoding="utf-8", errors="strict") as handle:
        try:
            lines = list(handle)
        except UnicodeDecodeError as exc:
            raise DataError(f"--data {path}: not UTF-8 text ({exc}); save it as UTF-8") from exc
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(
                f"{where}: not JSON ({exc.msg} at column {exc.colno}); write one JSON object a line"
            ) from exc
        messages = parse_record(obj, where)
        key = json.dumps(obj, sort_keys=True, ensure_ascii=False)
        records.append(Record(line=number, messages=tuple(messages), key=key))
    return records


def _compile(template: str, where: str = "tokenizer_config.json") -> Any:
    """The chat template in Jinja's immutable sandbox, with transformers' helpers."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value: Any, indent: int | None = None) -> str:
        return json.dumps(value, ensure_ascii=False, indent=indent)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(template)
    except jinja2.exceptions.TemplateError as exc:
        raise DataError(
            f"{where}: chat_template does not compile ({exc}); fix or remove it"
        ) from exc


class Renderer:
    """Turns a record into (token ids, loss mask) for one tokenizer."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._template: Any = (
            _compile(tokenizer.chat_template, str(tokenizer.directory / "tokenizer_config.json"))
            if tokenizer.chat_template is not None
            else None
        )

    def _render(self, messages: list[dict[str, str]], generation: bool, where: str) -> str:
        import jinja2

        try:
            return str(
                self._template.render(
                    messages=messages,
                    add_generation_prompt=generation,
                    bos_token=self.tokenizer.bos_token or "",
                    eos_token=self.tokenizer.eos_token,
                )
            )
        except jinja2.exceptions.TemplateError as exc:
            raise DataError(
                f"{where}: the tokenizer's chat_template refuses this conversation ({exc}); "
                "reshape the record as the model's chat format expects"
            ) from exc

    def segments(self, record: Record, where: str) -> list[tuple[str, bool]]:
        """(text, is_response) pieces whose concatenation is the rendered record."""
        messages = list(record.messages)
        if self._template is None:
            pieces: list[tuple[str, bool]] = []
            for role, content in messages:
                pieces.append((PLAIN_HEADERS[role], False))
                pieces.append((content, True) if role == "assistant" else (f"{content}\n\n", False))
            return pieces
        dicts = [{"role": role, "content": content} for role, content in messages]
        pieces = []
        done = ""
        for index, (role, _) in enumerate(messages):
            if role != "assistant":
                continue
            context = self._render(dicts[:index], True, where)
            full = self._render(dicts[: index + 1], False, where)
            if not context.startswith(done) or not full.startswith(context):
                raise DataError(
                    f"{where}: the chat_template renders earlier turns differently once later "
                    "ones are added, so the response cannot be masked exactly; put each "
                    "assistant turn in its own record"
                )
            pieces.append((context[len(done) :], False))
            pieces.append((full[len(context) :], True))
            done = full
        return pieces

    def tokens(self, record: Record, where: str) -> tuple[list[int], list[bool]]:
        """Token ids of the record and, per token, whether it is in the loss."""
        return self.tokens_many([record], [where])[0]

    def tokens_many(
        self, records: list[Record], wheres: list[str]
    ) -> list[tuple[list[int], list[bool]]]:
        """``tokens`` of every record; the segments are encoded in one batch (the Rust
        tokenizer's threads), each segment still on its own."""
        tok = self.tokenizer
        segments = [self.segments(r, where) for r, where in zip(records, wheres, strict=True)]
        texts = [text for pieces in segments for text, _ in pieces]
        encoded = iter(tok.inner.encode_batch(texts, add_special_tokens=False))
        out: list[tuple[list[int], list[bool]]] = []
        for pieces in segments:
            ids: list[int] = []
            mask: list[bool] = []
            for _, is_response in pieces:
                piece = list(next(encoded).ids)
                if is_response and (self._template is None or tok.eos_id not in piece):
                    piece.append(tok.eos_id)
                ids.extend(piece)
                mask.extend([is_response] * len(piece))
            if tok.add_bos and tok.bos_id is not None and (not ids or ids[0] != tok.bos_id):
                ids.insert(0, tok.bos_id)
                mask.insert(0, False)
            out.append((ids, mask))
        return out
