"""The smoke section's shipped prompts and the answers a working model's greedy continuation
contains. A leaf module: the card judges recorded outputs with the same rule the steps record."""

from __future__ import annotations

# Ten varied prompts (base-model completion style), as in the reference reports: knowledge,
# arithmetic, sequence, code, Chinese.
DEFAULT_PROMPTS: list[tuple[str, str]] = [
    ("en-knowledge", "The capital of France is"),
    ("en-knowledge", "The chemical symbol for water is"),
    ("en-prose", "Once upon a time, in a small village,"),
    ("arithmetic", "Question: What is 12 + 7?\nAnswer:"),
    ("arithmetic", "Complete the sequence: 2, 4, 6, 8,"),
    ("code", "def add(a, b):\n    return"),
    ("code", 'print("Hello, world!")  # Output:'),
    ("zh", "中国的首都是"),
    ("zh", "人工智能的英文缩写是"),
    ("en-instruction", "List three colors:"),
]
# What a working model's greedy continuation contains (any of, case-insensitive); prompts without
# one right answer have none. The card judges each output by this, like the reference reports'
# per-prompt "correct / wrong" column.
EXPECTED: dict[str, tuple[str, ...]] = {
    "The capital of France is": ("Paris",),
    "The chemical symbol for water is": ("H2O", "H₂O"),
    "Question: What is 12 + 7?\nAnswer:": ("19",),
    "Complete the sequence: 2, 4, 6, 8,": ("10",),
    "def add(a, b):\n    return": ("a + b", "a+b"),
    'print("Hello, world!")  # Output:': ("Hello, world!",),
    "中国的首都是": ("北京",),
    "人工智能的英文缩写是": ("AI",),
}


def as_expected(prompt: str, output: str) -> bool | None:
    """Whether the output contains an expected answer; None for a prompt without one."""
    want = EXPECTED.get(prompt)
    if want is None:
        return None
    return any(w.lower() in output.lower() for w in want)
