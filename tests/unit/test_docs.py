"""What users read points only at what their clone has: no mention of the development team's
design notes or of the ../shared folder in the package, the experiments or the README."""

from __future__ import annotations

import re

from tests.conftest import ROOT

_PRIVATE = re.compile(r"DESIGN\.md|RAY260\.md|SEEDS\.md|\.\./shared|shared/data|shared/seeds")


def test_nothing_users_read_points_outside_their_clone() -> None:
    files = [
        *(ROOT / "raymix").rglob("*.py"),
        *(ROOT / "experiments").glob("*.yaml"),
        ROOT / "README.md",
        ROOT / "cluster.yaml",
    ]
    bad = [
        f"{p.relative_to(ROOT)}:{n}: {line.strip()}"
        for p in files
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if _PRIVATE.search(line)
    ]
    assert not bad, "\n".join(bad)
