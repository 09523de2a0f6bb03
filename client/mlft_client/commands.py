"""What each `mlft` command does: one function per command, taking the parsed arguments and a
Client; 0 for success, as exit statuses go."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from mlft_client import render
from mlft_client.client import Client

# The labels whose keys an upload can name (--energy-key ...), as the server's form fields.
LABELS = ("energy", "forces", "stress", "virials")


class CommandError(Exception):
    """Something wrong on this side (an unreadable spec), said in one line like server errors."""


def fail(message: str) -> int:
    print(f"mlft: error: {message}", file=sys.stderr)
    return 1


def show(args: argparse.Namespace, item: Any, fields: list[str] | None = None) -> int:
    if args.json:
        render.print_json(item)
    else:
        render.print_details(item, fields)
    return 0


def listing(args: argparse.Namespace, items: Any, columns: list[render.Column], title: str) -> int:
    if args.json:
        render.print_json(list(items))
        return 0
    total = getattr(items, "total", None)
    shown = f"{len(items)} of {total}" if total is not None and total != len(items) else len(items)
    render.print_table(items, columns, f"{title} ({shown})")
    return 0


def tags_from(pairs: list[str] | None, *, key_alone: bool = False) -> dict[str, str | None]:
    """`--tag key=value` options as a dict; with `key_alone` (filters), `--tag key` too: the
    tag is set, whatever its value."""
    tags: dict[str, str | None] = {}
    for pair in pairs or []:
        key, equals, value = pair.partition("=")
        if not key or not (equals or key_alone):
            raise CommandError(f"--tag {pair!r}: write it as key=value")
        tags[key] = value if equals else None
    return tags


def labels_from(pairs: list[str] | None) -> dict[str, str]:
    return {key: value or "" for key, value in tags_from(pairs).items()}


def read_spec(path: Path) -> dict[str, Any]:
    text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    if path.suffix.lower() in {".yaml", ".yml"}:
        spec = _load_yaml(text, path)
    else:
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as error:
            raise CommandError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(spec, dict):
        raise CommandError(f"{path} must hold one object (the spec), not a list or value")
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


def save_or_print(text: str, output: Path | None) -> int:
    if output is None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    else:
        output.write_text(text, encoding="utf-8")
        print(output)
    return 0


# Datasets


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


def describe_dataset(dataset: dict[str, Any]) -> str:
    summary = dataset.get("summary", {})
    elements = " ".join(summary.get("elements", []))
    return (
        f"{summary.get('n_configs', '?')} configurations, elements {elements or '?'}, "
        f"labels {render.describe_labels(summary)}"
    )


def list_datasets(args: argparse.Namespace, client: Client) -> int:
    items = client.datasets(name=args.name, name_contains=args.name_contains, limit=args.limit)
    listing(args, items, render.DATASET_COLUMNS, "datasets")
    if not args.json:
        for dataset in items:
            for warning in render.summary_of(dataset).get("warnings", []):
                print(f"warning: {dataset['id']}: {warning}")
    return 0


def show_dataset(args: argparse.Namespace, client: Client) -> int:
    return show(args, client.dataset(args.id))


def delete_dataset(args: argparse.Namespace, client: Client) -> int:
    client.delete_dataset(args.id)
    print(f"dataset {args.id} deleted")
    return 0


# Foundations, strategies, preflight


def list_foundations(args: argparse.Namespace, client: Client) -> int:
    return listing(args, client.foundations(), render.FOUNDATION_COLUMNS, "foundation models")


def show_foundation(args: argparse.Namespace, client: Client) -> int:
    return show(args, client.foundation(args.name))


def register_foundation(args: argparse.Namespace, client: Client) -> int:
    registered = client.register_foundation(args.name, args.file)
    print(f"foundation {registered['name']} registered, sha256 {registered['sha256']}")
    return 0


def list_strategies(args: argparse.Namespace, client: Client) -> int:
    answer = client.strategies()
    if args.json:
        render.print_json(answer)
        return 0
    render.print_table(answer["strategies"], render.STRATEGY_COLUMNS, "strategies")
    methods = [("name", lambda item: item["name"]), ("summary", lambda item: item["summary"])]
    render.print_table(answer["e0_methods"], methods, "E0 methods")
    return 0


def run_preflight(args: argparse.Namespace, client: Client) -> int:
    result = client.preflight(read_spec(args.spec))
    if args.json:
        render.print_json(result)
        return 0
    render.print_details(
        result, ["n_configs", "elements", "foundation_errors", "suggestion", "cost_estimate"]
    )
    findings = [
        ("severity", lambda item: item.get("severity")),
        ("code", lambda item: item.get("code")),
        ("message", lambda item: item.get("message")),
    ]
    if result.get("findings"):
        render.print_table(result["findings"], findings, "findings")
    return 1 if result.get("blocking") else 0


# Jobs


def submit_job(args: argparse.Namespace, client: Client) -> int:
    job = client.create_job(read_spec(args.spec), name=args.name, tags=labels_from(args.tag))
    print(job["id"])
    for warning in job.get("warnings", []):
        print(f"mlft: warning: {warning}", file=sys.stderr)
    return follow(client, job["id"]) if args.watch else 0


def list_jobs(args: argparse.Namespace, client: Client) -> int:
    items = client.jobs(
        state=args.state,
        strategy=args.strategy,
        foundation=args.foundation,
        name=args.name,
        name_contains=args.name_contains,
        tags=tags_from(args.tag, key_alone=True),
        sweep=args.sweep,
        limit=args.limit,
    )
    return listing(args, items, render.JOB_COLUMNS, "jobs")


def show_job(args: argparse.Namespace, client: Client) -> int:
    return show(args, client.job(args.id), None if args.json else render.JOB_FIELDS)


def watch_job(args: argparse.Namespace, client: Client) -> int:
    return follow(client, args.id)


def follow(client: Client, job_id: str) -> int:
    """Exit status 0 only for a job that succeeded, so scripts can chain on it."""
    job = client.wait(job_id, progress=True)
    if job["state"] == "succeeded":
        # The bars' last numbers are validation errors during training; the test set's are
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


def not_measured(metrics: dict[str, Any]) -> list[str]:
    """The evaluation sections the job could not measure, each with its reason: the job
    succeeded without them."""
    return [
        f"not measured: {section}: {reason}"
        for section, reason in (metrics.get("not_measured") or {}).items()
    ]


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


def cancel_job(args: argparse.Namespace, client: Client) -> int:
    print(f"job {args.id} {client.cancel(args.id)['state']}")
    return 0


def job_metrics(args: argparse.Namespace, client: Client) -> int:
    return show(args, client.metrics(args.id))


def job_report(args: argparse.Namespace, client: Client) -> int:
    if args.html:
        return save_or_print(str(client.report(args.id, "html")), args.output)
    return show(args, client.report(args.id))


def job_log(args: argparse.Namespace, client: Client) -> int:
    return save_or_print(client.log(args.id), args.output)


def job_model_card(args: argparse.Namespace, client: Client) -> int:
    if args.json:
        render.print_json(client.model_card(args.id))
        return 0
    return save_or_print(str(client.model_card(args.id, "md")), args.output)


def download_model(args: argparse.Namespace, client: Client) -> int:
    print(client.download_model(args.id, args.output, variant=args.variant))
    return 0


def download_job_holes(args: argparse.Namespace, client: Client) -> int:
    print(client.download_rss_holes(args.id, args.output))
    return 0


def promote_job(args: argparse.Namespace, client: Client) -> int:
    promoted = client.promote(args.id, args.name, getattr(args, "description", None))
    sha = promoted.get("sha256", "?")
    print(f"job {args.id} promoted to foundation {promoted.get('name', args.name)} (sha256 {sha})")
    return 0


# Evaluations


def submit_evaluation(args: argparse.Namespace, client: Client) -> int:
    evaluation = client.create_evaluation(read_spec(args.spec))
    print(evaluation["id"])
    if not args.watch:
        return 0
    evaluation = client.wait_evaluation(evaluation["id"])
    return ended("evaluation", evaluation)


def ended(noun: str, item: dict[str, Any]) -> int:
    if item["state"] != "succeeded":
        reason = f": {item['error']}" if item.get("error") else ""
        return fail(f"{noun} {item['id']} {item['state']}{reason}")
    print(f"{noun} {item['id']} succeeded", file=sys.stderr)
    return 0


def list_evaluations(args: argparse.Namespace, client: Client) -> int:
    items = client.evaluations(
        state=args.state, foundation=args.foundation, job=args.job, limit=args.limit
    )
    return listing(args, items, render.EVALUATION_COLUMNS, "evaluations")


def show_evaluation(args: argparse.Namespace, client: Client) -> int:
    return show(args, client.evaluation(args.id))


def cancel_evaluation(args: argparse.Namespace, client: Client) -> int:
    print(f"evaluation {args.id} {client.cancel_evaluation(args.id)['state']}")
    return 0


def evaluation_report(args: argparse.Namespace, client: Client) -> int:
    if args.html:
        return save_or_print(str(client.evaluation_report(args.id, "html")), args.output)
    return show(args, client.evaluation_report(args.id))


def download_evaluation_holes(args: argparse.Namespace, client: Client) -> int:
    print(client.download_evaluation_rss_holes(args.id, args.output))
    return 0


# Sweeps


def submit_sweep(args: argparse.Namespace, client: Client) -> int:
    sweep = client.create_sweep(read_spec(args.spec), name=args.name, tags=labels_from(args.tag))
    print(sweep["id"])
    return follow_sweep(client, sweep["id"]) if args.watch else 0


def watch_sweep(args: argparse.Namespace, client: Client) -> int:
    return follow_sweep(client, args.id)


def follow_sweep(client: Client, sweep_id: str) -> int:
    """One line on stderr each time the count of jobs per state changes, then the table."""
    shown: list[str] = []

    def report(sweep: dict[str, Any]) -> None:
        line = f"sweep {sweep_id}: {jobs_by_state(sweep)}"
        if line not in shown[-1:]:
            print(line, file=sys.stderr)
            shown.append(line)

    return print_sweep(client.wait_sweep(sweep_id, on_poll=report))


def jobs_by_state(sweep: dict[str, Any]) -> str:
    counts = sweep.get("jobs") or {}
    return ", ".join(f"{count} {state}" for state, count in counts.items()) or "no jobs"


def list_sweeps(args: argparse.Namespace, client: Client) -> int:
    items = client.sweeps(
        state=args.state,
        strategy=args.strategy,
        foundation=args.foundation,
        name=args.name,
        name_contains=args.name_contains,
        tags=tags_from(args.tag, key_alone=True),
        limit=args.limit,
    )
    return listing(args, items, render.SWEEP_COLUMNS, "sweeps")


def show_sweep(args: argparse.Namespace, client: Client) -> int:
    sweep = client.sweep(args.id)
    if args.json:
        render.print_json(sweep)
        return 0
    return print_sweep(sweep)


def print_sweep(sweep: dict[str, Any]) -> int:
    state = "finished" if sweep.get("finished") else "running"
    render.print_table(sweep.get("table") or [], render.SWEEP_ROW_COLUMNS, f"sweep {sweep['id']}")
    print(f"sweep {sweep['id']} {state}: {jobs_by_state(sweep)}")
    for use, choice in (sweep.get("recommendation") or {}).items():
        if choice:
            pick = choice.get("strategy") or "undecided"
            job = f" (job {choice['job_id']})" if choice.get("job_id") else ""
            print(f"recommended for {use.replace('_', ' ')}: {pick}{job}: {choice.get('reason')}")
    return 0


def cancel_sweep(args: argparse.Namespace, client: Client) -> int:
    sweep = client.cancel_sweep(args.id)
    print(f"sweep {args.id} cancelled: {render.cell(sweep.get('jobs'))}")
    return 0


def sweep_report(args: argparse.Namespace, client: Client) -> int:
    if args.html:
        return save_or_print(str(client.sweep_report(args.id, "html")), args.output)
    return show(args, client.sweep_report(args.id))


# Replay sets


def create_replay_set(args: argparse.Namespace, client: Client) -> int:
    replay_set = client.create_replay_set(read_spec(args.spec))
    print(replay_set["id"])
    return 0


def list_replay_sets(args: argparse.Namespace, client: Client) -> int:
    items = client.replay_sets(limit=args.limit)
    return listing(args, items, render.REPLAY_SET_COLUMNS, "replay sets")


def show_replay_set(args: argparse.Namespace, client: Client) -> int:
    return show(args, client.replay_set(args.id))


def cancel_replay_set(args: argparse.Namespace, client: Client) -> int:
    print(f"replay set {args.id} {client.cancel_replay_set(args.id)['state']}")
    return 0


# Projects (admin)


def list_projects(args: argparse.Namespace, client: Client) -> int:
    return listing(args, client.projects(), render.PROJECT_COLUMNS, "projects")


def create_project(args: argparse.Namespace, client: Client) -> int:
    print(client.create_project(args.name)["id"])
    return 0


def create_token(args: argparse.Namespace, client: Client) -> int:
    issued = client.create_token(args.project, args.name)
    # The secret alone on stdout (shown once), its id on stderr for revoking it later.
    print(issued["token"])
    print(f"token {issued['id']} of project {args.project}", file=sys.stderr)
    return 0


def revoke_token(args: argparse.Namespace, client: Client) -> int:
    client.revoke_token(args.project, args.token)
    print(f"token {args.token} revoked")
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
