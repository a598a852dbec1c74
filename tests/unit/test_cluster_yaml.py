"""cluster.yaml as shipped: a config Ray's cluster launcher accepts as it is, that installs raymix
with the Makefile's own steps (as the Dockerfile does), starts every node with token
authentication, and runs a durable MLflow on the head."""

from __future__ import annotations

import re

import yaml

from tests.conftest import ROOT


def _cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())  # type: ignore[no-any-return]


def test_cluster_yaml_passes_ray_launcher_validation_as_shipped() -> None:
    from ray.autoscaler._private.util import fillout_defaults, validate_config

    raw = _cluster()
    validate_config(raw)  # without filled-in defaults: the file itself is complete
    validate_config(fillout_defaults(raw))
    assert raw["head_node_type"] == "head"
    worker = raw["available_node_types"]["a100"]["node_config"]
    assert worker["InstanceType"] == "p4d.24xlarge"
    assert "instance-profile" in worker["IamInstanceProfile"]["Arn"], "S3 through a role"


def test_every_node_installs_raymix_the_way_make_install_does() -> None:
    raw = _cluster()
    assert raw["file_mounts"]["~/raymix"] == ".", "the clone itself, not a placeholder URL"
    installs = [c for c in raw["setup_commands"] if "make install-into" in c]
    assert len(installs) == 1 and "cd ~/raymix" in installs[0]
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^install-into:", makefile, re.M)
    assert re.search(r"\$\(MAKE\) install-into PIP=\$\(BIN\)/pip", makefile), "make install uses it"
    assert "make install-into PIP=pip" in (ROOT / "Dockerfile").read_text()
    assert "git+https" not in (ROOT / "cluster.yaml").read_text()


def test_token_auth_on_every_node_and_the_head_services_stay_inside() -> None:
    raw = _cluster()
    starts = [c for c in raw["head_start_ray_commands"] + raw["worker_start_ray_commands"]
              if "ray start" in c]  # fmt: skip
    assert len(starts) == 2 and all("RAY_AUTH_MODE=token" in c for c in starts)
    assert raw["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    (head,) = [c for c in raw["head_start_ray_commands"] if "ray start --head" in c]
    assert "--dashboard-host=127.0.0.1" in head and "MLFLOW_TRACKING_URI=http://" in head
    (mlflow,) = [c for c in raw["head_start_ray_commands"] if "mlflow server" in c and "nohup" in c]
    assert "--backend-store-uri postgresql://" in mlflow, "a database that outlives the cluster"
    assert "--artifacts-destination s3://" in mlflow
    assert "0.0.0.0" not in mlflow
