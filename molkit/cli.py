"""``molkit`` command line: run notebooks, list and fetch datasets and models, benchmark,
regenerate the shipped LLM responses."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from molkit._profiles import PROFILES


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _cmd_run(args: argparse.Namespace) -> int:
    from molkit.run import NotebookFailed, run_notebooks

    params = {k: _parse_value(v) for k, v in (args.parameter or [])}
    try:
        run_notebooks(
            args.notebooks, profile=args.profile, parameters=params, keep_going=args.keep_going,
            processes=args.processes,
        )  # fmt: skip
    except (NotebookFailed, ValueError, FileNotFoundError) as exc:
        print(f"molkit run: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from molkit.data import (
        DataCheckError,
        DataError,
        check_csv,
        fetch_file,
        get_spec,
        is_csv_path,
        list_datasets,
        registered_files,
    )

    if args.data_cmd == "check":
        from molkit.data.user_csv import MIN_ROWS

        try:
            report = check_csv(
                args.path, kind=args.kind, task=args.task, targets=args.targets,
                min_rows=MIN_ROWS if args.min_rows is None else args.min_rows,
            )  # fmt: skip
        except FileNotFoundError as exc:
            print(f"molkit data check: {exc}", file=sys.stderr)
            return 2
        print(report.render())
        return 0 if report.ok else 2
    if args.data_cmd == "list":
        if args.files:
            for f in registered_files().values():
                print(f"{f.key:45s} {'mirrored' if f.mirrored else 'upstream only':14s} {f.url}")
        else:
            print(f"{'name':20s} {'kind':9s} {'task':15s} {'mirrored':9s} description")
            for row in list_datasets().itertuples():
                mirrored = "yes" if row.mirrored else "no"
                print(
                    f"{row.name:20s} {row.kind:9s} {row.task:15s} {mirrored:9s} {row.description}"
                )
        return 0
    if args.data_cmd == "info":
        try:
            spec = get_spec(args.name)
        except (DataCheckError, FileNotFoundError) as exc:
            print(f"molkit data info: {exc}", file=sys.stderr)
            return 2
        print(f"{spec.name}: {spec.description}\nkind: {spec.kind}, task: {spec.task}")
        print(f"files: {', '.join(spec.files)}")
        print(f"citation: {spec.citation}\nlicence: {spec.licence}")
        return 0
    if not args.names and not args.all:
        print(
            "molkit data fetch: name datasets (see `molkit data list`) or pass --all",
            file=sys.stderr,
        )
        return 2
    for name in [n for n in args.names if is_csv_path(n)]:
        print(f"{name}: a file of your own, nothing to fetch (`molkit data check {name}`)")
    names = [n for n in args.names if not is_csv_path(n)]
    keys = list(registered_files()) if args.all else [k for n in names for k in get_spec(n).files]
    status = 0
    for key in keys:
        try:
            print(f"{key}: {fetch_file(key)}")
        except DataError as exc:
            print(f"{key}: {exc}", file=sys.stderr)
            status = 1
    return status


def _cmd_models(args: argparse.Namespace) -> int:
    from molkit.models.registry import MODELS, resolve_model_path

    if args.models_cmd == "list":
        for entry in MODELS.values():
            print(
                f"{entry.name:24s} {entry.kind:17s} {entry.parameters / 1e6:6.1f}M  {entry.licence}"
            )
        return 0
    for name in args.names or list(MODELS):
        print(f"{name}: {resolve_model_path(name)}")
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from molkit.bench import run_benchmarks

    run_benchmarks(profile=args.profile, quick=args.quick)
    return 0


def _cmd_responses(args: argparse.Namespace) -> int:
    from molkit.methods.lardo import generate_responses

    generate_responses(args.profile, out=args.out, threads=args.threads, lm_model=args.lm_model)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="molkit", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run", help="execute notebooks with papermill and update papermill_runs/<profile>/"
    )
    run.add_argument(
        "notebooks", nargs="*", help="notebook stems (e.g. 02_icma or 02); all when omitted"
    )
    run.add_argument("--profile", default="default", choices=PROFILES)
    run.add_argument(
        "-p",
        "--parameter",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="extra papermill parameter (JSON value), e.g. -p n_seeds 5",
    )
    run.add_argument(
        "--keep-going", action="store_true", help="run the remaining notebooks after a failure"
    )
    run.add_argument(
        "--processes",
        type=int,
        default=1,
        help="kernels per notebook, one process group (one per GPU): LM training and generation "
        "run data-parallel across them; rank 0 writes the record",
    )
    run.set_defaults(func=_cmd_run)

    data = sub.add_parser("data", help="list, describe, fetch and check datasets")
    dsub = data.add_subparsers(dest="data_cmd", required=True)
    dl = dsub.add_parser("list", help="registered datasets (or --files)")
    dl.add_argument("--files", action="store_true")
    di = dsub.add_parser("info", help="description, citation and licence of a dataset")
    di.add_argument("name")
    df = dsub.add_parser(
        "fetch", help="resolve datasets from the mirror or download them into the cache"
    )
    df.add_argument("names", nargs="*")
    df.add_argument(
        "--all",
        action="store_true",
        help="every registered file (upstream-only ones need the internet)",
    )
    dc = dsub.add_parser(
        "check",
        help="read a CSV file of your own as molkit would and report every problem "
        "(exit 0: usable, rows may be dropped; 2: not usable)",
    )
    dc.add_argument("path", help="the CSV file (read only; nothing is written beside it)")
    dc.add_argument(
        "--kind", choices=("property", "single", "pair", "text"), help="default: from the columns"
    )
    dc.add_argument(
        "--task", choices=("classification", "regression", "generation"),
        help="default: from the labels",
    )  # fmt: skip
    dc.add_argument("--targets", nargs="+", help="the label columns (default: inferred)")
    dc.add_argument(
        "--min-rows", type=int, default=None,
        help="fewest usable rows (default: molkit.data.user_csv.MIN_ROWS, enough to split)",
    )  # fmt: skip
    data.set_defaults(func=_cmd_data)

    models = sub.add_parser(
        "models", help="list registered pretrained models, or verify and prepare them"
    )
    msub = models.add_subparsers(dest="models_cmd", required=True)
    msub.add_parser("list")
    mf = msub.add_parser("fetch", help="locate, hash-check and cache registered models")
    mf.add_argument("names", nargs="*")
    models.set_defaults(func=_cmd_models)

    bench = sub.add_parser(
        "bench", help="throughput benchmarks -> papermill_runs/<profile>/bench.json"
    )
    bench.add_argument("--profile", default="default", choices=PROFILES)
    bench.add_argument("--quick", action="store_true", help="fewer repetitions (for tests)")
    bench.set_defaults(func=_cmd_bench)

    responses = sub.add_parser("responses", help="the shipped LLM responses that notebooks replay")
    rsub = responses.add_subparsers(dest="responses_cmd", required=True)
    rg = rsub.add_parser(
        "generate",
        help="generate (resumably) and export the responses a profile of 03_lardo replays",
    )
    rg.add_argument("--profile", default="default", choices=PROFILES)
    rg.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the .jsonl.gz to write (default: the shipped file for default, "
        "<cache>/responses/lardo_responses_<profile>.jsonl.gz otherwise)",
    )
    rg.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    rg.add_argument(
        "--lm-model",
        default=None,
        help="a Hugging Face id (or registry name, folder) instead of the profile's LLM",
    )
    responses.set_defaults(func=_cmd_responses)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyError as exc:  # unknown dataset / file: the message lists close matches
        print(f"molkit: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
