"""A lexical guard on the last turn: embeddings barely see numbers and polarity, so they must match exactly.

"What is 17 plus 25?" and "What is 17 plus 26?" embed at 0.98 cosine; so do "foods that contain gluten" and
"foods that do not contain gluten". The guard makes the numbers and the polarity words of the last turn
part of the cache scope, so such pairs can never meet, whatever their similarity.
"""

from __future__ import annotations

import re

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_WORD = re.compile(r"[a-zA-Z']+")

NEGATIONS = frozenset({"not", "no", "never", "without", "none", "nor", "cannot", "against", "neither", "except",
                       "don't", "doesn't", "isn't", "aren't", "won't", "can't", "shouldn't", "didn't", "wasn't"})
POLARITY_WORDS = frozenset({
    "increase", "decrease", "raise", "lower", "enable", "disable", "start", "stop", "open", "close", "add", "remove",
    "drop", "delete", "insert", "encrypt", "decrypt", "compress", "extract", "decompress", "maximum", "minimum",
    "max", "min", "largest", "smallest", "biggest", "tallest", "shortest", "longest", "highest", "lowest", "first",
    "last", "best", "worst", "advantages", "disadvantages", "pros", "cons", "like", "dislike", "safe", "unsafe",
    "legal", "illegal", "true", "false", "before", "after", "above", "below", "heat", "cool", "warm", "cold",
    "hot", "ascending", "descending", "push", "pull", "upload", "download", "import", "export", "install",
    "uninstall", "lock", "unlock", "enter", "exit", "show", "hide", "more", "less", "fewer", "positive", "negative",
    "buy", "sell", "win", "lose", "older", "younger", "faster", "slower", "cheaper", "expensive",
})


def guard_terms(text: str) -> tuple[str, ...]:
    """The numbers and polarity words of a text, in a canonical order."""
    numbers = [number.replace(",", "") for number in _NUMBER.findall(text)]
    words = [word.lower() for word in _WORD.findall(text)]
    markers = ["neg" for word in words if word in NEGATIONS or word.endswith("n't")]
    markers += [word for word in words if word in POLARITY_WORDS]
    return tuple(sorted(numbers)) + tuple(sorted(set(markers)))
