// The HTTP API as the dashboard uses it: relative URLs (the dashboard is served by the API it
// talks to, possibly under a path prefix), an optional bearer token, and errors that carry the
// server's own message.

const TOKEN_KEY = "mlft.token";

export function token() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

function headers(extra = {}) {
  const bearer = token();
  return bearer ? { ...extra, Authorization: `Bearer ${bearer}` } : extra;
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// FastAPI answers `{"detail": "..."}` for domain errors and `{"detail": [{loc, msg}, ...]}` for
// request validation; both become one readable line per problem.
export function describeDetail(detail) {
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        const where = (item.loc || []).filter((part) => part !== "body").join(".");
        return where ? `${where}: ${item.msg}` : item.msg;
      })
      .join("\n");
  }
  return JSON.stringify(detail);
}

async function errorOf(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.detail !== undefined) message = describeDetail(body.detail);
  } catch {
    // Not JSON (a proxy's error page): the status line is all there is.
  }
  return new ApiError(response.status, message);
}

export async function request(method, path, { json, form, signal } = {}) {
  const init = { method, headers: headers(), signal };
  if (json !== undefined) {
    init.headers = headers({ "Content-Type": "application/json" });
    init.body = JSON.stringify(json);
  } else if (form !== undefined) {
    init.body = form;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(null, `the server could not be reached (${error.message})`);
  }
  if (!response.ok) throw await errorOf(response);
  const type = response.headers.get("Content-Type") || "";
  return type.includes("application/json") ? response.json() : response.text();
}

export const get = (path, options) => request("GET", path, options);
export const post = (path, json, options = {}) => request("POST", path, { ...options, json });

export function upload(file, options = {}) {
  const form = new FormData();
  form.append("file", file, file.name);
  return request("POST", "datasets", { ...options, form });
}

// A file the browser saves. With a token, a plain link would not send it, so the file is fetched.
export async function download(path, filename) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) throw await errorOf(response);
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement("a"), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// Server-sent events over fetch rather than EventSource: EventSource cannot send an
// Authorization header. Resolves when the server ends the stream (after a terminal state).
// `cursor.id` is the id of the last event received: a reconnect sends it as Last-Event-ID and the
// stream goes on after it, without the epochs and log lines already shown.
export async function followEvents(path, onEvent, signal, cursor = {}) {
  const extra = { Accept: "text/event-stream" };
  if (cursor.id) extra["Last-Event-ID"] = cursor.id;
  const response = await fetch(path, { headers: headers(extra), signal });
  if (!response.ok) throw await errorOf(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      let id = null;
      const data = [];
      for (const line of frame.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trimStart());
        else if (line.startsWith("id:")) id = line.slice(3).trim();
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
      if (id !== null) cursor.id = id;
    }
  }
}
