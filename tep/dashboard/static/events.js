// Reading an execution: its status and counts, action keys, one-line summaries of its
// events, an action's attempts and the request it sent; the address of its page.

import { fmtDuration } from "./dom.js";

/** The statuses an execution ends in (until a retry opens it again). */
export const TERMINAL = new Set(["completed", "failed", "cancelled"]);

/** Actions that ended in any way, from an execution's `counts`. */
export function finishedActions(counts) {
  return counts.completed + counts.failed + counts.skipped + counts.cancelled;
}

/** Items of a for-each action that ended in any way. */
export function itemsDone(items) {
  return items.completed + items.failed + items.cancelled;
}

/** The dashboard's address of an execution's page (`params`: action, at). */
export function executionHref(id, params = {}) {
  const query = new URLSearchParams(params).toString();
  return `#/executions/${encodeURIComponent(id)}${query ? `?${query}` : ""}`;
}

const KEY = /^([A-Za-z0-9_-]{1,64})(?:~([1-9][0-9]*))?(?:@(0|[1-9][0-9]*))?$/;

/** "fetch~2@17" -> {id: "fetch", run: 2, item: 17}; null for anything else. */
export function parseKey(key) {
  const match = KEY.exec(key || "");
  if (!match) return null;
  return {
    id: match[1],
    run: match[2] ? Number(match[2]) : 1,
    item: match[3] !== undefined ? Number(match[3]) : null,
  };
}

/** The plan of the execution (its plan.submitted), or null. */
export function planOf(records) {
  const submitted = records.find((r) => r.event.type === "plan.submitted");
  return submitted ? submitted.event.plan : null;
}

/** The records about action `actionId` (every run and item). */
export function recordsOfAction(records, actionId) {
  return records.filter((r) => {
    const key = parseKey(r.event.action_id);
    return key !== null && key.id === actionId;
  });
}

function errorText(error) {
  if (!error) return "";
  return `${error.code}: ${error.message}`;
}

/** What one event says, in one line. */
export function summarize(event) {
  const key = event.action_id || "";
  switch (event.type) {
    case "plan.submitted": {
      const count = event.plan && event.plan.actions ? event.plan.actions.length : 0;
      const parent = event.parent ? ` (child of ${event.parent.execution_id} ${event.parent.action_id})` : "";
      return `plan ${event.plan ? event.plan.id : "?"} submitted, ${count} actions${parent}`;
    }
    case "action.execute.requested": {
      const request = event.request ? ` ${event.request.method || "GET"} ${event.request.url}` : "";
      return `${key} dispatched to queue ${event.queue}${request}`;
    }
    case "action.started":
      if (event.child_execution_id) return `${key} started child execution ${event.child_execution_id}`;
      return `${key} attempt ${event.attempt} started${event.executor_id ? ` on ${event.executor_id}` : ""}` +
        (event.interruption ? ` (again after ${event.interruption} interruption(s))` : "");
    case "action.attempt.failed":
      return `${key} attempt ${event.attempt} failed: ${errorText(event.error)}; retry in ${fmtDuration(event.retry_in_ms)}`;
    case "action.completed": {
      const http = event.status_code ? `, HTTP ${event.status_code}` : "";
      const took = event.duration_ms !== null && event.duration_ms !== undefined ? `, ${fmtDuration(event.duration_ms)}` : "";
      return `${key} completed (attempt ${event.attempt}${took}${http})`;
    }
    case "action.failed":
      return `${key} failed (attempt ${event.attempt}): ${errorText(event.error)}`;
    case "action.skipped":
      return `${key} skipped: ${event.reason}${event.detail ? ` (${event.detail})` : ""}`;
    case "action.cancelled":
      return `${key} cancelled${event.reason ? `: ${event.reason}` : ""}`;
    case "action.waiting":
      return `${key} waiting (${event.reason})${event.until ? ` until ${event.until}` : ""}`;
    case "action.resume.requested": {
      const by = event.requested_by ? ` by ${event.requested_by}` : "";
      return event.reject ? `${key} rejected${by}: ${event.reject}` : `${key} resume requested${by}`;
    }
    case "action.timer.fired":
      return `${key} timer fired (${event.kind}, due ${event.due_at})`;
    case "action.items.started":
      return `${key} started ${event.count} items, ${event.concurrency} at a time`;
    case "execution.retried":
      return `run ${event.run}: ${event.reset.join(", ") || "nothing"} again` +
        (event.requested_by ? ` (by ${event.requested_by})` : "") + (event.reason ? `: ${event.reason}` : "");
    case "execution.completed":
      return "execution completed";
    case "execution.failed":
      return `execution failed: ${errorText(event.error)}`;
    case "execution.cancel.requested":
      return `cancel requested${event.reason ? `: ${event.reason}` : ""}`;
    case "execution.cancelled":
      return `execution cancelled${event.reason ? `: ${event.reason}` : ""}`;
    default:
      return event.type;
  }
}

/**
 * The attempts of one run of an action (or of one item), from its events: attempt, started,
 * ended, duration, outcome, error, executor, interruptions.
 */
export function attemptsOf(records, actionId, run = 1, item = null) {
  const attempts = new Map();
  let last = null;
  for (const { event } of records) {
    const key = parseKey(event.action_id);
    if (!key || key.id !== actionId || key.run !== run || key.item !== item) continue;
    if (event.type === "action.started") {
      const known = attempts.get(event.attempt);
      const row = known || { attempt: event.attempt, started: event.occurred_at, outcome: "running" };
      row.executor = event.executor_id || (event.child_execution_id ? "child execution" : null);
      row.interruptions = event.interruption || 0;
      attempts.set(event.attempt, row);
      last = row;
      continue;
    }
    const row = event.attempt !== undefined ? attempts.get(event.attempt) : last;
    if (!row) continue;
    if (event.type === "action.attempt.failed") {
      Object.assign(row, { ended: event.occurred_at, outcome: "failed, retried", error: event.error });
    } else if (event.type === "action.completed") {
      Object.assign(row, { ended: event.occurred_at, outcome: "completed", duration: event.duration_ms });
      if (event.status_code) row.http = event.status_code;
    } else if (event.type === "action.failed") {
      Object.assign(row, { ended: event.occurred_at, outcome: "failed", error: event.error });
    } else if (event.type === "action.cancelled" && row.outcome === "running") {
      Object.assign(row, { ended: event.occurred_at, outcome: "cancelled" });
    }
  }
  return [...attempts.values()].sort((a, b) => a.attempt - b.attempt);
}

/** The request the last dispatch of this run of the action (or of one of its items) sent,
 * as its action.execute.requested carries it: secrets stay `{{secrets.NAME}}` templates. */
export function requestOf(records, actionId, run = 1, item = null) {
  let found = null;
  for (const { event } of records) {
    if (event.type !== "action.execute.requested") continue;
    const key = parseKey(event.action_id);
    if (key && key.id === actionId && key.run === run && key.item === item) found = event;
  }
  return found;
}
