"""``raymix``: the command line. Thin: parse, call one function, turn user errors into exit 2."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raymix.errors import RaymixError

if TYPE_CHECKING:
    from raymix.data.plan import Plan

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="raymix", description="SFT data-mixture sweeps on Ray Tune + DeepSpeed + MLflow."
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def with_file(name: str, help_: str, optional: bool = False) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.add_argument("file", help="experiment YAML", nargs="?" if optional else None)
        sp.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a dotted key, e.g. --set train.lr=3e-4 (repeatable)",
        )
        sp.add_argument(
            "--profile",
            help="one of the file's profiles: (named overrides, e.g. toy), applied before --set",
        )
        return sp

    val = with_file("validate", "check an experiment file and print its resolved config", True)
    val.add_argument(
        "--schema-only",
        action="store_true",
        help="check the file against the schema only (do not read the sources and eval sets)",
    )
    val.add_argument(
        "--help-keys",
        nargs="?",
        const="",
        metavar="PREFIX",
        help="print every key of the experiment file (or those under PREFIX, e.g. train) with "
        "its type, default, allowed values and meaning",
    )
    sw = with_file("sweep", "run an experiment as a Ray Tune sweep tracked in MLflow")
    sw.add_argument("--address", help="Ray cluster address (default: $RAY_ADDRESS, else local)")
    again = sw.add_mutually_exclusive_group()
    again.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="RUN_FOLDER",
        help="continue an interrupted sweep of this experiment (the latest unfinished one with "
        "this configuration, or the run folder given): finished trials are kept, unfinished ones "
        "continue from their last checkpoint, errored ones restart",
    )
    again.add_argument(
        "--restart",
        action="store_true",
        help="start a new sweep although an unfinished one with this configuration exists (its "
        "runs still RUNNING are closed KILLED)",
    )
    sync_help = (
        "deliver the MLflow records a sweep's trials spooled to its run folder while the "
        "tracking server was unreachable (each metric point once)"
    )
    rec_help = (
        "fit Ye et al.'s mixing law on a sweep's finished trials and recommend the mixture that "
        "optimises the targets (shares per source, predicted metrics, leave-one-out R²)"
    )
    rec = sub.add_parser("recommend", help=rec_help, description=rec_help)
    rec.add_argument("sweep", help="a sweep's MLflow parent run id, or an experiment name")
    rec.add_argument(
        "--target", required=True, metavar="METRIC=min|max[,...]",
        help="the metrics to optimise, e.g. 'eval/math/exact_match=max,eval/loss/general=min'",
    )  # fmt: skip
    rec.add_argument("--weights", metavar="METRIC=W[,...]", help="each target's weight (1)")
    rec.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI)")
    rec.add_argument(
        "--min-r2", type=float, default=0.5,
        help="refuse when a target's leave-one-out R² is below this (default: 0.5)",
    )  # fmt: skip
    rec.add_argument("--bootstrap", type=int, default=200, help="refits for intervals (200)")
    rec.add_argument("--seed", type=int, default=0, help="seed of the fits and the bootstrap")
    rec.add_argument("--json", action="store_true", help="print the recommendation as JSON")
    rec.add_argument(
        "--as-experiment", metavar="OUT.yaml",
        help="also write the sweep's experiment with the recommended mixture as its one mixture",
    )  # fmt: skip
    rec.add_argument(
        "--amount", type=_positive_int,
        help="rows in all of the recommended mixture: each source's share is bounded by the "
             "rows its pool holds (default: the trials' median amount)",
    )  # fmt: skip
    rec.add_argument(
        "--allow-upsampling", action="store_true",
        help="let a source give more rows than its pool holds (repeats): no size bounds",
    )  # fmt: skip
    rep_help = (
        "write a sweep's report (Markdown and one self-contained HTML page with PNG figures: "
        "tables per setting and ability, scaling, ratio, strategy and hyper-parameter curves, "
        "the Pareto front, loss curves, early signals, cost) from MLflow, and log it to the "
        "sweep's parent run"
    )
    rep = sub.add_parser("report", help=rep_help, description=rep_help)
    rep.add_argument("sweeps", nargs="+", metavar="SWEEP",
                     help="a sweep's MLflow parent run id, or an experiment name (several: compared)")  # fmt: skip
    rep.add_argument("--out", help="output folder (default: reports/<sweep names>)")
    rep.add_argument("--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI)")
    rep.add_argument("--no-log", action="store_true",
                     help="do not log the report to the sweeps' parent runs")  # fmt: skip
    rep.add_argument("--open", action="store_true",
                     help="serve the report on 127.0.0.1 and open it in a browser (Ctrl-C stops)")  # fmt: skip
    rep.add_argument(
        "--port", type=int, default=0, help="with --open: the port (default: any free)"
    )
    sync = sub.add_parser("sync", help=sync_help, description=sync_help)
    sync.add_argument("run_folder", help="the sweep's run folder (local path or s3://…)")
    sync.add_argument(
        "--tracking-uri",
        help="MLflow store to deliver to (default: the one each trial was logging to)",
    )
    data = sub.add_parser("data", help="data tools").add_subparsers(
        dest="data_command", required=True, parser_class=_Parser
    )
    mix = data.add_parser("mix", help="compile a mixture to its plan without training")
    mix.add_argument("file", help="experiment YAML")
    mix.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    mix.add_argument("--profile", help="one of the file's profiles:, applied before --set")
    mix.add_argument("--mixture", help="which mixture of mixture.grid (default: every one)")
    mix.add_argument(
        "--sample",
        type=_positive_int,
        metavar="N",
        help="mixture.space: the first N points a random search with the searcher's seed tries",
    )
    mix.add_argument("--json", action="store_true", help="print the plans as JSON")
    prep = data.add_parser(
        "prepare",
        help="Dolly-style preparation: clean, template, shuffle, split into train/validation/test",
    )
    prep.add_argument("file", help="a local data file (json, jsonl, .gz, parquet, csv, tsv)")
    prep.add_argument("--out", required=True, help="output folder for the three jsonl files")
    prep.add_argument("--format", default="auto", help="source format (default: auto-detect)")
    prep.add_argument("--template", default="alpaca", help="prompt template (default: alpaca)")
    prep.add_argument("--seed", type=int, default=42, help="shuffle seed (default: 42)")
    prep.add_argument(
        "--splits",
        default="0.8,0.1,0.1",
        help="train,validation,test fractions (default: 0.8,0.1,0.1)",
    )
    prep.add_argument("--overwrite", action="store_true", help="replace existing output files")
    ev = sub.add_parser(
        "eval",
        help="score a file of samples, or evaluate a trial's checkpoint",
        description="raymix eval humaneval --samples S.jsonl [--problems P.jsonl.gz] | "
        "raymix eval gsm8k --predictions S.jsonl [--references test.jsonl] | "
        "raymix eval TASK --run RUN_ID",
    )
    ev.add_argument("task", help="humaneval, gsm8k or heldout")
    ev.add_argument("--samples", help="humaneval: jsonl of {task_id, completion}")
    ev.add_argument("--problems", help="humaneval: problem file (default: the hub's HumanEval)")
    ev.add_argument("--predictions", help="gsm8k: jsonl of {idx, output}")
    ev.add_argument("--references", help="gsm8k: the test jsonl (default: the hub's GSM8K test)")
    ev.add_argument("--run", help="MLflow run id of a trial whose checkpoint to evaluate")
    ev.add_argument("--path", help="with --run: the benchmark's file or folder (task's path)")
    ev.add_argument("--limit", type=int, help="with --run: evaluate at most this many rows")
    ev.add_argument(
        "--tracking-uri", help="MLflow store (default: $MLFLOW_TRACKING_URI, ./mlflow.db)"
    )
    ev.add_argument("--timeout", type=float, default=3.0, help="seconds per code sample")
    ev.add_argument(
        "--allow-partial",
        action="store_true",
        help="score a --samples/--predictions file that leaves out problems or references (or, "
        "for humaneval, has uneven samples per task); without it that is an error",
    )
    ev.add_argument(
        "--allow-unsandboxed",
        action="store_true",
        help="run generated code with rlimits only where namespaces are refused (unsafe)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``raymix`` console script."""
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except RaymixError as e:
        print(f"raymix: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR


def _run(args: argparse.Namespace) -> int:
    from raymix.config import dump, load

    if args.command == "data" and args.data_command == "prepare":
        return _data_prepare(args)
    if args.command == "eval":
        from raymix.eval.cli import run_eval

        return run_eval(args)
    if args.command == "sync":
        return _sync(args)
    if args.command == "recommend":
        return _recommend(args)
    if args.command == "report":
        return _report(args)
    if args.command == "validate" and args.help_keys is not None:
        return _help_keys(args.help_keys)
    if args.file is None:
        _parser().error(f"{args.command}: the experiment file is required")
    if args.command == "validate" and args.profile is None:
        from raymix.config.loader import load_profiles

        profiles = load_profiles(args.file, args.overrides)  # every profile must validate
        for name in profiles:
            if name:
                print(f"# {args.file}: profile {name}: valid", file=sys.stderr)
    cfg = load(args.file, args.overrides, args.profile)
    if args.command == "validate":
        if not args.schema_only:
            from raymix.sweep.preflight import check_experiment

            check_experiment(cfg)
        print(dump(cfg), end="")
        print(f"# {args.file}: valid", file=sys.stderr)
        if not args.schema_only:
            from raymix.sweep.tuner import output_locations

            for what, where in output_locations(cfg).items():
                print(f"# {what}: {where}", file=sys.stderr)
        return 0
    if args.command == "data":
        return _data_mix(cfg, args)
    if args.command == "sweep":
        return _sweep(cfg, args)
    raise AssertionError(args.command)


def _sync(args: argparse.Namespace) -> int:
    from raymix.errors import ConfigError
    from raymix.tracking.delivery import deliver_spool, spooled_runs, transient

    folder = args.run_folder
    if "://" not in folder and not Path(folder).is_dir():
        raise ConfigError(f"raymix sync: {folder}: no such run folder")
    if not spooled_runs(folder):
        print(f"{folder}: nothing spooled, MLflow has every record")
        return 0
    try:
        done = deliver_spool(folder, args.tracking_uri)
    except Exception as error:
        if not transient(error):
            raise
        print(f"raymix sync: MLflow is still unreachable ({error}); the spool in {folder}/spool "
              "is kept: run this again once it is up", file=sys.stderr)  # fmt: skip
        return 1
    print(
        f"{folder}: delivered {done.records} spooled record(s) of {done.runs} run(s): "
        f"{done.points} metric point(s), {done.skipped_points} already in MLflow"
    )
    return 0


def _help_keys(prefix: str) -> int:
    from raymix.config import ExperimentConfig
    from raymix.config.keys import known_prefix, render_keys
    from raymix.errors import ConfigError

    if not known_prefix(prefix):
        raise ConfigError(
            f"--help-keys {prefix}: no such key; top-level keys: "
            + ", ".join(ExperimentConfig.model_fields)
        )
    print(render_keys(prefix), end="")
    return 0


def _report(args: argparse.Namespace) -> int:
    import re

    from raymix.analysis.report import build_report, log_report
    from raymix.analysis.sweeps import load_sweeps
    from raymix.tracking import MlflowTracker, resolve_uri

    uri = resolve_uri(args.tracking_uri)
    sweeps = load_sweeps(uri, args.sweeps)
    name = re.sub(r"[^A-Za-z0-9_.@+-]+", "_", "+".join(s.name for s in sweeps))[:120]
    out = Path(args.out or Path("reports") / name)
    report = build_report(sweeps, out)
    print(f"report of {sum(len(s.trials) for s in sweeps)} trial(s): {report.html}  "
          f"(Markdown: {report.markdown}; {len(report.figures)} figure(s))")  # fmt: skip
    if not args.no_log:
        for run_id in log_report(sweeps, out, MlflowTracker(uri).client):
            print(f"logged to MLflow parent run {run_id} as report/")
    if args.open:
        _serve(out, report.html.name, args.port)
    return 0


def _serve(folder: Path, page: str, port: int) -> None:
    """Serve ``folder`` on 127.0.0.1 until interrupted, and open ``page`` in a browser."""
    import functools
    import webbrowser
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(folder))
    with ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        url = f"http://127.0.0.1:{server.server_address[1]}/{page}"
        print(f"serving the report at {url}  (Ctrl-C stops)", flush=True)
        webbrowser.open(url)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


def _recommend(args: argparse.Namespace) -> int:
    import numpy as np

    from raymix.analysis.mixing_law import PoorFit, Target, TooFewTrials, recommend
    from raymix.analysis.regmix import min_trials as regmix_min
    from raymix.analysis.regmix import recommend as regmix_recommend
    from raymix.analysis.trials import read_trials
    from raymix.errors import ConfigError
    from raymix.tracking import resolve_uri

    targets = []
    for item in filter(None, (x.strip() for x in args.target.split(","))):
        name, _, mode = item.rpartition("=")
        if not name or mode not in ("min", "max"):
            raise ConfigError(f"--target: {item!r} is not METRIC=min or METRIC=max")
        targets.append(Target(name, mode))
    weights: dict[str, float] = {}
    for item in filter(None, (x.strip() for x in (args.weights or "").split(","))):
        name, _, value = item.rpartition("=")
        try:
            weights[name] = float(value)
        except ValueError:
            raise ConfigError(f"--weights: {item!r} is not METRIC=NUMBER") from None
        if name not in {t.name for t in targets}:
            allowed = ", ".join(t.name for t in targets)
            raise ConfigError(f"--weights: {name!r} is not a --target (allowed: {allowed})")
    targets = [Target(t.name, t.mode, weights.get(t.name, 1.0)) for t in targets]
    uri = resolve_uri(args.tracking_uri)
    trials = read_trials(uri, args.sweep)
    missing = [t.name for t in targets if t.name not in trials.metrics]
    if missing:
        known = ", ".join(m for m in trials.metrics if m.startswith("eval/")) or "none"
        raise ConfigError(f"--target: no finished trial logged {', '.join(missing)} "
                          f"(its eval metrics: {known})")  # fmt: skip
    logged = np.all([~np.isnan(trials.metrics[t.name]) for t in targets], axis=0)
    values = {t.name: trials.metrics[t.name][logged] for t in targets}
    amount = args.amount or (int(np.median(trials.rows[logged])) if logged.any() else 0)
    upper = None
    if not args.allow_upsampling and len(trials.pools) == len(trials.sources) and amount:
        upper = [min(1.0, trials.pools[s] / amount) for s in trials.sources]
        if sum(upper) < 1.0:
            raise ConfigError(
                f"--amount {amount}: the sources' pools hold "
                f"{sum(trials.pools.values())} rows in all; ask for fewer or --allow-upsampling"
            )
    shares = trials.shares[logged]
    try:
        rec = recommend(trials.sources, shares, values, targets, upper=upper,
                        min_r2=args.min_r2, bootstrap=args.bootstrap, seed=args.seed)  # fmt: skip
    except (TooFewTrials, PoorFit) as error:
        raise ConfigError(f"raymix recommend {args.sweep}: {error}") from None
    regmix = None
    if shares.shape[0] >= regmix_min(len(trials.sources)):
        regmix = regmix_recommend(trials.sources, shares, values, targets, upper, args.seed)
    written = None
    if args.as_experiment:
        written = _write_recommended(uri, args.sweep, rec.shares, amount, args.as_experiment)
    bounds = None if upper is None else dict(zip(trials.sources, upper, strict=True))
    if args.json:
        out = {"shares": rec.shares, "predicted": rec.predicted, "interval": rec.interval,
               "loo_r2": rec.loo_r2, "trials": int(logged.sum()), "amount": amount,
               "upper": bounds, "experiment": written,
               "regmix": None if regmix is None else {
                   "shares": regmix.shares, "predicted": regmix.predicted,
                   "loo_r2": regmix.loo_r2}}  # fmt: skip
        print(json.dumps(out, indent=1))
        return 0
    print(f"mixing law fitted on {int(logged.sum())} finished trials of {args.sweep}")
    if bounds:
        print(f"within the sources' pools at {amount} rows: "
              + ", ".join(f"{s} ≤ {v:.3f}" for s, v in bounds.items()))  # fmt: skip
    print("recommended shares: " + ", ".join(f"{s} {v:.3f}" for s, v in rec.shares.items()))
    for t in targets:
        lo, hi = rec.interval.get(t.name, (float("nan"), float("nan")))
        print(f"  {t.name} ({t.mode}, weight {t.weight:g}): predicted {rec.predicted[t.name]:.4f} "
              f"[{lo:.4f}, {hi:.4f}], leave-one-out R² {rec.loo_r2[t.name]:.3f}")  # fmt: skip
    if regmix is not None:
        print(
            "RegMix (LightGBM) shares:  "
            + ", ".join(f"{s} {v:.3f}" for s, v in regmix.shares.items())
        )
        for t in targets:
            print(f"  {t.name}: predicted {regmix.predicted[t.name]:.4f}, "
                  f"leave-one-out R² {regmix.loo_r2[t.name]:.3f}")  # fmt: skip
    else:
        print(f"RegMix (LightGBM): needs {regmix_min(len(trials.sources))} finished trials "
              f"(5 per source), has {int(logged.sum())}")  # fmt: skip
    if written:
        print(f"experiment that trains it: {written}  (raymix sweep {written})")
    return 0


def _write_recommended(
    uri: str, sweep: str, shares: dict[str, float], amount: int, out: str
) -> str:
    """The sweep's experiment with one mixture, ``recommended``: the shares of ``amount`` rows
    (validated before it is written; an existing file is not replaced)."""
    import yaml

    from raymix.analysis.trials import sweep_config
    from raymix.config import validate
    from raymix.errors import ConfigError

    path = Path(out)
    if path.exists():
        raise ConfigError(f"--as-experiment: {out} exists; give a new file")
    raw = yaml.safe_load(sweep_config(uri, sweep))
    rows = {name: round(share * amount) for name, share in shares.items()}
    raw["mixture"] = {"grid": {"recommended": {k: v for k, v in rows.items() if v > 0}}}
    raw.get("sweep", {}).pop("search", None)  # one fixed mixture: a grid of one
    validate(raw, origin=out)
    path.write_text(
        f"# The mixture raymix recommend chose from sweep {sweep}: shares "
        + ", ".join(f"{k} {v:.3f}" for k, v in shares.items())
        + f" of {amount} rows.\n"
        + yaml.safe_dump(raw, sort_keys=False)
    )
    return str(path)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return value


def _data_mix(cfg, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from raymix.data.mixture import build_plan
    from raymix.data.pipeline import prepare_data
    from raymix.errors import ConfigError

    if (args.sample is None) != (cfg.mixture.space is None) or (args.sample and args.mixture):
        raise ConfigError(
            f"{args.file}: --sample N draws points of mixture.space (this experiment has "
            + ("one: give --sample N)" if cfg.mixture.space else "mixture.grid: drop --sample)")
            + ("; --mixture names a grid mixture" if args.mixture else "")
        )
    if args.mixture and args.mixture not in cfg.mixture.names:  # before any data is prepared
        raise ConfigError(
            f"{args.file}: --mixture {args.mixture!r} is not in mixture.grid; allowed: "
            + ", ".join(cfg.mixture.names)
        )
    _, _, sources = prepare_data(cfg)
    if args.sample:
        return _data_sample(cfg, args, sources)
    names = [args.mixture] if args.mixture else cfg.mixture.names
    plans = {n: build_plan(cfg, n, sources) for n in names}
    if args.json:
        out = {n: _plan_summary(p) for n, p in plans.items()}
        print(json.dumps(out[names[0]] if len(names) == 1 else out, indent=1))
        return 0
    _print_plans(plans)
    return 0


def _data_sample(cfg, args: argparse.Namespace, sources: Any) -> int:  # type: ignore[no-untyped-def]
    from raymix.data.mixture import build_plan
    from raymix.sweep.space import sample_points, trial_setup

    plans = []
    for i, point in enumerate(sample_points(cfg, args.sample)):
        trial_cfg, mixture, searched = trial_setup(cfg, point)
        plan = build_plan(trial_cfg, mixture, sources)
        plans.append((f"sample {i}", plan, searched))
    if args.json:
        print(
            json.dumps(
                [{"params": searched, **_plan_summary(p)} for _, p, searched in plans], indent=1
            )
        )
        return 0
    for name, p, searched in plans:
        point = p.spec["space"]
        shares = ", ".join(f"{n} {w:.3f}" for n, w in point["weights"].items())
        print(f"{name}: weights {shares}; amount {point['amount']:g} {point['unit']}")
        if searched:
            print("  " + ", ".join(f"{k}={v}" for k, v in sorted(searched.items())))
        _print_plans({name: p}, header=False)
    return 0


def _print_plans(plans: dict[str, Plan], header: bool = True) -> None:
    for name, p in plans.items():
        if header:
            print(f"{name}  (hash {p.hash[:12]})")
        for stage in p.stages:
            parts = ", ".join(
                f"{k} {v.count} rows / {v.tokens} tokens" for k, v in stage.sources.items()
            )
            print(f"  {stage.name} x{stage.epochs} epochs: {parts}")
        for src, reasons in p.dropped.items():
            t = p.truncation[src]
            drops = ", ".join(f"{k} {v}" for k, v in reasons.items())
            print(
                f"  {src}: dropped {drops}; truncated {t['truncated_tokens']} of "
                f"{t['tokens']} tokens ({100 * t['share']:.1f}%)"
            )
            for task, why in p.lost_subtasks.get(src, {}).items():
                print(f"    lost sub-task {task}: " + ", ".join(f"{k} {v}" for k, v in why.items()))


def _data_prepare(args: argparse.Namespace) -> int:
    from raymix.data.prepare import prepare
    from raymix.errors import ConfigError

    try:
        splits = tuple(float(x) for x in args.splits.split(","))
    except ValueError:
        raise ConfigError(
            f"--splits {args.splits!r}: expected three numbers like 0.8,0.1,0.1"
        ) from None
    if len(splits) != 3:
        raise ConfigError(
            f"--splits {args.splits!r}: expected three fractions (train,validation,test)"
        )
    counts = prepare(
        args.file,
        args.out,
        fmt=args.format,
        template=args.template,
        seed=args.seed,
        splits=splits,  # type: ignore[arg-type]
        overwrite=args.overwrite,
    )
    print(json.dumps(counts))
    return 0


def _plan_summary(plan: Plan) -> dict[str, Any]:
    return {
        "hash": plan.hash,
        "mixture": plan.mixture,
        "spec": plan.spec,
        "stages": [
            {
                "name": st.name,
                "epochs": st.epochs,
                "sources": {
                    k: {"count": v.count, "tokens": v.tokens} for k, v in st.sources.items()
                },
            }
            for st in plan.stages
        ],
        "dropped": plan.dropped,
        "lost_subtasks": plan.lost_subtasks,
        "truncation": plan.truncation,
    }


def _sweep(cfg, args: argparse.Namespace) -> int:  # type: ignore[no-untyped-def]
    from raymix.analysis.tables import render_table, sweep_table
    from raymix.sweep.tuner import SweepInterrupted, run_sweep
    from raymix.tracking import ui_hint

    try:
        outcome = run_sweep(cfg, address=args.address, resume=args.resume, restart=args.restart)
    except SweepInterrupted as stop:
        return _interrupted(stop.signum, stop.run_folder, args)
    print()
    print(f"Sweep {outcome.name}: {len(outcome.result_grid)} trials, {outcome.num_errors} failed")
    print(render_table(sweep_table(outcome.tracking_uri, outcome.parent_run_id)))
    print()
    print(f"MLflow parent run {outcome.parent_run_id} in {outcome.tracking_uri}")
    print(f"Open it with:  {ui_hint(outcome.tracking_uri)}")
    if outcome.spooled:
        print(f"raymix: {len(outcome.spooled)} trial run(s) could not reach MLflow; their "
              f"records wait in {outcome.run_folder}/spool: `raymix sync {outcome.run_folder}` "
              "delivers them", file=sys.stderr)  # fmt: skip
    for result in outcome.result_grid:
        if result.error is not None:
            print(f"raymix: trial failed ({result.path}): {_last_line(result.error)}",
                  file=sys.stderr)  # fmt: skip
    if outcome.interrupted_by:
        return _interrupted(outcome.interrupted_by, outcome.run_folder, args)
    return 1 if outcome.num_errors else 0


def _last_line(error: BaseException) -> str:
    """The line of a trial's error that says what went wrong (Tune wraps it in tracebacks)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    cause = [line for line in lines if not line.startswith(("File ", "^", "~", "Traceback"))]
    return (cause or lines or [type(error).__name__])[-1][:500]


def _interrupted(signum: int, run_folder: str | None, args: argparse.Namespace) -> int:
    """Say how the sweep stopped and how to resume it; exit 128 + the signal (130, 143)."""
    import shlex
    import signal

    name = signal.Signals(signum).name
    print(f"raymix: sweep stopped by {name}; its MLflow runs still open are closed KILLED.",
          file=sys.stderr)  # fmt: skip
    if run_folder and Path(run_folder).exists():
        argv = ["raymix", "sweep", args.file]
        argv += [f"--profile={args.profile}"] if args.profile else []
        argv += [f"--set={o}" for o in args.overrides]
        argv += [f"--address={args.address}"] if args.address else []
        print(f"Resume it with:  {shlex.join([*argv, '--resume', run_folder])}", file=sys.stderr)
    return 128 + signum


if __name__ == "__main__":
    raise SystemExit(main())
