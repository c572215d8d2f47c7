// The console's only network access: this app's JSON API with the admin token (asked
// for once, kept in localStorage; a 401 asks again and retries).

import { $, enc, h, notice, toast } from "./dom.js";

const TOKEN_KEY = "emd.adminToken";

// ---------------------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.problems = (body && Array.isArray(body.problems) && body.problems) || [];
  }
}

let tokenPromise = null;

export function askToken(message) {
  const dialog = $("#token-dialog");
  const error = $("#token-error");
  error.hidden = !message;
  error.textContent = message || "";
  if (!tokenPromise) {
    tokenPromise = new Promise((resolve) => {
      const form = $("#token-form");
      const done = (token) => {
        form.removeEventListener("submit", onSubmit);
        dialog.removeEventListener("cancel", onCancel);
        if (dialog.open) dialog.close();
        tokenPromise = null;
        resolve(token);
      };
      const onSubmit = (ev) => {
        ev.preventDefault();
        const token = $("#token-input").value.trim();
        if (!token) return;
        localStorage.setItem(TOKEN_KEY, token);
        done(token);
      };
      const onCancel = (ev) => {
        const current = localStorage.getItem(TOKEN_KEY);
        if (current) done(current);
        else ev.preventDefault();
      };
      form.addEventListener("submit", onSubmit);
      dialog.addEventListener("cancel", onCancel);
    });
  }
  if (!dialog.open) dialog.showModal();
  $("#token-input").value = "";
  $("#token-input").focus();
  return tokenPromise;
}

export async function api(method, path, body, { signal, raw = false } = {}) {
  for (;;) {
    const token = localStorage.getItem(TOKEN_KEY);
    if (!token) {
      await askToken();
      continue;
    }
    const headers = { Authorization: `Bearer ${token}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
      });
    } catch (err) {
      if (err && err.name === "AbortError") throw err;
      throw new ApiError(0, { message: `Cannot reach the worker (${err.message}).` });
    }
    if (resp.status === 401) {
      if (localStorage.getItem(TOKEN_KEY) === token) localStorage.removeItem(TOKEN_KEY);
      await askToken("The worker refused that token. Paste the admin token again.");
      continue;
    }
    const text = await resp.text();
    if (raw && resp.ok) return text;
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { message: `${resp.status} ${resp.statusText}: ${text.slice(0, 300)}` };
    }
    if (!resp.ok) throw new ApiError(resp.status, data);
    return data;
  }
}

export const apiPath = (account, suffix) => `api/accounts/${enc(account)}${suffix}`;

export async function loadConfig(account) {
  const res = await api("GET", apiPath(account, "/config"));
  const config = res.config || {};
  config.data_maps = config.data_maps || [];
  config.rules = config.rules || [];
  return { version: res.version, config };
}

export function saveFile(name, text, type) {
  const blob = new Blob([text], { type });
  const a = h("a", { href: URL.createObjectURL(blob), download: name });
  document.body.append(a);
  a.click();
  setTimeout(() => {
    URL.revokeObjectURL(a.href);
    a.remove();
  }, 1000);
}

/** "Export YAML": the live data maps and rules in the config file's format. */
export function exportYamlButton(account) {
  return h(
    "button",
    {
      type: "button",
      testid: "export-yaml",
      title: "The saved data maps and rules in the config file's format, to copy back into the YAML file",
      onclick: async () => {
        try {
          const text = await api("GET", apiPath(account, "/config?format=yaml"), undefined, { raw: true });
          saveFile(`${account}-data-maps-and-rules.yaml`, text, "application/yaml");
        } catch (err) {
          toast(`Export failed: ${err.message}`, "bad");
        }
      },
    },
    "Export YAML",
  );
}

export function errorNotice(err) {
  const problems = (err && err.problems) || [];
  return notice(
    "bad",
    h("strong", {}, err && err.status ? `Error ${err.status}: ` : "Error: "),
    (err && err.message) || String(err),
    problems.length
      ? h(
          "ul",
          {},
          problems.map((p) => h("li", {}, p.location ? h("code", {}, p.location) : null, " ", p.message)),
        )
      : null,
  );
}
