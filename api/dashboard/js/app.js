// Hash routing (#/jobs/ID): the server serves one page, and links work without server routes.

import { setToken, token } from "./api.js";
import { renderDataset, renderDatasets } from "./pages/datasets.js";
import { renderJob } from "./pages/job.js";
import { renderJobs } from "./pages/jobs.js";
import { renderNewJob } from "./pages/newjob.js";
import { renderSweep, renderSweeps } from "./pages/sweeps.js";
import { errorBox, replace } from "./ui.js";

const ROUTES = [
  [/^#?\/?$/, "jobs", renderJobs],
  [/^#\/jobs\/?$/, "jobs", renderJobs],
  [/^#\/jobs\/([\w-]+)$/, "jobs", renderJob],
  [/^#\/datasets\/?$/, "datasets", renderDatasets],
  [/^#\/datasets\/([\w-]+)$/, "datasets", renderDataset],
  [/^#\/new\/?(?:\?(.*))?$/, "new", renderNewJob],
  [/^#\/sweeps\/?$/, "sweeps", renderSweeps],
  [/^#\/sweeps\/([\w-]+)$/, "sweeps", renderSweep],
];

let current = null;

async function route() {
  // Leaving a page stops its live streams and refresh timers.
  current?.abort();
  current = new AbortController();
  const page = document.getElementById("page");
  const hash = window.location.hash;
  const match = ROUTES.map(([pattern, nav, render]) => [hash.match(pattern), nav, render])
    .find(([found]) => found);
  if (!match) {
    replace(page, errorBox(`no page at ${hash}`));
    return;
  }
  const [found, nav, render] = match;
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("active", link.dataset.nav === nav);
  }
  replace(page);
  try {
    await render(page, current.signal, ...found.slice(1));
  } catch (error) {
    if (error.name === "AbortError") return;
    const message = error.status === 401
      ? `${error.message.replace(/\.$/, "")}. Set your API token (top right).`
      : error.message;
    page.append(errorBox(message));
  }
}

function setUpToken() {
  const dialog = document.getElementById("token-dialog");
  const input = document.getElementById("token-input");
  const button = document.getElementById("token-button");
  const show = () => button.classList.toggle("set", Boolean(token()));
  button.addEventListener("click", () => {
    input.value = token();
    dialog.showModal();
  });
  document.getElementById("token-cancel").addEventListener("click", () => dialog.close("cancel"));
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "save") {
      setToken(input.value.trim());
      show();
      route();
    }
  });
  show();
}

setUpToken();
window.addEventListener("hashchange", route);
route();
