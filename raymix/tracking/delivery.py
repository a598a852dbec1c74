"""Delivery of a trial's MLflow records through tracking-server outages of any length.

A ``Courier`` owns one background thread that sends records (metric batches, params, tags, text
artifacts, artifact folders, the run's end) to MLflow in the order they were handed over. A
transient failure (the server unreachable, a 5xx, a locked database) is retried with exponential
backoff and jitter (tenacity) for as long as the trial lasts, while training goes on; a permanent
one (MLflow refusing the record itself, e.g. an invalid value) is dropped with a warning.

What is still undelivered when the trial reports a checkpoint, or when it ends and a bounded
wait has passed, is written to the run folder's spool (``<run folder>/spool/<run id>/``, on a local
path or any ``pyarrow.fs`` URI such as ``s3://``). ``deliver_spool`` (``raymix sync RUN_FOLDER``,
and ``raymix sweep --resume`` before it restores) sends it later: metric points the run already
holds are skipped, so a spool written while part of it was still getting through delivers each
(metric, step) once; params, tags and artifacts are idempotent.

Not covered: the calls that create a run (a trial's child run is created before its workers
start, through MLflow's own HTTP retries), and a record that reached the server whose answer was
lost in the outage: retried, a metric point can then appear twice.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential_jitter,
)

log = logging.getLogger("raymix.tracking")
T = TypeVar("T")

SPOOL_DIR = "spool"
SEGMENT = ".jsonl"
MAX_PARAM_LEN = 6000
_TRANSIENT_CODES = {
    "INTERNAL_ERROR",
    "TEMPORARILY_UNAVAILABLE",
    "REQUEST_LIMIT_EXCEEDED",
    "DEADLINE_EXCEEDED",
    "ABORTED",
}


def transient(error: BaseException) -> bool:
    """Whether retrying ``error`` may succeed: anything but MLflow refusing the record itself."""
    from mlflow.exceptions import MlflowException

    if isinstance(error, MlflowException):
        return str(error.error_code) in _TRANSIENT_CODES
    return isinstance(error, Exception)


@dataclass
class Record:
    """One call to MLflow: ``kind`` is metrics, params, tags, text, artifacts or terminate."""

    kind: str
    run_id: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "run_id": self.run_id, "data": self.data})

    @staticmethod
    def from_json(line: str) -> Record:
        raw = json.loads(line)
        return Record(raw["kind"], raw["run_id"], raw["data"])


def params_record(run_id: str, params: Mapping[str, Any]) -> Record:
    """Params as MLflow holds them: values stringified (lists and dicts as JSON), long ones cut
    to MLflow's limit."""
    return Record("params", run_id, {"params": {k: param_str(v) for k, v in params.items()}})


def param_str(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, list | dict) else str(value)
    return text if len(text) <= MAX_PARAM_LEN else text[: MAX_PARAM_LEN - 3] + "..."


def metrics_record(run_id: str, metrics: Mapping[str, float], step: int) -> Record:
    now = int(time.time() * 1000)
    points = [[k, float(v), now, int(step)] for k, v in metrics.items()]
    return Record("metrics", run_id, {"points": points})


def send(client: Any, record: Record, skip: set[tuple[str, int]] | None = None) -> None:
    """One synchronous MLflow call for ``record``; metric points in ``skip`` are left out."""
    from mlflow.entities import Metric, Param, RunTag

    data = record.data
    if record.kind == "metrics":
        points = [p for p in data["points"] if skip is None or (p[0], int(p[3])) not in skip]
        for i in range(0, len(points), 1000):
            batch = [Metric(k, v, ts, step) for k, v, ts, step in points[i : i + 1000]]
            client.log_batch(record.run_id, metrics=batch)
    elif record.kind == "params":
        items = [Param(k, v) for k, v in sorted(data["params"].items())]
        for i in range(0, len(items), 100):
            client.log_batch(record.run_id, params=items[i : i + 100])
    elif record.kind == "tags":
        client.log_batch(record.run_id, tags=[RunTag(k, v) for k, v in data["tags"].items()])
    elif record.kind == "text":
        client.log_text(record.run_id, data["text"], data["name"])
    elif record.kind == "artifacts":
        client.log_artifacts(record.run_id, data["local_dir"], data["path"])
    elif record.kind == "terminate":
        client.set_terminated(record.run_id, status=data["status"])
    else:  # pragma: no cover - records are built here
        raise ValueError(f"unknown record kind {record.kind!r}")


class Courier:
    """Ordered, retried, spooled delivery of one process's records to one tracking store."""

    def __init__(self, uri: str, spool_dir: str | None = None, max_wait_s: float = 30.0) -> None:
        from mlflow.tracking import MlflowClient

        if uri.startswith("file:"):
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        self.spool_dir = spool_dir
        self.max_wait_s = max_wait_s
        self._queue: queue.Queue[tuple[int, Record] | None] = queue.Queue()
        self._pending: dict[int, Record] = {}  # handed over, not yet delivered (by sequence)
        self._seq = 0
        self._lock = threading.Condition()
        self._closing = threading.Event()
        self._staging = tempfile.mkdtemp(prefix="raymix-courier-")
        self.failures = 0  # transient failures seen (each retried)
        self.outage = False  # the last attempt failed transiently; cleared by a delivery
        # the spool: segments this courier wrote, each holding the records still pending then
        # that no earlier segment holds (a long outage appends, it never rewrites)
        self._token = f"{time.time_ns()}-{os.getpid()}-{id(self) & 0xFFFF:04x}"
        self._spooled_upto = 0
        self.segments: list[str] = []
        self._spooled_files: list[str] = []  # artifact folders the segments refer to
        self._thread = threading.Thread(target=self._run, name="raymix-courier", daemon=True)
        self._thread.start()

    # -- handing records over (never blocks on the network) ---------------------------------
    def put(self, record: Record) -> None:
        with self._lock:
            self._seq += 1
            seq = self._seq
        if record.kind == "artifacts":  # the caller may delete its folder once this returns
            staged = os.path.join(self._staging, str(seq))
            shutil.copytree(record.data["local_dir"], staged)
            record = Record(record.kind, record.run_id, {**record.data, "local_dir": staged})
        with self._lock:
            self._pending[seq] = record
        self._queue.put((seq, record))

    # -- waiting -------------------------------------------------------------------------------
    def flush(self, timeout: float | None = None, through_outage: bool = False) -> bool:
        """Wait until everything handed over is delivered, at most ``timeout`` seconds (not at
        all during an outage, unless ``through_outage``: training goes on). What is still
        undelivered then is spooled and stays queued; returns True when everything was
        delivered."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._pending and self._thread.is_alive():
                left = 1.0 if deadline is None else deadline - time.monotonic()
                if left <= 0 or (self.outage and deadline is not None and not through_outage):
                    break
                self._lock.wait(min(left, 1.0))
            drained = not self._pending
            if not drained and deadline is not None:
                self.outage = True  # slow or unreachable: the next reports do not wait for it
        if drained:
            self._clear_spool()
        else:
            self.write_spool()
        return drained

    def close(self, timeout: float | None = None) -> bool:
        """Wait at most ``timeout`` for the rest to land (even during an outage: the trial is
        over), then stop the thread; what is left stays in the spool."""
        drained = self.flush(timeout, through_outage=True)  # a last chance: the whole timeout
        self._closing.set()
        self._queue.put(None)
        self._thread.join(timeout=5 if drained else 1)
        if drained:
            shutil.rmtree(self._staging, ignore_errors=True)
        elif self.segments:
            runs = sorted({r.run_id for r in self._pending.values()})
            log.warning(
                "raymix: MLflow at %s did not take %d record(s) of run(s) %s; they wait in %s: "
                "`raymix sync %s` delivers them (a `raymix sweep --resume` does too)",
                self.uri, len(self._pending), ", ".join(runs), self.spool_dir,
                os.path.dirname(str(self.spool_dir).rstrip("/")),
            )  # fmt: skip
        return drained

    # -- the sender ----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            seq, record = item
            try:
                self._deliver(record)
            except RetryError:
                return  # closing during an outage: the record stays pending (and spooled)
            except Exception as error:  # refused by MLflow itself: retrying cannot help
                log.warning("raymix: MLflow refused a %s record for run %s: %s",
                            record.kind, record.run_id, error)  # fmt: skip
            with self._lock:
                del self._pending[seq]
                self._lock.notify_all()

    def _deliver(self, record: Record) -> None:
        """Send ``record``, retrying transient failures until it lands or the courier closes."""
        for attempt in Retrying(
            retry=retry_if_exception(transient),
            wait=wait_exponential_jitter(initial=0.5, max=self.max_wait_s),
            stop=lambda _state: self._closing.is_set(),
            before_sleep=self._note_failure,
        ):
            with attempt:
                send(self.client, record)
        self.outage = False

    def _note_failure(self, state: Any) -> None:
        self.failures += 1
        self.outage = True
        if self.failures == 1 or self.failures % 20 == 0:
            log.warning("raymix: MLflow at %s unreachable (%s); retrying, training goes on",
                        self.uri, state.outcome.exception())  # fmt: skip

    # -- the spool -------------------------------------------------------------------------------
    def write_spool(self) -> list[str]:
        """Append the undelivered records that no earlier segment holds to a new segment per
        run, ``<spool_dir>/<run id>/<token>-<first seq>.jsonl`` (artifact folders under
        ``files/``); returns the segments written (none without a spool folder)."""
        if not self.spool_dir:
            return []
        with self._lock:
            fresh = [(q, r) for q, r in self._pending.items() if q > self._spooled_upto]
        by_run: dict[str, list[tuple[int, Record]]] = {}
        for q, r in fresh:
            by_run.setdefault(r.run_id, []).append((q, r))
        written = []
        for run_id, records in by_run.items():
            folder = _join(self.spool_dir, run_id)
            lines = [json.dumps({"uri": self.uri})]
            for q, r in records:
                if r.kind == "artifacts":
                    name = f"files/{self._token}-{q}"
                    _copy_dir(r.data["local_dir"], _join(folder, name))
                    self._spooled_files.append(_join(folder, name))
                    r = Record(r.kind, r.run_id, {**r.data, "local_dir": name})
                lines.append(r.to_json())
            segment = _join(folder, f"{self._token}-{records[0][0]:08d}{SEGMENT}")
            _write_text(segment, "\n".join(lines) + "\n")
            written.append(segment)
        if fresh:
            self._spooled_upto = fresh[-1][0]
        self.segments += written
        return written

    def _clear_spool(self) -> None:
        """Everything this courier spooled got through after all: remove its segments (and
        their files), and each run's folder once no other writer's segments are left in it."""
        for path in [*self._spooled_files, *self.segments]:
            _remove(path)
        for folder in {segment.rsplit("/", 1)[0] for segment in self.segments}:
            if not _segments(folder):
                _remove(folder)
        self.segments, self._spooled_files = [], []


def patiently(call: Callable[[], T], seconds: float) -> T:
    """``call()``, its transient failures (MLflow unreachable) retried with backoff for up to
    ``seconds``: for the sweep driver's own MLflow calls, which nothing can spool."""
    for attempt in Retrying(
        retry=retry_if_exception(transient),
        wait=wait_exponential_jitter(initial=0.5, max=10),
        stop=stop_after_delay(seconds),
        reraise=True,
    ):
        with attempt:
            return call()
    raise AssertionError("unreachable")  # pragma: no cover - Retrying returns or raises


@dataclass
class Delivered:
    runs: int = 0
    records: int = 0
    points: int = 0
    skipped_points: int = 0


def spooled_runs(run_folder: str) -> list[str]:
    """The spool folders under ``run_folder`` (one per run with undelivered records)."""
    from pyarrow import fs as pafs

    fs, root = _fs(_join(run_folder, SPOOL_DIR))
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return []
    found = fs.get_file_info(pafs.FileSelector(root, recursive=False))
    folders = [
        _join(run_folder, SPOOL_DIR, os.path.basename(i.path))
        for i in found
        if i.type == pafs.FileType.Directory
    ]
    return sorted(f for f in folders if _segments(f))


def deliver_spool(run_folder: str, uri: str | None = None) -> Delivered:
    """Send every spooled record under ``run_folder`` (to ``uri``, else the store it was meant
    for), segment by segment in the order they were written, skipping metric points the run
    already holds; each run's spool is removed once it is delivered. A transient failure
    propagates (nothing of that run is removed then)."""
    from mlflow.tracking import MlflowClient

    done = Delivered()
    for folder in spooled_runs(run_folder):
        run_id = folder.rsplit("/", 1)[1]
        held: set[tuple[str, int]] | None = None
        ends: list[tuple[Any, Record]] = []  # the run's end goes last: several writers spool
        for segment in _segments(folder):
            lines = _read_text(segment).splitlines()
            target = uri or json.loads(lines[0])["uri"]
            if target.startswith("file:"):
                os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            client = MlflowClient(tracking_uri=target)
            if held is None:
                held = held_points(client, run_id)
            with tempfile.TemporaryDirectory(prefix="raymix-sync-") as tmp:
                for r in (Record.from_json(line) for line in lines[1:] if line.strip()):
                    if r.kind == "artifacts":
                        local = os.path.join(tmp, os.path.basename(r.data["local_dir"]))
                        _copy_dir(_join(folder, r.data["local_dir"]), local)
                        r = Record(r.kind, r.run_id, {**r.data, "local_dir": local})
                    if r.kind == "metrics":
                        keys = {(p[0], int(p[3])) for p in r.data["points"]}
                        done.points += len(keys - held)
                        done.skipped_points += len(keys & held)
                        send(client, r, skip=held)
                        held |= keys
                    elif r.kind == "terminate":
                        ends.append((client, r))
                        continue
                    else:
                        send(client, r)
                    done.records += 1
        for client, r in ends:
            send(client, r)
            done.records += 1
        _remove(folder)
        done.runs += 1
    return done


def held_points(client: Any, run_id: str) -> set[tuple[str, int]]:
    """Every (metric, step) the run holds already."""
    keys = client.get_run(run_id).data.metrics
    return {(k, int(m.step)) for k in keys for m in client.get_metric_history(run_id, k)}


def _segments(folder: str) -> list[str]:
    """A run's spool segments, oldest writer first."""
    from pyarrow import fs as pafs

    fs, root = _fs(folder)
    if fs.get_file_info(root).type != pafs.FileType.Directory:
        return []
    names = sorted(
        os.path.basename(i.path)
        for i in fs.get_file_info(pafs.FileSelector(root, recursive=False))
        if i.type == pafs.FileType.File and i.path.endswith(SEGMENT)
    )
    return [_join(folder, n) for n in names]


# -- a local path or any pyarrow file system URI ------------------------------------------------
def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def _fs(path: str) -> tuple[Any, str]:
    from pyarrow import fs as pafs

    if "://" not in path:
        return pafs.LocalFileSystem(), os.path.abspath(path)
    return pafs.FileSystem.from_uri(path)  # type: ignore[no-any-return]


def _write_text(path: str, text: str) -> None:
    fs, p = _fs(path)
    fs.create_dir(os.path.dirname(p), recursive=True)
    tmp = f"{p}.tmp"
    with fs.open_output_stream(tmp) as out:
        out.write(text.encode())
    fs.move(tmp, p)


def _read_text(path: str) -> str:
    fs, p = _fs(path)
    with fs.open_input_stream(p) as f:
        return bytes(f.read()).decode()


def _copy_dir(src: str, dest: str) -> None:
    from pyarrow import fs as pafs

    sfs, s = _fs(src)
    dfs, d = _fs(dest)
    if dfs.get_file_info(d).type != pafs.FileType.NotFound:
        dfs.delete_dir(d)
    dfs.create_dir(d, recursive=True)
    pafs.copy_files(s, d, source_filesystem=sfs, destination_filesystem=dfs)


def _remove(path: str) -> None:
    """Delete the file or folder at ``path`` if there is one."""
    from pyarrow import fs as pafs

    fs, p = _fs(path)
    kind = fs.get_file_info(p).type
    if kind == pafs.FileType.Directory:
        fs.delete_dir(p)
    elif kind == pafs.FileType.File:
        fs.delete_file(p)
