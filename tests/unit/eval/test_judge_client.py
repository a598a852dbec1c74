"""The judge client through the real openai SDK against a local chat-completions endpoint."""

from __future__ import annotations

import json
import math
from pathlib import Path

import openai
import pytest

from raymix.config.schema import JudgeConfig
from raymix.errors import ConfigError
from raymix.eval.judge_client import JudgeClient, Judgement
from tests.unit.eval.conftest import KEY_ENV, FakeJudge

CHAT = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]


def _client(url: str, **kw: object) -> JudgeClient:
    cfg = JudgeConfig(base_url=url, model="judge-test", api_key_env=KEY_ENV)
    return JudgeClient(cfg, **kw)  # type: ignore[arg-type]


def test_the_sdk_retries_429_and_5xx_then_gives_up(server: tuple[FakeJudge, str]) -> None:
    judge, url = server
    client = _client(url, max_retries=2)
    judge.fail = [429, 503]
    assert client.judge(CHAT).text == "[[5]]"
    assert len(judge.received) == 3 and client.sent == 1
    judge.fail = [500, 500, 500]
    with pytest.raises(openai.InternalServerError) as e:
        client.judge([CHAT[0], {"role": "user", "content": "v"}])
    assert len(judge.received) == 6
    assert "gave up after 3 tries" in "".join(e.value.__notes__)


def test_a_refused_key_is_a_config_error_and_not_retried(server: tuple[FakeJudge, str]) -> None:
    judge, url = server
    judge.fail = [401]
    with pytest.raises(ConfigError, match=f"refused the key in {KEY_ENV}"):
        _client(url).judge(CHAT)
    assert len(judge.received) == 1


def test_sdk_settings_come_from_the_client(server: tuple[FakeJudge, str]) -> None:
    _, url = server
    sdk = _client(url, max_retries=4, timeout_s=12.5)._openai()
    assert sdk.max_retries == 4 and sdk.timeout == 12.5


def test_logprobs_are_asked_for_returned_and_cached(
    server: tuple[FakeJudge, str], tmp_path: Path
) -> None:
    judge, url = server
    judge.reply = lambda system, user, seen: ("m", [{"m": -0.25, "M": -1.5, "The": -9.0}])
    client = _client(url)
    got = client.judge(CHAT, top_logprobs=5)
    assert got == Judgement("m", [{"m": -0.25, "M": -1.5, "The": -9.0}])
    assert judge.received[-1]["logprobs"] is True and judge.received[-1]["top_logprobs"] == 5
    plain = client.judge(CHAT)  # without logprobs: another request, another cache entry
    assert plain == Judgement("m", None) and "logprobs" not in judge.received[-1]
    again = _client(url)
    assert again.judge(CHAT, top_logprobs=5) == got and again.sent == 0
    records = [json.loads(p.read_text()) for p in (tmp_path / "cache" / "judge").rglob("*.json")]
    assert sorted(r["top_logprobs"] is None for r in records) == [False, True]
    assert math.isclose(records[0]["temperature"], 0.0)


def test_an_endpoint_without_logprobs_gives_none(server: tuple[FakeJudge, str]) -> None:
    judge, url = server
    judge.reply = lambda system, user, seen: "M"
    assert _client(url).judge(CHAT, top_logprobs=5) == Judgement("M", None)


def test_missing_api_key_is_a_config_error(
    server: tuple[FakeJudge, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, url = server
    monkeypatch.delenv(KEY_ENV)
    with pytest.raises(ConfigError, match=KEY_ENV):
        _client(url)
