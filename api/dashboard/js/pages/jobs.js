import { get } from "../api.js";
import { filterBar, shownOf } from "../filters.js";
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

export function tagChips(tags) {
  const entries = Object.entries(tags || {});
  return entries.length ? entries.map(([key, value]) => h("span", { class: "chip" }, `${key}=${value}`)) : "—";
}

function jobRows(jobs) {
  return jobs.map((job) => [
    h("a", { href: `#/jobs/${job.id}`, class: "job-link", title: job.id }, h("code", {}, shortId(job.id))),
    job.name || "—",
    tagChips(job.tags),
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
  const { strategies } = await get("strategies", { signal }).catch(() => ({ strategies: [] }));
  const filters = filterBar("jobs", () => refresh().catch(() => {}), strategies.map((s) => s.name));
  append(
    page,
    h("div", { class: "title-row" }, h("h1", {}, "Jobs"), stamp,
      h("a", { class: "button primary", href: "#/new" }, "New job")),
    section("Fine-tuning jobs", filters.element, list),
  );
  const refresh = async () => {
    const query = filters.query();
    const body = await get(query ? `jobs?${query}` : "jobs", { signal });
    const { data } = body;
    replace(list, data.length
      ? table(["Job", "Name", "Tags", "Strategy", "Foundation", "State", "Stage", "Epochs", "Valid RMSE (meV/atom · meV/Å)", "Created"],
        jobRows(data), { numeric: [8], className: "jobs" })
      : h("p", { class: "muted" }, query ? "No jobs match these filters." : "No jobs yet. ",
        query ? null : h("a", { href: "#/new" }, "Start one"), query ? null : "."));
    const active = data.filter((job) => !TERMINAL.has(job.state)).length;
    stamp.textContent = `${shownOf(body, "jobs")}, ${active} active · updated ${new Date().toLocaleTimeString()}`;
  };
  await refresh();
  // Polling the list: states change on the worker, and the list is cheap to read.
  const timer = setInterval(() => refresh().catch(() => {}), REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
