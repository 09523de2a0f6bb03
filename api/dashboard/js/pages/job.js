import { download, followEvents, get, post, token } from "../api.js";
import { checksSection, e0Section, learningCurves, reportSections } from "../report.js";
import {
  TERMINAL, append, duration, errorBox, facts, h, progressBar, replace, section, shortId, stateBadge, table, when,
} from "../ui.js";

const RECONNECT_MS = 2000;
const MAX_LOG_LINES = 2000;

const sleep = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
});

function status(state) {
  return h("div", { class: "status", id: "job-status" },
    stateBadge(state.state),
    h("span", { class: "stage" }, state.stage ? `stage: ${state.stage}` : ""),
    progressBar(state.epochs_done, state.max_epochs));
}

function actions(job, refresh) {
  const buttons = [];
  if (!TERMINAL.has(job.state)) {
    buttons.push(h("button", {
      class: "danger", id: "cancel-job",
      onclick: async (event) => {
        event.target.disabled = true;
        try {
          await post(`jobs/${job.id}/cancel`);
        } catch (error) {
          alert(error.message);
        }
        refresh();
      },
    }, "Cancel job"));
  }
  const save = (path, filename) => async () => {
    try {
      await download(path, filename);
    } catch (error) {
      alert(error.message);
    }
  };
  if (job.model_url) {
    buttons.push(h("button", { class: "primary", onclick: save(`jobs/${job.id}/model`, `mlft-${job.id}.model`) },
      "Download model"));
  }
  if (job.multihead_model_url) {
    buttons.push(h("button", { onclick: save(`jobs/${job.id}/model?variant=multihead`, `mlft-${job.id}-multihead.model`) },
      "Multihead model"));
  }
  if (TERMINAL.has(job.state)) {
    const path = `jobs/${job.id}/report?format=html`;
    // A new tab cannot send the token; with one, the page is saved instead of opened.
    buttons.push(token()
      ? h("button", { onclick: save(path, `mlft-${job.id}-report.html`) }, "HTML report")
      : h("a", { class: "button", href: path, target: "_blank", rel: "noopener" }, "HTML report"));
  }
  return h("div", { class: "actions", id: "job-actions" }, buttons);
}

// A dataset's link shows its id at once and its name when that has been read.
function datasetLink(id) {
  const link = h("a", { href: `#/datasets/${id}`, title: id }, shortId(id));
  get(`datasets/${id}`).then((dataset) => { link.textContent = dataset.name; }, () => {});
  return link;
}

// A test set split off the training data (split.test_fraction) is test data too.
function heldOut(job) {
  const fraction = job.spec.split?.test_fraction || 0;
  if (!fraction) return "none";
  const count = job.split?.counts?.test;
  return `${count != null ? `${count} configurations` : `${Math.round(fraction * 100)}%`} held out of the training data`;
}

function details(job) {
  const spec = job.spec;
  const hyperparameters = job.effective_hyperparameters || spec.hyperparameters || {};
  return [
    job.error ? errorBox(job.error) : null,
    job.warnings?.length
      ? h("div", { class: "alert warn" }, h("b", {}, "Warnings"), h("ul", {}, job.warnings.map((w) => h("li", {}, w))))
      : null,
    section("Job", facts([
      ["Strategy", spec.strategy.name],
      ["Foundation", spec.foundation_model],
      ["Training data", datasetLink(spec.train_dataset)],
      ["Test data", spec.test_dataset ? datasetLink(spec.test_dataset) : heldOut(job)],
      ["Validation", spec.valid_dataset ? datasetLink(spec.valid_dataset) : `${Math.round(spec.valid_fraction * 100)}% of the training data`],
      ["E0s", typeof spec.e0s === "string" ? spec.e0s : "explicit values"],
      ["Elements the model knows", job.elements ? job.elements.join(" ") : null],
      ["Created", when(job.created_at)],
      ["Started", when(job.started_at)],
      ["Finished", when(job.finished_at)],
      ["Run time", job.started_at ? duration(job.started_at, job.finished_at) : null],
      ["Attempts", String(job.attempts)],
    ]),
    h("details", {}, h("summary", {}, "Hyperparameters and full spec"),
      table(["Hyperparameter", "Value"], Object.entries(hyperparameters).map(([k, v]) => [k, v === null ? "preset" : String(v)])),
      h("pre", { class: "spec" }, JSON.stringify(spec, null, 2)))),
    e0Section(job.e0s),
    checksSection(job.checks),
  ];
}

// The split's counts name the held-out test set; the learning curve comes with the events.
const jobPath = (id) => `jobs/${id}?include=split`;

export async function renderJob(page, signal, id) {
  let job = await get(jobPath(id), { signal });
  let epochs = [];
  let state = {
    state: job.state, stage: job.progress.stage,
    epochs_done: job.progress.epochs_done, max_epochs: job.progress.max_epochs,
  };
  const statusSlot = h("div", {}, status(state));
  const actionSlot = h("div", {});
  const curves = h("div", { class: "charts", id: "learning-curves" });
  const detailSlot = h("div", { id: "job-details" });
  const report = h("div", { id: "job-report" });
  const connection = h("span", { class: "muted", id: "live" });
  const log = h("pre", { class: "log", id: "job-log" });
  append(
    page,
    h("p", {}, h("a", { href: "#/jobs" }, "← Jobs")),
    h("div", { class: "title-row" }, h("h1", {}, "Job ", h("code", {}, id)), connection),
    statusSlot,
    actionSlot,
    section("Learning curves", h("p", { class: "muted" }, "Validation errors per epoch, one line per head (log scale)."), curves),
    detailSlot,
    report,
    h("details", { class: "card" }, h("summary", {}, "mace-torch log"),
      h("p", { class: "muted" }, "mace-torch's output while the job runs, when this server can read the worker's job folder."),
      log),
  );

  let pending = false;
  const drawCurves = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      replace(curves, learningCurves(epochs, state.max_epochs));
    });
  };
  const showJob = async () => {
    job = await get(jobPath(id), { signal });
    replace(actionSlot, actions(job, showJob));
    replace(detailSlot, details(job));
    if (job.state === "succeeded" && !report.childElementCount) {
      replace(report, h("p", { class: "muted" }, "Loading the report…"));
      const body = await get(`jobs/${id}/report`, { signal });
      replace(report, h("h2", { class: "page-section" }, "Evaluation report"), reportSections(body));
    }
  };
  replace(curves, learningCurves(epochs, state.max_epochs));
  await showJob();

  const onEvent = (name, data) => {
    if (name === "state") {
      const changed = data.state !== state.state || data.stage !== state.stage;
      state = data;
      replace(statusSlot, status(state));
      // The row holds more than the event (E0s, warnings, checks): read it at each new stage.
      if (changed || TERMINAL.has(data.state)) showJob().catch(() => {});
    } else if (name === "epoch") {
      epochs.push(data);
      drawCurves();
    } else if (name === "log") {
      log.append(`${data.line}\n`);
      while (log.childNodes.length > MAX_LOG_LINES) log.firstChild.remove();
    }
  };
  const cursor = { id: null };
  while (!signal.aborted) {
    // A first connection sends the epochs and the log from the start; a reconnect goes on
    // after the last event received (Last-Event-ID).
    if (!cursor.id) {
      epochs = [];
      log.replaceChildren();
    }
    connection.textContent = "● live";
    connection.className = "live";
    try {
      await followEvents(`jobs/${id}/events?log=true`, onEvent, signal, cursor);
    } catch (error) {
      if (error.name === "AbortError") return;
      connection.textContent = `connection lost (${error.message}), retrying…`;
      connection.className = "muted";
    }
    if (TERMINAL.has(state.state)) break;
    await sleep(RECONNECT_MS, signal);
  }
  connection.textContent = "";
  drawCurves();
}
