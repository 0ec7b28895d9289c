"""Instruction data for fine-tuning (runtime/train/sft*.py): the checkpoint's tokenizer,
record shapes and their errors, rendering with an exact loss mask, packing, the split,
batches that any world size reads alike, and the shipped examples/sft/tiny.jsonl."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from tiny_bpe import BOS, CHAT_CONFIG, EOS, EOT, PLAIN_CONFIG

from runtime.train.data import DataError
from runtime.train.sft import (
    IGNORE_INDEX,
    build_sft,
    load_tokenizer,
    pack,
    sft_eval,
    sft_micro_batch,
    split_records,
)
from runtime.train.sft_format import Record, Renderer, read_records

REPO = Path(__file__).resolve().parents[2]
TINY = REPO / "examples" / "sft" / "tiny.jsonl"
MakeDir = Callable[..., Path]


def write_jsonl(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


def record(*messages: tuple[str, str], line: int = 1) -> Record:
    return Record(line=line, messages=tuple(messages), key=json.dumps(messages))


# --- tokenizer -------------------------------------------------------------------------


def test_a_directory_without_tokenizer_json_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=r"has no tokenizer\.json; fine-tuning reads the checkpoint"
    ):
        load_tokenizer(tmp_path)


def test_special_tokens_come_from_tokenizer_config(tokenizer_dir: MakeDir) -> None:
    tok = load_tokenizer(tokenizer_dir(tokenizer_config=CHAT_CONFIG))
    assert tok.bos_id == tok.inner.token_to_id(BOS)  # written as {"content": ...}
    assert (tok.eos_id, tok.eos_token) == (tok.inner.token_to_id(EOT), EOT)
    assert tok.add_bos  # no add_bos_token: the post-processor adds BOS
    assert tok.chat_template is not None
    assert tok.vocab_size == tok.inner.get_vocab_size(with_added_tokens=True) == 512


def test_special_tokens_fall_back_to_config_json(tokenizer_dir: MakeDir) -> None:
    directory = tokenizer_dir(
        tokenizer_config=None, config={"bos_token_id": 0, "eos_token_id": [1, 4]}
    )
    tok = load_tokenizer(directory)
    assert (tok.bos_id, tok.bos_token, tok.eos_id, tok.eos_token) == (0, BOS, 1, EOS)
    assert tok.add_bos and tok.chat_template is None


def test_add_bos_token_false_wins_over_the_post_processor(tokenizer_dir: MakeDir) -> None:
    tok = load_tokenizer(tokenizer_dir(tokenizer_config={**PLAIN_CONFIG, "add_bos_token": False}))
    assert not tok.add_bos
    ids, _ = Renderer(tok).tokens(record(("user", "hi"), ("assistant", "yo")), "f:1")
    assert tok.bos_id not in ids


@pytest.mark.parametrize(
    ("tokenizer_config", "config", "message"),
    [
        ({"bos_token": BOS}, None, r"no EOS token .* add eos_token to tokenizer_config\.json"),
        (
            {"eos_token": "<|nope|>"},
            None,
            r"eos_token '<\|nope\|>' is not a token of tokenizer\.json",
        ),
        ({"eos_token": 7}, None, r"eos_token must be a string or an object with 'content'"),
        ({"eos_token": EOS, "chat_template": 3}, None, r"chat_template must be a string"),
    ],
)
def test_bad_tokenizer_settings_name_the_file(
    tokenizer_dir: MakeDir, tokenizer_config: dict, config: dict | None, message: str
) -> None:
    directory = tokenizer_dir(tokenizer_config=tokenizer_config, config=config)
    with pytest.raises(DataError, match=message) as caught:
        load_tokenizer(directory)
    assert str(directory) in str(caught.value)


# --- records ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"prompt": "a", ', r"not JSON \(.*\); write one JSON object a line"),
        (
            "[1, 2]",
            r"must be a JSON object, not list; write one of .*prompt.*messages.*instruction",
        ),
        (
            '{"question": "a", "answer": "b"}',
            r"unknown record shape \(keys: answer, question\); write one of",
        ),
        ('{"prompt": "a", "response": "  "}', r"response is empty"),
        ('{"instruction": "a", "output": ""}', r"output is empty"),
        ('{"prompt": 3, "response": "b"}', r"prompt is int, not a string"),
        ('{"prompt": "a", "response": "b", "system": 1}', r"system is int, not a string"),
        (
            '{"messages": [{"role": "bot", "content": "x"}]}',
            r"messages\[0\]\.role is 'bot'; use one of system, user, assistant",
        ),
        ('{"messages": [{"role": "user", "content": "x"}]}', r"messages has no assistant turn"),
        (
            '{"messages": [{"role": "user", "content": ["x"]}, '
            '{"role": "assistant", "content": "y"}]}',
            r"messages\[0\]\.content is list, not a string",
        ),
        (
            '{"messages": [{"role": "user", "content": "x"}, '
            '{"role": "assistant", "content": ""}]}',
            r"messages\[1\]\.content is empty",
        ),
        ('{"messages": []}', r"messages must be a non-empty list"),
        ('{"messages": [{"role": "user"}]}', r"messages\[0\]\.content is missing or null"),
        ('{"messages": ["hi"]}', r"messages\[0\] is not an object"),
    ],
)
def test_every_bad_record_names_file_line_and_fix(tmp_path: Path, line: str, message: str) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "p", "response": "r"}, "", line])
    with pytest.raises(DataError, match=message) as caught:
        read_records(path)
    text = str(caught.value)
    assert text.startswith(f"{path}:3: ") and "\n" not in text


def test_the_three_shapes_become_messages(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "d.jsonl",
        [
            {"prompt": "p", "response": "r", "id": 7},  # other keys are ignored
            {"prompt": "p", "response": "r", "system": "s"},
            "   ",
            {"instruction": "Add", "input": "2 3", "output": "5"},
            {"instruction": "Hi", "input": "", "output": "Hello"},
            {
                "messages": [
                    {"role": "system", "content": "s"},
                    {"role": "user", "content": "u"},
                    {"role": "assistant", "content": "a"},
                ]
            },
        ],
    )
    got = [(r.line, r.messages) for r in read_records(path)]
    assert got == [
        (1, (("user", "p"), ("assistant", "r"))),
        (2, (("system", "s"), ("user", "p"), ("assistant", "r"))),
        (4, (("user", "Add\n\n2 3"), ("assistant", "5"))),
        (5, (("user", "Hi"), ("assistant", "Hello"))),
        (6, (("system", "s"), ("user", "u"), ("assistant", "a"))),
    ]


def test_a_missing_file_and_a_one_record_file_are_refused(
    tmp_path: Path, tokenizer_dir: MakeDir
) -> None:
    directory = tokenizer_dir()
    with pytest.raises(DataError, match=r"no such file; pass a JSONL file"):
        build_sft(str(tmp_path / "none.jsonl"), directory, 64, 0)
    one = write_jsonl(tmp_path / "one.jsonl", [{"prompt": "p", "response": "r"}])
    with pytest.raises(DataError, match=r"1 record\(s\); .* write at least 2"):
        build_sft(str(one), directory, 64, 0)
    with pytest.raises(DataError, match=r"--seq-len 1: fine-tuning needs at least 2"):
        build_sft(str(one), directory, 1, 0)


# --- rendering and the loss mask -------------------------------------------------------


def loss_text(tok, ids: list[int], mask: list[bool]) -> str:  # type: ignore[no-untyped-def]
    return tok.inner.decode(
        [i for i, m in zip(ids, mask, strict=True) if m], skip_special_tokens=False
    )


def test_plain_template_masks_exactly_the_responses_and_their_eos(tokenizer_dir: MakeDir) -> None:
    tok = load_tokenizer(tokenizer_dir())
    rec = record(
        ("system", "Be brief."),
        ("user", "Reverse: cat"),
        ("assistant", "tac"),
        ("user", "Upper: dog"),
        ("assistant", "DOG"),
    )
    ids, mask = Renderer(tok).tokens(rec, "f:1")
    assert loss_text(tok, ids, mask) == f"tac{EOS}DOG{EOS}"
    assert ids.count(tok.bos_id) == 1 and ids[0] == tok.bos_id
    assert tok.inner.decode(ids, skip_special_tokens=False) == (
        f"{BOS}### System:\nBe brief.\n\n### User:\nReverse: cat\n\n### Assistant:\ntac{EOS}"
        f"### User:\nUpper: dog\n\n### Assistant:\nDOG{EOS}"
    )


def test_chat_template_is_rendered_bos_once_and_its_own_eos_kept(tokenizer_dir: MakeDir) -> None:
    tok = load_tokenizer(tokenizer_dir(tokenizer_config=CHAT_CONFIG))
    rec = record(
        ("user", "Reverse: cat"), ("assistant", "tac"), ("user", "2 + 3?"), ("assistant", "5")
    )
    ids, mask = Renderer(tok).tokens(rec, "f:1")
    # The template writes {{ bos_token }} itself; the tokenizer's BOS is not added again,
    # and the turn's own <|eot_id|> (the EOS) is the only end-of-sequence token.
    assert ids.count(tok.bos_id) == 1 and ids[0] == tok.bos_id
    assert loss_text(tok, ids, mask) == f"tac{EOT}5{EOT}"
    from runtime.train.sft_format import _compile

    whole = _compile(CHAT_CONFIG["chat_template"]).render(
        messages=[{"role": r, "content": c} for r, c in rec.messages], bos_token=BOS, eos_token=EOT
    )
    assert tok.inner.decode(ids, skip_special_tokens=False) == whole


def test_chat_rendering_matches_transformers_apply_chat_template(tokenizer_dir: MakeDir) -> None:
    from transformers import AutoTokenizer

    # transformers 5 takes special tokens in tokenizer_config.json as strings only.
    directory = tokenizer_dir(tokenizer_config={**CHAT_CONFIG, "bos_token": BOS})
    reference = AutoTokenizer.from_pretrained(str(directory))
    renderer = Renderer(load_tokenizer(directory))
    for rec in read_records(TINY):
        messages = [{"role": role, "content": content} for role, content in rec.messages]
        expected = reference.apply_chat_template(messages, tokenize=True)
        if not isinstance(expected, list):  # a BatchEncoding in some versions
            expected = expected["input_ids"]
        ids, _ = renderer.tokens(rec, f"tiny.jsonl:{rec.line}")
        assert ids == expected, rec.line


def test_a_template_without_eos_gets_one_after_each_response(tokenizer_dir: MakeDir) -> None:
    template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}assistant: {% endif %}"
    )
    tok = load_tokenizer(
        tokenizer_dir(tokenizer_config={**PLAIN_CONFIG, "chat_template": template})
    )
    ids, mask = Renderer(tok).tokens(record(("user", "hi"), ("assistant", "yo")), "f:1")
    assert loss_text(tok, ids, mask) == f"yo\n{EOS}"
    assert ids[0] == tok.bos_id  # the post-processor's BOS, the template writes none


def test_templates_that_cannot_be_split_or_refuse_are_data_errors(tokenizer_dir: MakeDir) -> None:
    # Renders the last turn apart from the others: earlier text changes as turns are added.
    unstable = (
        "{% for m in messages %}{% if loop.last %}[last]{% endif %}{{ m['content'] }}{% endfor %}"
    )
    refusing = (
        "{% if messages[0]['role'] != 'user' %}"
        "{{ raise_exception('roles must alternate') }}{% endif %}x"
    )
    rec = record(("system", "s"), ("user", "u"), ("assistant", "a"), line=4)
    for template, message in (
        (unstable, r"f:4: the chat_template renders earlier turns differently"),
        (refusing, r"f:4: the tokenizer's chat_template refuses .*roles must alternate"),
    ):
        tok = load_tokenizer(
            tokenizer_dir(
                name=str(len(message)), tokenizer_config={**PLAIN_CONFIG, "chat_template": template}
            )
        )
        with pytest.raises(DataError, match=message):
            Renderer(tok).tokens(rec, "f:4")


def test_a_template_that_does_not_compile_names_the_file(tokenizer_dir: MakeDir) -> None:
    directory = tokenizer_dir(tokenizer_config={**PLAIN_CONFIG, "chat_template": "{% for %}"})
    with pytest.raises(DataError, match=r"tokenizer_config\.json: chat_template does not compile"):
        Renderer(load_tokenizer(directory))


def test_the_template_runs_sandboxed(tokenizer_dir: MakeDir) -> None:
    escape = "{{ messages.__class__.__mro__[1].__subclasses__() }}"
    tok = load_tokenizer(tokenizer_dir(tokenizer_config={**PLAIN_CONFIG, "chat_template": escape}))
    with pytest.raises(DataError, match=r"f:1: .*access to attribute '__class__' .* is unsafe"):
        Renderer(tok).tokens(record(("user", "u"), ("assistant", "a")), "f:1")


# --- packing, split, batches -----------------------------------------------------------


def test_pack_keeps_examples_whole_truncates_and_pads_without_loss() -> None:
    examples = [
        ([1, 2, 3], [False, True, True]),
        ([4, 5, 6], [False, True, True]),  # does not fit beside the first: next window
        ([7, 8], [False, True]),  # fits beside the second
        ([9, 10, 11, 12, 13, 14, 15], [False] * 2 + [True] * 5),  # cut to 5 tokens
        ([16, 17, 18, 19, 20, 21], [False] * 5 + [True]),  # its response is cut away
    ]
    packed = pack(examples, seq_len=4, pad_id=0)
    assert packed.tokens.tolist() == [[1, 2, 3, 0, 0], [4, 5, 6, 7, 8], [9, 10, 11, 12, 13]]
    assert packed.labels.tolist() == [
        [-100, 2, 3, -100, -100],
        [-100, 5, 6, -100, 8],
        [-100, -100, 11, 12, 13],
    ]
    assert (packed.truncated, packed.skipped, packed.filled) == (2, 1, 13)


def test_split_is_by_record_hash_with_one_held_out_at_least() -> None:
    records = [record(("user", str(i)), ("assistant", "x"), line=i + 1) for i in range(200)]
    train, val = split_records(records, "f")
    assert {r.key for r in train}.isdisjoint(r.key for r in val) and len(train) + len(val) == 200
    assert 2 <= len(val) <= 20  # about 5 %
    again = split_records(list(reversed(records)), "f")  # the file's order does not matter
    assert {r.key for r in again[1]} == {r.key for r in val}
    small_train, small_val = split_records(records[:2], "f")
    assert len(small_train) == len(small_val) == 1


@pytest.fixture
def corpus(tokenizer_dir: MakeDir):  # type: ignore[no-untyped-def]
    return build_sft(str(TINY), tokenizer_dir(), 128, 0)


def test_tiny_corpus_counts_and_fingerprint(corpus, tokenizer_dir: MakeDir) -> None:  # type: ignore[no-untyped-def]
    assert sum(corpus.examples) == 320 and 1 <= corpus.examples[1] <= 32
    assert corpus.train_tokens.shape[1] == 129 and corpus.truncated == 0
    assert corpus.response_tokens == int(
        (corpus.train_labels[:, 1:] != IGNORE_INDEX).sum()
        + (corpus.val_labels[:, 1:] != IGNORE_INDEX).sum()
    )
    assert 0.5 < corpus.packing_efficiency <= 1.0 and "packing efficiency" in corpus.summary()
    same = build_sft(str(TINY), tokenizer_dir(name="again"), 128, 0)
    assert same.fingerprint == corpus.fingerprint
    assert build_sft(str(TINY), tokenizer_dir(name="len"), 96, 0).fingerprint != corpus.fingerprint
    chat = build_sft(str(TINY), tokenizer_dir(name="chat", tokenizer_config=CHAT_CONFIG), 128, 0)
    assert chat.fingerprint != corpus.fingerprint
    reordered = build_sft(str(TINY), tokenizer_dir(name="seed"), 128, 1)
    assert reordered.fingerprint != corpus.fingerprint and reordered.examples == corpus.examples
    short = build_sft(str(TINY), tokenizer_dir(name="short"), 48, 0)
    assert short.truncated > 0  # two-exchange records are cut; their first answer stays
    for labels in (short.train_labels, short.val_labels, corpus.train_labels):
        assert (labels[:, 1:] != IGNORE_INDEX).any(axis=1).all()  # a target in every window
    with pytest.raises(DataError, match=r"no response token .* --seq-len 16 .*raise --seq-len"):
        build_sft(str(TINY), tokenizer_dir(name="shorter"), 16, 0)


def test_targets_are_the_next_tokens_where_in_the_loss(corpus) -> None:  # type: ignore[no-untyped-def]
    tokens, targets = sft_micro_batch(
        corpus, seed=3, step=5, micro_step=0, rank=0, world_size=1, micro_batch=4
    )
    assert tokens.shape == targets.shape == (4, 128) and tokens.dtype == targets.dtype == np.int64
    kept = targets[:, :-1] != IGNORE_INDEX
    assert kept.any() and (targets[:, :-1][kept] == tokens[:, 1:][kept]).all()
    assert (targets == IGNORE_INDEX).any()  # prompts carry no loss


def test_dp2_ranks_together_read_what_dp1_reads(corpus) -> None:  # type: ignore[no-untyped-def]
    for step in (1, 2, 17):
        for micro_step in (0, 1):
            one = sft_micro_batch(
                corpus,
                seed=5,
                step=step,
                micro_step=micro_step,
                rank=0,
                world_size=1,
                micro_batch=4,
            )
            ranks = [
                sft_micro_batch(
                    corpus,
                    seed=5,
                    step=step,
                    micro_step=micro_step,
                    rank=r,
                    world_size=2,
                    micro_batch=2,
                )
                for r in (0, 1)
            ]
            for part in (0, 1):
                assert np.array_equal(np.concatenate([ranks[0][part], ranks[1][part]]), one[part])
    other = sft_micro_batch(
        corpus, seed=5, step=2, micro_step=0, rank=0, world_size=1, micro_batch=4
    )
    assert not np.array_equal(
        other[0],
        sft_micro_batch(corpus, seed=5, step=1, micro_step=0, rank=0, world_size=1, micro_batch=4)[
            0
        ],
    )


def test_eval_windows_are_the_same_every_time(corpus) -> None:  # type: ignore[no-untyped-def]
    first, second = sft_eval(corpus, 4), sft_eval(corpus, 4)
    assert first[0].shape == (4, 128) and np.array_equal(first[1], second[1])
    assert (first[1] != IGNORE_INDEX).any()


@pytest.mark.slow
def test_a_2_layer_model_learns_the_tiny_set_in_50_steps(corpus) -> None:  # type: ignore[no-untyped-def]
    import torch

    from runtime.train.model import ModelConfig, Transformer

    torch.manual_seed(0)
    cfg = ModelConfig(
        layers=2,
        hidden=64,
        heads=4,
        kv_heads=4,
        ffn_hidden=192,
        vocab=corpus.vocab_size,
        seq_len=128,
        tied=False,
    )
    model = Transformer(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    eval_tokens, eval_targets = (torch.from_numpy(a) for a in sft_eval(corpus, 8))

    def held_out_loss() -> float:
        with torch.no_grad():
            return float(model(eval_tokens, eval_targets))

    before = held_out_loss()
    for step in range(1, 51):
        tokens, targets = sft_micro_batch(
            corpus, seed=0, step=step, micro_step=0, rank=0, world_size=1, micro_batch=8
        )
        loss = model(torch.from_numpy(tokens), torch.from_numpy(targets))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert held_out_loss() < 0.6 * before


def test_tiny_jsonl_is_what_its_generator_writes(tmp_path: Path, tokenizer_dir: MakeDir) -> None:
    out = tmp_path / "tiny.jsonl"
    subprocess.run(
        [sys.executable, str(REPO / "examples/sft/make_tiny_sft.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    assert out.read_bytes() == TINY.read_bytes()
    shapes = {
        next(iter(k for k in ("prompt", "messages") if k in json.loads(x)))
        for x in out.read_text().splitlines()
    }
    assert shapes == {"prompt", "messages"}
