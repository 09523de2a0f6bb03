"""`mlft`: the service from a shell. Every command talks to a server at --url; the server side
is its own programs (`mlft-server`, `mlft-worker`), installed with the server, not this client."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx

from mlft_client.client import Client
from mlft_client.errors import MlftError

# The labels whose keys an upload can name (--energy-key ...), as the server's form fields.
LABELS = ("energy", "forces", "stress", "virials")

DEFAULT_URL = "http://127.0.0.1:8000"
Handler = Callable[[argparse.Namespace, Client], int]


class CommandError(Exception):
    """Something wrong on this side (an unreadable spec), said in one line like server errors."""


def main(argv: Sequence[str] | None = None, *, http: httpx.Client | None = None) -> int:
    """Run one command; `http` replaces the client's own connection (tests pass a TestClient)."""
    args = build_parser().parse_args(argv)
    try:
        if args.local:
            return args.handler(args)
        with Client(args.url, args.token, http=http) as client:
            return args.handler(args, client)
    except (MlftError, CommandError) as error:
        return fail(str(error))
    except OSError as error:
        return fail(describe_os_error(error))
    except KeyboardInterrupt:
        return 130


def fail(message: str) -> int:
    print(f"mlft: error: {message}", file=sys.stderr)
    return 1


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
    _add_dataset_commands(commands.add_parser("datasets", help="upload and list datasets"))
    _add_job_commands(commands.add_parser("jobs", help="submit, follow and download jobs"))
    _add_evaluation_commands(
        commands.add_parser("evaluations", help="evaluate a model on a dataset")
    )
    serve = _command(commands, "serve", moved_to_server, "moved: run `mlft-server`", local=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    _command(commands, "worker", moved_to_server, "moved: run `mlft-worker`", local=True)
    return parser


def _add_dataset_commands(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    upload = _command(commands, "upload", upload_datasets, "upload extxyz files; prints each id")
    upload.add_argument("files", nargs="+", type=Path, metavar="FILE")
    for label in LABELS:
        upload.add_argument(
            f"--{label}-key",
            metavar="KEY",
            help=f"the key holding the {label} when it is not recognised (mace's --{label}_key)",
        )
    _command(commands, "list", list_datasets, "list uploaded datasets with labels and warnings")


def _add_evaluation_commands(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    submit = _command(
        commands, "submit", submit_evaluation, "submit an evaluation spec (JSON or YAML)"
    )
    submit.add_argument("spec", type=Path, metavar="SPEC")
    submit.add_argument("--watch", action="store_true", help="then wait until it ends")
    for name, handler, text in [
        ("show", show_evaluation, "print an evaluation as JSON"),
        ("report", evaluation_report, "print an evaluation's report as JSON"),
    ]:
        _command(commands, name, handler, text).add_argument("evaluation_id", metavar="ID")


def _add_job_commands(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    submit = _command(commands, "submit", submit_job, "submit a job spec (JSON or YAML)")
    submit.add_argument("spec", type=Path, metavar="SPEC")
    submit.add_argument("--watch", action="store_true", help="then follow it until it ends")
    _command(commands, "list", list_jobs, "list jobs, newest first")
    for name, handler, text in [
        ("show", show_job, "print a job as JSON"),
        ("watch", watch_job, "follow a job with a progress bar until it ends"),
        ("cancel", cancel_job, "cancel a queued or running job"),
    ]:
        _command(commands, name, handler, text).add_argument("job_id", metavar="ID")
    download = _command(commands, "download", download_model, "download a job's model")
    download.add_argument("job_id", metavar="ID")
    download.add_argument("-o", "--output", type=Path, default=Path("."), metavar="PATH")
    download.add_argument(
        "--variant", choices=["target", "multihead", "torchscript", "lammps"], default="target"
    )


def _command(
    commands: Any, name: str, handler: Callable[..., int], text: str, *, local: bool = False
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=text, description=text)
    parser.set_defaults(handler=handler, local=local)
    return parser


def upload_datasets(args: argparse.Namespace, client: Client) -> int:
    keys = {f"{label}_key": getattr(args, f"{label}_key") for label in LABELS}
    for path in args.files:
        dataset = client.upload_dataset(path, **keys)
        # The id alone on stdout, so `TRAIN=$(mlft datasets upload train.extxyz)` works.
        print(dataset["id"])
        print(f"{path}: {describe_dataset(dataset)}", file=sys.stderr)
        for warning in dataset.get("summary", {}).get("warnings", []):
            print(f"mlft: warning: {path}: {warning}", file=sys.stderr)
    return 0


def list_datasets(_args: argparse.Namespace, client: Client) -> int:
    for dataset in client.datasets():
        print(f"{dataset['id']}  {dataset['name']}  {describe_dataset(dataset)}")
        for warning in dataset.get("summary", {}).get("warnings", []):
            print(f"    warning: {warning}")
    return 0


def describe_dataset(dataset: dict[str, Any]) -> str:
    summary = dataset.get("summary", {})
    elements = " ".join(summary.get("elements", []))
    return (
        f"{summary.get('n_configs', '?')} configurations, elements {elements or '?'}, "
        f"labels {describe_labels(summary)}"
    )


def describe_labels(summary: dict[str, Any]) -> str:
    """`energy 120/120, forces 120/120, stress 100/120 (dft_stress)`: counts and keys."""
    counts = summary.get("label_counts", {})
    parts = []
    for label in summary.get("labels", []):
        count = counts.get(label)
        key = summary.get(f"{label}_key")
        text = f"{label} {count['configs']}/{count['of']}" if count else label
        parts.append(f"{text} ({key})" if key and key != label else text)
    return ", ".join(parts) or "none"


def submit_evaluation(args: argparse.Namespace, client: Client) -> int:
    evaluation = client.create_evaluation(read_spec(args.spec))
    print(evaluation["id"])
    if not args.watch:
        return 0
    evaluation = client.wait_evaluation(evaluation["id"])
    if evaluation["state"] != "succeeded":
        reason = f": {evaluation['error']}" if evaluation.get("error") else ""
        return fail(f"evaluation {evaluation['id']} {evaluation['state']}{reason}")
    print(f"evaluation {evaluation['id']} succeeded", file=sys.stderr)
    return 0


def show_evaluation(args: argparse.Namespace, client: Client) -> int:
    print(json.dumps(client.evaluation(args.evaluation_id), indent=2))
    return 0


def evaluation_report(args: argparse.Namespace, client: Client) -> int:
    print(json.dumps(client.evaluation_report(args.evaluation_id), indent=2))
    return 0


def submit_job(args: argparse.Namespace, client: Client) -> int:
    job = client.create_job(read_spec(args.spec))
    print(job["id"])
    for warning in job.get("warnings", []):
        print(f"mlft: warning: {warning}", file=sys.stderr)
    return follow(client, job["id"]) if args.watch else 0


def read_spec(path: Path) -> dict[str, Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() in {".yaml", ".yml"}:
        spec = _load_yaml(text, path)
    else:
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as error:
            raise CommandError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(spec, dict):
        raise CommandError(f"{path} must hold one object (the job spec), not a list or value")
    return spec


def _load_yaml(text: str, path: Path) -> Any:
    try:
        import yaml
    except ImportError as error:
        raise CommandError(f"reading {path} needs PyYAML; write the spec as JSON") from error
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise CommandError(f"{path} is not valid YAML: {error}") from error


def list_jobs(_args: argparse.Namespace, client: Client) -> int:
    for job in client.jobs():
        progress = job["progress"]
        # A row stored before a spec rule existed may lack parts of today's spec.
        strategy = (job.get("spec") or {}).get("strategy", {}).get("name", "?")
        print(
            f"{job['id']}  {job['state']:<9}  {strategy:<19}  "
            f"{progress['epochs_done']}/{progress['max_epochs']} epochs  {job['created_at']}"
        )
    return 0


def show_job(args: argparse.Namespace, client: Client) -> int:
    print(json.dumps(client.job(args.job_id), indent=2))
    return 0


def watch_job(args: argparse.Namespace, client: Client) -> int:
    return follow(client, args.job_id)


def follow(client: Client, job_id: str) -> int:
    """Exit status 0 only for a job that succeeded, so scripts can chain on it."""
    job = client.wait(job_id, progress=True)
    if job["state"] == "succeeded":
        # The bar's last numbers are validation errors during training; the test set's are
        # what the model is judged by.
        metrics = client.metrics(job_id)
        print(f"job {job_id} succeeded; {test_errors(metrics)}")
        for line in [*verdict_lines(job.get("verdicts")), *not_measured(metrics)]:
            print(line)
        return 0
    reason = f": {job['error']}" if job.get("error") else ""
    return fail(f"job {job_id} {job['state']}{reason}")


def verdict_lines(verdicts: list[dict[str, str]] | None) -> list[str]:
    """The server's verdicts, one a line: "  MD stable: yes, 100 K over 0.1 of 250 ps, ..."."""
    return [f"  {v['label']}: {v['value']}" for v in verdicts or []]


def test_errors(metrics: dict[str, Any]) -> str:
    test = (metrics.get("accuracy") or {}).get("test")
    if not test:
        return "no test set was evaluated (give test_dataset or split.test_fraction)"
    parts = [f"test errors on {test.get('n_configs')} configurations:"]
    for key, name, unit in (
        ("energy_rmse_mev_per_atom", "energy RMSE", "meV/atom"),
        ("forces_rmse_mev_per_a", "forces RMSE", "meV/Å"),
        ("stress_rmse_mev_per_a3", "stress RMSE", "meV/Å³"),
    ):
        if test.get(key) is not None:
            parts.append(f"{name} {test[key]:.3g} {unit}")
    return " ".join(parts[:1]) + " " + ", ".join(parts[1:])


def not_measured(metrics: dict[str, Any]) -> list[str]:
    """The evaluation sections the job could not measure, each with its reason: the job
    succeeded without them."""
    return [
        f"not measured: {section}: {reason}"
        for section, reason in (metrics.get("not_measured") or {}).items()
    ]


def cancel_job(args: argparse.Namespace, client: Client) -> int:
    print(f"job {args.job_id} {client.cancel(args.job_id)['state']}")
    return 0


def download_model(args: argparse.Namespace, client: Client) -> int:
    print(client.download_model(args.job_id, args.output, variant=args.variant))
    return 0


def moved_to_server(args: argparse.Namespace) -> int:
    """`mlft serve` and `mlft worker` predate the client's own distribution: say where they went."""
    program = "mlft-worker"
    if args.command == "serve":
        program = f"mlft-server --host {args.host} --port {args.port}"
    return fail(
        f"`mlft {args.command}` moved to the server: run `{program}` where the mlft server is "
        "installed (this client does not include it)"
    )


if __name__ == "__main__":
    sys.exit(main())
