// The execution page: header and operations, the DAG, the panel of the selected action, the
// event timeline, and time travel over the execution's events. Live from the SSE stream.

import { allEvents, call } from "./api.js";
import { DagView } from "./dag.js";
import { badge, facts, fmtDuration, h, msBetween, replace, timeCell } from "./dom.js";
import { executionHref, finishedActions, parseKey, planOf, summarize, TERMINAL } from "./events.js";
import { actionPanel } from "./panel.js";
import { followStream } from "./sse.js";
import { Timeline } from "./timeline.js";

const CACHED_STATES = 300;

/** Mount the page of execution `id` in `root`; returns the function that leaves it. */
export function executionPage(root, id, params) {
  const controller = new AbortController();
  new ExecutionPage(root, id, params, controller.signal).start();
  return () => controller.abort();
}

class ExecutionPage {
  constructor(root, id, params, signal) {
    this.root = root;
    this.id = id;
    this.params = params;
    this.signal = signal;
    this.path = `v1/executions/${encodeURIComponent(id)}`;
    this.records = [];
    this.live = null;
    this.shown = null;
    this.atIndex = null; // null: live; else the index of the event shown
    this.atStates = new Map();
    this.travelTicket = 0;
    this.selected = params.get("action");
    this.panelKey = null;
    this.frame = null;
    this.loadingEvents = false;
    this.eventsAgain = false;
  }

  async start() {
    replace(this.root, h("p", { class: "note", text: `loading ${this.id}…` }));
    try {
      const [state, records] = await Promise.all([
        call(this.path, { signal: this.signal }),
        allEvents(this.id, { signal: this.signal }),
      ]);
      this.live = state;
      this.records = records;
    } catch (error) {
      if (this.signal.aborted) return;
      const text = error.status === 404 ? `There is no execution ${this.id}.` : `Cannot load ${this.id}: ${error.message}`;
      replace(this.root, h("p", { class: "error-box", text }), h("p", {}, h("a", { href: "#/", text: "All executions" })));
      return;
    }
    this.plan = planOf(this.records) || { id: this.live.plan_id, actions: [] };
    this.build();
    const at = Number(this.params.get("at"));
    const index = at ? this.records.findIndex((r) => r.sequence >= at) : -1;
    if (index >= 0 && index < this.records.length - 1) this.travel(index);
    else this.render();
    // A running execution's duration goes on between its events.
    const ticker = setInterval(() => {
      if (this.atIndex === null && !TERMINAL.has(this.live.status)) this.renderHead(this.live);
    }, 1000);
    this.signal.addEventListener("abort", () => clearInterval(ticker), { once: true });
    followStream(`${this.path}/stream`, {
      signal: this.signal,
      onEvent: (event) => this.onStreamEvent(event),
      onStatus: (status, detail) => this.onStreamStatus(status, detail),
    });
  }

  // ------------------------------------------------------------------ building the page

  build() {
    this.title = h("h1", {}, "Execution ", h("span", { class: "mono", text: this.id }));
    this.status = h("span", { class: "exec-status" });
    this.streamState = h("span", { class: "stream-state", data: { state: "connecting" }, text: "connecting" });
    this.headFacts = h("div");
    this.message = h("div", { class: "message", hidden: true, attrs: { role: "status" } });
    this.cancelButton = h("button", { type: "button", class: "danger", text: "Cancel execution", data: { op: "cancel" }, on: { click: () => this.askCancel() } });
    this.retryButton = h("button", { type: "button", text: "Retry failed", data: { op: "retry-failed" }, title: "run again what failed or was cancelled", on: { click: () => this.retry({ only_failed: true }) } });
    this.cancelDialog = this.buildCancelDialog();
    this.slider = h("input", {
      type: "range", min: 0, max: 0, step: 1, value: 0, class: "travel-slider",
      attrs: { "aria-label": "time travel: the event to show the execution as of" },
      on: { input: () => this.onSlide() },
    });
    this.travelLabel = h("span", { class: "travel-label" });
    this.liveButton = h("button", { type: "button", text: "Live", class: "live-button", on: { click: () => this.goLive() } });
    const step = (delta, text, label) => h("button", { type: "button", text, attrs: { "aria-label": label }, on: { click: () => this.step(delta) } });
    this.travelBar = h("div", { class: "travel" },
      h("span", { class: "travel-title", text: "Time travel" }),
      step(-1, "◀", "one event back"), this.slider, step(1, "▶", "one event forward"),
      this.liveButton, this.travelLabel);
    this.dagBox = h("div", { class: "dag-box" });
    this.panelBox = h("aside", { class: "panel-box", attrs: { "aria-label": "action" } });
    this.timeline = new Timeline({ onPick: (index) => this.pick(index) });
    this.dag = new DagView(this.plan, { onSelect: (actionId) => this.select(actionId) });
    this.dagBox.append(this.dag.element);
    replace(this.root,
      h("header", { class: "exec-head" },
        h("div", { class: "exec-title" }, this.title, this.status, this.streamState),
        this.headFacts,
        h("div", { class: "buttons" }, this.cancelButton, this.retryButton)),
      this.message,
      this.travelBar,
      h("div", { class: "exec-body" }, this.dagBox, this.panelBox),
      this.timeline.element,
      this.cancelDialog);
  }

  buildCancelDialog() {
    const reason = h("input", { type: "text", id: "cancel-reason", placeholder: "optional", autocomplete: "off" });
    const dialog = h("dialog", { class: "confirm" },
      h("form", {
        on: {
          submit: (event) => {
            event.preventDefault();
            dialog.close();
            this.cancel(reason.value.trim() || null);
          },
        },
      },
      h("p", { text: `Cancel execution ${this.id}? Actions still running are cancelled; nothing more starts.` }),
      h("label", { for: reason.id, text: "reason " }), reason,
      h("div", { class: "buttons" },
        h("button", { type: "submit", class: "danger", text: "Yes, cancel it" }),
        h("button", { type: "button", text: "Keep it running", on: { click: () => dialog.close() } }))));
    return dialog;
  }

  // ------------------------------------------------------------------ rendering

  scheduleRender() {
    if (this.frame !== null) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = null;
      this.render();
    });
  }

  /** The records up to the point shown. */
  visibleRecords() {
    return this.atIndex === null ? this.records : this.records.slice(0, this.atIndex + 1);
  }

  render() {
    if (this.signal.aborted) return;
    const state = this.atIndex === null ? this.live : this.shown || this.live;
    this.renderHead(state);
    this.renderTravel();
    this.dag.update(state);
    this.dag.select(this.selected);
    this.renderPanel(state);
    this.timeline.render(this.records, this.atIndex === null ? this.records.length - 1 : this.atIndex);
  }

  renderHead(state) {
    const counts = state.counts;
    replace(this.status, badge(state.status));
    this.status.dataset.status = state.status;
    const end = TERMINAL.has(state.status) ? state.completed_at : null;
    replace(this.headFacts, facts([
      ["plan", h("span", { class: "mono", text: state.plan_id })],
      ["submitted", timeCell(state.submitted_at)],
      ["started", state.started_at ? timeCell(state.started_at) : null],
      ["ended", end ? timeCell(end) : null],
      ["duration", state.started_at ? fmtDuration(msBetween(state.started_at, end)) : null],
      ["progress", `${finishedActions(counts)}/${counts.total} actions` +
        ` (${counts.completed} completed, ${counts.failed} failed, ${counts.running} running, ${counts.waiting} waiting)`],
      ["run", state.run > 1 ? String(state.run) : null],
      ["parent", state.parent ? h("a", { href: executionHref(state.parent.execution_id, { action: parseKey(state.parent.action_id)?.id || "" }), text: `${state.parent.execution_id} (${state.parent.action_id})`, class: "mono" }) : null],
      ["cancel", state.cancel_requested ? `requested${state.cancel_reason ? `: ${state.cancel_reason}` : ""}` : null],
      ["error", state.error ? `${state.error.code}: ${state.error.message}` : null],
    ]));
    const live = this.live;
    const travelling = this.atIndex !== null;
    this.cancelButton.hidden = TERMINAL.has(live.status) || live.cancel_requested;
    this.retryButton.hidden = !(live.status === "failed" || live.status === "cancelled");
    this.cancelButton.disabled = this.retryButton.disabled = travelling;
    this.cancelButton.title = this.retryButton.title = travelling ? "back to live to cancel or retry the execution" : "";
  }

  renderTravel() {
    const last = Math.max(0, this.records.length - 1);
    const index = this.atIndex === null ? last : this.atIndex;
    this.slider.max = String(last);
    this.slider.value = String(index);
    this.slider.disabled = this.records.length < 2;
    const record = this.records[index];
    this.travelBar.classList.toggle("travelling", this.atIndex !== null);
    this.liveButton.disabled = this.atIndex === null;
    this.travelLabel.textContent = record
      ? `${this.atIndex === null ? "live · " : "as of "}event ${index + 1} of ${this.records.length} · seq ${record.sequence} · ${summarize(record.event)}`
      : "no events";
  }

  renderPanel(state) {
    if (!this.selected) {
      const key = `none:${this.plan.actions.length}`;
      if (key === this.panelKey) return;
      this.panelKey = key;
      replace(this.panelBox, h("p", { class: "note", text: "Select an action in the graph to see its attempts, request, output and events." }));
      return;
    }
    const records = this.visibleRecords();
    const action = state.actions[this.selected] || null;
    const ops = this.atIndex === null ? this.operations() : null;
    // Rebuilt only when what it shows changed, so a half-filled form survives other updates.
    const key = JSON.stringify([this.selected, action, records.length, ops ? this.live.status : "travel"]);
    if (key === this.panelKey) return;
    this.panelKey = key;
    replace(this.panelBox, actionPanel({ state, plan: this.plan, records, actionId: this.selected, ops }));
  }

  operations() {
    const ops = {
      resume: (actionId, data) => this.operate(`actions/${encodeURIComponent(actionId)}/resume`, { data, wait: true }, `${actionId} resumed`),
      reject: (actionId, reason) => this.operate(`actions/${encodeURIComponent(actionId)}/reject`, { reason, wait: true }, `${actionId} rejected`),
    };
    if (TERMINAL.has(this.live.status)) ops.retryFrom = (actionId) => this.retry({ from: [actionId] });
    return ops;
  }

  // ------------------------------------------------------------------ live updates

  onStreamEvent(event) {
    if (event.event !== "state") return;
    let state;
    try {
      state = JSON.parse(event.data);
    } catch {
      return;
    }
    if (state.last_sequence >= this.live.last_sequence) this.live = state;
    const newest = this.records.length ? this.records[this.records.length - 1].sequence : 0;
    if (state.last_sequence > newest) this.refreshEvents();
    this.scheduleRender();
  }

  onStreamStatus(status, detail) {
    this.streamState.dataset.state = status;
    this.streamState.textContent = status === "live" ? "live" : status === "closed" ? "not following" : "reconnecting…";
    this.streamState.title = detail || "";
  }

  async refreshEvents() {
    if (this.loadingEvents) {
      this.eventsAgain = true;
      return;
    }
    this.loadingEvents = true;
    try {
      do {
        this.eventsAgain = false;
        const after = this.records.length ? this.records[this.records.length - 1].sequence : 0;
        const more = await allEvents(this.id, { after, signal: this.signal });
        if (more.length) this.records.push(...more);
      } while (this.eventsAgain && !this.signal.aborted);
    } catch (error) {
      if (!this.signal.aborted) this.say(`Cannot read new events: ${error.message}`, "error");
    } finally {
      this.loadingEvents = false;
    }
    this.scheduleRender();
  }

  // ------------------------------------------------------------------ time travel

  onSlide() {
    const index = this.slider.valueAsNumber;
    if (index >= this.records.length - 1) this.goLive();
    else this.travel(index);
  }

  step(delta) {
    const current = this.atIndex === null ? this.records.length - 1 : this.atIndex;
    const index = Math.min(this.records.length - 1, Math.max(0, current + delta));
    if (index >= this.records.length - 1) this.goLive();
    else this.travel(index);
  }

  pick(index) {
    if (index >= this.records.length - 1) this.goLive();
    else this.travel(index);
  }

  goLive() {
    this.atIndex = null;
    this.shown = null;
    this.remember();
    this.render();
  }

  /** Show the execution as of the event at `index` (its state from `?at=`, cached). */
  async travel(index) {
    this.atIndex = index;
    this.remember();
    const sequence = this.records[index].sequence;
    const ticket = ++this.travelTicket;
    this.renderTravel();
    this.timeline.render(this.records, index);
    let state = this.atStates.get(sequence);
    if (!state) {
      try {
        state = await call(this.path, { params: { at: sequence }, signal: this.signal });
      } catch (error) {
        if (!this.signal.aborted) this.say(`Cannot read the state as of ${sequence}: ${error.message}`, "error");
        return;
      }
      this.atStates.set(sequence, state);
      if (this.atStates.size > CACHED_STATES) this.atStates.delete(this.atStates.keys().next().value);
    }
    if (ticket !== this.travelTicket || this.atIndex !== index) return; // a later move won
    this.shown = state;
    this.render();
  }

  // ------------------------------------------------------------------ selection and operations

  select(actionId) {
    this.selected = actionId;
    this.remember();
    this.render();
  }

  /** The selection and the point shown, in the address (to reload or share). */
  remember() {
    const params = {};
    if (this.selected) params.action = this.selected;
    if (this.atIndex !== null) params.at = String(this.records[this.atIndex].sequence);
    history.replaceState(history.state, "", executionHref(this.id, params));
  }

  say(text, kind = "info") {
    this.message.hidden = false;
    this.message.dataset.kind = kind;
    this.message.textContent = text;
  }

  async operate(tail, body, done) {
    await call(`${this.path}/${tail}`, { method: "POST", body, signal: this.signal });
    this.say(done);
  }

  askCancel() {
    this.cancelDialog.showModal();
  }

  async cancel(reason) {
    try {
      await this.operate("cancel", reason ? { reason } : {}, "cancel requested");
    } catch (error) {
      this.say(`Cancel refused: ${error.message}`, "error");
    }
  }

  async retry(body) {
    try {
      const result = await call(`${this.path}/retry`, { method: "POST", body, signal: this.signal });
      this.say(`run ${result.run}: ${result.reset.join(", ") || "nothing"} again`);
    } catch (error) {
      this.say(`Retry refused: ${error.message}`, "error");
    }
  }
}
