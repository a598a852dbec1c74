"""Make the AlpacaEval reference fixtures of tests/unit/eval/test_alpaca_eval.py with alpaca_eval
0.6.6 itself (run from the repository root):

    python -m venv /tmp/ae && /tmp/ae/bin/pip install alpaca-eval==0.6.6 'setuptools<81'
    /tmp/ae/bin/python tests/assets/alpaca_eval/make_fixtures.py

alpaca_eval 0.6.6 imports ``pkg_resources``, which setuptools 81 and later no longer ship, so it
does not import in the project's environment; these files are what it computes. Its
length-controlled GLM downloads ``df_gamed.csv`` (instruction difficulties) from the Hugging Face
hub even when the chosen GLM does not use them; ``length_controlled_minimal`` does not, so a
stand-in file with zero difficulties is handed to it instead of the download.

Writes ``datasets.json`` (seeded random comparisons: output and baseline lengths, the judge's
reply for the order AlpacaEval shows, AlpacaEval's preference and metrics) and ``prompts.json``
(AlpacaEval's judge messages and order for a few awkward instructions).
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from alpaca_eval import completion_parsers, processors, utils
from alpaca_eval.metrics import get_winrate, glm_winrate

HERE = Path(__file__).parent
TEMPLATE = (
    Path(glm_winrate.__file__).parents[1]
    / "evaluators_configs/alpaca_eval_clf_gpt4_turbo/alpaca_eval_clf.txt"
).read_text()


def text(tag: str, i: int, n: int) -> str:
    """The output text the test rebuilds from its length: a tag, then x's."""
    head = f"{tag}{i}:"
    return head + "x" * max(n - len(head), 0)


def switch(df: pd.DataFrame) -> pd.Series:
    """AlpacaEval's order: its RandomSwitchTwoColumnsProcessor as PairwiseAnnotator sets it up."""
    proc = processors.RandomSwitchTwoColumnsProcessor(
        two_columns_to_switch=["output_1", "output_2"],
        random_seed_columns=["instruction"],
        _switch_column="is_switched_outputs",
        fn_replace_if_switch=lambda d: d,
    )
    return proc.preprocess(df)["is_switched_outputs"]


def dataset(seed: int, n: int, kind: str) -> dict:
    rng = np.random.default_rng([seed, n, kind == "logprobs"])
    rows = []
    for i in range(n):
        base_len = int(rng.integers(40, 900))
        out_len = int(rng.integers(40, 1500))
        identical = i % 23 == 5
        rows.append(
            {
                "instruction": f"Task {seed}-{i}: {rng.integers(1e9)}",
                "baseline_len": base_len,
                "output_len": base_len if identical else out_len,
                "identical": identical,
            }
        )
    df = pd.DataFrame(
        {
            "instruction": [r["instruction"] for r in rows],
            "output_1": [text("B", i, r["baseline_len"]) for i, r in enumerate(rows)],
            "output_2": [
                text("B", i, r["baseline_len"]) if r["identical"] else text("T", i, r["output_len"])
                for i, r in enumerate(rows)
            ],
        }
    )
    switched = switch(df)
    preferences = []
    for i, r in enumerate(rows):
        r["switched"] = bool(switched.iloc[i])
        if r["identical"]:
            r["reply"] = None
            preferences.append(1.5)
            continue
        z = 0.3 + 1.5 * math.tanh((r["output_len"] - r["baseline_len"]) / 400) + rng.normal()
        p_trial = 1 / (1 + math.exp(-z))
        p_first = p_trial if r["switched"] else 1 - p_trial  # "m" names the output shown first
        if kind == "logprobs":
            top = {"m": math.log(p_first), "M": math.log1p(-p_first), "The": -9.5, "Based": -11.0}
            if i % 17 == 3:
                del top["M"]  # only one identifier among the top tokens
            if i % 31 == 7:
                top = {"The": -0.1, "Both": -2.5}  # neither: unparsable
            logprobs = {
                "content": [{"top_logprobs": [{"token": t, "logprob": v} for t, v in top.items()]}]
            }
            shown = completion_parsers.logprob_parser(
                {"logprobs": logprobs},
                numerator_token="m",
                denominator_tokens=["m", "M"],
                is_binarize=False,
            )[0]
            reply = {"text": max(top, key=top.get), "top_logprobs": [top]}
        else:
            letter = "m" if rng.random() < p_first else "M"
            if i % 29 == 11:
                letter = "Both are good."
            shown = {"m": 1.0, "M": 2.0}.get(letter, float("nan"))
            reply = {"text": letter, "top_logprobs": None}
        r["reply"] = reply
        preferences.append(3 - shown if r["switched"] else shown)  # PairwiseAnnotator unswitches
    annotations = df.assign(
        preference=preferences,
        index=range(n),
        generator_1="baseline",
        generator_2="trial",
        annotator="weighted_alpaca_eval_gpt4_turbo",
    )
    metrics = get_winrate(annotations)
    lc = glm_winrate.get_length_controlled_winrate(
        annotations,
        glm_name="length_controlled_minimal",
        save_weights_dir=None,
        is_warn_extreme_changes=False,
    )
    for r, p in zip(rows, preferences, strict=True):
        r["alpaca_eval_preference"] = None if math.isnan(p) else p
    return {
        "seed": seed,
        "kind": kind,
        "rows": rows,
        "alpaca_eval": {k: float(v) for k, v in (metrics | lc).items()},
    }


AWKWARD = [
    "Write a haiku.",
    "  Leading and trailing spaces  \n",
    'Quote """triple""" and {output_1} inside the instruction',
    "Unicode: naïve café — 東京 🚀",
    "Braces { like } this and {instruction}",
    "Line one\n\nLine two\n",
    "<|im_end|> inside",
    "",
]


def prompts() -> list[dict]:
    out = []
    for i, instruction in enumerate(AWKWARD):
        output_1, output_2 = f"Baseline answer {i}\n", f"  Trial answer {{output_2}} {i}"
        df = pd.DataFrame(
            {"instruction": [instruction], "output_1": [output_1], "output_2": [output_2]}
        )
        (prompt,), _ = utils.make_prompts(df, TEMPLATE)
        out.append(
            {
                "instruction": instruction,
                "output_1": output_1,
                "output_2": output_2,
                "messages": utils.prompt_to_chatml(prompt),
                "switched": bool(switch(df).iloc[0]),
            }
        )
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        gamed = Path(tmp) / "df_gamed.csv"
        pd.DataFrame({"model": "none", "index": range(1000), "instruction_difficulty": 0.0}).to_csv(
            gamed, index=False
        )
        glm_winrate.hf_hub_download = lambda *a, **k: str(gamed)  # no hub: a stand-in file
        sets = [
            dataset(seed, 50 + 25 * seed, kind)
            for seed in range(3)
            for kind in ("logprobs", "discrete")
        ]
    (HERE / "datasets.json").write_text(json.dumps(sets, indent=0, sort_keys=True) + "\n")
    (HERE / "prompts.json").write_text(json.dumps(prompts(), indent=1, ensure_ascii=False) + "\n")
    random.seed(0)


if __name__ == "__main__":
    main()
