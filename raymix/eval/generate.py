"""Batched greedy generation for evaluation: left-padded prompts, stop strings, and every rank
of a trial generating its shard in lockstep (ZeRO-3 gathers parameters on every forward)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from raymix.config.schema import ExperimentConfig
from raymix.data.batches import shard_with_padding
from raymix.data.templates import prompt

# Where a generated answer ends, per template (besides the tokenizer's EOS).
STOP: dict[str, tuple[str, ...]] = {
    "alpaca": ("### Instruction",),
    "vicuna": ("USER:",),
    "llama2": ("[INST]",),
    "chatml": ("<|im_end|>",),
}


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    stop: Sequence[str] = (),
    synced: bool = False,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
) -> list[str]:
    """Continuations of ``prompts`` (text after the prompt, cut at the first stop string):
    greedy when ``temperature`` is 0, else sampled from a generator seeded with ``seed``.

    ``synced`` keeps ranks in lockstep until all are done (DeepSpeed ZeRO-3).
    """
    import torch

    sampling: dict[str, Any] = {"do_sample": False}
    if temperature > 0:
        torch.manual_seed(seed)
        sampling = {"do_sample": True, "temperature": temperature, "top_p": top_p}

    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    was_training = model.training
    model.eval()
    out: list[str] = []
    try:
        for start in range(0, len(prompts), batch_size):
            # the same BOS the training examples start with, unless the template wrote it
            bos = tokenizer.bos_token or ""
            chunk = [
                p if not bos or p.startswith(bos) else bos + p
                for p in prompts[start : start + batch_size]
            ]
            enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
            with torch.no_grad():
                gen = model.generate(
                    input_ids=enc["input_ids"].to(device),
                    attention_mask=enc["attention_mask"].to(device),
                    max_new_tokens=max_new_tokens,
                    **sampling,
                    pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id,
                    synced_gpus=synced,
                )
            new = gen[:, enc["input_ids"].shape[1] :]
            out += [_cut(t, stop) for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
        model.train(was_training)
    return out


def answer_sharded(
    model: Any,
    tokenizer: Any,
    requests: Sequence[Any],
    cfg: ExperimentConfig,
    rank: int = 0,
    world: int = 1,
    synced: bool = False,
) -> list[str]:
    """Answers to eval ``requests`` (each with ``.messages``) with the eval settings of ``cfg``.

    Each rank generates its shard of the prompts (padded with repeats so every rank runs the same
    number of batches, which ``synced`` generation under ZeRO-3 needs); with ``world`` > 1 the
    answers are all-gathered, so every rank returns every answer in request order (follow-up
    rounds are then built identically on all ranks). Rank ``r`` samples with seed
    ``cfg.seed * 1000 + r``; with ``world`` 1 this is what a single process computes.
    """
    import torch.distributed as dist

    e = cfg.eval
    prompts = [prompt(cfg.template, r.messages, tokenizer) for r in requests]
    mine = shard_with_padding(len(prompts), rank, world)
    texts = generate(
        model,
        tokenizer,
        [prompts[i] for i, _ in mine],
        max_new_tokens=e.max_new_tokens,
        batch_size=e.batch_size,
        stop=STOP.get(cfg.template, ()),
        synced=synced,
        temperature=e.temperature,
        top_p=e.top_p,
        seed=cfg.seed * 1000 + rank,
    )
    part = [(i, t) for (i, real), t in zip(mine, texts, strict=True) if real]
    gathered: list[Any] = [part]
    if world > 1:
        gathered = [None] * world
        dist.all_gather_object(gathered, part)
    outputs = [""] * len(prompts)
    for chunk in gathered:
        for i, t in chunk:
            outputs[i] = t
    return outputs


def _cut(text: str, stop: Sequence[str]) -> str:
    for s in stop:
        if s and s in text:
            text = text[: text.index(s)]
    return text
