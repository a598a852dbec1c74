"""Benchmark: where a raymix worker's time goes. One process, one thread, the same tiny model and
micro-batches: a plain PyTorch loop against a DeepSpeed engine (world size 1, gloo, the CPU
accelerator) at ZeRO-0 and ZeRO-2, interleaved three times and compared by the median.

This isolates DeepSpeed's per-step engine cost from Ray and from data-parallel communication,
which the trial benchmark (trial_throughput.py) measures together.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["DS_ACCELERATOR"] = "cpu"
os.environ.update(
    MASTER_ADDR="127.0.0.1", MASTER_PORT="29561", RANK="0", WORLD_SIZE="1", LOCAL_RANK="0"
)

STEPS, WARM, MICRO = 60, 10, 16


def main() -> None:
    import torch
    import torch.distributed as dist

    from raymix.config import load
    from raymix.data.batches import collate
    from raymix.data.mixture import build_plan
    from raymix.data.pipeline import prepare_data
    from raymix.train.engine import build_engine
    from raymix.train.loop import optimizer_step
    from raymix.train.model import build_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    cfg = load(
        ROOT / "experiments" / "quickstart.yaml",
        ["mixture.grid={all: {math: 600, code: 600, general: 600}}"],
    )
    _, tok, sources = prepare_data(cfg)
    plan = build_plan(cfg, "all", sources)
    rows = [
        sources[n].cache.example(i) for n, p in plan.stages[0].sources.items() for i in p.row_ids
    ]
    batches = [
        collate(rows[i : i + MICRO], tok.pad_token_id) for i in range(0, MICRO * STEPS, MICRO)
    ]

    def plain() -> float:
        model = build_model(cfg.model, tok, 0, "float32")
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr)
        start = 0.0
        for k, b in enumerate(batches):
            if k == WARM:
                start = time.perf_counter()
            model(**b).loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
        return (STEPS - WARM) / (time.perf_counter() - start)

    def deepspeed(stage: int) -> float:
        c = cfg.model_copy(
            update={
                "deepspeed": cfg.deepspeed.model_copy(update={"zero_stage": stage}),
                "scaling": cfg.scaling.model_copy(update={"num_workers": 1}),
            }
        )
        engine = build_engine(c, build_model(cfg.model, tok, 0, "float32"), [STEPS], "float32")
        start = 0.0
        for k, b in enumerate(batches):
            if k == WARM:
                start = time.perf_counter()
            optimizer_step(engine, [b], 1)  # the workers' step: loss per target token
        return (STEPS - WARM) / (time.perf_counter() - start)

    runs: dict[str, list[float]] = {"plain": [], "zero0": [], "zero2": []}
    for _ in range(3):
        runs["plain"].append(plain())
        runs["zero0"].append(deepspeed(0))
        runs["zero2"].append(deepspeed(2))
    base = statistics.median(runs["plain"])
    print(f"bench/engine_overhead: tiny Llama, micro-batch {MICRO}, 1 process, 1 thread")
    for name, vals in runs.items():
        med = statistics.median(vals)
        print(
            f"  {name:6s} {med:7.1f} steps/s  ratio {med / base:.2f}  (runs {', '.join(f'{v:.1f}' for v in vals)})"
        )


if __name__ == "__main__":
    main()
