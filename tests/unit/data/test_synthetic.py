"""The built-in sources are seeded and their answers check out."""

from __future__ import annotations

import re

import pytest

from raymix.config import validate
from raymix.data import synthetic
from raymix.data.sources import load_records
from raymix.errors import DataError
from tests.conftest import tiny_experiment


@pytest.mark.parametrize("kind", synthetic.KINDS)
def test_rows_depend_only_on_kind_seed_and_index(kind: str) -> None:
    assert synthetic.generate(kind, 3, 17, "s") == synthetic.generate(kind, 3, 17, "s")
    rows = [synthetic.generate(kind, 3, i, "s") for i in range(50)]
    other = [synthetic.generate(kind, 4, i, "s") for i in range(50)]
    assert rows != other
    assert len({r["messages"][0]["content"] for r in rows}) > 25


def test_math_answers_are_right() -> None:
    for i in range(200):
        rec = synthetic.generate("math", 0, i, "m")
        answer = rec["messages"][1]["content"]
        final = answer.rsplit("#### ", 1)[1]
        assert final == rec["meta"]["answer"]
        # the worked line ends in the same number
        assert re.findall(r"-?\d+", answer.split("\n")[0])[-1] == final


def test_code_solutions_pass_their_tests() -> None:
    for i in range(100):
        rec = synthetic.generate("code", 0, i, "c")
        scope: dict = {}
        exec(rec["messages"][1]["content"] + rec["meta"]["test"], scope)  # our own reference code
        assert rec["meta"]["entry_point"] in scope


def test_unknown_kind_is_a_data_error() -> None:
    cfg = validate(tiny_experiment(), origin="t")
    bad = cfg.sources[0].model_copy(update={"path": "synthetic:poetry"})
    with pytest.raises(DataError, match="allowed: synthetic:math, synthetic:code"):
        load_records(bad, 0)
