"""``sweep.storage_path: s3://…`` against a real S3-compatible server on 127.0.0.1 (moto in server
mode, reached through $AWS_ENDPOINT_URL as any custom endpoint): Ray Train's checkpoints, Tune's
state and the MLflow artifacts land in the bucket, a sweep stopped with Ctrl-C resumes from it,
and a missing or unreachable bucket is one clear error before anything is written."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.integration.sweeps import refused_sweep, runs, start_sweep, write_sweep
from tests.mlflow_server import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BUCKET = "raymix-test"
SPEC = {"math": 240, "code": 240}


@pytest.fixture
def s3(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp_path / "moto.log").open("wb")
    moto = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen([str(moto), "-H", "127.0.0.1", "-p", str(port)], stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(endpoint, timeout=2).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "moto server did not come up"
            time.sleep(0.3)
    aws = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}  # fmt: skip
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    client.create_bucket(Bucket=BUCKET)
    try:
        yield {"aws": aws, "client": client}
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _keys(s3: dict, prefix: str) -> list[str]:
    pages = s3["client"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_a_sweep_on_s3_keeps_everything_in_the_bucket_and_resumes_from_it(
    s3: dict, tmp_path: Path
) -> None:
    name = "ons3"
    storage = f"s3://{BUCKET}/runs"
    env = write_sweep(tmp_path, name, {"both": SPEC}, storage=storage, epochs=4,
                      log_every=2, eval_every=30, checkpoint_every=10) | s3["aws"]  # fmt: skip
    proc = start_sweep(tmp_path, env)
    try:
        deadline = time.monotonic() + 600
        while not any("train/loss" in r.data.metrics for r in runs(env, name, "trial")):
            assert proc.poll() is None, proc.communicate()[1][-5000:]
            assert time.monotonic() < deadline, "the trial never trained"
            time.sleep(1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-5000:]
    assert _keys(s3, f"runs/{name}-"), "Tune's state is in the bucket"
    (parent,) = runs(env, name, "sweep")
    assert parent.data.tags["raymix.tune_path"].startswith(f"{storage}/{name}-")

    resumed = subprocess.run(
        [sys.executable, "-m", "raymix", "sweep", "exp.yaml", "--resume"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert resumed.returncode == 0, (resumed.stderr[-5000:], parent.info.status, parent.data.tags)
    (parent,) = runs(env, name, "sweep")
    (trial,) = runs(env, name, "trial")
    assert parent.info.status == "FINISHED" and trial.info.status == "FINISHED"
    assert trial.data.tags["raymix.checkpoint"].startswith(f"{storage}/{name}-")
    keys = _keys(s3, "runs/")
    assert any("/checkpoint_" in k for k in keys), "Ray Train's checkpoints are in the bucket"
    assert trial.info.artifact_uri.startswith(f"s3://{BUCKET}/runs/mlflow/{name}/")
    artifacts = _keys(s3, f"runs/mlflow/{name}/")
    assert any(k.endswith("/manifest.json") for k in artifacts), artifacts[:20]
    assert not (tmp_path / "raymix_runs").exists() and not (tmp_path / "mlruns").exists()


@pytest.mark.parametrize("problem", ["missing bucket", "unreachable endpoint"])
def test_a_bad_bucket_is_one_clear_error_before_anything_is_written(
    s3: dict, tmp_path: Path, problem: str
) -> None:
    bucket = "no-such-bucket" if problem == "missing bucket" else BUCKET
    env = write_sweep(tmp_path, "bad", {"both": SPEC}, storage=f"s3://{bucket}/runs") | s3["aws"]
    if problem == "unreachable endpoint":
        env["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{free_port()}"
    error = refused_sweep(tmp_path, env)
    assert "sweep.storage_path" in error
    assert ("does not exist" if problem == "missing bucket" else "cannot reach") in error
    assert not (tmp_path / "mlflow.db").exists(), "no MLflow run before the check"
