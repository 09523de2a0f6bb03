"""`mlft`: the service from a shell. Every command talks to a server at --url; the server side
is its own programs (`mlft-server`, `mlft-worker`), installed with the server, not this client.
The commands are in commands.py; this module is their parser."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from mlft_client import commands as run
from mlft_client.client import Client
from mlft_client.errors import MlftError

DEFAULT_URL = "http://127.0.0.1:8000"
JOB_STATES = ["queued", "running", "succeeded", "failed", "cancelled", "stopped_early"]


def main(argv: Sequence[str] | None = None, *, http: httpx.Client | None = None) -> int:
    """Run one command; `http` replaces the client's own connection (tests pass a TestClient)."""
    args = build_parser().parse_args(argv)
    try:
        if args.local:
            return args.handler(args)
        with Client(args.url, args.token, http=http) as client:
            return args.handler(args, client)
    except (MlftError, run.CommandError) as error:
        return run.fail(str(error))
    except OSError as error:
        return run.fail(describe_os_error(error))
    except KeyboardInterrupt:
        return 130


def describe_os_error(error: OSError) -> str:
    if error.filename is None:
        return str(error)
    return f"{error.filename}: {error.strerror or error}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlft", description="Fine-tune MACE foundation models.")
    parser.add_argument(
        "--url",
        default=os.environ.get("MLFT_URL", DEFAULT_URL),
        help="the mlft server (default: $MLFT_URL or %(default)s)",
    )
    parser.add_argument(
        "--token", default=os.environ.get("MLFT_TOKEN"), help="bearer token ($MLFT_TOKEN)"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _datasets(_group(commands, "datasets", "upload, list, show and delete datasets"))
    _foundations(_group(commands, "foundations", "foundation models: list, show, register"))
    _json(_command(commands, "strategies", run.list_strategies, "strategies and E0 methods"))
    preflight = _command(commands, "preflight", run.run_preflight, "check a job spec first")
    preflight.add_argument("spec", type=Path, metavar="SPEC", help="JSON or YAML; - for stdin")
    _json(preflight)
    _jobs(_group(commands, "jobs", "submit, find, follow, promote and download jobs"))
    _evaluations(_group(commands, "evaluations", "evaluate a model on a dataset"))
    _sweeps(_group(commands, "sweeps", "run one base job with several strategies"))
    _replay_sets(_group(commands, "replay-sets", "replay sets that guard against forgetting"))
    _projects(_group(commands, "projects", "projects and their tokens (admin token)"))
    serve = _command(commands, "serve", run.moved_to_server, "moved: run `mlft-server`", local=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    _command(commands, "worker", run.moved_to_server, "moved: run `mlft-worker`", local=True)
    return parser


def _datasets(commands: Any) -> None:
    upload = _command(commands, "upload", run.upload_datasets, "upload extxyz files; prints ids")
    upload.add_argument("files", nargs="+", type=Path, metavar="FILE")
    for label in run.LABELS:
        upload.add_argument(
            f"--{label}-key",
            metavar="KEY",
            help=f"the key holding the {label} when it is not recognised (mace's --{label}_key)",
        )
    listed = _list(commands, run.list_datasets, "datasets, newest first")
    listed.add_argument("--name", help="only datasets of this (file) name")
    listed.add_argument("--name-contains", metavar="TEXT", help="names containing TEXT")
    _show(commands, run.show_dataset, "a dataset's summary: labels, elements, warnings")
    _with_id(commands, "delete", run.delete_dataset, "delete a dataset no job needs")


def _foundations(commands: Any) -> None:
    _json(_command(commands, "list", run.list_foundations, "foundation models a job can use"))
    show = _command(commands, "show", run.show_foundation, "one foundation model")
    show.add_argument("name", metavar="NAME")
    _json(show)
    register = _command(
        commands, "register", run.register_foundation, "register a .model file (admin token)"
    )
    register.add_argument("name", metavar="NAME")
    register.add_argument("file", type=Path, metavar="FILE")


def _jobs(commands: Any) -> None:
    submit = _submit(commands, run.submit_job, "submit a job spec (JSON or YAML)")
    submit.add_argument("--watch", action="store_true", help="then follow it until it ends")
    listed = _list(commands, run.list_jobs, "jobs, newest first, filtered")
    _find_runs(listed)
    listed.add_argument("--sweep", metavar="SWEEP_ID", help="only this sweep's jobs")
    _show(commands, run.show_job, "a job: state, progress, spec, E0s, cost")
    _with_id(commands, "watch", run.watch_job, "follow a job with progress bars until it ends")
    _with_id(commands, "cancel", run.cancel_job, "cancel a queued or running job")
    _show(commands, run.job_metrics, "a finished job's test errors, forgetting, MD", "metrics")
    _report(commands, run.job_report, "a job's report (JSON, or --html)")
    log = _with_id(commands, "log", run.job_log, "mace-torch's training log")
    _output_file(log)
    card = _with_id(commands, "model-card", run.job_model_card, "the model card (Markdown)")
    _json(card)
    _output_file(card)
    download = _with_id(commands, "download", run.download_model, "download a job's model")
    download.add_argument("-o", "--output", type=Path, default=Path("."), metavar="PATH")
    download.add_argument(
        "--variant", choices=["target", "multihead", "torchscript", "lammps"], default="target"
    )
    holes = _with_id(commands, "holes", run.download_job_holes, "the RSS holes as extxyz")
    holes.add_argument("-o", "--output", type=Path, default=Path("."), metavar="PATH")
    promote = _with_id(
        commands, "promote", run.promote_job, "register the job's model as a foundation"
    )
    promote.add_argument("name", metavar="NAME", help="the new foundation's name")
    promote.add_argument("--description", help="a note kept with the foundation's lineage")


def _evaluations(commands: Any) -> None:
    submit = _command(commands, "submit", run.submit_evaluation, "submit an evaluation spec")
    submit.add_argument("spec", type=Path, metavar="SPEC", help="JSON or YAML; - for stdin")
    submit.add_argument("--watch", action="store_true", help="then wait until it ends")
    listed = _list(commands, run.list_evaluations, "evaluations, newest first")
    listed.add_argument("--state", choices=JOB_STATES)
    listed.add_argument("--foundation", help="of, or compared with, this foundation model")
    listed.add_argument("--job", metavar="JOB_ID", help="of this job's model")
    _show(commands, run.show_evaluation, "an evaluation")
    _with_id(commands, "cancel", run.cancel_evaluation, "cancel an evaluation")
    _report(commands, run.evaluation_report, "an evaluation's report (JSON, or --html)")
    holes = _with_id(commands, "holes", run.download_evaluation_holes, "RSS holes as extxyz")
    holes.add_argument("-o", "--output", type=Path, default=Path("."), metavar="PATH")


def _sweeps(commands: Any) -> None:
    submit = _submit(commands, run.submit_sweep, "submit a sweep spec (JSON or YAML)")
    submit.add_argument("--watch", action="store_true", help="then wait and show the table")
    _find_runs(_list(commands, run.list_sweeps, "sweeps, newest first"))
    _show(commands, run.show_sweep, "the comparison table and the recommendation")
    _with_id(commands, "watch", run.watch_sweep, "wait until every job ended; show the table")
    _with_id(commands, "cancel", run.cancel_sweep, "cancel every job of a sweep not ended")
    _report(commands, run.sweep_report, "a sweep's report (JSON, or --html)")


def _replay_sets(commands: Any) -> None:
    create = _command(commands, "create", run.create_replay_set, "build a replay set")
    create.add_argument("spec", type=Path, metavar="SPEC", help="JSON or YAML; - for stdin")
    _list(commands, run.list_replay_sets, "replay sets, newest first")
    _show(commands, run.show_replay_set, "a replay set: state, size, composition")
    _with_id(commands, "cancel", run.cancel_replay_set, "cancel a replay set's build")


def _projects(commands: Any) -> None:
    _json(_command(commands, "list", run.list_projects, "every project"))
    create = _command(commands, "create", run.create_project, "create a project; prints its id")
    create.add_argument("name", metavar="NAME")
    token = _command(commands, "token", run.create_token, "issue a project token; prints it")
    token.add_argument("project", metavar="PROJECT_ID")
    token.add_argument("name", metavar="NAME")
    revoke = _command(commands, "revoke", run.revoke_token, "revoke a project token")
    revoke.add_argument("project", metavar="PROJECT_ID")
    revoke.add_argument("token", metavar="TOKEN_ID")


def _group(commands: Any, name: str, text: str) -> Any:
    parser = commands.add_parser(name, help=text, description=text)
    return parser.add_subparsers(dest="action", required=True, metavar="ACTION")


def _command(
    commands: Any, name: str, handler: Callable[..., int], text: str, *, local: bool = False
) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(name, help=text, description=text)
    parser.set_defaults(handler=handler, local=local)
    return parser


def _with_id(
    commands: Any, name: str, handler: Callable[..., int], text: str
) -> argparse.ArgumentParser:
    parser = _command(commands, name, handler, text)
    parser.add_argument("id", metavar="ID")
    return parser


def _show(
    commands: Any, handler: Callable[..., int], text: str, name: str = "show"
) -> argparse.ArgumentParser:
    return _json(_with_id(commands, name, handler, text))


def _list(commands: Any, handler: Callable[..., int], text: str) -> argparse.ArgumentParser:
    parser = _json(_command(commands, "list", handler, text))
    parser.add_argument(
        "--limit", type=int, metavar="N", help="show the newest N only (default: all)"
    )
    return parser


def _submit(commands: Any, handler: Callable[..., int], text: str) -> argparse.ArgumentParser:
    parser = _command(commands, "submit", handler, text)
    parser.add_argument("spec", type=Path, metavar="SPEC", help="JSON or YAML; - for stdin")
    parser.add_argument("--name", help="a name to find it by")
    parser.add_argument(
        "--tag", action="append", metavar="KEY=VALUE", help="a tag (repeat for more)"
    )
    return parser


def _report(commands: Any, handler: Callable[..., int], text: str) -> argparse.ArgumentParser:
    parser = _show(commands, handler, text, "report")
    parser.add_argument("--html", action="store_true", help="the HTML page instead")
    _output_file(parser)
    return parser


def _find_runs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--state", choices=JOB_STATES)
    parser.add_argument("--strategy", help="e.g. lora, naive, frozen_embeddings")
    parser.add_argument("--foundation", help="the foundation model's name")
    parser.add_argument("--name", help="exactly this name")
    parser.add_argument("--name-contains", metavar="TEXT", help="names containing TEXT")
    parser.add_argument(
        "--tag",
        action="append",
        metavar="KEY[=VALUE]",
        help="with this tag (and value); repeat to require several",
    )


def _json(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--json", action="store_true", help="print the server's JSON")
    return parser


def _output_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, metavar="FILE", help="write it to FILE")


if __name__ == "__main__":
    sys.exit(main())
