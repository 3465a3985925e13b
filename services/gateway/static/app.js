// The operators' dashboard: runs (live list, a run's DAG, timeline, progress, logs, output),
// executors, queues, tasks and pipelines, health. Plain ES modules, no build step. Every
// value from the services is put on the page as text (never as HTML): task outputs are
// untrusted.

import { renderDag } from "./dag.js";

const main = document.getElementById("main");
const who = document.getElementById("who");
const statusLine = document.getElementById("status");
const REFRESH_MS = 2000;
let config = { jaeger_url: "", auth: true, version: "" };
let cleanup = () => {};

// ---------------------------------------------------------------------------- helpers

function h(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "class") e.className = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// A table's heading row. A column written "#Label" holds numbers: its heading is aligned to
// the right, as its cells are (class "num"), so each figure stands under its own heading.
function headings(columns) {
  return h("thead", {}, h("tr", {}, columns.map((c) =>
    c.startsWith("#") ? h("th", { class: "num" }, c.slice(1)) : h("th", {}, c))));
}

class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || `HTTP ${status}`);
    this.status = status;
    this.code = err.code || String(status);
    this.body = body;
  }
}

async function api(path, options = {}) {
  const { json, allowError, signingIn, ...rest } = options;
  const init = { credentials: "same-origin", headers: {}, ...rest };
  if (json !== undefined) {
    init.method = init.method || "POST";
    init.headers = { ...init.headers, "Content-Type": "application/json" };
    init.body = JSON.stringify(json);
  }
  const reply = await fetch(path, init);
  const text = await reply.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = text; }
  if (reply.status === 401) {
    if (!signingIn) showLogin();
    throw new ApiError(401, body);
  }
  if (!reply.ok && !allowError) throw new ApiError(reply.status, body);
  return allowError ? { status: reply.status, body } : body;
}

const badge = (state) => h("span", { class: `badge ${state}`, "data-state": state }, state);
const SHOWN_INPUT_CHARS = 200;  // a run's input on its page, as `wtm run get` shows it
const short = (s, n = 12) => (s && s.length > n ? s.slice(0, n) + "…" : s || "");
// What a run ran: "pipeline@version" or "task@version" (a task run recorded before runs kept
// their version: the task alone), as the CLI's runs list says it (RunInfo.what).
const runWhat = (r) => r.pipeline_id ? `${r.pipeline_id}@${r.pipeline_version}`
  : r.task_version ? `${r.task_id}@${r.task_version}` : r.task_id;
const when = (t) => (t ? new Date(t).toLocaleString() : "");
// A list's time on one line: the time alone for today's, else the day and the minute; the
// whole moment in its title (hover).
const whenBrief = (t) => {
  if (!t) return "";
  const d = new Date(t);
  const today = d.toDateString() === new Date().toDateString();
  return today ? d.toLocaleTimeString()
    : d.toLocaleString(undefined, { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
};
const secondsBetween = (a, b) => (a && b ? (new Date(b) - new Date(a)) / 1000 : null);
const fmtSeconds = (s) => (s === null || s === undefined ? "" : s < 1 ? `${(s * 1000).toFixed(0)} ms` : `${s.toFixed(2)} s`);
const bytes = (n) => (n > 2 ** 30 ? `${(n / 2 ** 30).toFixed(1)} GiB` : `${(n / 2 ** 20).toFixed(0)} MiB`);
const TERMINAL = new Set(["COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]);

// The footer's "updated" time: when what the page shows was last read.
const markUpdated = () => { statusLine.textContent = `updated ${new Date().toLocaleTimeString()}`; };

function every(ms, fn) {
  let stopped = false, timer = null;
  const tick = async () => {
    if (stopped) return;
    try { await fn(); markUpdated(); }
    catch (e) { if (e.status !== 401) statusLine.textContent = `update failed: ${e.message}`; }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

function showError(where, e) {
  where.replaceChildren(h("p", { class: "error" }, `${e.code || "error"}: ${e.message}`));
}

function hashParts() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  return { parts: (path || "/runs").split("/").filter(Boolean), params: new URLSearchParams(query || "") };
}

// ---------------------------------------------------------------------------- session

function showLogin(message) {
  cleanup(); cleanup = () => {};
  who.replaceChildren();
  const key = h("input", { type: "password", name: "api_key", placeholder: "wtm_…", autocomplete: "off", required: true });
  const ns = h("input", { name: "namespace", placeholder: "namespace (optional)" });
  const err = h("p", { class: "error", id: "login-error" }, message || "");
  const form = h("form", { class: "card login", id: "login", onsubmit: async (ev) => {
    ev.preventDefault();
    try {
      await api("/api/v1/session", { json: { api_key: key.value, namespace: ns.value }, signingIn: true });
      route();
    } catch (e) { err.textContent = `${e.code}: ${e.message}`; }
  } },
    h("h1", {}, "Sign in"),
    h("p", { class: "muted" }, "An API key of this installation (wtm keys create, or the stack's keys/admin.key). It is kept in an HttpOnly cookie for this browser session."),
    key, ns, h("button", { type: "submit" }, "Sign in"), err);
  main.replaceChildren(form);
}

async function ensureSession() {
  const { params } = hashParts();
  const key = params.get("key");
  if (key) { // a sign-in link (make demo prints one): use the key once, then drop it from the URL
    params.delete("key");
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.hash.split("?")[0] + (rest ? `?${rest}` : ""));
    try { await api("/api/v1/session", { json: { api_key: key, namespace: "" } }); }
    catch (e) { showLogin(`${e.code}: ${e.message}`); return false; }
  }
  const s = await api("/api/v1/session");
  if (!s.authenticated) { showLogin(); return false; }
  who.replaceChildren(
    `namespace: ${s.namespace || "the key's"}`,
    h("button", { class: "secondary", onclick: async () => { await api("/api/v1/session", { method: "DELETE" }); showLogin(); } }, "Sign out"));
  return true;
}

// ---------------------------------------------------------------------------- runs list

const runFilters = { state: "", pipeline_id: "", task_id: "", batch_id: "", label: "", created_after: "", created_before: "", awaiting_signal: "" };

function runsPage() {
  const tokens = [""]; // page tokens: the current page is the last one
  const body = h("tbody");
  const pager = h("span", { class: "muted" });
  const prev = h("button", { class: "secondary", onclick: () => { if (tokens.length > 1) { tokens.pop(); refresh(); } } }, "← Newer");
  const next = h("button", { class: "secondary", onclick: () => { if (nextToken) { tokens.push(nextToken); refresh(); } } }, "Older →");
  let nextToken = "";
  const field = (name, label, input) => h("label", {}, label, input);
  const stateSel = h("select", { name: "state" }, ["", "PENDING", "QUEUED", "RUNNING", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"].map((s) => h("option", { value: s, selected: runFilters.state === s }, s || "any")));
  const inputs = {
    pipeline_id: h("input", { name: "pipeline_id", value: runFilters.pipeline_id, size: 18, placeholder: "id or id@version" }),
    task_id: h("input", { name: "task_id", value: runFilters.task_id, size: 14, placeholder: "id or id@version" }),
    batch_id: h("input", { name: "batch_id", value: runFilters.batch_id, size: 14 }),
    label: h("input", { name: "label", value: runFilters.label, size: 18, placeholder: "KEY=VALUE" }),
    created_after: h("input", { name: "created_after", type: "datetime-local", value: runFilters.created_after }),
    created_before: h("input", { name: "created_before", type: "datetime-local", value: runFilters.created_before }),
  };
  // runs with a step waiting for a signal now ("true", or "" for any)
  const awaiting = h("input", { name: "awaiting_signal", type: "checkbox", checked: runFilters.awaiting_signal === "true" });
  const filters = h("form", { class: "filters", onsubmit: (ev) => {
    ev.preventDefault();
    runFilters.state = stateSel.value;
    for (const [k, i] of Object.entries(inputs)) runFilters[k] = i.value.trim();
    runFilters.awaiting_signal = awaiting.checked ? "true" : "";
    tokens.length = 1; refresh();
  } },
    field("state", "State", stateSel), field("pipeline_id", "Pipeline", inputs.pipeline_id),
    field("task_id", "Task", inputs.task_id), field("batch_id", "Batch", inputs.batch_id),
    field("label", "Label", inputs.label),
    field("created_after", "Created after", inputs.created_after),
    field("created_before", "Created before", inputs.created_before),
    h("label", { title: "runs with a step waiting for a signal now" }, awaiting, " Awaiting a signal"),
    h("button", { type: "submit" }, "Filter"),
    " ", h("button", { type: "button", class: "danger", id: "cancel-matching", title: "every queued or running run of this batch, pipeline, task or label", onclick: async () => {
      const chosen = chosenFilters();
      if (!chosen) return;
      if (!confirm("Cancel every queued or running run that matches?")) return;
      try {
        const done = await api("/api/v1/runs:cancel", { json: { ...chosen, reason: "cancelled from the dashboard" } });
        await refresh();
        pager.textContent = `cancelled ${done.cancelled.length}` + (done.not_theirs.length ? `; ${done.not_theirs.length} another key's, left` : "");
      } catch (e) { alert(`${e.code}: ${e.message}`); }
    } }, "Cancel unfinished"),
    " ", h("button", { type: "button", class: "secondary", id: "resume-matching", title: "every failed, cancelled or timed-out run of this batch, pipeline, task or label: each resumed once, taking over what it completed", onclick: async () => {
      const chosen = chosenFilters();
      if (!chosen) return;
      if (!confirm("Resume every run that matches and failed, was cancelled or timed out?")) return;
      try {
        const done = await api("/api/v1/runs:resume", { json: chosen });
        await refresh();
        pager.textContent = `resumed ${done.resumed.length}` + (done.refused.length ? `; ${done.refused.length} could not be: ${done.refused.map((r) => r.error).join("; ")}` : "");
      } catch (e) { alert(`${e.code}: ${e.message}`); }
    } }, "Resume failed"),
    " ", h("button", { type: "button", class: "secondary", id: "signal-matching", title: "one signal to a step of every unfinished run of this batch, pipeline, task or label", onclick: async () => {
      const chosen = chosenFilters();
      if (!chosen) return;
      const step = prompt("The step that awaits the signal, in every run that matches:", "");
      if (!step) return;
      const text = prompt(`The signal for ${step}: a JSON object, given to its task`, "{}");
      if (text === null) return;
      try {
        const done = await api("/api/v1/runs:signal", { json: { ...chosen, step_id: step, payload: JSON.parse(text) } });
        await refresh();
        pager.textContent = `signalled ${done.signaled.length}` + (done.refused.length ? `; ${done.refused.length} did not take it: ${done.refused.map((r) => r.error).join("; ")}` : "");
      } catch (e) { alert(`${e.code || "error"}: ${e.message}`); }
    } }, "Signal a step"));

  // The batch, pipeline, task and label filters, for the buttons that act on every match.
  function chosenFilters() {
    const chosen = Object.fromEntries(["batch_id", "pipeline_id", "task_id"].map((k) => [k, inputs[k].value.trim()]));
    const [key, sep, value] = splitLabel(inputs.label.value.trim());
    if (key && !sep) { alert("A label filter is KEY=VALUE."); return null; }
    if (key) chosen.labels = { [key]: value };
    if (!Object.values(chosen).some(Boolean)) { alert("Filter by a batch, a pipeline, a task or a label first."); return null; }
    return chosen;
  }

  let asked = 0;  // the last request's number: an answer to an earlier one is not drawn
  async function refresh() {
    const mine = ++asked;
    const q = new URLSearchParams({ page_size: "25", page_token: tokens[tokens.length - 1] });
    for (const [k, v] of Object.entries(runFilters)) {
      if (v) q.set(k, k.startsWith("created_") ? new Date(v).toISOString() : v);  // label: KEY=VALUE
    }
    const page = await api(`/api/v1/runs?${q}`);
    if (mine !== asked) return;  // a tick's answer after a filter's: the filter's stands
    nextToken = page.next_page_token;
    body.replaceChildren(...page.runs.map((r) => h("tr", { "data-run": r.run_id },
      h("td", {}, h("a", { href: `#/runs/${r.run_id}` }, h("code", {}, r.run_id))),
      h("td", {}, badge(r.state), r.scheduled_at && !r.started_at && !TERMINAL.has(r.state)
        ? h("div", { class: "muted", "data-starts": r.scheduled_at }, `starts ${when(r.scheduled_at)}`) : null),
      h("td", { "data-what": "" }, runWhat(r)),
      h("td", { title: r.batch_id || null }, short(r.batch_id, 10)),
      h("td", { class: "nowrap", title: when(r.created_at), "data-created": r.created_at || "" }, whenBrief(r.created_at)),
      h("td", { class: "num" }, fmtSeconds(secondsBetween(r.started_at || r.created_at, r.ended_at))),
      h("td", { class: "error" }, short(r.error, 80)))));
    if (!page.runs.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No runs match.")));
    prev.disabled = tokens.length <= 1; next.disabled = !nextToken;
    pager.textContent = `page ${tokens.length}`;
  }
  main.replaceChildren(
    h("h1", {}, "Runs"), submitForm(), filters,
    h("table", { id: "runs" }, headings(["Run", "State", "Pipeline / task", "Batch", "Created", "#Took", "Error"]), body),
    h("div", { class: "pager" }, prev, pager, next));
  return every(REFRESH_MS, refresh);
}

const splitLabel = (text) => { const i = text.indexOf("="); return i < 0 ? [text, "", ""] : [text.slice(0, i), "=", text.slice(i + 1)]; };

// A choice of the namespace's pipelines and tasks ("pipeline:ID" or "task:ID"); a failure
// to list them is shown in `err`.
function targetSelect(err) {
  const target = h("select", { name: "target" }, h("option", { value: "" }, "loading…"));
  (async () => {
    try {
      const [pipelines, tasks] = await Promise.all([api("/api/v1/pipelines"), api("/api/v1/tasks")]);
      const latest = new Map();
      for (const t of tasks) if (!latest.has(t.task_id)) latest.set(t.task_id, t);
      target.replaceChildren(
        ...pipelines.filter((p, i, a) => a.findIndex((x) => x.pipeline_id === p.pipeline_id) === i)
          .map((p) => h("option", { value: `pipeline:${p.pipeline_id}` }, `pipeline ${p.pipeline_id}`)),
        ...[...latest.values()].map((t) => h("option", { value: `task:${t.task_id}` }, `task ${t.task_id}`)));
    } catch (e) { err.textContent = e.message; }
  })();
  return target;
}

function submitForm() {
  const err = h("span", { class: "error" });
  const target = targetSelect(err);
  const input = h("textarea", { name: "input", rows: 3 }, "{}");
  const file = h("input", { type: "file", name: "file", accept: "image/*" });
  const limit = h("input", { type: "number", name: "run_timeout", min: 1, step: "any", placeholder: "none", size: 8 });
  const delay = h("input", { type: "number", name: "start_delay", min: 0, step: "any", placeholder: "0", size: 8 });
  file.addEventListener("change", async () => {
    if (!file.files.length) return;
    const f = file.files[0];
    try {
      const ref = await api(`/api/v1/artifacts?filename=${encodeURIComponent(f.name)}`, { method: "POST", body: f, headers: { "Content-Type": "application/octet-stream" } });
      let doc = {};
      try { doc = JSON.parse(input.value || "{}"); } catch { doc = {}; }
      doc.image_path = ref.uri;
      input.value = JSON.stringify(doc);
    } catch (e) { err.textContent = `${e.code}: ${e.message}`; }
  });
  return h("details", { class: "card" }, h("summary", {}, "Submit a run"),
    h("form", { id: "submit", onsubmit: async (ev) => {
      ev.preventDefault(); err.textContent = "";
      const [kind, id] = target.value.split(":");
      let doc;
      try { doc = JSON.parse(input.value || "{}"); } catch (e) { err.textContent = `input: not JSON (${e.message})`; return; }
      try {
        const times = { run_timeout_seconds: limit.value ? Number(limit.value) : null, start_delay_seconds: delay.value ? Number(delay.value) : null };
        const run = await api("/api/v1/runs", { json: { [kind]: id, input: doc, ...times } });
        location.hash = `#/runs/${run.run_id}`;
      } catch (e) { err.textContent = `${e.code}: ${e.message}`; }
    } },
      h("label", {}, "Pipeline or task", target),
      h("label", {}, "Input (JSON)", input),
      h("label", {}, "Image (uploaded as image_path)", file),
      h("label", {}, "Time limit, seconds (past it the run ends TIMED_OUT)", limit),
      h("label", {}, "Start after, seconds", delay),
      h("button", { type: "submit" }, "Submit"), " ", err));
}

// ---------------------------------------------------------------------------- one run

function runPage(runId) {
  let run = null, pipeline = null, closed = false, socket = null, lastEventId = "";
  let refreshTimer = null, retryTimer = null;
  const live = new Map(); // step -> {state, attempt, progress, message}
  const logs = new Map(); // step -> [lines]
  const events = [];
  const view = {
    head: h("div"), dag: document.createElementNS("http://www.w3.org/2000/svg", "svg"),
    gantt: h("div", { class: "gantt", id: "gantt" }), steps: h("tbody"), logs: h("div"),
    events: h("div", { class: "logs", id: "events" }), lineage: h("tbody"), output: h("div"),
    live: h("span", { class: "muted", id: "live" }, "connecting…"),
  };
  view.dag.setAttribute("class", "dag");
  view.dag.setAttribute("id", "dag");
  main.replaceChildren(
    h("p", {}, h("a", { href: "#/runs" }, "← Runs")), view.head,
    h("h2", {}, "Steps ", view.live), view.dag,
    h("h2", {}, "Timeline"), view.gantt,
    h("table", { id: "steps" }, headings(["Step", "Task", "State", "#Attempt", "Executor", "Started", "#Took", "Error"]), view.steps),
    h("h2", {}, "Logs"), view.logs,
    h("h2", {}, "Events"), view.events,
    h("h2", {}, "Lineage"), h("table", { id: "lineage" }, headings(["From", "To"]), view.lineage),
    h("h2", {}, "Output"), view.output);

  const stepIds = () => (pipeline ? pipeline.steps.map((s) => s.step_id) : (run?.steps || []).map((s) => s.step_id));
  // The table also lists a for_each step's instances ("m[0]", ...) after it; the DAG shows the step.
  const tableIds = () => {
    const ids = stepIds(), known = new Set(ids);
    const more = [...(run?.steps || []).map((s) => s.step_id), ...live.keys()].filter((id) => !known.has(id) && /\[\d+\]$/.test(id));
    const instances = [...new Set(more)].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
    return ids.flatMap((id) => [id, ...instances.filter((x) => x.startsWith(`${id}[`))]);
  };
  const stepOf = (id) => (run?.steps || []).find((s) => s.step_id === id);
  const stateOf = (id) => {
    const s = stepOf(id), l = live.get(id);
    if (l && (!s || (l.attempt || 0) >= (s.attempt || 0))) return l.state || s?.state || "PENDING";
    return s?.state || l?.state || "PENDING";
  };

  // The header is made again only when what it shows changed: a click on one of its buttons
  // was lost when a live event replaced the button between the press and the release.
  let drawnHeadFor = "";
  function draw() {
    if (!run) return;
    const headKey = JSON.stringify([run.run_id, run.state, run.error, run.created_at, run.ended_at,
      run.priority, run.namespace, run.scheduled_at, run.deadline_at, run.batch_id, run.labels,
      run.input, run.trace_id, run.pipeline_id, run.pipeline_version, run.task_id, run.task_version]);
    if (headKey !== drawnHeadFor) { drawnHeadFor = headKey; drawHead(); }
    drawBody();
  }

  function drawHead() {
    const jaeger = config.jaeger_url && run.trace_id ? `${config.jaeger_url.replace(/\/$/, "")}/trace/${run.trace_id}` : "";
    const cancel = h("button", { class: "danger", id: "cancel", disabled: TERMINAL.has(run.state), onclick: async () => {
      if (!confirm(`Cancel run ${run.run_id}?`)) return;
      try { run = await api(`/api/v1/runs/${runId}/cancel`, { json: { reason: "cancelled from the dashboard" } }); draw(); }
      catch (e) { alert(`${e.code}: ${e.message}`); }
    } }, "Cancel run");
    const again = h("button", { id: "rerun", title: "a new run of the same version on the same input", onclick: async () => {
      try { const next = await api(`/api/v1/runs/${runId}/rerun`, { json: {} }); location.hash = `#/runs/${next.run_id}`; }
      catch (e) { alert(`${e.code}: ${e.message}`); }
    } }, "Run again");
    const resume = run.pipeline_id && ["FAILED", "CANCELLED", "TIMED_OUT"].includes(run.state) && h("button", {
      id: "resume", title: "a new run that takes over the steps this one completed and runs the rest", onclick: async () => {
        try { const next = await api(`/api/v1/runs/${runId}/rerun`, { json: { from_failure: true } }); location.hash = `#/runs/${next.run_id}`; }
        catch (e) { alert(`${e.code}: ${e.message}`); }
      } }, "Resume from failure");
    view.head.replaceChildren(h("div", { class: "card" },
      h("h1", {}, "Run ", h("code", {}, run.run_id), " ", h("span", { id: "run-state" }, badge(run.state)), " ", cancel, " ", again, resume && [" ", resume]),
      h("dl", { class: "facts" },
        h("dt", {}, "What"), h("dd", {}, `${run.pipeline_id ? "pipeline" : "task"} ${runWhat(run)}`),
        h("dt", {}, "Namespace"), h("dd", {}, run.namespace),
        h("dt", {}, "Created"), h("dd", {}, when(run.created_at)),
        h("dt", {}, "Took"), h("dd", {}, fmtSeconds(secondsBetween(run.created_at, run.ended_at)) || "running"),
        h("dt", {}, "Priority"), h("dd", {}, run.priority),
        run.scheduled_at && [h("dt", {}, "Starts"), h("dd", { id: "scheduled" }, when(run.scheduled_at))],
        run.deadline_at && [h("dt", {}, "Time limit"), h("dd", { id: "deadline" }, `until ${when(run.deadline_at)}`)],
        run.batch_id && [h("dt", {}, "Batch"), h("dd", {}, run.batch_id)],
        Object.keys(run.labels || {}).length ? [h("dt", {}, "Labels"), h("dd", { id: "labels" },
          Object.entries(run.labels).sort().map(([k, v]) => `${k}=${v}`).join(", "))] : null,
        h("dt", {}, "Input"), h("dd", {}, h("code", { id: "input" }, short(JSON.stringify(run.input), SHOWN_INPUT_CHARS))),
        h("dt", {}, "Trace"), h("dd", {}, jaeger ? h("a", { href: jaeger, target: "_blank", rel: "noopener", id: "trace" }, run.trace_id) : h("span", { class: "muted" }, run.trace_id ? `${run.trace_id} (set WTM_JAEGER_URL for a link)` : "not traced")),
        run.error && [h("dt", {}, "Error"), h("dd", { class: "error" }, run.error)])));
  }

  function drawBody() {
    const deps = new Map((pipeline?.steps || []).map((s) => [s.step_id, s.depends_on]));
    renderDag(view.dag, stepIds().map((id) => ({ id, deps: deps.get(id) || [], label: stepOf(id)?.task_id })), (id) => {
      const s = stepOf(id), l = live.get(id) || {}, state = stateOf(id);
      const took = fmtSeconds(secondsBetween(s?.started_at, s?.ended_at));
      return {
        state,
        line2: `${s?.task_id || ""}${s?.executor_id ? " · " + s.executor_id : ""}`,
        line3: `${state}${(l.attempt || s?.attempt) > 1 ? ` · attempt ${l.attempt || s.attempt}` : ""}${took ? " · " + took : ""}${s?.cached_from ? (s.attempt ? " · cached" : " · taken over") : ""}`,
        progress: state === "RUNNING" ? (l.progress || 0) : state === "COMPLETED" ? 1 : null,
        title: l.message || s?.error || "",
      };
    });
    drawGantt();
    // A row is made again only when what it shows changed, as the header is (a click on its
    // Send signal button must not be lost to another step's event).
    view.steps.replaceChildren(...tableIds().map((id) => {
      const s = stepOf(id) || {};
      const key = JSON.stringify([s, stateOf(id), live.get(id)?.attempt]);
      const kept = drawnRows.get(id);
      if (kept && kept.key === key) return kept.row;
      const row = stepRow(id, s);
      drawnRows.set(id, { key, row });
      return row;
    }));
    const stepLogs = tableIds().map((id) => [id, [...(stepOf(id)?.logs || []), ...(logs.get(id) || [])]]).filter(([, l]) => l.length);
    view.logs.replaceChildren(...(stepLogs.length ? stepLogs.map(([id, lines]) => h("div", { class: "card" }, h("strong", {}, id), h("div", { class: "logs" }, [...new Set(lines)].map((l) => h("div", {}, l))))) : [h("p", { class: "muted" }, "No log lines.")]));
    const edges = (run.lineage || []).map(([a, b]) => h("tr", {}, h("td", {}, h("code", {}, a)), h("td", {}, h("code", {}, b))));
    view.lineage.replaceChildren(...(edges.length ? edges : [h("tr", {}, h("td", { colspan: 2, class: "muted" }, TERMINAL.has(run.state) ? "No lineage was recorded for this run." : "No lineage yet."))]));
    drawOutput();
  }

  const drawnRows = new Map();  // step id -> {key: what its row shows, row}
  function stepRow(id, s) {
    return h("tr", { "data-step": id },
      h("td", {}, id), h("td", {}, s.task_id ? `${s.task_id}@${s.task_version}` : ""), h("td", {}, badge(stateOf(id))),
      h("td", { class: "num" }, (live.get(id)?.attempt) || s.attempt || ""),
      h("td", {}, s.executor_id || "", s.cached_from ? h("div", { class: "muted", "data-from": s.cached_from },
        `${s.attempt ? "cached" : "taken over"} from `, h("a", { href: `#/runs/${s.cached_from.split("/")[0]}` }, s.cached_from)) : null,
        signalCell(id, s)),
      h("td", {}, when(s.started_at)), h("td", { class: "num" }, fmtSeconds(secondsBetween(s.started_at, s.ended_at))),
      h("td", { class: "error" }, s.error || ""));
  }

  // A step that awaits a signal (its await_signal): what it waits for, and a button that sends
  // it (a JSON object, asked for); once one came, who sent it; or that none came in time.
  function signalCell(id, s) {
    if (s.signaled_by) return h("div", { class: "muted", "data-signaled": id }, `signalled by ${s.signaled_by}`);
    if (s.ran_without_signal) return h("div", { class: "muted", "data-signaled": id }, "ran without a signal: none came in time");
    if (!s.awaiting_signal) return null;
    const send = h("button", { "data-signal": id, onclick: async () => {
      const text = prompt(`The signal for ${id}: a JSON object, given to its task as "${s.awaiting_signal}"`, "{}");
      if (text === null) return;
      try { run = await api(`/api/v1/runs/${runId}/steps/${encodeURIComponent(id)}/signal`, { json: { payload: JSON.parse(text) } }); draw(); }
      catch (e) { alert(`${e.code || "error"}: ${e.message}`); }
    } }, "Send signal");
    return h("div", { class: "warning" }, `awaits a signal (${s.awaiting_signal}) until ${when(s.signal_deadline)}${s.continues_at_deadline ? " (then it runs without one)" : ""} `, send);
  }

  function drawGantt() {
    const t0 = run.created_at ? new Date(run.created_at).getTime() : null;
    const spans = stepIds().map((id) => ({ id, s: stepOf(id) })).filter((x) => x.s?.started_at);
    if (!t0 || !spans.length) { view.gantt.replaceChildren(h("p", { class: "muted" }, "No step has started yet.")); return; }
    const now = Date.now();
    const end = Math.max(...spans.map((x) => (x.s.ended_at ? new Date(x.s.ended_at).getTime() : now)), t0 + 1);
    const total = end - t0;
    view.gantt.replaceChildren(...spans.map(({ id, s }) => {
      const a = new Date(s.started_at).getTime() - t0, b = (s.ended_at ? new Date(s.ended_at).getTime() : now) - t0;
      const span = h("div", { class: "span", "data-step": id, title: `${id}: ${fmtSeconds(a / 1000)} → ${fmtSeconds(b / 1000)}` });
      span.style.left = `${(a / total) * 100}%`;
      span.style.width = `${Math.max(0.5, ((b - a) / total) * 100)}%`;
      span.style.background = getComputedStyle(document.documentElement).getPropertyValue(`--${stateOf(id).toLowerCase()}`) || "#60a5fa";
      return h("div", { class: "lane" }, h("div", { class: "name" }, id), h("div", { class: "track" }, span));
    }), h("div", { class: "axis" }, h("span", {}, "0"), h("span", {}, fmtSeconds(total / 1000))));
  }

  let drawnOutputFor = "";
  function drawOutput() {
    const key = `${run.state}:${run.ended_at}`;
    if (drawnOutputFor === key) return;
    drawnOutputFor = key;
    const parts = [];
    if (run.output !== null && run.output !== undefined) parts.push(h("pre", { id: "output" }, JSON.stringify(run.output, null, 2)));
    else parts.push(h("p", { class: "muted" }, TERMINAL.has(run.state) ? "No output." : "Not finished yet."));
    const faces = run.output && Array.isArray(run.output.faces) ? run.output.faces : null;
    const image = Object.values(run.input || {}).find((v) => typeof v === "string" && v.startsWith("artifact://"));
    if (faces && image) {
      const canvas = h("canvas", { class: "faces", id: "faces", "data-faces": faces.length });
      parts.unshift(canvas);
      drawFaces(canvas, image, faces);
    }
    view.output.replaceChildren(...parts);
  }

  function applyEvent(ev) {
    lastEventId = ev.event_id;
    events.push(ev);
    const line = `${new Date(ev.time).toLocaleTimeString()} ${ev.step_id || "run"} ${ev.kind === "STATE" ? ev.state : ev.kind}${ev.kind === "PROGRESS" ? " " + Math.round(ev.progress * 100) + "%" : ""} ${ev.message || ""}`;
    view.events.append(h("div", { "data-kind": ev.kind }, line));
    if (view.events.childElementCount > 300) view.events.firstElementChild.remove();
    view.events.scrollTop = view.events.scrollHeight;
    if (!ev.step_id) { if (ev.kind === "STATE" && run) run.state = ev.state; return; }
    const l = live.get(ev.step_id) || {};
    if (ev.kind === "LOG") { (logs.get(ev.step_id) || logs.set(ev.step_id, []).get(ev.step_id)).push(ev.message); return; }
    if (ev.attempt && ev.attempt > (l.attempt || 0)) { l.progress = 0; }
    l.attempt = Math.max(l.attempt || 0, ev.attempt || 0);
    if (ev.kind === "PROGRESS") { l.progress = ev.progress; l.message = ev.message; l.state = "RUNNING"; }
    else if (ev.kind === "STATE" || ev.kind === "RETRYING") { l.state = ev.kind === "RETRYING" ? "QUEUED" : ev.state; l.message = ev.message; }
    live.set(ev.step_id, l);
  }

  async function refresh() {
    try {
      run = await api(`/api/v1/runs/${runId}`);
      if (run.pipeline_id && !pipeline) pipeline = await api(`/api/v1/pipelines/${run.pipeline_id}@${run.pipeline_version}`);
      draw();
      markUpdated();  // (it read its run, not the page before's)
    } catch (e) { if (e.status !== 401) showError(view.head, e); }
  }
  const refreshSoon = () => { clearTimeout(refreshTimer); refreshTimer = setTimeout(refresh, 250); };

  function connect() {
    if (closed) return;
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}/api/v1/runs/${encodeURIComponent(runId)}/events?after=${encodeURIComponent(lastEventId)}`);
    socket.onopen = () => { view.live.textContent = "live"; view.live.dataset.live = "1"; };
    socket.onmessage = (msg) => {
      const data = JSON.parse(msg.data);
      if (data.error) { view.live.textContent = `${data.error.code}: ${data.error.message}`; return; }
      applyEvent(data);
      draw();
      refreshSoon();
    };
    socket.onclose = (ev) => {
      view.live.dataset.live = "";
      if (closed) return;
      if (ev.code === 1000) { view.live.textContent = "finished"; refresh(); return; }
      if (ev.code >= 4000) { view.live.textContent = `closed: ${ev.reason}`; return; }
      view.live.textContent = "reconnecting…";
      retryTimer = setTimeout(connect, 1000); // resumes after the last event seen
    };
  }
  refresh().then(connect);
  return () => { closed = true; clearTimeout(refreshTimer); clearTimeout(retryTimer); if (socket) socket.close(); };
}

async function drawFaces(canvas, uri, faces) {
  try {
    const reply = await fetch(`/api/v1/artifacts?uri=${encodeURIComponent(uri)}`, { credentials: "same-origin" });
    if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
    const bitmap = await createImageBitmap(await reply.blob());
    canvas.width = bitmap.width; canvas.height = bitmap.height;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(bitmap, 0, 0);
    const lw = Math.max(2, bitmap.width / 300);
    ctx.lineWidth = lw; ctx.font = `bold ${Math.max(14, bitmap.width / 30)}px system-ui`;
    for (const f of faces) {
      if (!Array.isArray(f.bbox)) continue;
      const [x, y, w, hgt] = f.bbox;
      ctx.strokeStyle = "#22c55e"; ctx.strokeRect(x, y, w, hgt);
      const label = `face ${f.face_id ?? ""} ${(f.confidence ?? 0).toFixed(2)}`;
      const tw = ctx.measureText(label).width, th = parseInt(ctx.font.split(" ")[1], 10);
      const ty = y - th - 4 >= 0 ? y - th - 4 : y + hgt;
      ctx.fillStyle = "#22c55e"; ctx.fillRect(x, ty, tw + 8, th + 4);
      ctx.fillStyle = "#052e16"; ctx.fillText(label, x + 4, ty + th);
      const marks = f.detection && f.detection.landmarks ? Object.values(f.detection.landmarks) : [];
      ctx.fillStyle = "#f43f5e";
      for (const [px, py] of marks) { ctx.beginPath(); ctx.arc(px, py, lw * 1.5, 0, Math.PI * 2); ctx.fill(); }
    }
    canvas.dataset.drawn = "1";
  } catch (e) { canvas.replaceWith(h("p", { class: "error" }, `image: ${e.message}`)); }
}

// ---------------------------------------------------------------------------- fleet

// How task code is confined on an executor (its hello says): short of isolated stands out.
function sandboxNote(sandbox) {
  if (sandbox === "isolated") return h("div", { class: "muted", "data-sandbox": sandbox }, "isolated");
  const text = sandbox === "limits" ? "sandbox: limits only" : "sandbox: unknown";
  return h("div", { class: "warning", "data-sandbox": sandbox, title: "task code runs as the executor's own user, on its network (docs/architecture.md, Threat model)" }, text);
}

function executorsPage() {
  const body = h("tbody");
  main.replaceChildren(h("h1", {}, "Executors"), h("table", { id: "executors" },
    headings(["Executor", "State", "Queues", "#Slots busy / free", "In flight", "#CPU", "#Memory", "#Disk", "Last seen", "Scheduler", "Slot errors", ""]), body));
  const fill = async () => {
    const list = await api("/api/v1/executors");
    body.replaceChildren(...list.map((e) => h("tr", { "data-executor": e.executor_id },
      h("td", {}, e.executor_id, Object.keys(e.labels).length ? h("div", { class: "muted" }, Object.entries(e.labels).map(([k, v]) => `${k}=${v}`).join(" ")) : null),
      h("td", {}, badge(e.state), sandboxNote(e.sandbox),
        e.pause ? h("div", { class: "warning", "data-paused": "1" }, `paused by ${e.pause.paused_by}${e.pause.reason ? ": " + e.pause.reason : ""}`) : null,
        e.state !== "LOST" && e.resting_until && new Date(e.resting_until) > new Date()
          ? h("div", { class: "warning", "data-resting": "1" }, `resting until ${when(e.resting_until)}: steps kept failing in it `, endRestButton(e.executor_id, fill)) : null),
      h("td", {}, e.queues.join(", "), e.namespaces.length ? h("div", { class: "muted" }, `namespaces ${e.namespaces.join(", ")}`) : null),
      h("td", { class: "num" }, `${Math.min(e.busy_slots, e.slots)} / ${Math.max(0, e.slots - e.busy_slots)}`),
      h("td", { class: "in-flight" }, e.running_steps.map((m) => {
        const [run, step] = m.split(":");
        return h("div", {}, h("a", { href: `#/runs/${run}` }, h("code", {}, short(run, 10))), ` ${step}`);
      })),
      h("td", { class: "num", "data-cpu": e.cpu_percent }, e.state === "LOST" ? "" : `${e.cpu_percent.toFixed(0)}%`),
      h("td", { class: "num", "data-memory": e.memory_bytes }, e.memory_bytes ? bytes(e.memory_bytes) : ""),
      h("td", { class: "num", "data-disk": e.disk_bytes, title: "packages, input artifacts, installed requirements and workers' files in its cache" }, e.disk_bytes ? bytes(e.disk_bytes) : ""),
      h("td", {}, when(e.last_seen_at)), h("td", {}, e.scheduler_id),
      h("td", { class: e.slot_errors ? "warning" : null, title: e.last_slot_error }, e.slot_errors ? `${e.slot_errors}: ${e.last_slot_error}` : "0"),
      h("td", { class: "actions" }, e.state === "LOST" ? "" : pauseButton("executors", "executor_id", e.executor_id, !!e.pause,
        "It is given no new step until it is resumed; its running steps go on.", fill)))));
    if (!list.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 12, class: "muted" }, "No executor has connected.")));
  };
  return every(REFRESH_MS, fill);
}

// A new schedule of the namespace: a task or pipeline on one input, at the times of a cron
// expression (in a time zone) or every so many seconds; `done` is called with what was made.
function scheduleForm(done) {
  const err = h("span", { class: "error" });
  const target = targetSelect(err);
  const id = h("input", { name: "schedule_id", size: 20, required: true, placeholder: "nightly-report" });
  const input = h("textarea", { name: "input", rows: 2 }, "{}");
  const kind = h("select", { name: "kind" }, h("option", { value: "cron" }, "cron expression"), h("option", { value: "every" }, "every N seconds"),
    h("option", { value: "once" }, "once, at a time"));
  const when = h("input", { name: "when", size: 16, required: true, placeholder: "0 2 * * *" });
  const at = h("input", { type: "datetime-local", name: "at", step: 1, hidden: true });
  const from = h("input", { type: "datetime-local", name: "start_time", step: 1 });
  const until = h("input", { type: "datetime-local", name: "end_time", step: 1 });
  kind.addEventListener("change", () => {
    const once = kind.value === "once";
    when.hidden = once; when.required = !once; at.hidden = !once; at.required = once;
    when.placeholder = kind.value === "cron" ? "0 2 * * *" : "3600";
  });
  const moment = (input) => (input.value ? new Date(input.value).toISOString() : null);  // the browser's zone
  const zone = h("input", { name: "timezone", size: 16, placeholder: "UTC" });
  const overlap = h("select", { name: "overlap" }, h("option", { value: "skip" }, "skip a time while the last run goes on"), h("option", { value: "allow" }, "start another run anyway"));
  const limit = h("input", { type: "number", name: "run_timeout", min: 1, step: "any", placeholder: "none", size: 8 });
  const dueKey = h("input", { name: "due_time_field", size: 12, placeholder: "none" });
  const jitter = h("input", { type: "number", name: "jitter", min: 0, step: "any", placeholder: "none", size: 8 });
  return h("details", { class: "card" }, h("summary", {}, "New schedule"),
    h("form", { id: "new-schedule", onsubmit: async (ev) => {
      ev.preventDefault(); err.textContent = "";
      const [what, ref] = target.value.split(":");
      let doc;
      try { doc = JSON.parse(input.value || "{}"); } catch (e) { err.textContent = `input: not JSON (${e.message})`; return; }
      const timing = kind.value === "once" ? { at: moment(at) }
        : { ...(kind.value === "cron" ? { cron: when.value.trim(), timezone: zone.value.trim() } : { every_seconds: Number(when.value) }),
            start_time: moment(from), end_time: moment(until), jitter_seconds: jitter.value ? Number(jitter.value) : null };
      try {
        const made = await api("/api/v1/schedules", { json: { schedule_id: id.value.trim(), [what]: ref, input: doc, ...timing,
          overlap: overlap.value, run_timeout_seconds: limit.value ? Number(limit.value) : null,
          due_time_field: dueKey.value.trim() } });
        err.textContent = `created: ${made.description}`;
        await done(made);
      } catch (e) { err.textContent = `${e.code}: ${e.message}`; }
    } },
      h("label", {}, "Schedule id", id),
      h("label", {}, "Pipeline or task", target),
      h("label", {}, "Input (JSON)", input),
      h("label", {}, "When", kind, " ", when, at),
      h("label", {}, "Time zone (cron only)", zone),
      h("label", {}, "From, until (your time; optional, not for once)", from, " ", until),
      h("label", {}, "Overlap", overlap),
      h("label", {}, "Time limit of each run, seconds", limit),
      h("label", {}, "Input key set to each run's due time", dueKey),
      h("label", {}, "Start each run up to this many seconds late (cron, every)", jitter),
      h("button", { type: "submit" }, "Create"), " ", err));
}

// An operator's limits of a task in a few words.
function limitText(t) {
  const parts = [];
  if (t.rate_limit !== null) parts.push(`rate ${t.rate_limit || "no limit"}`);
  if (t.rate_burst !== null && t.rate_burst !== undefined) parts.push(`bursts of ${t.rate_burst}`);
  if (t.concurrency_limit !== null) parts.push(t.concurrency_limit ? `at most ${t.concurrency_limit} at once` : "no concurrency limit");
  return parts.join(" · ");
}

// Sets a task's rate limit, its burst or its concurrency limit over its task.json's (an empty
// field is left as it is).
function taskLimitForm(done) {
  const err = h("span", { class: "error" });
  const task = h("input", { name: "task_id", size: 20, required: true });
  const rate = h("input", { name: "rate_limit", size: 8, placeholder: "5/s" });
  const burst = h("input", { type: "number", name: "rate_burst", min: 1, max: 10000, step: 1, size: 6 });
  const conc = h("input", { type: "number", name: "concurrency_limit", min: 0, max: 1000, step: 1, size: 6 });
  return h("details", { class: "card" }, h("summary", {}, "Limit a task"),
    h("form", { id: "task-limit", onsubmit: async (ev) => {
      ev.preventDefault(); err.textContent = "";
      const body = { task_id: task.value.trim() };
      if (rate.value.trim()) body.rate_limit = rate.value.trim();
      if (burst.value !== "") body.rate_burst = Number(burst.value);
      if (conc.value !== "") body.concurrency_limit = Number(conc.value);
      try { await api("/api/v1/task-limits", { json: body }); await done(); }
      catch (e) { err.textContent = `${e.code}: ${e.message}`; }
    } },
      h("label", {}, "Task", task), h("label", {}, "Rate limit (N/s, N/m, N/h)", rate),
      h("label", {}, "Starts at once under it", burst),
      h("label", {}, "At most this many at once (0: none)", conc),
      h("button", { type: "submit" }, "Set"), " ", err));
}

// A run for each time of a schedule in a past range (times that had theirs keep them);
// `choose(id)` opens it for one schedule.
function backfillForm() {
  const err = h("span", { class: "error" }), out = h("span", { class: "muted", id: "backfilled" });
  const id = h("input", { name: "schedule_id", size: 20, required: true });
  const from = h("input", { type: "datetime-local", name: "from", step: 1, required: true });
  const until = h("input", { type: "datetime-local", name: "until", step: 1, required: true });
  const most = h("input", { type: "number", name: "max_running", min: 0, max: 1000, step: 1, placeholder: "all", size: 6 });
  const card = h("details", { class: "card", id: "backfill" }, h("summary", {}, "Backfill a schedule"),
    h("form", { onsubmit: async (ev) => {
      ev.preventDefault(); err.textContent = ""; out.textContent = "";
      try {
        const range = { start_time: new Date(from.value).toISOString(), end_time: new Date(until.value).toISOString(),
          max_running: most.value ? Number(most.value) : 0 };
        const runs = await api(`/api/v1/schedules/${encodeURIComponent(id.value.trim())}/backfill`, { json: range });
        const started = runs.filter((r) => r.started).length, waiting = runs.filter((r) => r.waiting).length;
        out.textContent = `${runs.length} time${runs.length === 1 ? "" : "s"}: started ${started}, ${runs.length - started - waiting} had their run`
          + (waiting ? `, ${waiting} wait their turn` : "");
        if (waiting) out.append(" ", dropButton(id.value.trim()));
      } catch (e) { err.textContent = `${e.code}: ${e.message}`; }
    } },
      h("label", {}, "Schedule id", id), h("label", {}, "From (your time)", from), h("label", {}, "Until, past", until),
      h("label", {}, "At most this many at once", most),
      h("button", { type: "submit" }, "Backfill"), " ", out, err));
  card.choose = (scheduleId) => { id.value = scheduleId; card.open = true; card.scrollIntoView(); };
  // Drops the times the backfill left waiting (the runs it started go on).
  const dropButton = (scheduleId) => h("button", { class: "danger", onclick: async (event) => {
    event.preventDefault(); event.target.disabled = true;
    try {
      const r = await api(`/api/v1/schedules/${encodeURIComponent(scheduleId)}/backfill:cancel`, { method: "POST" });
      event.target.replaceWith(`dropped ${r.dropped} waiting`);
    } catch (e) { err.textContent = `${e.code}: ${e.message}`; event.target.disabled = false; }
  } }, "Drop the waiting times");
  return card;
}

function queuesPage() {
  const body = h("tbody");
  const delayed = h("p", { class: "muted", id: "held-back" });
  const spaces = h("tbody");
  const schedules = h("tbody");
  const limits = h("tbody");
  const backfill = backfillForm();
  main.replaceChildren(h("h1", {}, "Queues"), h("table", { id: "queues" },
    headings(["Queue", "Namespace", "#Waiting", "#Oldest waiting", "#Executors", "#Free slots", "", ""]), body), delayed,
    h("h2", {}, "Namespaces"), h("table", { id: "namespaces" },
      headings(["Namespace", "#Runs queued or running", "#Limit", "#Weight", "#Steps waiting", "#Runs kept", "#Calls a second", ""]), spaces),
    h("h2", {}, "Task limits"), taskLimitForm(() => fill()), h("table", { id: "task-limits" },
      headings(["Task", "Limits (over task.json's)", "Set by", ""]), limits),
    h("h2", {}, "Schedules"), scheduleForm(() => fill()), backfill, h("table", { id: "schedules" },
      headings(["Schedule", "When", "Runs", "Next", "#Started", "#Skipped", "Last run", ""]), schedules));
  const fill = async () => {
    const [q, ns, sch, lim] = await Promise.all([api("/api/v1/queues"), api("/api/v1/namespaces"), api("/api/v1/schedules"), api("/api/v1/task-limits")]);
    limits.replaceChildren(...lim.map((t) => h("tr", { "data-task-limit": t.task_id },
      h("td", {}, t.task_id), h("td", {}, limitText(t)), h("td", {}, `${t.set_by} (${when(t.set_at)})`),
      h("td", { class: "actions" }, h("button", { class: "secondary", onclick: async (event) => {
        event.target.disabled = true;
        try { await api("/api/v1/task-limits", { json: { task_id: t.task_id, reset_fields: ["rate_limit", "rate_burst", "concurrency_limit"] } }); await fill(); }
        catch (e) { alert(`${e.code}: ${e.message}`); event.target.disabled = false; }
      } }, "Reset to task.json's")))));
    if (!lim.length) limits.replaceChildren(h("tr", {}, h("td", { colspan: 4, class: "muted" }, "No operator has set a task's limits in this namespace.")));
    schedules.replaceChildren(...sch.map((s) => h("tr", { "data-schedule": s.schedule_id },
      h("td", {}, s.schedule_id), h("td", {}, s.description), h("td", {}, s.task || `pipeline ${s.pipeline}`),
      h("td", { "data-next": s.next_run_at || "" }, s.paused ? "paused" : (when(s.next_run_at) || "done")), h("td", { class: "num" }, s.runs_started,
        s.backfill_waiting ? h("div", { class: "muted", "data-backfill-waiting": s.backfill_waiting }, `+${s.backfill_waiting} backfill waiting`) : null),
      h("td", { class: "num" }, s.times_skipped),
      h("td", {}, s.last_run_id ? h("a", { href: `#/runs/${s.last_run_id}` }, s.last_run_id) : "",
        s.last_error ? h("div", { class: "warning" }, s.last_error) : null),
      h("td", { class: "actions" }, ...scheduleActions(s, fill, backfill.choose)))));
    if (!sch.length) schedules.replaceChildren(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No schedule in this namespace.")));
    spaces.replaceChildren(...ns.map((n) => h("tr", { "data-namespace": n.namespace },
      h("td", {}, n.namespace), h("td", { class: "num" }, n.unfinished_runs),
      h("td", { class: "num" }, n.run_limit || "none"), h("td", { class: "num" }, n.weight),
      h("td", { class: "num" }, n.waiting_steps),
      h("td", { class: "num" }, n.history_retention_days ? `${n.history_retention_days} days` : "for good"),
      h("td", { class: "num" }, n.calls_per_second || "no limit"),
      h("td", { class: "warning" }, n.at_limit ? "⚠ at its limit: submits are refused until runs end" : ""))));
    body.replaceChildren(...q.queues.map((x) => h("tr", { "data-queue": x.queue },
      h("td", {}, h("code", {}, x.queue)), h("td", {}, x.namespace), h("td", { class: "num" }, x.depth),
      h("td", { class: "num" }, x.depth ? fmtSeconds(x.oldest_age_seconds) : ""),
      h("td", { class: "num" }, x.executors), h("td", { class: "num" }, x.free_slots),
      h("td", { class: "warning" }, x.pause ? `paused by ${x.pause.paused_by}${x.pause.reason ? ": " + x.pause.reason : ""} (${when(x.pause.paused_at)})`
        : x.stranded ? "⚠ work waits and no executor takes from this queue" : ""),
      h("td", { class: "actions" }, pauseButton("queues", "queue", x.queue, !!x.pause,
        "Its waiting steps are not started until it is resumed.", fill)))));
    if (!q.queues.length) body.replaceChildren(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No queue has work or an executor.")));
    delayed.textContent = q.delayed
      ? `${q.delayed} step${q.delayed === 1 ? "" : "s"} held back: waiting out a retry's backoff, their run's start time or their task's rate limit, or for a place under its concurrency limit.`
      : "No step held back (by a retry's backoff, a run's start time, a rate or a concurrency limit).";
  };
  return every(REFRESH_MS, fill);
}

// Ends an executor's rest before it runs out (an operator has looked at why its steps kept
// failing in it); should they fail in it again, its next rest is twice as long.
function endRestButton(id, fill) {
  return h("button", { type: "button", class: "secondary", "data-end-rest": "1", title: "take work again now; should steps fail in it again, it rests twice as long", onclick: async (event) => {
    event.target.disabled = true;
    try {
      const done = await api("/api/v1/executors:resume", { json: { executor_id: id } });
      if (!done.rest_ended) alert(`${id} is too old to be told its rest is over: restart it to end the rest sooner`);
      await fill();
    } catch (e) { alert(`${e.code}: ${e.message}`); event.target.disabled = false; }
  } }, "End rest");
}

// A Pause or Resume button for what ``kind`` names ("queues", "executors"): ``key`` is the
// field that names it in the API (its value ``name``), ``effect`` what a pause does.
function pauseButton(kind, key, name, paused, effect, fill) {
  return h("button", { class: paused ? "" : "danger", onclick: async (event) => {
    const reason = paused ? "" : prompt(`Pause ${kind.slice(0, -1)} ${name}? ${effect} Why:`, "");
    if (reason === null) return;
    event.target.disabled = true;
    try { await api(`/api/v1/${kind}:${paused ? "resume" : "pause"}`, { json: { [key]: name, reason } }); await fill(); }
    catch (e) { alert(`${e.code}: ${e.message}`); event.target.disabled = false; }
  } }, paused ? "Resume" : "Pause");
}

// The buttons of a schedule's row: its runs, one now, a backfill, pause or resume, drop the
// backfill times still waiting (if any), delete.
function scheduleActions(s, fill, backfill) {
  const path = `/api/v1/schedules/${encodeURIComponent(s.schedule_id)}`;
  const act = (text, cls, call) => h("button", { class: cls, onclick: async (event) => {
    event.target.disabled = true;
    try { await call(); } catch (e) { alert(`${e.code}: ${e.message}`); event.target.disabled = false; }
  } }, text);
  const runs = () => {
    Object.assign(runFilters, { state: "", pipeline_id: "", task_id: "", batch_id: "", created_after: "", created_before: "", label: `wtm.schedule=${s.schedule_id}` });
    location.hash = "#/runs";
  };
  return [
    h("button", { class: "secondary", onclick: runs }, "Runs"), " ",
    act("Run now", "secondary", async () => { const t = await api(`${path}/trigger`, { method: "POST" }); location.hash = `#/runs/${t.run_id}`; }), " ",
    h("button", { class: "secondary", onclick: () => backfill(s.schedule_id) }, "Backfill…"), " ",
    act(s.paused ? "Resume" : "Pause", s.paused ? "" : "danger", async () => { await api(`${path}/${s.paused ? "resume" : "pause"}`, { method: "POST" }); await fill(); }), " ",
    s.backfill_waiting ? act(`Drop ${s.backfill_waiting} waiting`, "danger", async () => {
      if (!confirm(`Drop the ${s.backfill_waiting} backfill time(s) of ${s.schedule_id} still waiting? Its runs started go on.`)) return;
      await api(`${path}/backfill:cancel`, { method: "POST" }); await fill();
    }) : null, s.backfill_waiting ? " " : null,
    act("Delete", "danger", async () => {
      if (!confirm(`Delete schedule ${s.schedule_id}? Its runs go on.`)) return;
      await api(path, { method: "DELETE" }); await fill();
    }),
  ];
}

// ---------------------------------------------------------------------------- catalog

function catalogPage() {
  const tasks = h("tbody"), pipelines = h("tbody"), detail = h("div", { id: "detail" });
  main.replaceChildren(h("h1", {}, "Tasks & pipelines"), h("div", { class: "row" },
    h("div", { class: "card" }, h("h2", {}, "Pipelines"), h("table", { id: "pipelines" }, headings(["Pipeline", "Version", "#Steps", ""]), pipelines)),
    h("div", { class: "card" }, h("h2", {}, "Tasks"), h("table", { id: "tasks" }, headings(["Task", "Version", "Queue", "Digest", ""]), tasks))),
    detail);
  const showPipeline = (p) => {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("class", "dag");
    renderDag(svg, p.steps.map((s) => ({ id: s.step_id, deps: s.depends_on, label: `${s.task_id}@${s.task_version}` })), (id) => {
      const s = p.steps.find((x) => x.step_id === id), each = Object.entries(s.for_each || {});
      return { state: "PENDING", line2: `${s.task_id}@${s.task_version}`, line3: `queue ${s.queue || "default"} · retries ${s.retry_count}${s.skip_if?.length ? " · skip_if" : ""}${each.length ? " · for_each" : ""}`,
        title: [(s.skip_if || []).map((c) => `skipped when ${c.path} ${c.op.replace("_", " ")}${"value" in c ? " " + JSON.stringify(c.value) : ""}`).join(" or "),
          ...each.map(([field, list]) => `runs once per item of ${list}, given as ${field}`)].filter(Boolean).join("; ") };
    });
    detail.replaceChildren(h("div", { class: "card" }, h("h2", {}, `Pipeline ${p.pipeline_id}@${p.version}`), h("p", {}, p.description), svg,
      h("h2", {}, "Input validation"), h("pre", {}, JSON.stringify(p.input_validation, null, 2)),
      h("h2", {}, "Steps"), h("pre", {}, JSON.stringify(p.steps, null, 2))));
  };
  const showTask = (t) => detail.replaceChildren(h("div", { class: "card" }, h("h2", {}, `Task ${t.task_id}@${t.version}`),
    h("p", {}, t.description), h("p", { class: "muted" }, `sha256:${t.digest} · ${t.size_bytes} bytes${t.deprecated ? " · deprecated: " + t.deprecation_reason : ""}`),
    h("h2", {}, "Input schema"), h("pre", {}, JSON.stringify(t.manifest.input_schema || {}, null, 2)),
    h("h2", {}, "Output schema"), h("pre", {}, JSON.stringify(t.manifest.output_schema || {}, null, 2)),
    h("h2", {}, "task.json"), h("pre", {}, JSON.stringify(t.manifest, null, 2))));
  (async () => {
    try {
      const [ps, ts] = await Promise.all([api("/api/v1/pipelines"), api("/api/v1/tasks")]);
      pipelines.replaceChildren(...ps.map((p) => h("tr", { "data-pipeline": p.pipeline_id }, h("td", {}, p.pipeline_id), h("td", {}, p.version), h("td", { class: "num" }, p.steps.length),
        h("td", {}, h("button", { class: "secondary", onclick: () => showPipeline(p) }, "Graph")))));
      tasks.replaceChildren(...ts.map((t) => h("tr", { "data-task": t.task_id }, h("td", {}, t.task_id), h("td", {}, t.version, t.deprecated ? " (deprecated)" : ""), h("td", {}, t.queue),
        h("td", {}, h("code", {}, short(t.digest, 12))), h("td", {}, h("button", { class: "secondary", onclick: () => showTask(t) }, "Schemas")))));
    } catch (e) { showError(detail, e); }
  })();
  return () => {};
}

// ---------------------------------------------------------------------------- health

function healthPage() {
  const body = h("tbody"), overall = h("p");
  main.replaceChildren(h("h1", {}, "Health"), overall, h("table", { id: "health" }, headings(["Part", "Status", "Detail"]), body));
  return every(5000, async () => {
    const { body: report } = await api("/api/v1/health", { allowError: true });
    if (!report || !report.checks) throw new Error("no report");
    overall.replaceChildren("Overall: ", badge(report.status));
    body.replaceChildren(...report.checks.map((c) => h("tr", {}, h("td", {}, c.component), h("td", {}, badge(c.status)), h("td", {}, c.detail))));
  });
}

// ---------------------------------------------------------------------------- router

const PAGES = { runs: runsPage, executors: executorsPage, queues: queuesPage, catalog: catalogPage, health: healthPage };

async function route() {
  cleanup(); cleanup = () => {};
  try {
    if (!(await ensureSession())) return;
  } catch (e) { showError(main, e); return; }
  const { parts } = hashParts();
  const [page, id] = parts;
  for (const a of document.querySelectorAll("#nav a[data-page]")) a.classList.toggle("active", a.dataset.page === page);
  cleanup = page === "runs" && id ? runPage(decodeURIComponent(id)) : (PAGES[page] || runsPage)();
}

(async () => {
  try { config = await api("/api/v1/config"); } catch { /* defaults */ }
  window.addEventListener("hashchange", route);
  route();
})();
