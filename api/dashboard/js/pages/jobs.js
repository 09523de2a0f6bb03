import { get } from "../api.js";
import {
  TERMINAL, append, h, num, progressBar, replace, section, shortId, stateBadge, table, when,
} from "../ui.js";

const REFRESH_MS = 3000;

// The list reads jobs without their learning curves: the newest record of the fine-tuned head
// is in the progress.
export function latestErrors(job) {
  const latest = job.progress.latest;
  if (!latest) return "—";
  const energy = latest.valid_energy_rmse_mev_per_atom;
  const forces = latest.valid_forces_rmse_mev_per_a;
  return `E ${num(energy)} · F ${num(forces)}`;
}

function jobRows(jobs) {
  return jobs.map((job) => [
    h("a", { href: `#/jobs/${job.id}`, class: "job-link", title: job.id }, h("code", {}, shortId(job.id))),
    // Rows written by other tools may lack parts of a spec; a list must still draw.
    job.spec?.strategy?.name ?? "—",
    job.spec?.foundation_model ?? "—",
    stateBadge(job.state),
    job.progress.stage || "—",
    progressBar(job.progress.epochs_done, job.progress.max_epochs),
    latestErrors(job),
    when(job.created_at),
  ]);
}

export async function renderJobs(page, signal) {
  const list = h("div", { id: "jobs-table" }, h("p", { class: "muted" }, "Loading…"));
  const stamp = h("span", { class: "muted" });
  append(
    page,
    h("div", { class: "title-row" }, h("h1", {}, "Jobs"), stamp,
      h("a", { class: "button primary", href: "#/new" }, "New job")),
    section("Fine-tuning jobs", list),
  );
  const refresh = async () => {
    const { data } = await get("jobs", { signal });
    replace(list, data.length
      ? table(["Job", "Strategy", "Foundation", "State", "Stage", "Epochs", "Valid RMSE (meV/atom · meV/Å)", "Created"],
        jobRows(data), { numeric: [6], className: "jobs" })
      : h("p", { class: "muted" }, "No jobs yet. ", h("a", { href: "#/new" }, "Start one"), "."));
    const active = data.filter((job) => !TERMINAL.has(job.state)).length;
    const jobs = data.length === 1 ? "1 job" : `${data.length} jobs`;
    stamp.textContent = `${jobs}, ${active} active · updated ${new Date().toLocaleTimeString()}`;
  };
  await refresh();
  // Polling the list: states change on the worker, and the list is cheap to read.
  const timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
