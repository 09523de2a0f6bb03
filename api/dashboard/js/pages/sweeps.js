import { get } from "../api.js";
import { PALETTE, barChart, plot } from "../charts.js";
import {
  append, errorBox, h, num, replace, section, shortId, stateBadge, table, when,
} from "../ui.js";

const RECENT_KEY = "mlft.sweeps";
const REFRESH_MS = 3000;
// The comparison table's columns, as in the sweep's HTML report (core/reporting/sweep_page.py).
const COLUMNS = [
  ["strategy", "Strategy", ""],
  ["lr", "lr", ""],
  ["lora_rank", "LoRA rank", ""],
  ["train_fraction", "Train fraction", ""],
  ["state", "State", ""],
  ["test_energy_rmse_mev_per_atom", "Test E RMSE", "meV/atom"],
  ["test_forces_rmse_mev_per_a", "Test F RMSE", "meV/Å"],
  ["forgetting_ratio", "Forgetting", "×"],
  ["md_stable", "MD stable", ""],
  ["rdf_emd_mean", "RDF EMD", ""],
  ["dimer_holes", "Holes", ""],
  ["trainable_fraction", "Trainable", ""],
  ["wall_time_s", "Wall time", "s"],
];

function recent() {
  try {
    return JSON.parse(localStorage.getItem(RECENT_KEY) || "[]");
  } catch {
    return [];
  }
}

function remember(sweep) {
  const entries = [{ id: sweep.id, created_at: sweep.created_at, strategies: sweep.spec.strategies },
    ...recent().filter((entry) => entry.id !== sweep.id)].slice(0, 20);
  localStorage.setItem(RECENT_KEY, JSON.stringify(entries));
}

export async function renderSweeps(page) {
  const input = h("input", { name: "sweep", placeholder: "sweep id", required: true, pattern: "[\\w-]+" });
  const entries = recent();
  append(
    page,
    h("h1", {}, "Sweeps"),
    section("Open a sweep",
      h("p", { class: "muted" }, "A sweep runs several strategies on the same data (POST /sweeps); its page compares them."),
      h("form", {
        class: "upload",
        onsubmit: (event) => {
          event.preventDefault();
          window.location.hash = `#/sweeps/${input.value.trim()}`;
        },
      }, input, h("button", { class: "primary" }, "Open"))),
    section("Recently viewed", entries.length
      ? table(["Sweep", "Strategies", "Created"], entries.map((entry) => [
        h("a", { href: `#/sweeps/${entry.id}` }, h("code", {}, entry.id)),
        (entry.strategies || []).join(", "), when(entry.created_at),
      ]), { numeric: [] })
      : h("p", { class: "muted" }, "None yet.")),
  );
}

// The evaluation section a measured column comes from (SWEEP_COLUMN_SECTIONS in reports.py).
const COLUMN_SECTIONS = {
  test_energy_rmse_mev_per_atom: "accuracy", test_forces_rmse_mev_per_a: "accuracy",
  forgetting_ratio: "forgetting", md_stable: "md", rdf_emd_mean: "md", dimer_holes: "dimers",
};

function cell(key, value, row) {
  if (key === "strategy") return h("a", { href: `#/jobs/${row.job_id}`, title: row.job_id }, value);
  if (key === "state") return h("span", { title: row.error || "" }, stateBadge(value));
  if (typeof value === "boolean") return value ? "yes" : "no";
  const reason = (row.not_measured || {})[COLUMN_SECTIONS[key]];
  if ((value === null || value === undefined) && reason) {
    return h("span", { class: "warn", title: reason }, "not measured");
  }
  if (value === null || value === undefined) return "—";
  return typeof value === "number" ? num(value) : String(value);
}

// Why numbers are missing: a section not measured (with its reason), or the job failed.
function gaps(rows) {
  const items = rows.flatMap((row) => [
    ...Object.entries(row.not_measured || {}).map(([name, reason]) => `${name} not measured: ${reason}`),
    ...(row.error ? [`${row.state}: ${row.error}`] : []),
  ].map((text) => h("li", {}, h("b", {}, `${row.strategy} `), text)));
  return items.length ? [h("p", {}, "Missing numbers:"), h("ul", {}, items)] : [];
}

// A job's name in the charts: its strategy, and its point on the sweep's grid.
function rowLabels(rows, grid = {}) {
  const [lr, rank, fraction] = ["lr", "lora_rank", "train_fraction"].map((key) => Boolean(grid[key]));
  return rows.map((row) => {
    const parts = [row.strategy];
    if (lr && row.lr != null) parts.push(`lr ${num(row.lr)}`);
    if (rank && row.lora_rank != null) parts.push(`r${row.lora_rank}`);
    if (fraction && row.train_fraction != null) parts.push(`${num(row.train_fraction)}×data`);
    return parts.join(" ");
  });
}

function comparisonTable(rows, sort, onSort) {
  const sorted = [...rows];
  if (sort.key) {
    sorted.sort((a, b) => {
      const x = a[sort.key];
      const y = b[sort.key];
      if (x === y) return 0;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (x < y ? -1 : 1) * sort.direction;
    });
  }
  return h("table", { class: "sweep", id: "sweep-table" },
    h("thead", {}, h("tr", {}, COLUMNS.map(([key, name, unit]) => h("th", {
      class: `sortable ${sort.key === key ? "sorted" : ""}`, title: "sort",
      onclick: () => onSort(key),
    }, name + (unit ? ` (${unit})` : ""), sort.key === key ? (sort.direction > 0 ? " ▲" : " ▼") : "")))),
    h("tbody", {}, sorted.map((row) => h("tr", {}, COLUMNS.map(([key], index) =>
      h("td", { class: index >= 5 ? "num" : "" }, cell(key, row[key], row)))))));
}

function recommendation(summary) {
  const items = [
    ["One target system", summary.recommendation?.single_system],
    ["Broad use", summary.recommendation?.broad_use],
  ].filter(([, choice]) => choice);
  if (!items.length) return h("p", { class: "muted" }, "A recommendation appears when jobs have finished.");
  return h("div", { class: "verdicts" }, items.map(([use, choice]) => h("div", { class: "badge good recommendation" },
    use, h("b", {}, choice.strategy || "undecided"), h("small", {}, choice.reason || ""))));
}

function charts(rows, grid) {
  const measured = rows.filter((row) => row.test_forces_rmse_mev_per_a != null);
  if (!measured.length) return h("p", { class: "muted" }, "Charts appear when jobs have been evaluated.");
  const labels = rowLabels(measured, grid);
  return h("div", { class: "charts" },
    barChart(labels, measured.map((row) => row.test_forces_rmse_mev_per_a), {
      title: "Test force RMSE", yLabel: "meV/Å", color: PALETTE,
    }),
    plot({
      title: "Accuracy versus forgetting",
      note: measured.some((row) => row.forgetting_ratio == null)
        ? "jobs without a forgetting measurement sit at 1" : undefined,
      xLabel: "test force RMSE (meV/Å)", yLabel: "forgetting ratio (×)", className: "sweep-scatter",
      series: measured.map((row, index) => ({
        label: labels[index], mode: "markers", radius: 5, annotate: true,
        color: PALETTE[index % PALETTE.length],
        points: [[row.test_forces_rmse_mev_per_a, row.forgetting_ratio ?? 1]],
      })),
    }));
}

export async function renderSweep(page, signal, id) {
  const head = h("div", {});
  const body = h("div", {});
  let summary = null;
  const sort = { key: null, direction: 1 };
  const tableSlot = h("div", {});
  const drawTable = () => replace(tableSlot, comparisonTable(summary.table, sort, (key) => {
    sort.direction = sort.key === key ? -sort.direction : 1;
    sort.key = key;
    drawTable();
  }));
  append(page, h("p", {}, h("a", { href: "#/sweeps" }, "← Sweeps")), head, body);
  const refresh = async () => {
    summary = await get(`sweeps/${id}`, { signal });
    remember(summary);
    const counts = Object.entries(summary.jobs).map(([state, n]) => `${n} ${state}`).join(", ");
    replace(head,
      h("div", { class: "title-row" }, h("h1", {}, "Sweep ", h("code", {}, shortId(id))),
        h("span", { class: summary.finished ? "state state-succeeded" : "state state-running" },
          summary.finished ? "finished" : "running")),
      h("p", { class: "muted" }, `${summary.table.length} jobs: ${counts} · created ${when(summary.created_at)}`));
    drawTable();
    replace(body,
      section("Recommendation", recommendation(summary)),
      section("Comparison", h("p", { class: "muted" }, "Click a column to sort; a strategy opens its job."), tableSlot,
        gaps(summary.table)),
      section("Charts", charts(summary.table, summary.spec?.grid || {})));
    return summary.finished;
  };
  if (await refresh()) return;
  const timer = setInterval(async () => {
    try {
      if (await refresh()) clearInterval(timer);
    } catch (error) {
      if (error.name !== "AbortError") body.prepend(errorBox(error.message));
      clearInterval(timer);
    }
  }, REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
}
