// The job report's figures and tables (GET /jobs/{id}/report), the same content as the HTML
// report that core/reporting/reports.py renders, drawn in the browser.

import { HEAD_COLOURS, HOLE_COLOUR, PALETTE, REFERENCE_COLOUR, histogram, plot } from "./charts.js";
import { h, num, section, table, withUnit } from "./ui.js";

const METRICS = [
  ["energy_rmse_mev_per_atom", "Energy RMSE", "meV/atom"],
  ["energy_mae_mev_per_atom", "Energy MAE", "meV/atom"],
  ["forces_rmse_mev_per_a", "Force RMSE", "meV/Å"],
  ["forces_mae_mev_per_a", "Force MAE", "meV/Å"],
  ["stress_rmse_mev_per_a3", "Stress RMSE", "meV/Å³"],
];
const LEARNING_PANELS = [
  ["loss", "Validation loss", "loss"],
  ["valid_energy_rmse_mev_per_atom", "Energy RMSE", "meV/atom"],
  ["valid_forces_rmse_mev_per_a", "Force RMSE", "meV/Å"],
];
// A dimer's repulsive wall spans orders of magnitude; cut the view this far above its tail.
const DIMER_VIEW_ABOVE_TAIL_EV = 10;
const VERDICT_KEYS = ["passed", "ok", "verified", "unchanged"];

function badge(kind, name, value) {
  return h("div", { class: `badge ${kind}` }, name, h("b", {}, value));
}

// ---- learning curves ----------------------------------------------------------------------

const headOf = (entry) => entry.head || "validation";

/**
 * Validation errors per epoch, one line per head; mace's evaluation before training is epoch −1.
 * The epoch axis spans the job's max_epochs, so it stays put while a job trains.
 */
export function learningCurves(epochs, maxEpochs = 0) {
  const heads = [...new Set(epochs.map(headOf))];
  const last = Math.max(maxEpochs - 1, ...epochs.map((entry) => entry.epoch ?? -1), 0);
  return LEARNING_PANELS.map(([key, title, unit]) => plot({
    title,
    xLabel: "epoch (−1: before training)",
    yLabel: unit,
    logY: true,
    xRange: [-1 - 0.04 * (last + 1), last + 0.04 * (last + 1)],
    integerX: true,
    className: "learning-curve",
    series: heads.map((head, index) => ({
      label: head,
      color: HEAD_COLOURS[head] || PALETTE[(index + 2) % PALETTE.length],
      mode: "both",
      points: epochs
        .filter((entry) => headOf(entry) === head && entry[key] > 0)
        .map((entry) => [entry.epoch ?? -1, entry[key]])
        .sort((a, b) => a[0] - b[0]),
    })),
  }));
}

// ---- verdicts -----------------------------------------------------------------------------

// Graded on the server (core/reporting/verdicts.py), the same badges the HTML report opens with.
function verdicts(report) {
  const found = (report.verdicts || []).map(({ label, value, level }) => badge(level, label, value));
  return h("div", { class: "verdicts" }, found);
}

// ---- accuracy -----------------------------------------------------------------------------

function metricsTable(metrics) {
  const subsets = { all: metrics, ...(metrics.per_config_type || {}) };
  const columns = METRICS.filter(([key]) => Object.values(subsets).some((row) => row[key] != null));
  return table(
    ["Config type", "Configs", ...columns.map(([, name, unit]) => `${name} (${unit})`)],
    Object.entries(subsets).map(([name, row]) => [name, num(row.n_configs), ...columns.map(([key]) => num(row[key]))]),
  );
}

function parityFigures(metrics) {
  const parity = metrics.parity || {};
  const figures = [];
  for (const [key, title, unit, rmseKey, errorUnit] of [
    // Energies relative to each composition's mean reference, so meV errors show.
    ["energy_per_atom", "Energy per atom − composition mean", "eV/atom", "energy_rmse_mev_per_atom", "meV/atom"],
    ["forces", "Force components", "eV/Å", "forces_rmse_mev_per_a", "meV/Å"],
    ["stress", "Stress components", "eV/Å³", "stress_rmse_mev_per_a3", "meV/Å³"],
  ]) {
    const reference = parity[key]?.reference;
    const predicted = parity[key]?.predicted;
    if (!reference?.length) continue;
    figures.push(plot({
      title: `${title}: predicted vs reference`,
      note: `RMSE ${withUnit(metrics[rmseKey], errorUnit)}`,
      xLabel: `reference (${unit})`, yLabel: `predicted (${unit})`, diagonal: true,
      className: "parity",
      series: [{ mode: "markers", color: PALETTE[0], points: reference.map((r, i) => [r, predicted[i]]) }],
    }));
    figures.push(histogram(reference.map((r, i) => (predicted[i] - r) * 1e3), {
      title: `${title} error`, xLabel: `predicted − reference (${errorUnit})`, yLabel: "count",
      bins: reference.length >= 500 ? 50 : 20, vline: 0,
    }));
  }
  return figures;
}

function accuracySection(report) {
  const accuracy = report.accuracy;
  if (!accuracy || !Object.keys(accuracy).length) return null;
  return section("Accuracy", Object.entries(accuracy).map(([label, metrics]) => [
    h("h3", {}, `${label} · ${num(metrics.n_configs)} configurations`),
    metricsTable(metrics),
    h("div", { class: "charts compact" }, parityFigures(metrics)),
  ]));
}

// ---- forgetting ---------------------------------------------------------------------------

function forgettingSection(report) {
  const forgetting = report.forgetting;
  if (!forgetting) return null;
  const foundation = forgetting.foundation || {};
  const finetuned = forgetting.finetuned || {};
  const rows = METRICS.filter(([key]) => foundation[key] != null || finetuned[key] != null)
    .map(([key, name, unit]) => [
      `${name} (${unit})`, num(foundation[key]), num(finetuned[key]),
      foundation[key] && finetuned[key] != null ? `${num(finetuned[key] / foundation[key])}×` : "—",
    ]);
  return section("Forgetting",
    h("p", {}, "Errors on ", h("b", {}, forgetting.dataset || "the replay data"),
      " before and after fine-tuning; a ratio above 1 means the model got worse there."),
    table(["Metric", "Foundation", "Fine-tuned", "Fine-tuned / foundation"], rows));
}

// ---- molecular dynamics -------------------------------------------------------------------

function mdSection(report) {
  const md = report.md;
  if (!md?.length) return null;
  // A row with stable null is a structure MD cannot judge; not_applicable says why.
  const rows = md.map((run) => [
    run.structure,
    run.n_atoms != null ? `${run.n_atoms} atoms${run.replication ? ` (${run.replication})` : ""}` : "",
    run.run || "", num(run.survived_ps), num(run.total_ps), num(run.study_ps),
    run.stable == null ? "not applicable"
      : h("span", { class: run.stable ? "ok" : "fail" }, run.stable ? "yes" : "no"),
    run.not_applicable || run.failure || "",
  ]);
  const bases = [...new Set(md.map((run) => run.length_basis).filter(Boolean))];
  const traces = [["temperature_K", "Temperature", "temperature (K)"], ["energy_ev", "Energy drift", "E − E(t=0) (eV)"]]
    .filter(([key]) => md.some((run) => run.time_ps?.length && run[key]?.length))
    .map(([key, title, label]) => plot({
      title, xLabel: "time (ps)", yLabel: label,
      series: md.filter((run) => run.time_ps?.length && run[key]?.length).map((run, index) => ({
        label: `${run.structure} · ${run.run}`,
        color: PALETTE[index % PALETTE.length],
        // Total energies differ between structures far more than their drift.
        points: run[key].slice(0, run.time_ps.length)
          .map((value, i) => [run.time_ps[i], key === "energy_ev" ? value - run[key][0] : value]),
      })),
      marks: md.filter((run) => !run.stable && run.time_ps?.length && run[key]?.length).map((run) => {
        const n = Math.min(run.time_ps.length, run[key].length) - 1;
        const value = key === "energy_ev" ? run[key][n] - run[key][0] : run[key][n];
        return { x: run.time_ps[n], y: value, label: `${run.structure} · ${run.run} stopped: ${run.failure || ""}` };
      }),
    }));
  return section("Molecular dynamics",
    table(["Structure", "Simulated as", "Run", "Survived (ps)", "Length (ps)", "Study (ps)", "Stable", "Why"],
      rows, { numeric: [3, 4, 5] }),
    ...bases.map((basis) => h("p", { class: "muted" }, `Lengths: ${basis}.`)),
    h("div", { class: "charts" }, traces),
    traces.length ? h("p", { class: "muted" }, "A red × marks where an unstable run stopped.") : null);
}

// ---- RDFs, dimers, compression ------------------------------------------------------------

function rdfSection(report) {
  const pairs = report.rdf?.pairs;
  if (!pairs || !Object.keys(pairs).length) return null;
  return section("Radial distribution functions", h("div", { class: "charts" },
    Object.entries(pairs).map(([pair, rdf]) => plot({
      title: pair, xLabel: "r (Å)", yLabel: "g(r)", className: "rdf",
      note: rdf.emd != null ? `EMD ${num(rdf.emd)}` : undefined,
      series: [
        { label: "model", color: HEAD_COLOURS.target, points: rdf.r.map((r, i) => [r, rdf.model[i]]) },
        rdf.reference?.length
          ? { label: "reference", color: REFERENCE_COLOUR, dash: "5 3", points: rdf.r.map((r, i) => [r, rdf.reference[i]]) }
          : null,
      ].filter(Boolean),
    }))),
    h("p", { class: "muted" }, "Model vs reference; EMD: earth mover's distance."));
}

function energyCurve(title, xs, energy, hole, xLabel, clip) {
  let yRange;
  if (clip) {
    const tail = energy[xs.indexOf(Math.max(...xs))];
    const ceiling = tail + DIMER_VIEW_ABOVE_TAIL_EV;
    const floor = Math.min(...energy);
    if (Math.max(...energy) > ceiling) yRange = [floor - 0.05 * (ceiling - floor), ceiling];
  }
  return plot({
    title: hole ? `${title} — hole` : title, xLabel, yLabel: "energy (eV)", yRange,
    className: hole ? "hole" : "",
    series: [{ mode: "both", color: hole ? HOLE_COLOUR : HEAD_COLOURS.target, points: xs.map((x, i) => [x, energy[i]]) }],
  });
}

function dimersSection(report) {
  const dimers = report.dimers;
  if (!dimers) return null;
  const pairs = Object.entries(dimers.pairs || {});
  const compression = dimers.compression || [];
  if (!pairs.length && !compression.length) return null;
  return section("Dimers and compression",
    pairs.length ? h("div", { class: "charts" },
      pairs.map(([pair, curve]) => energyCurve(pair, curve.r, curve.energy, curve.hole, "r (Å)", true))) : null,
    compression.length ? h("div", { class: "charts" },
      compression.map((curve) => energyCurve(curve.structure || "", curve.scale, curve.energy, curve.hole, "lattice scale", false))) : null,
    h("p", { class: "muted" }, "Red curves have a hole: the energy falls at short range."));
}

// ---- E0s and checks -----------------------------------------------------------------------

// Optional E0 columns, each shown only where it differs from the E0 somewhere (as
// core/reporting/e0_table.py does for the HTML report): no column repeats another.
const E0_COLUMNS = [
  ["foundation_e0s", "Foundation's E0 (eV)"],
  ["isolated_atom_references", "Isolated atom in the data (eV)"],
  ["isolated_atom_energies", "Lone atom, delivered model (eV)"],
];

export function e0Section(e0s) {
  if (!e0s) return null;
  const kept = e0s.kept_from_foundation || {};
  const values = { ...kept, ...(e0s.e0s || {}) };
  const differs = (column) => Object.entries(values)
    .some(([element, value]) => column[element] != null && Math.abs(column[element] - value) > 1e-9);
  const shown = E0_COLUMNS.filter(([key]) => differs(e0s[key] || {}));
  const ev = (value) => (value != null ? Number(value).toFixed(4) : "—");
  const facts = [
    ["Method", e0s.method],
    ["Energy RMSE before", withUnit(e0s.energy_rmse_before, "meV/atom")],
    ["Energy RMSE after", withUnit(e0s.energy_rmse_after, "meV/atom")],
    ["Rank", e0s.rank != null ? String(e0s.rank) : null],
    ["Configurations", e0s.n_configs != null ? String(e0s.n_configs) : null],
  ].filter(([, value]) => value != null && value !== "—");
  return section("Reference energies (E0s)",
    h("dl", { class: "facts" }, facts.map(([name, value]) => h("div", {}, h("dt", {}, name), h("dd", {}, value)))),
    Object.keys(kept).length
      ? h("p", { class: "muted" }, `The model keeps every element of its foundation; ${Object.keys(kept).join(" ")} (not in the training data) carry the foundation's E0s.`)
      : null,
    table(["Element", "E0 (eV)", "Method", ...shown.map(([, title]) => title)],
      Object.entries(values).map(([element, value]) => [
        element, ev(value), element in kept ? "foundation's (not in the training data)" : e0s.method,
        ...shown.map(([key]) => ev((e0s[key] || {})[element])),
      ])));
}

// Sections the evaluation could not run, with the reason; the job succeeded with the others.
function notMeasuredSection(report) {
  const missing = Object.entries(report.not_measured || {});
  if (!missing.length) return null;
  return section("Not measured",
    h("p", { class: "muted" }, "These sections could not run; the model was delivered and the job succeeded with the others."),
    table(["Section", "Reason"], missing, { numeric: [] }));
}

function checkPassed(value) {
  if (typeof value === "boolean") return value;
  if (value && typeof value === "object") {
    for (const key of VERDICT_KEYS) if (typeof value[key] === "boolean") return value[key];
  }
  return null;
}

export function checksSection(checks) {
  if (!checks || !Object.keys(checks).length) return null;
  return section("Checks on the delivered model", table(["Check", "Result", "Details"],
    Object.entries(checks).map(([name, value]) => {
      const passed = checkPassed(value);
      return [
        name,
        passed === null ? "—" : h("span", { class: passed ? "ok" : "fail" }, passed ? "passed" : "FAILED"),
        h("code", { class: "wrap" }, typeof value === "object" ? JSON.stringify(value) : String(value)),
      ];
    }), { numeric: [] }));
}

/** Everything the evaluation measured, as sections; learning curves are drawn live elsewhere. */
export function reportSections(report) {
  return [
    verdicts(report),
    accuracySection(report),
    forgettingSection(report),
    mdSection(report),
    rdfSection(report),
    dimersSection(report),
    notMeasuredSection(report),
  ].filter(Boolean);
}
