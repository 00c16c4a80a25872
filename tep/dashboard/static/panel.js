// The panel of one action: what it is, how it ran (attempts, items, earlier runs), what it
// sent and got back, its events, and the operations on it (resume/reject, retry from here).

import { attemptsOf, executionHref, itemsDone, recordsOfAction, requestOf, summarize } from "./events.js";
import { badge, facts, fmtDuration, h, msBetween, timeCell } from "./dom.js";
import { waitpointForm } from "./forms.js";

const MAX_JSON = 50_000;
const MAX_ROWS = 200;
const WAITS = new Set(["wait", "sleep"]); // run by the orchestrator: no attempts

function json(value) {
  const text = JSON.stringify(value, null, 2) ?? "null";
  if (text.length <= MAX_JSON) return h("pre", { class: "json", text });
  return h("div", {},
    h("pre", { class: "json", text: text.slice(0, MAX_JSON) }),
    h("p", { class: "note", text: `(${text.length} characters; the first ${MAX_JSON} shown)` }));
}

function section(title, ...content) {
  return h("section", { class: "panel-section", data: { section: title } }, h("h3", { text: title }), content);
}

function errorBlock(error) {
  return h("div", { class: "error-box" },
    h("strong", { text: error.code }), " ", error.message,
    error.status_code ? ` (HTTP ${error.status_code})` : "",
    error.retryable ? " · retryable" : "");
}

function attemptsTable(rows) {
  if (!rows.length) return h("p", { class: "note", text: "no attempt started" });
  return h("table", { class: "grid attempts" },
    h("thead", {}, h("tr", {}, ["#", "started", "ended", "took", "outcome", "executor"].map((t) => h("th", { text: t })))),
    h("tbody", {}, rows.map((row) => h("tr", { data: { outcome: row.outcome } },
      h("td", { text: row.attempt }),
      h("td", {}, timeCell(row.started)),
      h("td", {}, row.ended ? timeCell(row.ended) : "-"),
      h("td", { text: fmtDuration(row.duration ?? msBetween(row.started, row.ended)) }),
      h("td", {}, row.outcome, row.http ? ` · HTTP ${row.http}` : "",
        row.error ? h("div", { class: "error-text", text: `${row.error.code}: ${row.error.message}` }) : ""),
      h("td", { text: (row.executor || "-") + (row.interruptions ? ` (${row.interruptions} interruption(s))` : "") }),
    ))));
}

function requestBlock(dispatch, item) {
  const request = dispatch.request;
  const parts = [];
  if (item !== null) parts.push(h("p", { class: "note", text: `item ${item}'s request (each item sends its own)` }));
  if (request) {
    const line = `${request.method || "GET"} ${request.url}`;
    parts.push(h("pre", { class: "request-line", text: line }));
    const rest = {};
    for (const name of ["headers", "query", "json", "body", "timeout_s"]) {
      const value = request[name];
      if (value !== null && value !== undefined && !(typeof value === "object" && !Array.isArray(value) && !Object.keys(value).length)) rest[name] = value;
    }
    if (Object.keys(rest).length) parts.push(json(rest));
  }
  if (dispatch.input !== null && dispatch.input !== undefined) parts.push(h("p", { text: "input" }), json(dispatch.input));
  parts.push(h("p", { class: "note", text: `queue ${dispatch.queue}, dispatched ` }, timeCell(dispatch.occurred_at),
    ". The log holds secrets as {{secrets.NAME}} templates: only the executor fills them in, at call time."));
  return section("Request as sent", parts);
}

function itemsSection(items) {
  const done = itemsDone(items);
  const bar = h("progress", { max: items.count, value: done });
  const summary = h("p", {},
    `${done}/${items.count} done: ${items.completed} completed, ${items.failed} failed, ${items.cancelled} cancelled; ` +
    `${items.dispatched} dispatched, ${items.concurrency} at a time`);
  const shown = items.items.slice(0, MAX_ROWS);
  const table = h("table", { class: "grid items" },
    h("thead", {}, h("tr", {}, ["item", "status", "attempts", "took", "error"].map((t) => h("th", { text: t })))),
    h("tbody", {}, shown.map((item) => h("tr", {},
      h("td", { text: item.index }),
      h("td", {}, badge(item.status || "pending")),
      h("td", { text: item.attempts || 0 }),
      h("td", { text: fmtDuration(item.duration_ms ?? null) }),
      h("td", { class: "error-text", text: item.error ? `${item.error.code}: ${item.error.message}` : "" })))));
  const more = items.items.length > MAX_ROWS ? h("p", { class: "note", text: `first ${MAX_ROWS} of ${items.items.length} items shown` }) : null;
  return section("Items", bar, summary, table, more);
}

function runsSection(runs) {
  return section("Earlier runs", runs.map((run) => h("details", { class: "run" },
    h("summary", {}, `run ${run.run}: `, badge(run.status), ` ${run.attempts || 0} attempt(s), ${fmtDuration(run.duration_ms ?? null)}`),
    run.error ? errorBlock(run.error) : null,
    run.child_execution_id ? h("p", {}, "child ", childLink(run.child_execution_id)) : null,
    run.output ? json(run.output) : null)));
}

function waitSection(wait) {
  const resume = wait.resume;
  return section("Wait",
    facts([
      ["reason", wait.reason],
      ["since", timeCell(wait.since)],
      ["until", wait.until ? timeCell(wait.until) : "no timeout"],
      ["timer", wait.timer],
      ["last refusal", wait.refused],
      ["resumed by", resume ? resume.requested_by || "?" : null],
      ["rejected", resume && resume.reject ? resume.reject : null],
    ]),
    wait.schema ? h("details", {}, h("summary", { text: "schema" }), json(wait.schema)) : null);
}

function logSection(records) {
  const rows = records.slice(-MAX_ROWS);
  return section("Events",
    records.length > rows.length ? h("p", { class: "note", text: `last ${rows.length} of ${records.length}` }) : null,
    h("ol", { class: "action-log" }, rows.map((r) => h("li", {},
      h("span", { class: "seq", text: r.sequence }), " ", timeCell(r.event.occurred_at), " ", summarize(r.event)))));
}

function forEachText(spec) {
  if (Array.isArray(spec.for_each)) return `${spec.for_each.length} items${spec.concurrency ? `, ${spec.concurrency} at a time` : ""}`;
  return spec.for_each ? `${spec.for_each}${spec.concurrency ? `, ${spec.concurrency} at a time` : ""}` : null;
}

function childLink(id) {
  return h("a", { href: executionHref(id), text: id, class: "mono" });
}

/**
 * The panel of `actionId` as of `state`, from `records` (the events up to the same point).
 * `ops` (only while live) holds `resume(id, data)`, `reject(id, reason)`, `retryFrom(id)`.
 */
export function actionPanel({ state, plan, records, actionId, ops }) {
  const spec = plan.actions.find((a) => a.id === actionId);
  if (!spec) return h("p", { class: "note", text: `no action ${actionId} in the plan` });
  const action = (state && state.actions && state.actions[actionId]) || { action_id: actionId, status: "pending", attempts: 0, run: 1, runs: [] };
  const run = action.run || 1;
  const own = recordsOfAction(records, actionId);
  const parts = [];
  parts.push(h("header", { class: "panel-head" }, h("h2", { class: "mono", text: actionId }), badge(action.status)));
  parts.push(facts([
    ["type", spec.type || "http"],
    ["depends on", (spec.depends_on || []).join(", ")],
    ["run if", spec.run_if && spec.run_if !== "success" ? spec.run_if : null],
    ["error routes", (spec.on_error || []).join(", ")],
    ["continue on error", spec.continue_on_error ? "yes" : null],
    ["for each", forEachText(spec)],
    ["retry", spec.retry && spec.retry.max_attempts > 1 ? `up to ${spec.retry.max_attempts} attempts` : null],
    ["timeout", spec.timeout_s ? `${spec.timeout_s} s` : null],
    ["handled by", action.handled_by],
    ["queue", action.queue],
    ["run", run > 1 ? String(run) : null],
    ["attempts", String(action.attempts || 0)],
    ["dispatched", action.dispatched_at ? timeCell(action.dispatched_at) : null],
    ["started", action.started_at ? timeCell(action.started_at) : null],
    ["ended", action.completed_at ? timeCell(action.completed_at) : null],
    ["took", action.duration_ms !== null && action.duration_ms !== undefined ? fmtDuration(action.duration_ms) : null],
    ["skipped because", action.skip_reason],
    ["child execution", action.child_execution_id ? childLink(action.child_execution_id) : null],
  ]));
  if (action.error) parts.push(section("Error", errorBlock(action.error)));
  if (action.wait) parts.push(waitSection(action.wait));
  if (ops && action.status === "waiting" && action.wait && action.wait.reason === "waitpoint") {
    parts.push(section("Resume or reject", waitpointForm(action.wait.schema, {
      onResume: (data) => ops.resume(actionId, data),
      onReject: (reason) => ops.reject(actionId, reason),
    })));
  }
  if (action.items) parts.push(itemsSection(action.items));
  else if (!WAITS.has(spec.type)) parts.push(section("Attempts", attemptsTable(attemptsOf(records, actionId, run))));
  const item = action.items ? 0 : null;
  const dispatch = requestOf(records, actionId, run, item);
  if (dispatch) parts.push(requestBlock(dispatch, item));
  if (action.output !== null && action.output !== undefined) parts.push(section("Output", json(action.output)));
  if (action.runs && action.runs.length) parts.push(runsSection(action.runs));
  if (ops && ops.retryFrom) {
    parts.push(h("div", { class: "buttons" }, h("button", {
      type: "button",
      text: `Retry from ${actionId}`,
      title: "run this action and everything downstream of it again",
      on: { click: () => ops.retryFrom(actionId) },
    })));
  }
  parts.push(logSection(own));
  return h("div", { class: "action-panel", data: { action: actionId, status: action.status } }, parts);
}
