import { get, upload } from "../api.js";
import { filterBar } from "../filters.js";
import { barChart } from "../charts.js";
import { append, errorBox, facts, h, num, replace, section, shortId, table, when } from "../ui.js";

function elementChips(summary) {
  const counts = summary.element_counts || {};
  return h("span", { class: "chips" }, (summary.elements || Object.keys(counts)).map((element) =>
    h("span", { class: "chip", title: `${counts[element] ?? "?"} ${element} atoms` }, element, " ",
      h("small", {}, String(counts[element] ?? "")))));
}

// "energy 120/120, forces 120/120, stress 100/120": each label with the configurations it covers.
function labelsOf(summary) {
  const counts = summary.label_counts || {};
  return (summary.labels || []).map((label) => counts[label]
    ? `${label} ${counts[label].configs}/${counts[label].of}` : label).join(", ") || "unlabelled";
}

function trainable(summary) {
  const labels = summary.labels || [];
  return labels.includes("energy") && labels.includes("forces");
}

export function labelWarnings(summary) {
  const warnings = summary.warnings || [];
  return warnings.length
    ? h("div", { class: "alert warn", id: "dataset-warnings" }, h("ul", {}, warnings.map((w) => h("li", {}, w))))
    : null;
}

export function uploadForm(onUploaded) {
  const result = h("div", { class: "result", id: "upload-result" });
  const input = h("input", { type: "file", name: "file", accept: ".xyz,.extxyz", required: true });
  const button = h("button", { type: "submit", class: "primary" }, "Upload");
  const form = h("form", {
    class: "upload", id: "upload-form",
    onsubmit: async (event) => {
      event.preventDefault();
      if (!input.files.length) return;
      button.disabled = true;
      replace(result, h("span", { class: "muted" }, `Validating ${input.files[0].name}…`));
      try {
        const dataset = await upload(input.files[0]);
        replace(result, h("div", { class: "alert good" }, "Uploaded ",
          h("a", { href: `#/datasets/${dataset.id}` }, dataset.name), `: ${dataset.summary.n_configs} configurations, `,
          `${dataset.summary.n_atoms} atoms, elements ${(dataset.summary.elements || []).join(" ")}, `,
          `labels: ${labelsOf(dataset.summary)}.`), labelWarnings(dataset.summary));
        form.reset();
        onUploaded?.(dataset);
      } catch (error) {
        replace(result, errorBox(error.message));
      } finally {
        button.disabled = false;
      }
    },
  }, h("label", {}, "extxyz file with energies and forces (or unlabelled, for replay) ", input), button);
  return h("div", {}, form, result);
}

function datasetRows(datasets) {
  return datasets.map((dataset) => [
    h("a", { href: `#/datasets/${dataset.id}` }, dataset.name),
    h("code", { title: dataset.id }, shortId(dataset.id)),
    num(dataset.summary.n_configs),
    num(dataset.summary.n_atoms),
    elementChips(dataset.summary),
    labelsOf(dataset.summary),
    when(dataset.created_at),
  ]);
}

export async function renderDatasets(page, signal) {
  const list = h("div", { id: "datasets-table" }, h("p", { class: "muted" }, "Loading…"));
  const filters = filterBar("datasets", () => refresh().catch(() => {}));
  const refresh = async () => {
    const query = filters.query();
    const { data } = await get(query ? `datasets?${query}` : "datasets", { signal });
    replace(list, data.length
      ? table(["Name", "Id", "Configs", "Atoms", "Elements (atoms)", "Labels", "Uploaded"],
        datasetRows(data), { numeric: [2, 3], className: "datasets" })
      : h("p", { class: "muted" }, "No datasets yet: upload one above."));
  };
  append(
    page,
    h("h1", {}, "Datasets"),
    section("Upload a dataset", uploadForm(() => refresh())),
    section("Uploaded", filters.element, list),
  );
  await refresh();
}

export async function renderDataset(page, signal, id) {
  const dataset = await get(`datasets/${id}`, { signal });
  const summary = dataset.summary;
  const elements = summary.elements || Object.keys(summary.element_counts || {});
  const configTypes = Object.entries(summary.config_types || {});
  append(
    page,
    h("p", {}, h("a", { href: "#/datasets" }, "← Datasets")),
    h("div", { class: "title-row" }, h("h1", {}, dataset.name),
      trainable(summary)
        ? h("a", { class: "button primary", href: `#/new?train=${dataset.id}` }, "Fine-tune on this dataset")
        : h("span", { class: "muted" }, "Not trainable: training needs energy and forces")),
    labelWarnings(summary),
    section("Summary", facts([
      ["Id", h("code", {}, dataset.id)],
      ["Configurations", num(summary.n_configs)],
      ["Atoms", num(summary.n_atoms)],
      ["Periodic", num(summary.n_periodic)],
      ["Labels", labelsOf(summary)],
      ["Energy key", summary.energy_key],
      ["Forces key", summary.forces_key],
      ["Stress key", summary.stress_key],
      ["Virials key", summary.virials_key],
      ["Isolated atoms", (summary.isolated_atom_elements || []).join(" ") || "none"],
      ["Size", `${num((summary.size_bytes || 0) / 1024)} KiB`],
      ["SHA-256", h("code", { class: "wrap" }, dataset.sha256)],
      ["Uploaded", when(dataset.created_at)],
    ])),
    section("Elements", h("div", { class: "split" },
      h("div", { id: "dataset-elements" }, barChart(elements, elements.map((e) => summary.element_counts[e]), {
        title: "Atoms per element", yLabel: "atoms",
      })),
      table(["Element", "Atoms", "Share"], elements.map((e) => [
        e, num(summary.element_counts[e]), `${num((100 * summary.element_counts[e]) / summary.n_atoms)} %`,
      ])))),
    configTypes.length
      ? section("Config types", table(["Config type", "Configurations"], configTypes.map(([n, c]) => [n, num(c)])))
      : null,
  );
}
