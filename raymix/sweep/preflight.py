"""Everything about an experiment that can be known before any training: every source's file
reads and converts, every held-out split leaves rows to train on, and every eval task builds
(its files exist and have the fields it needs; its judge and benchmarks are configured). Run by
``raymix validate`` and by ``raymix sweep`` before Ray starts, so a mistake costs a second, not a
trial's compute."""

from __future__ import annotations

from raymix.config import ExperimentConfig
from raymix.data.records import Record
from raymix.data.sources import load_records, split_heldout
from raymix.errors import ConfigError, DataError, RaymixError
from raymix.eval.registry import task_factory


def check_experiment(cfg: ExperimentConfig, heldout: dict[str, list[Record]] | None = None) -> None:
    """Raise the first user error the experiment would meet.

    Args:
        cfg: the validated experiment.
        heldout: each source's held-out records when the caller has them (the sweep);
            otherwise the sources are read and split here.
    """
    if heldout is None:
        heldout = {}
        for src in cfg.sources:
            records = load_records(src, cfg.seed).records
            _, ids = split_heldout(len(records), src.heldout_size, cfg.seed, src.name)
            heldout[src.name] = [records[i] for i in ids]
    for i, t in enumerate(cfg.eval.tasks):
        try:
            task_factory(t.name)(t, cfg.eval, heldout)
        except RaymixError as e:
            kind = type(e) if isinstance(e, ConfigError | DataError) else ConfigError
            raise kind(f"eval.tasks.{i} ({t.name}): {e}") from None
