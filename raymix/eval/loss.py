"""Token-level language-model loss: the summed cross-entropy of a batch's target tokens (used by
training, which divides by the step's token count), and each source's held-out loss, computed the
same way by a trial's workers and by ``raymix eval heldout --run``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from raymix.data.batches import IGNORE, Example, collate, shard_with_padding


def target_tokens(labels: Any) -> int:
    """Target tokens of a batch: labels that some position predicts (the first is predicted by
    nothing) and that are not ``IGNORE``."""
    return int((labels[:, 1:] != IGNORE).sum())


def token_loss_sum(logits: Any, labels: Any) -> Any:
    """Summed next-token cross-entropy (in float32) over the target tokens of a batch.

    Args:
        logits: ``(rows, width, vocab)`` model outputs.
        labels: ``(rows, width)`` labels, ``IGNORE`` where nothing is learned.

    Returns:
        A scalar tensor; 0 (still connected to ``logits``, so backward gives zero gradients) when
        the batch has no target token.
    """
    import torch.nn.functional as F

    shift_logits, shift_labels = logits[:, :-1].float(), labels[:, 1:]
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.size(-1)),
        shift_labels.reshape(-1).to(shift_logits.device),
        ignore_index=IGNORE,
        reduction="sum",
    )


def heldout_loss(
    model: Any,
    eval_sets: Mapping[str, Sequence[Example]],
    *,
    pad_id: int,
    batch_size: int,
    device: Any,
    rank: int = 0,
    world: int = 1,
) -> dict[str, float]:
    """Token-level held-out loss per source, ``eval/loss/<source>``, and ``eval/loss/mean``.

    Each rank takes its shard of every source's examples; shards are padded to equal length with
    weight-0 copies (no loss, same number of forward passes on every rank, which ZeRO-3's
    parameter gathers need); the sums are all-reduced when ``world`` > 1, so every rank returns
    the same values. The model is put in eval mode and back in the mode it was in.

    Args:
        model: A callable causal LM (a Hugging Face model or a DeepSpeed engine) returning
            ``.logits``.
        eval_sets: Each source's held-out examples.
        pad_id: Token id of padding.
        batch_size: Examples per forward pass.
        device: Where the model's inputs go.
        rank: This process's rank.
        world: Number of processes evaluating together.

    Returns:
        ``{"eval/loss/<source>": ..., "eval/loss/mean": ...}``; empty when there is no source.
    """
    import torch
    import torch.distributed as dist

    was_training = bool(getattr(model, "training", False))
    model.eval()
    out: dict[str, float] = {}
    try:
        with torch.no_grad():
            for name, examples in sorted(eval_sets.items()):
                mine = [
                    examples[i] if real else Example(examples[i].input_ids, examples[i].labels, 0)
                    for i, real in shard_with_padding(len(examples), rank, world)
                ]
                sums = torch.zeros(2, dtype=torch.float64, device=device)
                for start in range(0, len(mine), batch_size):
                    inputs = {
                        k: v.to(device)
                        for k, v in collate(mine[start : start + batch_size], pad_id).items()
                    }
                    labels = inputs.pop("labels")
                    loss = token_loss_sum(model(**inputs).logits, labels)
                    sums[0] += loss.double()
                    sums[1] += target_tokens(labels)
                if world > 1:
                    dist.all_reduce(sums)
                out[f"eval/loss/{name}"] = float(sums[0] / max(1.0, float(sums[1])))
    finally:
        model.train(was_training)
    if out:
        out["eval/loss/mean"] = sum(out.values()) / len(out)
    return out
