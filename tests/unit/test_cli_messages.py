"""What the sweep command prints about a failed trial: the line of its error that says what went
wrong, not only the path to Tune's error.txt."""

from __future__ import annotations

from raymix.cli import _last_line


def test_a_failed_trial_is_summed_up_by_its_exception_line() -> None:
    try:
        try:
            raise ValueError("train.lr 1e9 made the loss NaN at step 3")
        except ValueError as inner:
            raise RuntimeError(
                "Traceback (most recent call last):\n"
                '  File "/x/loop.py", line 9, in step\n'
                "    raise ValueError(...)\n"
                "    ^^^^^^^^^^^^^^^^^^^^^\n"
                "ValueError: train.lr 1e9 made the loss NaN at step 3\n"
            ) from inner
    except RuntimeError as e:
        assert _last_line(e) == "ValueError: train.lr 1e9 made the loss NaN at step 3"
    assert _last_line(KeyError()) == "KeyError"
