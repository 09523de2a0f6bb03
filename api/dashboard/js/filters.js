// The filters of the lists (GET /jobs, /sweeps, /datasets take the same query parameters; see
// docs/runs-and-mlflow.md), as a small form above each table.
import { h } from "./ui.js";

const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];

// Each list's filters: [query parameter, label, kind]. tests/api/test_dashboard_filters.py holds
// these names to the API's own parameters.
export const FILTERS = {
  jobs: [
    ["state", "State", "state"],
    ["strategy", "Strategy", "strategy"],
    ["foundation", "Foundation", "text"],
    ["name_contains", "Name", "text"],
    ["tag", "Tags (key=value, …)", "tags"],
  ],
  sweeps: [
    ["state", "A job", "state"],
    ["strategy", "Strategy", "strategy"],
    ["foundation", "Foundation", "text"],
    ["name_contains", "Name", "text"],
    ["tag", "Tags (key=value, …)", "tags"],
  ],
  datasets: [["name_contains", "Name", "text"]],
};

function control(parameter, label, kind, strategies) {
  if (kind === "state" || kind === "strategy") {
    const options = kind === "state" ? STATES : strategies;
    return h("select", { name: parameter, "aria-label": label },
      h("option", { value: "" }, `${label}: any`),
      options.map((value) => h("option", { value }, value)));
  }
  return h("input", { name: parameter, placeholder: label, "aria-label": label, size: kind === "tags" ? 22 : 14 });
}

/**
 * A filter form for `list` ("jobs", "sweeps", "datasets"); `onChange` runs when a filter
 * changes. `query()` gives the query string for the list's GET (without "?"), "" for none.
 */
export function filterBar(list, onChange, strategies = []) {
  const form = h("form", { class: "filters", onsubmit: (event) => { event.preventDefault(); onChange(); } },
    FILTERS[list].map(([parameter, label, kind]) => control(parameter, label, kind, strategies)));
  let pending;
  form.addEventListener("input", () => {
    clearTimeout(pending);
    pending = setTimeout(onChange, 300);  // typing: one request when it pauses
  });
  const query = () => {
    const params = new URLSearchParams();
    for (const [parameter, , kind] of FILTERS[list]) {
      const value = form.elements[parameter].value.trim();
      if (!value) continue;
      // Several tags, all required: one `tag` parameter each.
      if (kind === "tags") value.split(/[\s,]+/).filter(Boolean).forEach((tag) => params.append("tag", tag));
      else params.set(parameter, value);
    }
    return params.toString();
  };
  return { element: form, query };
}

/** "3 of 120 jobs" from a list's answer. */
export function shownOf(body, noun) {
  const total = body.total ?? body.data.length;
  return body.data.length === total ? `${total} ${noun}` : `${body.data.length} of ${total} ${noun}`;
}
