"""Load an experiment file with ``--set`` overrides into a validated ExperimentConfig.

Every failure (missing file, YAML syntax, unknown key, wrong type, bad override) becomes one
ConfigError whose message names the file, the dotted key and what is allowed.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from raymix.config.schema import EVAL_TASK_NAMES, EVAL_TASKS, ExperimentConfig
from raymix.config.strategy_checks import check_strategy
from raymix.errors import ConfigError


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads '1e-3' and '2e5' as floats (YAML 1.1 demands a dot)."""


_FLOAT = re.compile(
    r"^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
    r"|[0-9][0-9_]*[eE][-+]?[0-9]+|\.inf|\.nan)$",
    re.IGNORECASE,
)
_Loader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != "tag:yaml.org,2002:float"]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def parse_value(text: str) -> Any:
    """Parse one scalar or flow value the way the YAML file would ('3e-4' is a float)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader


def load(
    path: str | Path, overrides: Iterable[str] = (), profile: str | None = None
) -> ExperimentConfig:
    """Read, override and validate an experiment file.

    Args:
        path: the YAML file.
        overrides: ``dotted.key=value`` strings applied in order before validation.
        profile: one of the file's ``profiles:``, applied before ``overrides``.

    Raises:
        ConfigError: naming the file and key for any problem.
    """
    raw, profiles = read_raw(path)
    if profile is not None:
        raw = apply_profile(raw, profiles, profile, str(path))
    return _checked(apply_overrides(raw, overrides, origin=str(path)), str(path))


def load_profiles(path: str | Path, overrides: Iterable[str] = ()) -> dict[str, ExperimentConfig]:
    """The file without a profile (key ``""``) and under each of its ``profiles:``, each with
    ``overrides`` applied and validated: what ``raymix validate`` checks."""
    raw, profiles = read_raw(path)
    out = {"": _checked(apply_overrides(raw, overrides, origin=str(path)), str(path))}
    for name in profiles:
        origin = f"{path} (profile {name})"
        out[name] = _checked(
            apply_overrides(apply_profile(raw, profiles, name, str(path)), overrides, origin),
            origin,
        )
    return out


def _checked(raw: dict[str, Any], origin: str) -> ExperimentConfig:
    cfg = validate(raw, origin=origin)
    check_strategy(cfg, origin)  # settings that would do nothing: an error or a warning
    return cfg


_PROFILE_NAME = re.compile(r"^[A-Za-z0-9_\-]+$")


def read_raw(path: str | Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The file's mapping without its ``profiles:``, and the profiles (name → ``{dotted key:
    value}``, each entry applied as a ``--set``), checked for shape."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" line {where.line + 1}" if where is not None else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{path}:{line}: invalid YAML: {problem}") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys at the top, got {type(raw).__name__}"
        )
    profiles = raw.pop("profiles", None) or {}
    if not isinstance(profiles, dict):
        raise ConfigError(
            f"{path}: profiles: expected a mapping of profile names to overrides, got "
            f"{type(profiles).__name__}"
        )
    for name, entries in profiles.items():
        if not isinstance(name, str) or not _PROFILE_NAME.match(name):
            raise ConfigError(f"{path}: profiles: {name!r} is not a name (letters, digits, _ -)")
        if not isinstance(entries, dict) or not entries:
            raise ConfigError(
                f"{path}: profiles.{name}: expected a mapping of dotted keys to values "
                "(each one a --set), e.g. {model.name: tiny, train.max_steps: 40}"
            )
    return raw, profiles


def apply_profile(
    raw: dict[str, Any], profiles: Mapping[str, Mapping[str, Any]], name: str, origin: str
) -> dict[str, Any]:
    """``raw`` with profile ``name``'s entries set, each as ``--set key=value`` would."""
    if name not in profiles:
        allowed = ", ".join(profiles) if profiles else "none: the file declares no profiles"
        raise ConfigError(f"{origin}: --profile {name}: no such profile; allowed: {allowed}")
    out = copy.deepcopy(raw)
    for key, value in profiles[name].items():
        try:
            set_dotted(out, str(key), copy.deepcopy(value))
        except (KeyError, IndexError, TypeError) as e:
            raise ConfigError(
                f"{origin}: profiles.{name}.{key}: {e.args[0] if e.args else e}"
            ) from None
    return out


def validate(raw: Mapping[str, Any], origin: str) -> ExperimentConfig:
    """Validate a plain dict, turning pydantic's errors into one ConfigError."""
    try:
        # JSON mode: strict types, yet YAML lists are accepted where the schema has tuples.
        return ExperimentConfig.model_validate_json(json.dumps(dict(raw), default=str))
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, origin)) from None


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str], origin: str) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``dotted.key=value`` set (lists indexed by number)."""
    out = copy.deepcopy(dict(raw))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected dotted.key=value, e.g. train.lr=3e-4")
        try:
            set_dotted(out, key.strip(), parse_value(value))
        except (KeyError, IndexError, TypeError) as e:
            raise ConfigError(f"{origin}: --set {key}: {e.args[0] if e.args else e}") from None
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML") from None
    return out


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``tree[a][b][c] = value`` for key 'a.b.c', creating mappings on the way."""
    parts = key.split(".")
    node: Any = tree
    for i, part in enumerate(parts[:-1]):
        nxt = _child(node, part, create=True, where=".".join(parts[: i + 1]))
        node = nxt
    last = parts[-1]
    if isinstance(node, list):
        node[_index(node, last, key)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise TypeError(f"{'.'.join(parts[:-1])} is a {type(node).__name__}, not a mapping")


def _child(node: Any, part: str, create: bool, where: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, where)]
    if not isinstance(node, dict):
        raise TypeError(f"{where} is inside a {type(node).__name__}, not a mapping")
    if part not in node or node[part] is None:
        if not create:
            raise KeyError(where)
        node[part] = {}
    return node[part]


def _index(node: list[Any], part: str, where: str) -> int:
    try:
        i = int(part)
    except ValueError:
        raise KeyError(f"{where}: {part!r} is not a list index") from None
    if not -len(node) <= i < len(node):
        raise IndexError(f"{where}: index {i} out of range (list has {len(node)} items)")
    return i


def format_validation_error(err: ValidationError, origin: str) -> str:
    """One readable message: each problem on its own line as ``file: key: what is allowed``."""
    lines = []
    for e in err.errors():
        key = _dotted(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            allowed = _allowed_keys(e["loc"][:-1])
            msg = "unknown key" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and e["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{origin}: {msg}" if key == "(top level)" else f"{origin}: {key}: {msg}")
    # Unions report one error per alternative; keep each distinct line once.
    top = sorted({_dotted(e["loc"]).split(".")[0] for e in err.errors()} - {"(top level)"})
    hints = [
        f"(each key's type, default and allowed values: raymix validate --help-keys {t})"
        for t in top[:1]
    ]
    return "\n".join([*dict.fromkeys(lines), *hints])


def _dotted(loc: tuple[Any, ...]) -> str:
    """The dotted key of an error location, without pydantic's union and discriminator tags."""
    parts: list[str] = []
    for p in loc:
        if _is_union_tag(p) or (parts and str(p) == parts[-1]):  # "ratio.ratio": tag, then field
            continue
        if p in EVAL_TASK_NAMES and parts[-3:-1] == ["eval", "tasks"]:  # eval.tasks.0.<tag>
            continue
        parts.append(str(p))
    return ".".join(parts) or "(top level)"


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and (
        part.startswith(("constrained-", "function-", "lax-"))
        or part in ("int", "float", "str", "amounts")
    )


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = ExperimentConfig
    for i, part in enumerate(loc):
        if isinstance(part, int) or _is_union_tag(part):
            continue
        if part in EVAL_TASK_NAMES and loc[:2] == ("eval", "tasks") and i == 3:
            model = EVAL_TASKS[EVAL_TASK_NAMES.index(part)]  # the task the `name` tag picked
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(str(part))
        if field is None:
            return []
        model = _model_of(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def dump(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML (what MLflow stores as config.yaml)."""
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def with_params(cfg: ExperimentConfig, params: Mapping[str, Any]) -> ExperimentConfig:
    """The config with a trial's sampled ``dotted.key: value`` parameters applied."""
    raw = cfg.model_dump(mode="json")
    for key, value in params.items():
        set_dotted(raw, key, value)
    return validate(raw, origin="trial parameters")


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings to dotted keys (lists of mappings are indexed)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        elif isinstance(v, list) and v and all(isinstance(x, Mapping) for x in v):
            for i, x in enumerate(v):
                out.update(flatten(x, f"{key}.{i}."))
        else:
            out[key] = v
    return out
