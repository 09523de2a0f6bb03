"""The web dashboard at `/`, driven in headless Chromium against a real API server and worker:
forms upload data and start a job, the job page follows it live and draws its report."""

import colorsys
import io
import json
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bench.service import running_api
from core.reporting.verdicts import verdicts_json
from core.workflows.sweeps import recommend
from tests.conftest import REPO_ROOT, upload
from tests.e2e.conftest import wait_for_job
from tests.unit.test_reports import full_report

CHROMIUM = Path("/usr/bin/chromium")
# Flags that work in containers without a GPU or network; the browser is Debian's, never a
# downloaded one.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
JOB_TIMEOUT_MS = 600_000
TERMINAL = {"succeeded", "failed", "cancelled"}

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason="Debian's chromium is not installed at /usr/bin/chromium (apt-get install chromium)",
    ),
]


@pytest.fixture(scope="module")
def server(settings, worker) -> Iterator[str]:
    """The API under uvicorn on a free port, on the test database and broker (the environment
    tests/conftest.py set), next to the package's worker so that jobs run."""
    env = {**os.environ, "MLFT_START_EMBEDDED_WORKER": "false"}
    command = ["-m", "uvicorn", "api.app:create_app", "--factory"]
    with running_api(command, env, settings.data_dir / "dashboard-api.log") as api:
        yield f"{api.url}/"


@pytest.fixture(scope="module")
def api(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture()
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=server)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_default_timeout(30_000)
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def chart_colours(png: bytes) -> tuple[float, set[int]]:
    """The fraction of pixels in colour (axes, grid, text and background are grey or white) and
    the hues, in 30° sectors, that cover at least 20 pixels: an empty chart has neither."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    total = image.width * image.height
    hues: Counter[int] = Counter()
    for count, (red, green, blue) in image.getcolors(maxcolors=total):
        if max(red, green, blue) - min(red, green, blue) >= 64:
            hue, _, _ = colorsys.rgb_to_hsv(red / 255, green / 255, blue / 255)
            hues[int(hue * 12) % 12] += count
    coloured = sum(hues.values()) / total
    return coloured, {sector for sector, count in hues.items() if count >= 20}


def sse(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


def shown_state(page) -> str:
    return page.get_attribute("#job-status .state", "data-state") or ""


def test_a_rejected_upload_shows_the_api_error(page, api, tmp_path) -> None:
    bad = tmp_path / "broken.extxyz"
    bad.write_text("2\nProperties=species:S:1:pos:R:3 energy=-1.0\nH 0.0 0.0 0.0\n")
    with bad.open("rb") as stream:
        expected = api.post("/datasets", files={"file": (bad.name, stream)})
    assert expected.status_code == 422
    page.goto("#/datasets")

    page.set_input_files("#upload-form input[type=file]", str(bad))
    page.click("#upload-form button[type=submit]")

    alert = page.locator("#upload-result .alert.bad")
    alert.wait_for()
    assert alert.inner_text().strip() == expected.json()["detail"]
    assert bad.name not in {d["name"] for d in api.get("/datasets").json()["data"]}


def test_an_upload_whose_labels_are_not_found_shows_the_warning(page, tmp_path) -> None:
    # Issue 18 item 1: never a silent `labels: []` with "Fine-tune on this dataset" offered.
    source = REPO_ROOT / "tests" / "data" / "dialects" / "custom_keys.extxyz"
    unlabelled = tmp_path / "pbe_keys.extxyz"
    # Bytes no other test uploads, so the route creates the dataset rather than returning one.
    unlabelled.write_text(source.read_text().replace("config_type=CuAu", "config_type=pbe", 1))
    page.goto("#/datasets")

    page.set_input_files("#upload-form input[type=file]", str(unlabelled))
    page.click("#upload-form button[type=submit]")

    warning = page.locator("#upload-result .alert.warn")
    warning.wait_for()
    assert "no energy or forces labels found" in warning.inner_text()
    page.click("#upload-result .alert.good a")
    page.locator("#dataset-warnings").wait_for()
    assert page.locator("text=Fine-tune on this dataset").count() == 0


def upload_through_the_form(page, path: Path) -> str:
    page.set_input_files("#upload-form input[type=file]", str(path))
    page.click("#upload-form button[type=submit]")
    link = page.locator("#upload-result .alert.good a", has_text=path.name)
    return link.get_attribute("href").rsplit("/", 1)[1]


def assert_chart_is_drawn(chart, colours: int = 1) -> None:
    chart.scroll_into_view_if_needed()
    coloured, hues = chart_colours(chart.screenshot())
    # Learning curves cover about 0.5% of their row of panels, a 12-point parity plot 0.1%, an
    # empty chart nothing.
    assert coloured > 0.0005 and len(hues) >= colours, (coloured, hues)


def test_dashboard_uploads_data_runs_a_job_live_and_draws_its_report(
    page, api, settings, target_files
) -> None:
    page.goto("/")
    page.click("nav a[data-nav=datasets]")
    train_id = upload_through_the_form(page, target_files["train"])
    test_id = upload_through_the_form(page, target_files["test"])
    train = api.get(f"/datasets/{train_id}").json()
    row = page.locator("#datasets-table tr", has_text=train_id[:8])
    for element, count in train["summary"]["element_counts"].items():
        assert row.locator(".chip", has_text=element).inner_text().split() == [element, str(count)]

    row.locator("a").first.click()
    page.locator("#dataset-elements svg rect").first.wait_for()
    assert page.locator("#dataset-elements svg rect").count() == len(train["summary"]["elements"])

    page.click("text=Fine-tune on this dataset")
    page.locator("#job-form").wait_for()
    assert page.input_value("#job-form select[name=train_dataset]") == train_id
    page.select_option("#job-form select[name=strategy]", "lora")
    assert page.locator("#job-form input[name=rank]").is_visible()
    page.select_option("#job-form select[name=foundation_model]", "mace-demo-emt")
    page.select_option("#job-form select[name=test_dataset]", test_id)
    page.select_option("#job-form select[name=strategy]", "naive")
    page.select_option("#job-form select[name=e0s]", "estimated")
    page.fill("#job-form input[name=max_num_epochs]", "2")
    page.fill("#job-form input[name=batch_size]", "10")
    # MD is the slow part of the evaluation; the dimer curves still give the report figures.
    page.uncheck("#job-form input[name=md]")
    page.click("#job-form button[type=submit]")

    page.wait_for_url("**/#/jobs/*")
    job_id = page.url.rsplit("/", 1)[1]
    states = [shown_state(page)]
    points_while_running = 0
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while states[-1] not in TERMINAL and time.monotonic() < deadline:
        page.wait_for_timeout(200)
        if (state := shown_state(page)) != states[-1]:
            states.append(state)
        if state == "running":
            points = page.locator("#learning-curves .learning-curve").first.locator("circle")
            points_while_running = max(points_while_running, points.count())
    job = wait_for_job(api, job_id, settings.data_dir / "worker.log", timeout=60)
    assert job["state"] == "succeeded", job["error"]
    assert states[-1] == "succeeded" and "running" in states, states
    # The curve grew while the job ran: epochs arrived live, not only with the final state.
    assert points_while_running >= 2, points_while_running
    assert job["spec"]["train_dataset"] == train_id and job["spec"]["test_dataset"] == test_id
    assert job["spec"]["hyperparameters"]["max_num_epochs"] == 2
    assert job["spec"]["evaluation"]["md"] is False

    # One marker per validation record: the evaluation before training and one per epoch.
    loss_chart = page.locator("#learning-curves .learning-curve").first
    assert loss_chart.locator("circle").count() == len(job["epochs"]) == 3
    report = page.locator("#job-report")
    report.locator(".parity").first.wait_for()
    headings = report.locator("h2").all_inner_texts()
    assert "Accuracy" in headings and "Dimers and compression" in headings
    force_badge = report.locator(".badge", has_text="Test force RMSE").inner_text()
    test_rmse = api.get(f"/jobs/{job_id}/metrics").json()["accuracy"]["test"]
    assert f"{test_rmse['forces_rmse_mev_per_a']:.3g}" in force_badge
    assert_chart_is_drawn(page.locator("#learning-curves"))
    assert_chart_is_drawn(report.locator(".parity").first)

    page.click("nav a[data-nav=jobs]")
    job_row = page.locator("#jobs-table tr", has_text=job_id[:8])
    assert job_row.locator(".state").get_attribute("data-state") == "succeeded"


def test_sweep_page_compares_the_jobs_of_a_sweep(page, api, target_files) -> None:
    """A real sweep whose jobs are cancelled from their pages at once (training a sweep is
    tests/e2e/test_sweeps.py's part); its charts are then drawn from the same summary with
    measured values filled in."""
    train = upload(api, target_files["train"])["id"]
    base = {"train_dataset": train, "evaluation": {"md": False, "dimers": False}}
    created = api.post("/sweeps", json={"base": base, "strategies": ["naive", "lora"]})
    assert created.status_code == 201, created.text
    sweep_id = created.json()["id"]
    for row in created.json()["table"]:
        page.goto(f"#/jobs/{row['job_id']}")
        page.click("#cancel-job")
        page.locator("#job-status .state[data-state=cancelled]").wait_for()

    page.goto(f"#/sweeps/{sweep_id}")

    table = page.locator("#sweep-table")
    table.wait_for()
    assert table.locator("tbody tr td:first-child a").all_inner_texts() == ["naive", "lora"]
    assert table.locator(".state[data-state=cancelled]").count() == 2

    measured = api.get(f"/sweeps/{sweep_id}").json()
    for row, (forces, ratio) in zip(measured["table"], [(20.5, 1.4), (25.0, 1.1)], strict=True):
        row.update(state="succeeded", test_forces_rmse_mev_per_a=forces, forgetting_ratio=ratio)
        row.update(md_stable=True, dimer_holes=0)
    measured.update(jobs={"succeeded": 2}, recommendation=recommend(measured["table"]))
    page.route(f"**/sweeps/{sweep_id}", lambda route: route.fulfill(json=measured))
    page.reload()

    page.locator(".sweep-scatter").wait_for()
    assert page.locator(".sweep-scatter .annotation").all_text_contents() == ["naive", "lora"]
    single, broad = page.locator(".recommendation").all_inner_texts()
    assert "naive" in single and "lora" in broad
    assert_chart_is_drawn(page.locator(".sweep-scatter"), colours=2)
    page.click("#sweep-table th:has-text('Test F RMSE')")
    page.click("#sweep-table th:has-text('Test F RMSE')")
    assert table.locator("tbody tr td:first-child a").all_inner_texts() == ["lora", "naive"]
    page.goto("#/sweeps")
    # The list shows a short id that links to the whole one.
    listed = page.locator(f'#sweeps-table a[href="#/sweeps/{sweep_id}"]')
    listed.first.wait_for()
    assert listed.count() == 1


def test_job_page_draws_every_section_of_a_full_report(page) -> None:
    """Rendering only: the unit tests' full report (MD traces, RDFs, forgetting, holes) served
    for a made-up job id, since one small real job cannot afford MD."""
    report = full_report()
    report["verdicts"] = verdicts_json(report)  # graded by the server (core.reporting.job_report)
    job = {
        "id": "fulljob",
        "state": "succeeded",
        "spec": {
            "strategy": {"name": "naive"},
            "foundation_model": "mace-demo-emt",
            "train_dataset": "train",
            "test_dataset": "test",
            "valid_fraction": 0.1,
            "e0s": "estimated",
            "hyperparameters": {"max_num_epochs": 20},
        },
        "progress": {"stage": None, "epochs_done": 20, "max_epochs": 20, "latest": None},
        "epochs": report["learning_curve"],
        "e0s": report["e0s"],
        "warnings": report["warnings"],
        "checks": report["checks"],
        "effective_hyperparameters": report["job"]["effective_hyperparameters"],
        "error": None,
        "attempts": 1,
        "created_at": report["job"]["created_at"],
        "started_at": report["job"]["created_at"],
        "finished_at": report["job"]["finished_at"],
        "updated_at": report["job"]["finished_at"],
        "model_url": "/jobs/fulljob/model",
        "multihead_model_url": None,
        "metrics_url": "/jobs/fulljob/metrics",
    }
    terminal = {"state": "succeeded", "stage": None, "epochs_done": 20, "max_epochs": 20}
    events = "".join(sse("epoch", entry) for entry in job["epochs"])
    events += sse("state", {**terminal, "error": None})
    page.route("**/jobs/fulljob?include=split", lambda route: route.fulfill(json=job))
    page.route("**/jobs/fulljob/report", lambda route: route.fulfill(json=report))
    page.route(
        "**/jobs/fulljob/events*",
        lambda route: route.fulfill(body=events, headers={"Content-Type": "text/event-stream"}),
    )

    page.goto("#/jobs/fulljob")

    report_element = page.locator("#job-report")
    report_element.locator(".rdf").first.wait_for()
    assert report_element.locator("h2").all_inner_texts() == [
        "Evaluation report",
        "Accuracy",
        "Forgetting",
        "Molecular dynamics",
        "Radial distribution functions",
        "Dimers and compression",
    ]
    # Two heads (target and replay), 21 records each, in each of the three panels.
    assert page.locator("#learning-curves circle").count() == 3 * 2 * 21
    assert page.locator("#learning-curves .legend").first.inner_text().split() == [
        "target",
        "replay",
    ]
    assert report_element.locator(".rdf").count() == 3
    assert report_element.locator(".chart.hole").count() == 1
    assert "no (1 of 2 runs failed" in report_element.locator(".badge.bad").first.inner_text()
    assert page.get_by_text("FAILED", exact=True).count() == 1  # the frozen-parameter check
    assert_chart_is_drawn(report_element.locator(".rdf").first)
    assert_chart_is_drawn(page.locator("#learning-curves"), colours=2)

    # The negative control: a job without epochs shows empty charts, which the check tells apart.
    page.route(
        "**/jobs/emptyjob?include=split",
        lambda route: route.fulfill(
            json={**job, "id": "emptyjob", "state": "cancelled", "epochs": [], "model_url": None}
        ),
    )
    page.route(
        "**/jobs/emptyjob/events*",
        lambda route: route.fulfill(
            body=sse("state", {**terminal, "state": "cancelled", "error": None}),
            headers={"Content-Type": "text/event-stream"},
        ),
    )
    page.goto("#/jobs/emptyjob")
    page.locator("#learning-curves text.empty").first.wait_for()
    assert chart_colours(page.locator("#learning-curves").screenshot())[0] == 0


def test_a_refused_job_shows_the_api_error(page, api, target_files) -> None:
    train = upload(api, target_files["train"])["id"]
    page.goto("#/new")
    page.select_option("#job-form select[name=train_dataset]", train)
    page.select_option("#job-form select[name=e0s]", "explicit")
    page.fill("#job-form textarea[name=explicit_e0s]", '{"H": -13.6, "Xx": 1.0}')
    jobs_before = api.get("/jobs").json()["count"]

    page.click("#job-form button[type=submit]")

    alert = page.locator("#job-form-result .alert.bad")
    alert.wait_for()
    assert "e0s" in alert.inner_text() and "unknown elements: Xx" in alert.inner_text()
    assert page.url.endswith("#/new")
    assert api.get("/jobs").json()["count"] == jobs_before


def test_an_api_token_is_kept_and_sent_as_a_bearer_header(page) -> None:
    page.goto("/")
    page.click("#token-button")
    page.fill("#token-input", "s3cret")

    with page.expect_request(lambda request: request.url.endswith("/jobs")) as sent:
        page.click("#token-form button[value=save]")

    assert sent.value.headers.get("authorization") == "Bearer s3cret"
    assert page.evaluate("localStorage.getItem('mlft.token')") == "s3cret"


def test_the_jobs_list_filters_by_tag_and_says_how_many_match(page, api, target_files) -> None:
    train = upload(api, target_files["train"])["id"]
    campaign = f"c{time.monotonic_ns()}"
    tagged = []
    for strategy in ("naive", "lora"):
        spec = {
            "train_dataset": train,
            "strategy": {"name": strategy},
            "name": f"{campaign} {strategy}",
            "tags": {"campaign": campaign},
        }
        job = api.post("/jobs", json=spec).json()
        api.post(f"/jobs/{job['id']}/cancel")  # the list is under test, not the training
        tagged.append(job["id"])
    page.goto("#/jobs")

    page.fill(".filters input[name=tag]", f"campaign={campaign}")
    page.select_option(".filters select[name=strategy]", "lora")
    rows = page.locator("#jobs-table tbody tr")
    page.wait_for_function("() => document.querySelectorAll('#jobs-table tbody tr').length === 1")

    assert tagged[1][:8] in rows.first.inner_text()
    assert f"campaign={campaign}" in rows.first.inner_text()
    assert f"{campaign} lora" in rows.first.inner_text()
