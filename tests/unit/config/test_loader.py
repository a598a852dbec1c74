"""The schema and loader: defaults, overrides, and one clear error per mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from raymix.config import load, validate, with_params
from raymix.config.loader import load_profiles, parse_value
from raymix.errors import ConfigError
from tests.conftest import ROOT, tiny_experiment


def _write(tmp_path: Path, raw: object, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw) if not isinstance(raw, str) else raw)
    return path


@pytest.mark.parametrize(
    "path", sorted((ROOT / "experiments").glob("*.yaml")), ids=lambda p: p.name
)
def test_every_shipped_experiment_validates(path: Path) -> None:
    for name, cfg in load_profiles(path).items():
        assert cfg.name and (cfg.mixture.grid or cfg.mixture.space), name


STUDIES = sorted((ROOT / "experiments").glob("s[0-9]_*.yaml"))


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: p.name)
def test_every_study_has_a_toy_profile_that_compiles_its_plans(path: Path) -> None:
    """A toy profile runs on a fresh clone: built-in sources and a tiny model on CPU, every
    mixture of its grid compiled to a plan (the data prepared as a trial prepares it)."""
    from raymix.data.mixture import build_plan
    from raymix.data.pipeline import prepare_data

    cfg = load(path, profile="toy")
    assert cfg.model.name == "tiny" and not cfg.scaling.use_gpu
    assert all(s.path.startswith("synthetic:") for s in cfg.sources)
    assert cfg.sweep.storage_path is None, "no bucket needed"
    _, _, sources = prepare_data(cfg)
    for mixture in cfg.mixture.names:
        plan = build_plan(cfg, mixture, sources)
        assert sum(plan.rows_per_source().values()) > 0, mixture


def test_a_profile_is_a_set_of_overrides_applied_before_set(tmp_path: Path) -> None:
    raw = tiny_experiment(train={"lr": 1e-2})
    raw["profiles"] = {
        "whole": {"train": {"epochs": 3}, "sources.1.size": 50},
        "dotted": {"train.epochs": 3},
        "other": {"seed": 7},
    }
    path = _write(tmp_path, raw)
    base = load(path)
    assert base.train.lr == pytest.approx(1e-2) and base.seed == 0, "no profile: the file as is"
    whole = load(path, profile="whole")
    assert whole.train.epochs == 3 and whole.sources[1].size == 50
    assert whole.train.lr == pytest.approx(1e-3), "a mapping replaces the whole key (as --set)"
    dotted = load(path, profile="dotted")
    assert dotted.train.epochs == 3 and dotted.train.lr == pytest.approx(1e-2)
    assert load(path, ["train.epochs=5"], profile="dotted").train.epochs == 5, "--set wins"
    assert set(load_profiles(path)) == {"", "whole", "dotted", "other"}


@pytest.mark.parametrize(
    ("profiles", "flag", "message"),
    [
        ({"toy": {"seed": 1}}, "nope", "--profile nope: no such profile; allowed: toy"),
        (
            None,
            "toy",
            "--profile toy: no such profile; allowed: none: the file declares no profiles",
        ),
        ([1, 2], None, "profiles: expected a mapping of profile names to overrides, got list"),
        ({"toy": {}}, None, "profiles.toy: expected a mapping of dotted keys to values"),
        ({"t oy": {"seed": 1}}, None, "profiles: 't oy' is not a name"),
        ({"toy": {"trian.lr": 1}}, None, "(profile toy): trian: unknown key; allowed:"),
        ({"toy": {"seed.x": 1}}, None, "profiles.toy.seed.x: seed is a int, not a mapping"),
    ],
)
def test_bad_profiles_are_one_error_with_exit_2(
    tmp_path: Path, profiles: object, flag: str | None, message: str
) -> None:
    raw = tiny_experiment()
    if profiles is not None:
        raw["profiles"] = profiles
    path = _write(tmp_path, raw)
    argv = [sys.executable, "-m", "raymix", "validate", "--schema-only", str(path)]
    argv += ["--profile", flag] if flag else []
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_defaults_fill_in(tmp_path: Path) -> None:
    cfg = load(_write(tmp_path, tiny_experiment()))
    assert cfg.model.name == "tiny"
    assert cfg.scaling.num_workers == 2 and not cfg.scaling.use_gpu
    assert cfg.deepspeed.zero_stage == 2
    assert cfg.sweep.metric == "eval/loss/mean"


def test_overrides_set_nested_keys_list_items_and_floats(tmp_path: Path) -> None:
    path = _write(tmp_path, tiny_experiment())
    cfg = load(
        path,
        [
            "train.lr=3e-4",
            "sources.1.size=500",
            "train.betas=[0.9, 0.95]",
            "deepspeed.zero_stage=3",
            "sweep.space={train.lr: {grid: [1e-3, 1e-4]}}",
        ],
    )
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.sources[1].size == 500
    assert cfg.train.betas == (0.9, 0.95)
    assert cfg.deepspeed.zero_stage == 3
    assert cfg.sweep.space["train.lr"].grid == [1e-3, 1e-4]


def test_yaml_scientific_notation_without_dot_is_a_float() -> None:
    assert parse_value("1e-3") == pytest.approx(1e-3)
    assert parse_value("2E5") == pytest.approx(2e5)
    assert parse_value("12") == 12 and isinstance(parse_value("12"), int)
    assert parse_value("abc") == "abc"


def test_with_params_applies_trial_parameters(tmp_path: Path) -> None:
    cfg = load(_write(tmp_path, tiny_experiment()))
    assert with_params(cfg, {"train.lr": 0.01, "train.epochs": 3}).train.epochs == 3
    with pytest.raises(ConfigError, match="train.epochs"):
        with_params(cfg, {"train.epochs": "many"})


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"train": {"lr": "fast"}},
            r"exp.yaml: train.lr: Input should be a valid number \(got 'fast'\)",
        ),
        ({"train": {"lrr": 1.0}}, r"exp.yaml: train.lrr: unknown key; allowed: lr, scheduler"),
        (
            {"train": {"scheduler": "step"}},
            r"train.scheduler: Input should be 'linear', 'cosine' or 'constant'",
        ),
        ({"deepspeed": {"zero_stage": 4}}, r"deepspeed.zero_stage: Input should be 0, 1, 2 or 3"),
        ({"scaling": {"num_workers": 0}}, r"scaling.num_workers: .*a positive integer or 'auto'"),
        (
            {"mixture": {"grid": {"m": {"nope": 10}}}},
            r"mixture.grid.m: unknown source\(s\) nope; allowed: math, code",
        ),
        (
            {"mixture": {"grid": {"m": {"math": 0}}}},
            r"mixture 'm' has no source with a positive amount",
        ),
        ({"name": "has space"}, r"name: String should match pattern"),
        (
            {"sweep": {"space": {"train.lr": {"grid": [1], "choice": [2]}}}},
            r"exactly one of grid, choice",
        ),
    ],
)
def test_bad_values_name_file_key_and_allowed(tmp_path: Path, change: dict, expected: str) -> None:
    raw = tiny_experiment(**change)
    with pytest.raises(ConfigError, match=expected):
        load(_write(tmp_path, raw))


def test_missing_required_key(tmp_path: Path) -> None:
    raw = tiny_experiment()
    del raw["sources"]
    with pytest.raises(ConfigError, match="exp.yaml: sources: required key is missing"):
        load(_write(tmp_path, raw))


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"bad.yaml: line 3: invalid YAML"):
        load(_write(tmp_path, "name: x\nseed: 1\n  - oops: [\n", "bad.yaml"))


def test_missing_file_and_bad_override(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: no such file"):
        load(tmp_path / "nope.yaml")
    path = _write(tmp_path, tiny_experiment())
    with pytest.raises(ConfigError, match="expected dotted.key=value"):
        load(path, ["train.lr"])
    with pytest.raises(ConfigError, match=r"sources.9: index 9 out of range"):
        load(path, ["sources.9.size=1"])


def test_validate_rejects_duplicate_sources() -> None:
    raw = tiny_experiment()
    raw["sources"].append(dict(raw["sources"][0]))
    with pytest.raises(ConfigError, match="duplicate source name"):
        validate(raw, origin="x.yaml")


def test_cli_user_error_is_one_message_and_exit_2(tmp_path: Path) -> None:
    path = _write(tmp_path, tiny_experiment(train={"lr": "fast"}))
    proc = subprocess.run(
        [sys.executable, "-m", "raymix", "validate", str(path), "--set", "train.epochs=0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "train.lr" in proc.stderr and "train.epochs" in proc.stderr
    assert proc.stdout == ""


def test_cli_unknown_flag_exits_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "raymix", "sweep", "x.yaml", "--bogus"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr


def test_sweep_with_a_bad_data_file_fails_before_anything_is_written(tmp_path: Path) -> None:
    bad = tmp_path / "rows.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "c", "output": \n')
    raw = tiny_experiment(
        sources=[{"name": "s", "path": str(bad), "heldout": 0}], mixture={"grid": {"m": {"s": 1}}}
    )
    path = _write(tmp_path, raw)
    proc = subprocess.run(
        [sys.executable, "-m", "raymix", "sweep", str(path)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "MLFLOW_TRACKING_URI": ""},
    )
    assert proc.returncode == 2, proc.stderr
    assert f"{bad}:2: malformed JSON" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "raymix_runs").exists()


def test_a_gpu_trial_takes_every_gpu_of_a_node_unless_told_otherwise() -> None:
    from raymix.config.schema import ScalingConfig

    assert ScalingConfig.model_validate({"use_gpu": True}).num_workers == "auto"
    assert ScalingConfig.model_validate({}).num_workers == 2, "the CPU default: 2 workers"
    told = ScalingConfig.model_validate({"use_gpu": True, "num_workers": 4})
    assert told.num_workers == 4 and told.workers == 4
    with pytest.raises(RuntimeError, match="resolved when Ray is up"):
        _ = ScalingConfig.model_validate({"use_gpu": True}).workers
    for bad in (0, -1, "many", True, 2.5):
        with pytest.raises(ValueError, match="a positive integer or 'auto'"):
            ScalingConfig.model_validate({"num_workers": bad})
