"""FLASK skill scoring through the real openai client against a local endpoint: the judge prompt
against FLASK's own files (byte for byte as its ``gpt4_eval.gen_prompt`` writes it), the reading of
the judge's per-skill scores, and real Vicuna-13B answers scored end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from raymix.config import validate
from raymix.config.schema import EvalConfig, EvalTaskConfig, parse_eval_task
from raymix.data.files import read_jsonl
from raymix.errors import ConfigError, DataError
from raymix.eval.flask_judge import (
    NOT_APPLICABLE,
    SKILL_KEYS,
    FlaskTask,
    parse_scores,
    skill_key,
)
from raymix.eval.protocol import Request, answer_all
from raymix.eval.registry import task_factory
from tests.conftest import tiny_experiment
from tests.unit.eval.conftest import KEY_ENV, FakeJudge

THREE = ["Readability", "Logical Correctness", "Conciseness"]


def _cfg(url: str, path: Path, judge: dict[str, Any] | None = None, **kw: Any) -> EvalTaskConfig:
    j = {"base_url": url, "model": "judge-test", "api_key_env": KEY_ENV, **(judge or {})}
    return parse_eval_task({"name": "flask", "path": str(path), "judge": j, **kw})


def _build(cfg: EvalTaskConfig) -> FlaskTask:
    task = task_factory(cfg.name)(cfg, EvalConfig(), {})
    assert isinstance(task, FlaskTask)
    return task


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ----------------------------------------------------------------------------- reading scores


FEEDBACK = (
    "Readability: The response is clear and easy to follow.\n"
    "Score 4: The response is generally understandable.\n\n"
    "Logical Correctness: The rewrite keeps the meaning.\n\n"
    "Conciseness: A few words could go.\n\n"
)


@pytest.mark.parametrize(
    ("judgment", "expected"),
    [
        (  # what GPT-4 writes: feedback, then the Python dictionary
            FEEDBACK + "{'Readability': 4, 'Logical Correctness': 5, 'Conciseness': 3}",
            [4.0, 5.0, 3.0],
        ),
        (  # JSON in a fenced block, floats
            FEEDBACK + '```python\n{\n  "Readability": 4.5,\n  "Logical Correctness": 2,\n'
            '  "Conciseness": 1\n}\n```',
            [4.5, 2.0, 1.0],
        ),
        (  # FLASK reads '_' as a space and ignores case; a logical skill by its second word
            "{'readability': 5, 'logical_correctness': 4, 'CONCISENESS': 5}",
            [5.0, 4.0, 5.0],
        ),
        ("{'Readability': 3, 'Correctness': 2, 'Conciseness': 4}", [3.0, 2.0, 4.0]),
        (  # scores written as strings; N/A in FLASK's spellings
            "{'Readability': '4', 'Logical Correctness': 'N/A', 'Conciseness': 'not applicable'}",
            [4.0, NOT_APPLICABLE, NOT_APPLICABLE],
        ),
        (  # braces earlier in the feedback (quoted code): the last dictionary counts
            "The answer prints {x}.\n{'Readability': 2, 'Logical Correctness': 1, "
            "'Conciseness': 2}",
            [2.0, 1.0, 2.0],
        ),
        (  # not a Python literal (unquoted keys, x/5): the pairs are read one by one
            "{Readability: 4/5, Logical Correctness: 3, Conciseness: 5/5}",
            [4.0, 3.0, 5.0],
        ),
        (  # no dictionary: one line per skill with its score alone
            FEEDBACK + "Scores:\n- **Readability**: 4\n- Logical Correctness: 5/5\nConciseness: 2",
            [4.0, 5.0, 2.0],
        ),
        ("{'Readability': 4, 'Conciseness': 3}", [4.0, None, 3.0]),  # a skill left out
        (  # outside 1-5, not a number, a bool: unparsable, never 0
            "{'Readability': 0, 'Logical Correctness': 'four', 'Conciseness': True}",
            [None, None, None],
        ),
        ("{'Readability': 6, 'Logical Correctness': 4, 'Conciseness': 5}", [None, 4.0, 5.0]),
        (FEEDBACK, [None, None, None]),  # feedback only; "Score 4: ..." is a rubric line
        ("Readability: clear. Score: 4\nConciseness: Score: 3", [None, None, None]),
        ("", [None, None, None]),
        ("{'Readability': 4, 'Logical Correctness': 5, 'Conciseness': 3", [None, None, None]),
        ("{'Readability': 4, 'Logical Correctness': 5, 'Conciseness': 'narrow'}", [4.0, 5.0, None]),
    ],
)
def test_parse_scores(judgment: str, expected: list[Any]) -> None:
    assert parse_scores(judgment, THREE) == dict(zip(THREE, expected, strict=True))


def test_skill_keys_are_flask_aggregate_names() -> None:
    assert skill_key("Logical Robustness") == "robustness"
    assert skill_key("logical_efficiency") == "efficiency"
    assert skill_key("Commonsense Understanding") == "commonsense"
    assert skill_key("Harmlessness") == "harmlessness"
    assert len(set(SKILL_KEYS)) == 12


# --------------------------------------------------------------- a small FLASK folder of its own


SKILLSET = [
    {
        "Skill": name,
        "Criteria": f"CRITERIA of {name}",
        "Scoring": {k: f"RUBRIC {k} of {name}" for k in "12345"},
    }
    for name in ("Logical Correctness", "Commonsense Understanding", "Readability", "Conciseness")
]
INSTANCES = [
    {"idx": 1, "instruction": "Add 2 and 2.", "answer": "4", "skill": THREE},
    {
        "idx": 2,
        "instruction": "Why is the sky blue? UNRATEABLE",
        "answer": "Rayleigh scattering.",
        "skill": ["Commonsense", "Readability"],  # FLASK matches a label inside a skill's name
    },
    {"idx": 3, "instruction": "Write a haiku.", "answer": "", "skill": ["Readability"]},
]
TEMPLATE_REF = (
    "{prompt1}\n{skills}\n[Q]\n{question}\n[REF]\n{sample_answer}\n[A]\n{response}\n{prompt2}"
)
TEMPLATE = "{prompt1}\n{skills}\n[Q]\n{question}\n[A]\n{response}\n{prompt2}"


def _flask_dir(tmp_path: Path, instances: list[dict[str, Any]] = INSTANCES) -> Path:
    folder = tmp_path / "flask"
    folder.mkdir()
    defaults = {"prompt1": "RATE:", "prompt2": "Return a Python dictionary."}
    prompts = [
        {"prompt_id": 1, "system_prompt": "judge:1", "prompt_template": TEMPLATE},
        {"prompt_id": 2, "system_prompt": "judge:2", "prompt_template": TEMPLATE_REF},
    ]
    _write_jsonl(folder / "review_prompt.jsonl", [{**p, "defaults": defaults} for p in prompts])
    (folder / "skillset_description.json").write_text(json.dumps(SKILLSET))
    _write_jsonl(folder / "flask_hard_evaluation.jsonl", instances[2:])
    return _write_jsonl(folder / "flask_evaluation.jsonl", instances)


def _echo(requests: list[Request]) -> list[str]:
    return [f"  answer to {r.messages[-1]['content']}\n" for r in requests]


def _dict_reply(system: str, user: str, seen: int) -> str:
    """Scores by skill and run: Logical Correctness 5 then 3, Commonsense N/A, Readability 4 then
    2, Conciseness 3; an UNRATEABLE instruction gets feedback and no dictionary."""
    if "UNRATEABLE" in user:
        return "I cannot score this response."
    run_scores = {
        "Logical Correctness": [5, 3][seen],
        "Commonsense Understanding": "N/A",
        "Readability": [4, 2][seen],
        "Conciseness": 3,
    }
    asked = {k: v for k, v in run_scores.items() if f"\n{k}: CRITERIA of {k}" in user}
    return f"Feedback.\n{asked}"


def test_scores_per_skill_and_overall_over_two_runs(
    server: tuple[FakeJudge, str], tmp_path: Path
) -> None:
    judge, url = server
    judge.reply = _dict_reply
    task = _build(_cfg(url, _flask_dir(tmp_path), {"runs": 2}))
    task.judge.workers = 1  # judged in order: run 0 of an instance is its first judgement
    outputs, requests = answer_all(task, _echo)
    assert [r.messages for r in requests] == [
        [{"role": "user", "content": i["instruction"]}] for i in INSTANCES
    ]
    assert requests[1].meta["skills"] == ["Commonsense Understanding", "Readability"]
    metrics, rows = task.score(outputs, requests)

    assert len(judge.received) == len(rows) == 6  # 3 instances x 2 runs
    assert metrics == {
        # run 0: 5, 4, 3, 4 -> 4.0; run 1: 3, 2, 3, 2 -> 2.5
        "flask/score": pytest.approx(3.25),
        "flask/correctness": pytest.approx(4.0),
        "flask/readability": pytest.approx(3.0),
        "flask/conciseness": pytest.approx(3.0),
        "flask/unparsable": 4.0,  # instance 2's two skills, both runs
        "flask/not_applicable": 0.0,
    }
    assert list(metrics)[:2] == ["flask/score", "flask/correctness"]  # FLASK's skill order
    bad = [r for r in rows if r["unparsable"]]
    assert {r["idx"] for r in bad} == {2}
    assert bad[0]["scores"] == {"Commonsense Understanding": None, "Readability": None}
    assert bad[0]["judgment"] == "I cannot score this response."
    first = rows[0]
    assert first["answer"] == "answer to Add 2 and 2."  # stripped, as MT-Bench's answers
    assert first["scores"] == {"Readability": 4.0, "Logical Correctness": 5.0, "Conciseness": 3.0}
    assert [r["judge_prompt"] for r in rows] == [2, 2, 2, 2, 1, 1]  # no reference: prompt 1


def test_prompts_with_and_without_the_reference(
    server: tuple[FakeJudge, str], tmp_path: Path
) -> None:
    judge, url = server
    judge.reply = _dict_reply
    task = _build(_cfg(url, _flask_dir(tmp_path)))
    task.judge.workers = 1
    task.score(*answer_all(task, _echo))
    by_system: dict[str, list[str]] = {"judge:1": [], "judge:2": []}
    for b in judge.received:
        by_system[b["messages"][0]["content"]].append(b["messages"][1]["content"])
    first, second = by_system["judge:2"]
    (third,) = by_system["judge:1"]
    skills = "".join(
        f"\n{s['Skill']}: {s['Criteria']}"
        + "".join(f"\nScore {k}: {s['Scoring'][k]}" for k in "12345")
        + "\n\n"
        for s in (SKILLSET[2], SKILLSET[0], SKILLSET[3])  # the instance's order
    )
    assert first == (
        f"RATE:\n{skills}\n[Q]\nAdd 2 and 2.\n[REF]\n4\n[A]\nanswer to Add 2 and 2.\n"
        "Return a Python dictionary."
    )
    assert "CRITERIA of Commonsense Understanding" in second and "[REF]\nRayleigh" in second
    assert "[REF]" not in third and "CRITERIA of Readability" in third
    assert "CRITERIA of Conciseness" not in third
    body = judge.received[0]
    assert body["temperature"] == 0.2 and body["max_tokens"] == 1024  # FLASK's reviewer settings


def test_the_judge_config_overrides_flasks_settings(
    server: tuple[FakeJudge, str], tmp_path: Path
) -> None:
    judge, url = server
    cfg = _cfg(url, _flask_dir(tmp_path), {"temperature": 0, "max_tokens": 300}, limit=1)
    task = _build(cfg)
    task.score(*answer_all(task, _echo))
    (body,) = judge.received
    assert body["temperature"] == 0.0 and body["max_tokens"] == 300
    same = parse_eval_task(json.loads(cfg.model_dump_json()))  # as a trial receives it
    assert same == cfg


def test_rescoring_reads_the_cache(server: tuple[FakeJudge, str], tmp_path: Path) -> None:
    judge, url = server
    judge.reply = _dict_reply
    cfg = _cfg(url, _flask_dir(tmp_path))
    task = _build(cfg)
    outputs, requests = answer_all(task, _echo)
    first = task.score(outputs, requests)
    again = _build(cfg)
    assert again.score(outputs, requests) == first
    assert len(judge.received) == 3 and again.judge.sent == 0


def test_hard_subset_and_limit(server: tuple[FakeJudge, str], tmp_path: Path) -> None:
    _, url = server
    path = _flask_dir(tmp_path)
    assert [i.idx for i in _build(_cfg(url, path, subset="hard")).instances] == [3]
    assert [i.idx for i in _build(_cfg(url, path, limit=2)).instances] == [1, 2]


def test_bad_files_are_data_errors(server: tuple[FakeJudge, str], tmp_path: Path) -> None:
    _, url = server
    bad = [{**INSTANCES[0], "skill": ["Readability", "Telepathy"]}]
    with pytest.raises(DataError, match=r"row 1: unknown skill 'Telepathy'"):
        _build(_cfg(url, _flask_dir(tmp_path, bad)))
    (tmp_path / "flask" / "review_prompt.jsonl").unlink()
    with pytest.raises(DataError, match=r"no review_prompt.jsonl"):
        _build(_cfg(url, tmp_path / "flask" / "flask_evaluation.jsonl"))
    with pytest.raises(DataError, match=r"no skillset_description.json"):
        _build(_cfg(url, tmp_path / "elsewhere" / "flask_evaluation.jsonl"))


def _experiment_with(task: dict[str, Any]) -> None:
    validate(tiny_experiment(eval={"tasks": [task]}), origin="x.yaml")


def test_config_errors() -> None:
    judge = {"base_url": "http://127.0.0.1:1/v1", "model": "m"}
    with pytest.raises(ConfigError, match=r"x.yaml: eval.tasks.0.path: required key is missing"):
        _experiment_with({"name": "flask", "judge": judge})
    with pytest.raises(ConfigError, match=r"x.yaml: eval.tasks.0.judge: required key is missing"):
        _experiment_with({"name": "flask", "path": "f.jsonl"})
    with pytest.raises(ConfigError, match=r"eval.tasks.0.subset"):
        _experiment_with({"name": "flask", "path": "f.jsonl", "judge": judge, "subset": "easy"})


# ------------------------------------------------------------------------- FLASK's real files


def _gen_prompt(
    prompt_jsons: list[dict[str, Any]], skills_jsons: list[Any], response: str, item: dict[str, Any]
) -> tuple[str, str]:
    """FLASK's ``gpt_review/gpt4_eval.py`` ``gen_prompt`` (reviewer 1, so prompt 2), as written
    there, with the evaluation set's field names (``skill`` for ``metrics``, ``instruction`` for
    ``text``)."""
    prompt_json = prompt_jsons[2 - 1]
    sys_prompt = prompt_json["system_prompt"]
    prompt_template = prompt_json["prompt_template"]
    defaults = prompt_json["defaults"]
    skills = ""
    for label in item["skill"]:
        for skill in skills_jsons:
            if label in skill["Skill"]:
                name = skill["Skill"]
                criteria = skill["Criteria"]
                skills += f"\n{name}: {criteria}"
                scoring = skill["Scoring"]
                skills += f"\nScore 1: {scoring['1']}"
                skills += f"\nScore 2: {scoring['2']}"
                skills += f"\nScore 3: {scoring['3']}"
                skills += f"\nScore 4: {scoring['4']}"
                skills += f"\nScore 5: {scoring['5']}\n\n"
                break
    prompt = prompt_template.format(
        question=item["instruction"],
        response=response,
        skills=skills,
        num=3,
        sample_answer=item["answer"],
        **defaults,
    )
    return sys_prompt, prompt


@pytest.fixture
def flask_data(shared_data: Path) -> Path:
    return shared_data / "flask"


@pytest.mark.shared_data
def test_real_prompt_is_flasks_own(
    server: tuple[FakeJudge, str], tmp_path: Path, flask_data: Path
) -> None:
    judge, url = server
    judge.reply = lambda system, user, seen: "{}"
    task = _build(_cfg(url, flask_data / "flask_evaluation.jsonl", limit=5))
    task.judge.workers = 1
    items = read_jsonl(flask_data / "flask_evaluation.jsonl")[:5]
    prompts = read_jsonl(flask_data / "review_prompt.jsonl")
    skillset = json.loads((flask_data / "skillset_description.json").read_text())
    rubric = {s["Skill"]: s for s in skillset}

    _, rows = task.score(*answer_all(task, _echo))
    assert len(judge.received) == 5
    for item, body in zip(items, judge.received, strict=True):
        answer = f"answer to {item['instruction']}"
        system, user = (m["content"] for m in body["messages"])
        assert (system, user) == _gen_prompt(prompts, skillset, answer, item)
        assert f"[Ground truth Answer]\n{item['answer']}\n" in user
        for name in item["skill"]:  # each of the instance's skills with its whole rubric
            assert f"\n{name}: {rubric[name]['Criteria']}" in user
            assert all(f"\nScore {k}: {rubric[name]['Scoring'][k]}" in user for k in "12345")
        others = set(rubric) - set(item["skill"])
        assert not any(rubric[o]["Criteria"] in user for o in others)
    assert all(r["unparsable"] == r["skills"] for r in rows)  # "{}" scores nothing

    reviewer = read_jsonl(flask_data / "review_reviewer.jsonl")
    assert {(r["metadata"]["temperature"], r["metadata"]["max_tokens"]) for r in reviewer} == {
        (body["temperature"], body["max_tokens"])
    }


@pytest.mark.shared_data
def test_real_prompt_without_a_reference(
    server: tuple[FakeJudge, str], tmp_path: Path, flask_data: Path
) -> None:
    judge, url = server
    folder = tmp_path / "flask"
    folder.mkdir()
    for name in ("review_prompt.jsonl", "skillset_description.json"):
        (folder / name).symlink_to(flask_data / name)
    item = {**read_jsonl(flask_data / "flask_evaluation.jsonl")[3], "answer": ""}
    task = _build(_cfg(url, _write_jsonl(folder / "flask_evaluation.jsonl", [item])))
    task.score(*answer_all(task, _echo))
    (body,) = judge.received
    prompt1 = read_jsonl(flask_data / "review_prompt.jsonl")[0]
    user = body["messages"][1]["content"]
    assert "[Ground truth Answer]" not in user
    assert user.startswith(prompt1["defaults"]["prompt1"] + "\n\nLogical Correctness: ")
    assert user.endswith(prompt1["defaults"]["prompt2"] + "\n\n[System]\n\n\n")


@pytest.mark.shared_data
def test_real_files_load_whole(server: tuple[FakeJudge, str], flask_data: Path) -> None:
    _, url = server
    full = _build(_cfg(url, flask_data / "flask_evaluation.jsonl", limit=None))
    assert len(full.instances) == 1740
    assert {skill_key(s) for i in full.instances for s in i.skills} == set(SKILL_KEYS)
    assert {len(i.skills) for i in full.instances} == {2, 3}
    hard = _build(_cfg(url, flask_data / "flask_evaluation.jsonl", limit=None, subset="hard"))
    assert len(hard.instances) == 89


def _vicuna_judge(rubric: dict[str, dict[str, Any]]) -> Any:
    """A judge that writes FLASK-style feedback and a dictionary: each skill scored by the length
    of the answer it was shown; Metacognition N/A; an answer mentioning "sorry" left unscored."""

    def reply(system: str, user: str, seen: int) -> str:
        answer = user.split("[Assistant's Response]\n", 1)[1].split("\n\n[The End of")[0]
        asked = [n for n in rubric if f"\n{n}: {rubric[n]['Criteria']}" in user]
        if "sorry" in answer.lower():
            return "".join(f"{n}: the answer declines.\n" for n in asked)
        scores = {n: "N/A" if n == "Metacognition" else 1 + len(answer) % 5 for n in asked}
        feedback = "".join(f"{n}: feedback on {n.lower()}.\n\n" for n in asked)
        return f"{feedback}{scores}"

    return reply


@pytest.mark.shared_data
def test_vicuna_answers_scored_end_to_end(
    server: tuple[FakeJudge, str], tmp_path: Path, flask_data: Path
) -> None:
    judge, url = server
    skillset = json.loads((flask_data / "skillset_description.json").read_text())
    judge.reply = _vicuna_judge({s["Skill"]: s for s in skillset})
    vicuna = read_jsonl(flask_data / "model_output_vicuna_13b.jsonl")
    answers = {r["question_id"]: r["text"] for r in vicuna}
    # the first 8 instances (idx 9: an answer that declines), and the first 2 on Metacognition
    items = read_jsonl(flask_data / "flask_evaluation.jsonl")
    meta = [i for i in items if "Metacognition" in i["skill"] and i["idx"] in answers][:2]
    folder = tmp_path / "flask"
    folder.mkdir()
    for name in ("review_prompt.jsonl", "skillset_description.json"):
        (folder / name).symlink_to(flask_data / name)
    path = _write_jsonl(folder / "flask_evaluation.jsonl", items[:9] + meta)
    task = _build(_cfg(url, path))
    outputs, requests = answer_all(task, lambda reqs: [answers[r.meta["idx"]] for r in reqs])
    assert "sorry" in outputs[8].lower()
    metrics, rows = task.score(outputs, requests)

    assert len(rows) == len(judge.received) == 11
    expected: dict[str, list[float]] = {}
    unparsable = not_applicable = 0
    for inst, out, row in zip(task.instances, outputs, rows, strict=True):
        assert row["idx"] == inst.idx and row["answer"] == out.strip()
        for skill in inst.skills:
            if "sorry" in out.lower():
                unparsable += 1
                assert row["scores"][skill] is None
            elif skill == "Metacognition":
                not_applicable += 1
                assert row["scores"][skill] == NOT_APPLICABLE
            else:
                score = float(1 + len(out.strip()) % 5)
                assert row["scores"][skill] == score
                expected.setdefault(skill_key(skill), []).append(score)
    assert metrics.pop("flask/unparsable") == unparsable
    assert metrics.pop("flask/not_applicable") == not_applicable
    all_scores = [s for v in expected.values() for s in v]
    assert metrics.pop("flask/score") == pytest.approx(sum(all_scores) / len(all_scores))
    assert metrics == {f"flask/{k}": pytest.approx(sum(v) / len(v)) for k, v in expected.items()}
    assert all(re.fullmatch(r"flask/[a-z]+", k) for k in metrics)
