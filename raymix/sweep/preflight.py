"""Everything about an experiment that can be known before any training: every eval task builds
(its files exist and have the fields it needs; its judge and benchmarks are configured) and, for
``raymix validate``, every source's file reads and converts and its held-out split leaves rows to
train on. ``raymix sweep`` runs it before it tokenizes and before Ray starts (its own data
preparation reads the sources), so a mistake costs a second, not a trial's compute."""

from __future__ import annotations

from raymix.config import ExperimentConfig
from raymix.data.sources import load_records, split_heldout
from raymix.errors import ConfigError, DataError, RaymixError
from raymix.eval.registry import task_factory


def check_experiment(cfg: ExperimentConfig, *, read_sources: bool = True) -> None:
    """Raise the first user error the experiment would meet.

    Args:
        cfg: the validated experiment.
        read_sources: also read and split every source (the sweep leaves that to its data
            preparation, which reads them anyway).
    """
    if read_sources:
        for src in cfg.sources:
            n = len(load_records(src, cfg.seed).records)
            split_heldout(n, src.heldout_size, cfg.seed, src.name)
    for i, t in enumerate(cfg.eval.tasks):
        try:
            # held-out rows are scored row by row, whatever they carry: none are needed here
            task_factory(t.name)(t, cfg.eval, {})
        except RaymixError as e:
            kind = type(e) if isinstance(e, ConfigError | DataError) else ConfigError
            raise kind(f"eval.tasks.{i} ({t.name}): {e}") from None
