"""The Tune function trainable: one trial = one compiled plan, one MLflow child run, one
``TorchTrainer`` fit.

Ray Train V2 cannot be handed to a Tuner directly, so this small driver runs inside the trial
actor, builds the trainer and forwards its reports to Tune through ``TuneReportCallback``.
"""

from __future__ import annotations

import json
import time
from typing import Any

from raymix.config import ExperimentConfig, dump, flatten
from raymix.data.mixture import build_plan
from raymix.data.pipeline import DATA_KEYS, prepare_data, reopen_sources
from raymix.data.plan import Plan
from raymix.sweep.space import trial_setup
from raymix.tracking import MlflowTracker
from raymix.tracking.delivery import SPOOL_DIR, Courier, Record, metrics_record, params_record
from raymix.tracking.mlflow_tracker import CHECKPOINT_TAG
from raymix.train.launch import build_trainer


def run_trial(
    params: dict[str, Any],
    *,
    experiment_json: str,
    experiment_id: str,
    parent_run_id: str,
    tracking_uri: str,
    storage_path: str,
    tokenizer: str,
    contamination: dict[str, dict[str, list[int]]] | None = None,
    source_index: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Train and evaluate one trial (called by Tune with the trial's sampled ``params``)."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    entered = time.time()
    ctx = tune.get_context()
    trial_id = ctx.get_trial_id()
    base = ExperimentConfig.model_validate_json(experiment_json)
    cfg, mixture, searched = trial_setup(base, params)
    sources = None
    if source_index is not None and not any(k.startswith(DATA_KEYS) for k in searched):
        sources = reopen_sources(source_index)  # the sweep's sources: memory maps, by key
    if sources is None:  # data-shaping parameters, or a node without the caches
        _, _, sources = prepare_data(cfg, tokenizer, warn=False)
    plan = build_plan(cfg, mixture, sources, contamination)

    tracker = MlflowTracker(tracking_uri)
    run_id = tracker.trial_run(experiment_id, parent_run_id, trial_id, f"{plan.mixture}-{trial_id}")
    # params, manifest and config go to MLflow while the TorchTrainer starts its workers, and
    # wait in the run folder's spool through an outage (see raymix.tracking.delivery)
    spool = spool_dir(storage_path, ctx.get_experiment_name())
    courier = Courier(tracking_uri, spool)
    held = set(tracker.client.get_run(run_id).data.metrics)  # a resumed trial's run has some
    pools = {n: len(src.train_ids) for n, src in sources.items()}
    for record in _trial_records(run_id, cfg, plan, held, pools):
        courier.put(record)

    trainer = build_trainer(
        cfg,
        {
            "experiment": cfg.model_dump_json(),
            "plan": plan.to_json(),
            "tokenizer": tokenizer,
            "tracking_uri": tracking_uri,
            "run_id": run_id,
            "spool_dir": spool,
            "trial_id": trial_id,
            "fit_called_at": time.time(),
        },
        name=f"{ctx.get_experiment_name()}/train_runs/{trial_id}",
        storage_path=storage_path,
        tracking_uri=tracking_uri,
        callbacks=[TuneReportCallback()],
    )
    fit_called = time.time()
    try:
        result = trainer.fit()
    except BaseException:
        # what was logged goes out; the run's status is the sweep's to set (CloseTrialRuns on
        # an error or a scheduler's stop, KILLED on a signal), in one process, in order: set
        # from here, it raced the sweep's own close and could turn KILLED into FAILED
        courier.close(cfg.tracking.end_wait_s)
        raise
    now = time.time()
    times = {"time/trial_setup_s": fit_called - entered, "time/trial_s": now - entered}
    courier.put(metrics_record(run_id, times, step=0))
    if result.checkpoint is not None:
        path = checkpoint_uri(result.checkpoint)
        courier.put(Record("tags", run_id, {"tags": {CHECKPOINT_TAG: path}}))
        courier.put(Record("text", run_id, {"text": json.dumps({"path": path}, indent=1),
                                            "name": "checkpoint.json"}))  # fmt: skip
    courier.put(Record("terminate", run_id, {"status": "FINISHED"}))
    courier.close(cfg.tracking.end_wait_s)


def checkpoint_uri(checkpoint: Any) -> str:
    """Where a Ray Train checkpoint lies, as a user passes it on: a local path, or a URI
    (``s3://bucket/...``; Ray keeps the file system and the path within it apart)."""
    kind = checkpoint.filesystem.type_name
    return str(checkpoint.path) if kind == "local" else f"{kind}://{checkpoint.path}"


def spool_dir(storage_path: str, experiment_name: str) -> str:
    """Where a trial's undelivered MLflow records wait: the sweep's run folder, ``spool/``."""
    return f"{storage_path.rstrip('/')}/{experiment_name}/{SPOOL_DIR}"


def _trial_records(
    run_id: str, cfg: ExperimentConfig, plan: Plan, held: set[str], pools: dict[str, int]
) -> list[Record]:
    """The trial's params, its manifest and config artifacts, and its contamination figures
    (those of the metrics ``held`` that the run has from an earlier attempt are left out)."""
    manifest = json.dumps(plan.to_json(), indent=1, sort_keys=True)
    records = [
        params_record(run_id, trial_params(cfg, plan, pools)),
        Record("text", run_id, {"text": manifest, "name": "manifest.json"}),
        Record("text", run_id, {"text": dump(cfg), "name": "config.yaml"}),
    ]
    if plan.contamination is not None:
        fresh = {k: v for k, v in contamination_metrics(plan).items() if k not in held}
        if fresh:
            records.append(metrics_record(run_id, fresh, step=0))
    return records


def trial_params(
    cfg: ExperimentConfig, plan: Plan, pools: dict[str, int] | None = None
) -> dict[str, Any]:
    """The child run's params: flattened config (dots), the mixture name, rows per source; for
    a point of mixture.space its shares (``mixture.weight.<source>``), amount, unit and total;
    per source the rows its training pool holds (``data.<source>.pool_rows``, what a
    recommended mixture may draw without upsampling: after the held-out split and a
    contamination drop), the rows dropped before sampling (``data.<source>.dropped.<reason>``), its
    emptied sub-tasks (``data.<source>.lost_subtasks``) and the tokens truncation cuts
    (``data.<source>.tokens``, ``.truncated_tokens``, ``.truncated_share``)."""
    raw = cfg.model_dump(mode="json")
    raw.pop("mixture")
    raw.pop("sweep")
    sources = {s.pop("name"): s for s in raw.pop("sources")}
    params = flatten(raw)
    params.update(flatten(sources, "sources."))
    params["mixture.name"] = plan.mixture
    params["mixture.hash"] = plan.hash
    counts = plan.rows_per_source()
    for name in sorted(sources):
        params[f"mixture.{name}"] = counts.get(name, 0)
    point = plan.spec.get("space")
    if point is not None:
        for name, share in point["weights"].items():
            params[f"mixture.weight.{name}"] = round(share, 6)
        params["mixture.amount"] = point["amount"]
        params["mixture.unit"] = point["unit"]
        params["mixture.total"] = point["total"]
    for name, n in (pools or {}).items():
        params[f"data.{name}.pool_rows"] = n - plan.dropped.get(name, {}).get("contamination", 0)
    for name, reasons in plan.dropped.items():
        for reason, n in reasons.items():
            params[f"data.{name}.dropped.{reason}"] = n
    for name, lost in plan.lost_subtasks.items():
        params[f"data.{name}.lost_subtasks"] = ", ".join(lost)
    for name, t in plan.truncation.items():
        params[f"data.{name}.tokens"] = t["tokens"]
        params[f"data.{name}.truncated_tokens"] = t["truncated_tokens"]
        params[f"data.{name}.truncated_share"] = round(t["share"], 4)
    return params


def contamination_metrics(plan: Plan) -> dict[str, float]:
    """Per eval task and source, the rows that overlap the task's whole eval set:
    ``contamination/<task>/<source>`` (share) and ``.../rows`` in the plan as trained (0 after
    ``drop: true``), ``.../pool_share`` and ``.../pool_rows`` in the source's training pool before
    any drop, and ``.../dropped`` (rows dropped for any task) when dropping."""
    c = plan.contamination or {"tasks": {}}
    out: dict[str, float] = {}
    for task, per in c["tasks"].items():
        for src, x in per.items():
            key = f"contamination/{task}/{src}"
            if x["plan_total"]:
                out[key] = x["plan_rows"] / x["plan_total"]
            out[f"{key}/rows"] = x["plan_rows"]
            out[f"{key}/pool_rows"] = x["pool_rows"]
            if x.get("pool_total"):
                out[f"{key}/pool_share"] = x["pool_rows"] / x["pool_total"]
            if c["drop"]:
                out[f"{key}/dropped"] = c["dropped"].get(src, 0)
    return out
