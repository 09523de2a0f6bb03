import { get, post } from "../api.js";
import { append, errorBox, h, replace, section, shortId } from "../ui.js";
import { uploadForm } from "./datasets.js";

const DEMO_FOUNDATION = "mace-demo-emt";

function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", {}, label), control, hint ? h("small", { class: "muted" }, hint) : null);
}

function datasetOptions(datasets, { optional = false, none = "— none —" } = {}) {
  return [
    optional ? h("option", { value: "" }, none) : null,
    datasets.map((d) => h("option", { value: d.id },
      `${d.name} · ${d.summary?.n_configs ?? "?"} configs · ${(d.summary?.elements || []).join(" ")} · ${shortId(d.id)}`)),
  ];
}

const numberOrNull = (value) => (value === "" ? null : Number(value));

/** The form; `#/new?train=ID` preselects the training data. */
export async function renderNewJob(page, signal, query = "") {
  // Strategies and E0 methods come from the service's one table of them (GET /strategies).
  const [foundations, { data: datasets }, choices] = await Promise.all([
    get("foundation-models", { signal }),
    get("datasets", { signal }),
    get("strategies", { signal }),
  ]);
  const strategies = Object.fromEntries(choices.strategies.map((s) => [s.name, s]));
  const select = (name, options, attrs = {}) => h("select", { name, ...attrs }, options);
  const input = (name, attrs = {}) => h("input", { name, ...attrs });

  // The service's default foundation when it is there, else the first one on disk.
  const preferred = foundations.find((f) => f.name === DEMO_FOUNDATION)
    || foundations.find((f) => f.available) || foundations[0];
  const controls = {
    foundation_model: select("foundation_model", [...foundations.map((f) => h("option", {
      value: f.name, selected: f === preferred,
    }, f.available ? f.name : `${f.name} (downloaded on first use)`)),
    // Scratch needs no foundation (a foundation then only serves as the comparison).
    h("option", { value: "" }, "none (scratch only)")]),
    train_dataset: select("train_dataset", datasetOptions(datasets), { required: true }),
    test_dataset: select("test_dataset", datasetOptions(datasets, { optional: true })),
    valid_dataset: select("valid_dataset", datasetOptions(datasets, { optional: true, none: "— hold out a fraction —" })),
    valid_fraction: input("valid_fraction", { type: "number", value: "0.1", min: "0.01", max: "0.89", step: "0.01" }),
    strategy: select("strategy", Object.keys(strategies).map((name) => h("option", { value: name }, name))),
    rank: input("rank", { type: "number", value: "4", min: "1", max: "256" }),
    alpha: input("alpha", { type: "number", value: "1", min: "0.01", step: "any" }),
    replay_dataset: select("replay_dataset", datasetOptions(datasets)),
    num_samples: input("num_samples", { type: "number", min: "1", placeholder: "all" }),
    selection: select("selection", ["random", "fps"].map((s) => h("option", { value: s }, s))),
    pseudolabel: input("pseudolabel", { type: "checkbox", checked: true }),
    e0s: select("e0s", [
      // Left out of the spec: estimated for fine-tuning; for scratch the data's isolated atoms
      // when they cover every element, else the fit on the data (chosen at submission).
      h("option", { value: "" }, "default: estimated, or for scratch the data's isolated atoms"),
      ...choices.e0_methods.map(({ name, summary }) => h("option", { value: name }, `${name}: ${summary}`)),
    ]),
    elements: select("elements", [
      h("option", { value: "foundation" }, "every element of the foundation"),
      h("option", { value: "training" }, "the training data's only (smaller, faster)"),
    ]),
    isolated_atoms_dataset: select("isolated_atoms_dataset", datasetOptions(datasets, { optional: true, none: "— in the training set —" })),
    explicit_e0s: h("textarea", { name: "explicit_e0s", rows: 3, placeholder: '{"H": -13.57, "C": -1026.85}' }),
    max_num_epochs: input("max_num_epochs", { type: "number", value: "50", min: "1", max: "10000", required: true }),
    lr: input("lr", { type: "number", min: "0", max: "1", step: "any", placeholder: "strategy preset" }),
    batch_size: input("batch_size", { type: "number", value: "5", min: "1", max: "4096" }),
    seed: input("seed", { type: "number", value: "123", step: "1" }),
    md: input("md", { type: "checkbox", checked: true }),
    dimers: input("dimers", { type: "checkbox", checked: true }),
    eval_replay_dataset: select("eval_replay_dataset", datasetOptions(datasets, { optional: true, none: "— replay set of a replay strategy, else none —" })),
  };
  const c = controls;
  const description = h("p", { class: "muted", id: "strategy-description" });
  const loraFields = h("div", { class: "row" }, field("LoRA rank", c.rank), field("LoRA alpha", c.alpha));
  const replayFields = h("div", { class: "row" },
    field("Replay dataset", c.replay_dataset, "unlabelled structures are fine for pseudolabelling"),
    field("Replay samples", c.num_samples), field("Selection", c.selection));
  const pseudolabelField = h("label", { class: "check" }, c.pseudolabel, " pseudolabel the replay data");
  const isolatedField = field("Isolated atoms dataset", c.isolated_atoms_dataset);
  const explicitField = field("E0s in eV per element (JSON)", c.explicit_e0s);
  const preview = h("pre", { class: "spec", id: "spec-preview" });
  const result = h("div", { id: "job-form-result" });
  const submit = h("button", { type: "submit", class: "primary" }, "Start job");

  function spec() {
    const strategyName = c.strategy.value;
    const traits = strategies[strategyName];
    const strategy = { name: strategyName };
    if (traits.lora) {
      strategy.rank = Number(c.rank.value);
      strategy.alpha = Number(c.alpha.value);
    }
    if (traits.replay) {
      strategy.replay = {
        dataset: c.replay_dataset.value,
        num_samples: numberOrNull(c.num_samples.value),
        selection: c.selection.value,
      };
    }
    if (traits.pseudolabels === "optional") strategy.pseudolabel = c.pseudolabel.checked;
    let e0s = c.e0s.value;
    if (e0s === "explicit") {
      try {
        e0s = JSON.parse(c.explicit_e0s.value || "{}");
      } catch (error) {
        throw new Error(`E0s: not valid JSON (${error.message})`);
      }
    }
    const body = {
      foundation_model: c.foundation_model.value || null,
      train_dataset: c.train_dataset.value,
      test_dataset: c.test_dataset.value || null,
      strategy,
      elements: c.elements.value,
      hyperparameters: {
        max_num_epochs: Number(c.max_num_epochs.value),
        lr: numberOrNull(c.lr.value),
        batch_size: Number(c.batch_size.value),
        seed: Number(c.seed.value),
      },
      evaluation: {
        md: c.md.checked,
        dimers: c.dimers.checked,
        replay_dataset: c.eval_replay_dataset.value || null,
      },
    };
    if (e0s !== "") body.e0s = e0s;
    if (c.valid_dataset.value) body.valid_dataset = c.valid_dataset.value;
    else body.valid_fraction = Number(c.valid_fraction.value);
    if (e0s === "isolated_atoms" && c.isolated_atoms_dataset.value) {
      body.isolated_atoms_dataset = c.isolated_atoms_dataset.value;
    }
    return body;
  }

  function update() {
    const traits = strategies[c.strategy.value];
    description.textContent = traits.summary;
    loraFields.hidden = !traits.lora;
    replayFields.hidden = !traits.replay;
    pseudolabelField.hidden = traits.pseudolabels !== "optional";
    isolatedField.hidden = c.e0s.value !== "isolated_atoms";
    explicitField.hidden = c.e0s.value !== "explicit";
    c.valid_fraction.disabled = Boolean(c.valid_dataset.value);
    try {
      preview.textContent = JSON.stringify(spec(), null, 2);
    } catch (error) {
      preview.textContent = error.message;
    }
  }

  const form = h("form", {
    id: "job-form", class: "job-form",
    oninput: update, onchange: update,
    onsubmit: async (event) => {
      event.preventDefault();
      submit.disabled = true;
      replace(result);
      try {
        const job = await post("jobs", spec());
        window.location.hash = `#/jobs/${job.id}`;
      } catch (error) {
        replace(result, errorBox(error.message));
      } finally {
        submit.disabled = false;
      }
    },
  },
  section("Model and data",
    h("div", { class: "row" }, field("Foundation model", c.foundation_model), field("Training data", c.train_dataset)),
    h("div", { class: "row" },
      field("Test data", c.test_dataset, "evaluated after training"),
      field("Validation data", c.valid_dataset),
      field("Validation fraction", c.valid_fraction, "of the training data, when no validation set is given"))),
  section("Strategy", field("Strategy", c.strategy), description, loraFields, replayFields, pseudolabelField,
    field("Elements the model knows", c.elements, "freezing keeps every foundation element; scratch knows its data's")),
  section("Reference energies (E0s)", field("Method", c.e0s), isolatedField, explicitField),
  section("Training",
    h("div", { class: "row" }, field("Epochs", c.max_num_epochs), field("Learning rate", c.lr, "blank: the strategy's preset"),
      field("Batch size", c.batch_size), field("Seed", c.seed))),
  section("Evaluation",
    h("div", { class: "row" },
      h("label", { class: "check" }, c.md, " MD stability and RDFs"),
      h("label", { class: "check" }, c.dimers, " dimer curves and compression")),
    field("Forgetting measured on", c.eval_replay_dataset, "a labelled pretraining-like dataset")),
  h("details", { class: "card" }, h("summary", {}, "Spec sent to POST /jobs"), preview),
  h("div", { class: "actions" }, submit),
  result);

  const refreshDatasets = async () => {
    const { data } = await get("datasets", { signal });
    for (const [name, options] of [
      ["train_dataset", {}], ["test_dataset", { optional: true }],
      ["valid_dataset", { optional: true, none: "— hold out a fraction —" }], ["replay_dataset", {}],
      ["isolated_atoms_dataset", { optional: true, none: "— in the training set —" }],
      ["eval_replay_dataset", { optional: true, none: "— replay set of a replay strategy, else none —" }],
    ]) {
      const chosen = c[name].value;
      replace(c[name], datasetOptions(data, options));
      c[name].value = chosen;
      if (!c[name].value && !options.optional && data.length) c[name].value = data[0].id;
    }
    update();
  };

  append(
    page,
    h("h1", {}, "New fine-tuning job"),
    datasets.length ? null : h("div", { class: "alert warn" }, "Upload a training dataset first."),
    h("details", { class: "card", open: !datasets.length }, h("summary", {}, "Upload a dataset"),
      uploadForm(() => refreshDatasets())),
    form,
  );
  const preselected = new URLSearchParams(query).get("train");
  if (preselected && datasets.some((d) => d.id === preselected)) c.train_dataset.value = preselected;
  update();
}
