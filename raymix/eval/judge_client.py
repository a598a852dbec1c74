"""A judge model behind any OpenAI-compatible chat-completions endpoint, with an on-disk cache.

Retries and timeouts are the openai SDK's own (``OpenAI(max_retries=..., timeout=...)``): rate
limits (429), request timeouts (408), conflicts (409), server errors (5xx) and lost connections
are retried with its exponential backoff, honouring the server's ``Retry-After``. Every judgement
is cached under a hash of (model, messages, temperature, run), and of the number of top
log-probabilities when those are asked for, so scoring the same answers again never asks the
judge again.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raymix.config.schema import JudgeConfig, JudgedTaskConfig
from raymix.data.cache import cache_dir
from raymix.data.files import write_atomic
from raymix.errors import ConfigError

__all__ = ["Chat", "JudgeClient", "Judgement", "TopLogprobs", "client_for"]

Chat = list[dict[str, str]]
TopLogprobs = list[dict[str, float]]
"""Per generated token, its most likely alternatives: token text -> log-probability."""


@dataclass(frozen=True)
class Judgement:
    """A judge's reply: its text and, when asked for and returned, its top log-probabilities."""

    text: str
    top_logprobs: TopLogprobs | None = None


@dataclass
class JudgeClient:
    """A judge model at an OpenAI-compatible chat-completions endpoint, with an on-disk cache.

    The API key is read from the environment variable ``cfg.api_key_env`` when the client is
    made. Transient failures are retried by the openai SDK (``max_retries`` retries after the
    first try, its exponential backoff, ``timeout_s`` per try); a refused key or an unknown model
    is a :class:`ConfigError`.
    """

    cfg: JudgeConfig
    """Endpoint, model and sampling settings of the judge."""
    cache: Path | None = None
    """Folder of cached judgements; default ``$RAYMIX_CACHE/judge``."""
    workers: int = 8
    """Judge requests in flight at once."""
    max_retries: int = 5
    """Retries of a failed request (the openai SDK's ``max_retries``)."""
    timeout_s: float = 300.0
    """Seconds one try may take (the openai SDK's ``timeout``)."""
    sent: int = field(default=0, init=False)
    """Judgements asked of the endpoint so far (cache hits ask none; SDK retries not counted)."""

    def __post_init__(self) -> None:
        self._key = os.environ.get(self.cfg.api_key_env, "")
        if not self._key:
            raise ConfigError(
                f"judge.api_key_env: environment variable {self.cfg.api_key_env} is not set; "
                "export the judge's API key there (any non-empty value for a local server)"
            )
        self.cache = Path(self.cache) if self.cache else cache_dir() / "judge"
        self._lock = threading.Lock()
        self._client: Any = None

    def judge(self, messages: Chat, run: int = 0, top_logprobs: int = 0) -> Judgement:
        """The judge's reply to ``messages`` in run ``run``, from the cache when it is there.

        Args:
            messages: The chat to send.
            run: Which of several independent judgements of the same chat this is.
            top_logprobs: When above 0, also ask for that many top log-probabilities per token
                (returned only where the endpoint supports them).
        """
        path = self._cache_path(messages, run, top_logprobs)
        cached = _read_cached(path)
        if cached is not None:
            return cached
        got = self._ask(messages, top_logprobs)
        self._store(path, messages, run, got)
        return got

    def judge_many(
        self, items: Sequence[tuple[Chat, int]], top_logprobs: int = 0
    ) -> list[Judgement]:
        """Replies to many (messages, run) pairs, in order, ``workers`` at a time."""
        if not items:
            return []
        with ThreadPoolExecutor(max_workers=min(self.workers, len(items))) as pool:
            return list(pool.map(lambda item: self.judge(item[0], item[1], top_logprobs), items))

    def _cache_path(self, messages: Chat, run: int, top_logprobs: int) -> Path:
        key_parts: list[Any] = [self.cfg.model, messages, self.cfg.temperature, run]
        if top_logprobs:
            key_parts.append({"top_logprobs": top_logprobs})
        body = json.dumps(key_parts, sort_keys=True, ensure_ascii=False)
        key = hashlib.sha256(body.encode()).hexdigest()
        assert self.cache is not None
        return self.cache / key[:2] / f"{key}.json"

    def _store(self, path: Path, messages: Chat, run: int, got: Judgement) -> None:
        record = {
            "model": self.cfg.model,
            "temperature": self.cfg.temperature,
            "run": run,
            "messages": messages,
            "text": got.text,
            "top_logprobs": got.top_logprobs,
        }
        write_atomic(path, json.dumps(record, ensure_ascii=False))

    def _openai(self) -> Any:
        with self._lock:
            if self._client is None:
                import openai  # slow to import: only when a judgement is not cached

                self._client = openai.OpenAI(
                    base_url=self.cfg.base_url,
                    api_key=self._key,
                    max_retries=self.max_retries,
                    timeout=self.timeout_s,
                )
            return self._client

    def _ask(self, messages: Chat, top_logprobs: int) -> Judgement:
        import openai

        client = self._openai()
        extra: dict[str, Any] = {}
        if top_logprobs:
            extra = {"logprobs": True, "top_logprobs": top_logprobs}
        with self._lock:
            self.sent += 1
        try:
            reply = client.chat.completions.create(
                model=self.cfg.model,
                messages=messages,
                temperature=self.cfg.temperature,
                max_tokens=self.cfg.max_tokens,
                **extra,
            )
        except (openai.AuthenticationError, openai.PermissionDeniedError) as e:
            raise ConfigError(
                f"judge: {self.cfg.base_url} refused the key in {self.cfg.api_key_env} "
                f"(HTTP {e.status_code})"
            ) from None
        except openai.NotFoundError:
            raise ConfigError(
                f"judge.model: {self.cfg.base_url} has no chat model {self.cfg.model!r}"
            ) from None
        except (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError) as e:
            e.add_note(f"judge at {self.cfg.base_url}: gave up after {self.max_retries + 1} tries")
            raise
        if not reply.choices:
            return Judgement("")
        choice = reply.choices[0]
        text = choice.message.content or ""
        return Judgement(text, _top_logprobs(choice) if top_logprobs else None)


def _top_logprobs(choice: Any) -> TopLogprobs | None:
    """Each generated token's top alternatives, or None when the endpoint sent none."""
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    return [{alt.token: float(alt.logprob) for alt in tok.top_logprobs or []} for tok in content]


def _read_cached(path: Path) -> Judgement | None:
    try:
        record = json.loads(path.read_text())
        text = record["text"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(text, str):
        return None
    return Judgement(text, record.get("top_logprobs"))


def client_for(t: JudgedTaskConfig) -> tuple[JudgeClient, int]:
    """The task's judge client and how many runs each judgement gets."""
    return JudgeClient(t.judge), t.judge.runs
