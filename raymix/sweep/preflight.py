"""Everything about an experiment that can be known before any training: the model and
tokenizer exist (a local folder, or a hub id in the cache or on the hub), every judge's API key is
in its environment variable, the MLflow tracking server answers, every eval task builds (its files
exist and have the fields it needs) and, for ``raymix validate``, every source's file reads and
converts and its held-out split leaves rows to train on. ``raymix sweep`` runs it before it
tokenizes and before Ray starts (its own data preparation reads the sources), so a mistake costs
a second, not a trial's compute. What the cluster must offer is checked once Ray is up
(:func:`check_resources`)."""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

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
    check_model(cfg)
    check_judges(cfg)
    check_tracking(cfg.tracking.uri)
    check_storage(cfg.sweep.storage_path)
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


def check_storage(path: str | None) -> None:
    """A ``sweep.storage_path`` URI (``s3://bucket/prefix``, ``gs://…``) names a bucket that
    exists and answers, as Ray Train and the MLflow artifacts will reach it (pyarrow's file
    systems, with the usual credentials and $AWS_ENDPOINT_URL); a local folder needs nothing."""
    if not path or "://" not in path:
        return
    import pyarrow as pa
    from pyarrow import fs as pafs

    try:
        filesystem, where = pafs.FileSystem.from_uri(path)
        bucket = where.split("/", 1)[0]
        found = filesystem.get_file_info(bucket)
    except (OSError, ValueError, pa.ArrowException) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConfigError(
            f"sweep.storage_path: {path}: cannot reach it ({first}); check the URI, the "
            "credentials and the endpoint ($AWS_ENDPOINT_URL for an S3-compatible server)"
        ) from None
    if found.type == pafs.FileType.NotFound:
        raise ConfigError(
            f"sweep.storage_path: {path}: bucket {bucket!r} does not exist (create it, or "
            "point sweep.storage_path at one that does)"
        )


TRACKING_TIMEOUT_S = 10.0
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def check_model(cfg: ExperimentConfig) -> None:
    """``model.name`` (unless ``tiny``) and ``tokenizer.name`` (unless ``builtin``) name a local
    folder, or a hub id that is in the local cache or on the hub."""
    if cfg.model.name != "tiny":
        _check_pretrained("model.name", cfg.model.name, cfg.model.revision, "config.json")
    if cfg.tokenizer.name != "builtin":
        _check_pretrained("tokenizer.name", cfg.tokenizer.name, None, None)


def _check_pretrained(key: str, name: str, revision: str | None, required: str | None) -> None:
    allowed = "a local folder, or a Hugging Face hub id like org/name"
    folder = Path(name).expanduser()
    if folder.is_dir():
        if required and not (folder / required).is_file():
            raise ConfigError(f"{key}: the folder {name} has no {required}; give {allowed}")
        return
    local_looking = name.startswith(("/", ".", "~")) or name.count("/") > 1
    if local_looking or not _HUB_ID.match(name) or "--" in name or ".." in name:
        raise ConfigError(f"{key}: no such folder {name!r}; give {allowed}")
    import huggingface_hub as hub

    probe = required or "tokenizer_config.json"
    if isinstance(hub.try_to_load_from_cache(name, probe, revision=revision), str):
        return
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise ConfigError(
            f"{key}: {name} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"
        )
    try:
        found = (
            hub.repo_exists(name)
            if required is None
            else hub.file_exists(name, required, revision=revision)
        )
    # HfHubHTTPError for an answer; for no answer, whatever the hub client's HTTP library
    # raises (huggingface_hub 2.x: httpx2's ConnectError, neither an OSError nor exported)
    except Exception as e:  # noqa: BLE001
        raise ConfigError(
            f"{key}: {name} is not in the local Hugging Face cache and the hub could not be "
            f"asked ({type(e).__name__}: {str(e)[:200]}); download it on a machine with access "
            f"(huggingface-cli download {name}) or give a local folder"
        ) from None
    if not found:
        raise ConfigError(f"{key}: the hub has no {'model' if required else 'repository'} {name!r}")


def check_judges(cfg: ExperimentConfig) -> None:
    """Every judge's API key is in the environment variable it names."""
    for i, t in enumerate(cfg.eval.tasks):
        judge = getattr(t, "judge", None)
        if judge is not None and not os.environ.get(judge.api_key_env):
            raise ConfigError(
                f"eval.tasks.{i}.judge.api_key_env: environment variable {judge.api_key_env} is "
                "not set; export the judge's API key there (any non-empty value for a local server)"
            )


def check_tracking(uri: str | None) -> None:
    """An MLflow tracking server (an http(s) URI) answers its health check within
    :data:`TRACKING_TIMEOUT_S` seconds; a local store needs no check."""
    from raymix.tracking import resolve_uri

    resolved = resolve_uri(uri)
    if not resolved.startswith(("http://", "https://")):
        return
    import requests

    try:
        reply = requests.get(resolved.rstrip("/") + "/health", timeout=TRACKING_TIMEOUT_S)
        ok, why = reply.status_code == 200, f"HTTP {reply.status_code}"
    except requests.RequestException as e:
        ok, why = False, type(e).__name__
    if not ok:
        raise ConfigError(
            f"tracking.uri {resolved}: no MLflow tracking server answers ({why}). Start one, "
            "e.g. `mlflow server --host 127.0.0.1 --port 5000`, or leave tracking.uri and "
            "$MLFLOW_TRACKING_URI unset for the local store ./mlflow.db"
        )


def resolve_workers(cfg: ExperimentConfig, driver_cpu: float) -> ExperimentConfig:
    """``cfg`` with ``scaling.num_workers: auto`` made a number from the connected cluster: the
    workers the largest live node holds (its GPUs over gpus_per_worker with use_gpu, else its
    CPUs, less the trial driver's ``driver_cpu``, over cpus_per_worker)."""
    import ray

    s = cfg.scaling
    if s.num_workers != "auto":
        return cfg
    kind, per, spare = ("GPU", s.gpus_per_worker, 0.0) if s.use_gpu else (
        "CPU", s.cpus_per_worker, driver_cpu)  # fmt: skip
    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    largest = max((r.get(kind, 0.0) for r in nodes), default=0.0)
    workers = int((largest - spare) // per)
    if workers < 1:
        raise ConfigError(
            f"scaling.num_workers: auto found no node with {per:g} {kind} for a worker (the "
            f"largest has {largest:g}); on an autoscaling cluster whose {kind} nodes are not up "
            "yet, set scaling.num_workers to a number (and scaling.wait_for_resources_s)"
        )
    scaling = s.model_copy(update={"num_workers": workers})
    return cfg.model_copy(update={"scaling": scaling})


def trial_resources(cfg: ExperimentConfig) -> dict[str, float]:
    """What one trial's worker group asks of the cluster."""
    s = cfg.scaling
    need = {"CPU": s.workers * s.cpus_per_worker}
    if s.use_gpu:
        need["GPU"] = s.workers * s.gpus_per_worker
    return need


def check_resources(cfg: ExperimentConfig, wait_s: float, poll_s: float = 5.0) -> None:
    """The connected Ray cluster can hold one trial. A cluster that lacks it is an error at once
    (``wait_s`` 0: a fixed cluster), or after ``wait_s`` seconds of waiting for an autoscaling
    cluster to add the nodes, saying what it waits for."""
    import ray

    need = trial_resources(cfg)
    deadline = time.monotonic() + wait_s
    told = False
    while True:
        have = ray.cluster_resources()
        short = {k: v for k, v in need.items() if have.get(k, 0.0) < v}
        if not short:
            return
        wanted = ", ".join(f"{v:g} {k}" for k, v in short.items())
        offered = ", ".join(f"{have.get(k, 0.0):g} {k}" for k in short)
        if time.monotonic() >= deadline:
            hint = (
                "scaling.use_gpu: false runs on CPUs; " if "GPU" in short else ""
            ) + "lower scaling.num_workers / cpus_per_worker, or run on a larger cluster"
            raise ConfigError(
                f"scaling: one trial needs {wanted} and the Ray cluster has {offered}"
                + (f" after {wait_s:g} s of waiting" if wait_s else "")
                + f"; {hint} (an autoscaling cluster: set scaling.wait_for_resources_s)"
            )
        if not told:
            print(
                f"raymix: waiting up to {wait_s:g} s for the cluster to offer {wanted} "
                f"(it has {offered})",
                file=sys.stderr,
                flush=True,
            )
            told = True
        time.sleep(poll_s)
