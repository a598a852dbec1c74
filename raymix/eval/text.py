"""Text metrics for reference answers: normalised exact match and ROUGE-L F1.

ROUGE-L is the ``rouge-score`` package's own (Lin 2004, as in Google Research's reference
implementation): its tokenizer lower-cases, replaces every non-alphanumeric character by a space
and splits on whitespace; no stemming (its default, and that of Hugging Face ``evaluate``).
"""

from __future__ import annotations

import functools
import re
from typing import Any

_WS = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Lower-case, collapse whitespace, strip a trailing full stop."""
    return _WS.sub(" ", text.strip().lower()).rstrip(".")


def exact_match(output: str, reference: str) -> float:
    """1.0 when the normalised texts are equal."""
    return float(normalise(output) == normalise(reference))


@functools.cache
def _scorer() -> Any:
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)


def rouge_l(output: str, reference: str) -> float:
    """ROUGE-L F1 of ``output`` against ``reference``, exactly as ``rouge-score`` computes it."""
    return float(_scorer().score(reference, output)["rougeL"].fmeasure)
