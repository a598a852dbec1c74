"""``make bench``: run every benchmark in bench/, each printing ratios measured side by side."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCHES = [
    "data_prep.py",
    "packing_efficiency.py",
    "engine_overhead.py",
    "trial_throughput.py",
    "trial_overhead.py",  # per-trial fixed cost against the no-op and DeepSpeed floors
    "asha.py",  # trial-steps of ASHA vs the full grid, and whether it keeps the grid's best
    "search.py",  # stratified, random, Optuna TPE and the mixing law: the same budget, 3 seeds
    "recommend.py",  # the law's recommended mixture vs the grid's best and stratified
    "sandbox.py",  # the forge-proof HumanEval verdict (two processes) vs one program
]

if __name__ == "__main__":
    here = Path(__file__).parent
    failed = [b for b in BENCHES if subprocess.run([sys.executable, str(here / b)]).returncode]
    sys.exit(1 if failed else 0)
