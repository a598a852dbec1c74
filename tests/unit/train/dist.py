"""Run a function on real torch.distributed ranks (gloo, CPU DeepSpeed) in fresh processes, and
the small real pieces the engine tests share: a tokenizer, the tiny model and uneven examples."""

from __future__ import annotations

import os
import pickle
import random
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from raymix.config import validate
from raymix.config.schema import ExperimentConfig
from raymix.data.batches import IGNORE, Example
from tests.conftest import tiny_experiment

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2}


def run_ranks(fn: Callable[..., Any], world: int, *args: Any) -> list[Any]:
    """``fn(rank, world, *args)`` on ``world`` spawned processes in one gloo group; the values
    they return, by rank."""
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="raymix-ranks-") as tmp:
        mp.spawn(_entry, args=(world, port, tmp, fn, args), nprocs=world, join=True)
        return [pickle.loads(Path(tmp, f"{r}.pkl").read_bytes()) for r in range(world)]


def _entry(rank: int, world: int, port: int, tmp: str, fn: Callable[..., Any], args: Any) -> None:
    os.environ.update(
        DS_ACCELERATOR="cpu", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
        LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
    )  # fmt: skip
    import warnings

    import torch
    import torch.distributed as dist

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        out = fn(rank, world, *args)
        Path(tmp, f"{rank}.pkl").write_bytes(pickle.dumps(out))
    finally:
        dist.destroy_process_group()


def experiment(**train: Any) -> ExperimentConfig:
    """The tiny experiment with the tiny model and ``train`` settings (``zero_stage`` and
    ``num_workers`` go to their sections)."""
    zero = train.pop("zero_stage", 0)
    workers = train.pop("num_workers", 1)
    return validate(
        tiny_experiment(
            model={"name": "tiny", "tiny": TINY, "dtype": "float32"},
            train=train,
            deepspeed={"zero_stage": zero},
            scaling={"num_workers": workers, "cpus_per_worker": 1},
        ),
        origin="test",
    )


def tokenizer() -> Any:
    from raymix.data.tokenizer import load_tokenizer, train_builtin

    return load_tokenizer(train_builtin([f"token {i} word {i * 7}" for i in range(60)], 300))


def examples(n: int, vocab: int, seed: int = 0) -> list[Example]:
    """``n`` examples of uneven lengths (4..40 tokens) whose targets are uneven suffixes."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        length = rng.randint(4, 40)
        ids = [rng.randrange(3, vocab) for _ in range(length)]
        prompt = rng.randint(1, length - 1)
        out.append(Example(ids, [IGNORE] * prompt + ids[prompt:]))
    return out


def full_params(engine: Any) -> list[Any]:
    """Every parameter's full fp32 value (a collective under ZeRO-3)."""
    from deepspeed.utils import safe_get_full_fp32_param

    if engine.zero_optimization_stage() == 0:
        return [p.detach().clone() for p in engine.module.parameters()]
    return [safe_get_full_fp32_param(p).detach().clone() for p in engine.module.parameters()]
