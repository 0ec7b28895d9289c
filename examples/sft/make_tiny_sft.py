"""Write examples/sft/tiny.jsonl: a small, learnable instruction set for fine-tuning demos.

Four simple tasks a 2-layer model picks up within ~50 steps — reverse a short word, write
it in upper case, add two small numbers, name a colour's opposite on the colour wheel —
in both accepted record shapes: ``{"prompt", "response"}`` and chat ``{"messages"}``
(some with a system turn, some with two exchanges). Deterministic: the same file on
every run (tests/runtime/test_sft.py regenerates it and compares).

    python examples/sft/make_tiny_sft.py [--out examples/sft/tiny.jsonl]
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

RECORDS = 320
"""Records written (the brief asks for 200-500)."""
SEED = 19
"""Seed of the generator's random.Random (issue 19)."""
# fmt: off
WORDS = (
    "cat", "dog", "sun", "moon", "tree", "leaf", "rain", "snow", "bird", "fish", "star",
    "road", "milk", "bread", "lamp", "door", "ship", "rock", "sand", "wind", "fire", "lake",
    "hill", "rose", "king", "frog", "wolf", "bear", "cake", "salt", "gold",
)
# fmt: on
"""Short lowercase words the word tasks draw from."""
OPPOSITES = {
    "red": "green",
    "green": "red",
    "blue": "orange",
    "orange": "blue",
    "yellow": "purple",
    "purple": "yellow",
    "black": "white",
    "white": "black",
}
"""Complementary colours of the painters' colour wheel, plus black and white."""
SYSTEM = "You answer with the result only."
"""System turn of some chat records."""


def task(rng: random.Random) -> tuple[str, str]:
    """One (question, answer) of a random task."""
    kind = rng.randrange(4)
    if kind == 0:
        word = rng.choice(WORDS)
        return f"Reverse the word: {word}", word[::-1]
    if kind == 1:
        word = rng.choice(WORDS)
        return f"Uppercase the word: {word}", word.upper()
    if kind == 2:
        a, b = rng.randrange(10), rng.randrange(10)
        return f"What is {a} + {b}?", str(a + b)
    colour = rng.choice(sorted(OPPOSITES))
    return f"What is the opposite of {colour}?", OPPOSITES[colour]


def record(rng: random.Random) -> dict[str, object]:
    """A record in one of the shapes: 60 % prompt/response, 40 % messages."""
    question, answer = task(rng)
    shape = rng.randrange(10)
    if shape < 6:
        return {"prompt": question, "response": answer}
    messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    if shape < 8:
        messages.insert(0, {"role": "system", "content": SYSTEM})
    else:
        second_q, second_a = task(rng)
        messages += [
            {"role": "user", "content": second_q},
            {"role": "assistant", "content": second_a},
        ]
    return {"messages": messages}


def lines() -> list[str]:
    """The file's lines: ``RECORDS`` distinct records."""
    rng = random.Random(SEED)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < RECORDS:
        line = json.dumps(record(rng), ensure_ascii=False)
        if line not in seen:
            seen.add(line)
            out.append(line)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("tiny.jsonl"))
    args = parser.parse_args()
    args.out.write_text("\n".join(lines()) + "\n", encoding="utf-8")
    print(f"wrote {RECORDS} records to {args.out}")


if __name__ == "__main__":
    main()
