"""The two programs of a sandboxed check, and the value codec between them (standard library only:
the sandbox copies this file into its minimal root and runs it by path with ``python -I``).

A check has two processes that share nothing but two pipes:

- the **candidate** (``runner.py candidate``) runs the untrusted source as a module and then
  serves calls to its entry points: it reads a call (arguments) on fd 3 and answers on fd 4 with
  the value returned or the exception raised;
- the **checker** (``runner.py checker``) runs the trusted part (the problem's own prompt code
  and its tests), with each entry point replaced by a proxy that forwards each call to the
  candidate. The checker alone writes the verdict, on fd 5, to the sandbox's boot process: a
  check passes when the test code ran to its end.

Only plain values cross: ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``,
``bytes``, and lists, tuples, sets, frozensets and dicts of them, encoded as tagged JSON and
decoded strictly, so whatever the candidate returns or however it patches its own interpreter
(``sys.excepthook``, ``atexit``, builtins, ``os._exit(0)``), it can only hand back values: it
never sees the tests and has no way to write the verdict.
"""

from __future__ import annotations

import builtins
import ctypes
import json
import os
import struct
import sys
import traceback
from typing import Any, BinaryIO

MAX_FRAME = 64 << 20  # bytes of one encoded call or answer
MAX_DEPTH = 64  # nesting of an encoded value
PR_SET_DUMPABLE = 4


class CodecError(TypeError):
    """A value that may not cross between candidate and checker."""


_TAGS: dict[type, str] = {list: "l", tuple: "t", set: "s", frozenset: "fs"}


def encode(value: Any, depth: int = 0) -> Any:
    """A plain value as tagged JSON; anything else raises :class:`CodecError`."""
    if depth > MAX_DEPTH:
        raise CodecError("value nested too deeply")
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return {"i": str(value)}
    if kind is float:
        return {"f": value.hex()}
    if kind is complex:
        return {"c": [value.real.hex(), value.imag.hex()]}
    if kind is bytes:
        return {"b": value.hex()}
    if kind in (list, tuple, set, frozenset):
        tag = _TAGS[kind]
        return {tag: [encode(v, depth + 1) for v in value]}
    if kind is dict:
        return {"d": [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]}
    raise CodecError(f"a {kind.__name__} cannot be passed between candidate and checker")


def decode(data: Any, depth: int = 0) -> Any:
    """The inverse of :func:`encode`; refuses anything it would not have produced."""
    if depth > MAX_DEPTH:
        raise CodecError("value nested too deeply")
    if data is None or type(data) in (bool, str):
        return data
    if type(data) is not dict or len(data) != 1:
        raise CodecError("malformed value")
    ((tag, body),) = data.items()
    if tag == "i" and type(body) is str:
        return int(body)
    if tag == "f" and type(body) is str:
        return float.fromhex(body)
    if tag == "c" and type(body) is list and len(body) == 2:
        return complex(float.fromhex(body[0]), float.fromhex(body[1]))
    if tag == "b" and type(body) is str:
        return bytes.fromhex(body)
    if tag in ("l", "t", "s", "fs") and type(body) is list:
        items = [decode(v, depth + 1) for v in body]
        return {"l": list, "t": tuple, "s": set, "fs": frozenset}[tag](items)
    if tag == "d" and type(body) is list:
        out = {}
        for pair in body:
            if type(pair) is not list or len(pair) != 2:
                raise CodecError("malformed dict item")
            out[decode(pair[0], depth + 1)] = decode(pair[1], depth + 1)
        return out
    raise CodecError(f"unknown value tag {tag!r}")


def write_frame(f: BinaryIO, message: Any) -> None:
    data = json.dumps(message).encode()
    f.write(struct.pack(">I", len(data)) + data)
    f.flush()


def read_frame(f: BinaryIO) -> Any:
    """The next message, or None at the end of the stream."""
    head = f.read(4)
    if len(head) < 4:
        return None
    (size,) = struct.unpack(">I", head)
    if size > MAX_FRAME:
        raise CodecError(f"a message of {size} bytes is over the {MAX_FRAME}-byte limit")
    data = f.read(size)
    if len(data) < size:
        return None
    return json.loads(data)


def _describe(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc)[:2000]}


def candidate(source: str, entry_points: list[str]) -> None:
    """Run the untrusted module, then answer calls to its ``entry_points`` until the checker
    hangs up."""
    calls, answers = os.fdopen(3, "rb"), os.fdopen(4, "wb")
    namespace: dict[str, Any] = {"__name__": "__sample__", "__builtins__": builtins}
    broken: dict[str, str] | None = None
    try:
        exec(compile(source, "sample.py", "exec"), namespace)
    except BaseException as exc:  # noqa: BLE001 - the sample's own failure, reported per call
        traceback.print_exc()
        broken = _describe(exc)
    while (call := read_frame(calls)) is not None:
        fn = namespace.get(call["name"]) if call.get("name") in entry_points else None
        if broken is not None:
            answer: dict[str, Any] = {"raise": broken}
        elif not callable(fn):
            answer = {"raise": {"type": "NameError", "message": f"no {call.get('name')}()"}}
        else:
            try:
                answer = {"value": encode(fn(*decode(call["args"]), **decode(call["kwargs"])))}
            except BaseException as exc:  # noqa: BLE001 - the sample's exception, for the test
                answer = {"raise": _describe(exc)}
        write_frame(answers, answer)


class CandidateError(Exception):
    """The candidate raised an exception that is not a builtin one, or stopped answering."""


class Proxy:
    """Stands for one of the candidate's entry points in the checker: each call is forwarded."""

    def __init__(self, name: str, calls: BinaryIO, answers: BinaryIO) -> None:
        self.__name__ = name
        self._calls, self._answers = calls, answers

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        call = {"name": self.__name__, "args": encode(list(args)), "kwargs": encode(kwargs)}
        try:
            write_frame(self._calls, call)
        except BrokenPipeError:
            raise CandidateError("the candidate process ended") from None
        answer = read_frame(self._answers)
        if answer is None:
            raise CandidateError("the candidate process ended")
        if type(answer) is not dict:
            raise CodecError("malformed answer")
        if "value" in answer:
            return decode(answer["value"])
        raised = answer.get("raise")
        if type(raised) is not dict:
            raise CodecError("malformed answer")
        kind = getattr(builtins, str(raised.get("type")), None)
        message = str(raised.get("message", ""))
        if isinstance(kind, type) and issubclass(kind, Exception):
            raise kind(message)
        raise CandidateError(f"{raised.get('type')}: {message}")


def checker(setup: str, test: str, entry_points: list[str]) -> None:
    """Run the trusted ``setup`` and ``test`` with each of ``entry_points`` bound to the
    candidate's, and write the verdict on fd 5."""
    ctypes.CDLL(None).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no ptrace, no /proc/<pid>/mem
    verdict = os.fdopen(5, "w")
    namespace: dict[str, Any] = {"__name__": "__check__", "__builtins__": builtins}
    try:
        exec(compile(setup, "problem.py", "exec"), namespace)
        verdict.write("S")  # started: the sandbox's timeout counts from here
        verdict.flush()
        calls, answers = os.fdopen(3, "wb"), os.fdopen(4, "rb")
        for name in entry_points:
            namespace[name] = Proxy(name, calls, answers)
        exec(compile(test, "test.py", "exec"), namespace)
        outcome = {"passed": True, "error": ""}
    except BaseException as exc:  # noqa: BLE001 - any failure of the test is the verdict
        lines = traceback.format_exception(exc)
        outcome = {"passed": False, "error": "".join(lines)[-2000:]}
    verdict.write(json.dumps(outcome))
    verdict.close()


def main(argv: list[str]) -> None:
    """``runner.py candidate|checker``: the job (JSON) comes on stdin."""
    job = json.loads(sys.stdin.read())
    sys.stdin.close()
    if argv[0] == "candidate":
        candidate(job["source"], job["entry_points"])
    else:
        checker(job["setup"], job["test"], job["entry_points"])


if __name__ == "__main__":
    main(sys.argv[1:])
