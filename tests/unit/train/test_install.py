"""`make install` builds DeepSpeed's CPU shared-memory communication op, so no trial compiles it at
run time (a JIT build took ~49 s in the first trial of every new machine)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch


@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU DeepSpeed uses NCCL, not this op")
def test_the_shm_comm_op_is_prebuilt_and_loads_without_compiling(tmp_path: Path) -> None:
    code = (
        "from deepspeed.git_version_info import installed_ops\n"
        "from deepspeed.ops.op_builder.cpu.comm import ShareMemCommBuilder\n"
        "assert installed_ops['deepspeed_shm_comm'], 'not built at install'\n"
        "print(ShareMemCommBuilder().load().__name__)\n"
    )
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "TORCH_EXTENSIONS_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().endswith("deepspeed.ops.comm.deepspeed_shm_comm_op")
    assert list(tmp_path.iterdir()) == []  # nothing was JIT-compiled
