"""A local stand-in for a paid LLM judge: an HTTP server speaking the chat-completions protocol
(replies, ``logprobs.content[].top_logprobs`` when asked, and injected failures), driven through
the real openai client."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

KEY_ENV = "RAYMIX_TEST_JUDGE_KEY"

Reply = str | tuple[str, list[dict[str, float]] | None]
"""A reply's text, or its text and per-token top log-probabilities (token -> logprob)."""


class FakeJudge:
    """A canned chat-completions endpoint: replies by ``reply(system, user, seen_before)``.

    ``fail`` holds HTTP statuses to answer with first, one per request (each with a
    ``retry-after-ms: 1`` header, so the SDK's retries wait a millisecond). Log-probabilities
    are sent only when the request asks for them (``logprobs: true``), as the OpenAI API does.
    """

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail: list[int] = []
        self.reply: Callable[[str, str, int], Reply] = lambda system, user, seen: "[[5]]"
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def handle(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        system, user = (m["content"] for m in body["messages"])
        with self._lock:
            self.received.append(body)
            if self.fail:
                return self.fail.pop(0), {"error": {"message": "busy", "type": "server_error"}}
            seen = self._seen[system + user]
            self._seen[system + user] += 1
        got = self.reply(system, user, seen)
        content, top = (got, None) if isinstance(got, str) else got
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": content},
            "finish_reason": "stop",
        }
        if body.get("logprobs") and top is not None:
            n = int(body.get("top_logprobs") or 0)
            choice["logprobs"] = {"content": [_token(alternatives, n) for alternatives in top]}
        return 200, {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [choice],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    def system_of(self, name: str) -> list[dict[str, Any]]:
        return [b for b in self.received if b["messages"][0]["content"] == f"judge:{name}"]


def _token(alternatives: dict[str, float], n: int) -> dict[str, Any]:
    """One generated token as the API sends it: the likeliest alternative and the top ``n``."""
    ranked = sorted(alternatives.items(), key=lambda kv: -kv[1])[:n]
    entry = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in ranked]
    return {**entry[0], "top_logprobs": entry}


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[FakeJudge, str]]:
    """A judge endpoint on a random local port, the API key set and a private cache."""
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("RAYMIX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv(KEY_ENV, "test-key")
    judge = FakeJudge()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/v1/chat/completions":
                self.send_error(404)
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, payload = judge.handle(body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status != 200:
                self.send_header("retry-after-ms", "1")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield judge, f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()
