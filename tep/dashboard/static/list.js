// The executions list: filters by status and plan, search by id, a page at a time, refreshed
// every two seconds; progress (n/m actions) from each execution's state.

import { call } from "./api.js";
import { badge, debounce, fmtDuration, h, msBetween, replace, timeCell } from "./dom.js";
import { executionHref, finishedActions, TERMINAL } from "./events.js";

const STATUSES = ["pending", "running", "waiting", "completed", "failed", "cancelled"];
const POLL_MS = 2000;
const PAGE = 50;
const PARALLEL_READS = 6;

/** Mount the list in `root`, filtered by `params` (status, plan, q); returns its cleanup. */
export function listPage(root, params) {
  const page = new ListPage(root, params);
  page.start();
  return () => page.stop();
}

class ListPage {
  constructor(root, params) {
    this.root = root;
    this.filters = { status: params.get("status") || "", plan: params.get("plan") || "", q: params.get("q") || "" };
    this.cursors = [null]; // the cursor of each page seen; the last one is shown
    this.progress = new Map(); // id -> {key, counts}: cached while the execution does not change
    // What is on screen, by what it shows: a poll redraws only what changed, so a click
    // pressed on a row or a count is not lost to its element being replaced under it.
    this.drawn = { counts: "", rows: new Map() }; // rows: id -> {shows, element}
    this.timer = null;
    this.stopped = false;
    this.ticket = 0;
  }

  start() {
    const statusSelect = h("select", { id: "filter-status", on: { change: () => this.setFilter("status", statusSelect.value) } },
      h("option", { value: "", text: "any status" }),
      STATUSES.map((s) => h("option", { value: s, text: s })));
    statusSelect.value = this.filters.status;
    this.statusSelect = statusSelect;
    const later = debounce((name, value) => this.setFilter(name, value), 250);
    const planInput = h("input", { id: "filter-plan", type: "search", value: this.filters.plan, placeholder: "plan id", on: { input: () => later("plan", planInput.value.trim()) } });
    const searchInput = h("input", { id: "filter-q", type: "search", value: this.filters.q, placeholder: "execution id contains", on: { input: () => later("q", searchInput.value.trim()) } });
    this.counts = h("div", { class: "counts" });
    this.body = h("tbody");
    this.empty = h("p", { class: "note", hidden: true, text: "No executions match." });
    this.error = h("p", { class: "error-box", hidden: true, attrs: { role: "alert" } });
    this.older = h("button", { type: "button", text: "Older →", on: { click: () => this.turn(1) } });
    this.newer = h("button", { type: "button", text: "← Newer", on: { click: () => this.turn(-1) } });
    this.pageNote = h("span", { class: "note" });
    replace(this.root,
      h("h1", { text: "Executions" }),
      h("form", { class: "filters", on: { submit: (e) => e.preventDefault() } },
        h("label", { for: "filter-status", text: "status" }), statusSelect,
        h("label", { for: "filter-plan", text: "plan" }), planInput,
        h("label", { for: "filter-q", text: "id" }), searchInput),
      this.counts,
      this.error,
      h("table", { class: "grid executions" },
        h("thead", {}, h("tr", {}, ["execution", "status", "plan", "started", "duration", "progress"].map((t) => h("th", { text: t })))),
        this.body),
      this.empty,
      h("div", { class: "pager" }, this.newer, this.pageNote, this.older));
    this.refresh();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  setFilter(name, value) {
    if (this.filters[name] === value) return;
    this.filters[name] = value;
    this.cursors = [null];
    const query = new URLSearchParams(Object.entries(this.filters).filter(([, v]) => v)).toString();
    history.replaceState(history.state, "", `#/${query ? `?${query}` : ""}`);
    this.refresh();
  }

  turn(delta) {
    if (delta > 0 && this.nextCursor) this.cursors.push(this.nextCursor);
    else if (delta < 0 && this.cursors.length > 1) this.cursors.pop();
    this.refresh();
  }

  async refresh() {
    clearTimeout(this.timer);
    const ticket = ++this.ticket;
    try {
      const page = await call("v1/executions", {
        params: { ...this.filters, limit: PAGE, cursor: this.cursors[this.cursors.length - 1] },
      });
      if (this.stopped || ticket !== this.ticket) return;
      this.nextCursor = page.next_cursor;
      await this.readProgress(page.items);
      if (this.stopped || ticket !== this.ticket) return;
      this.error.hidden = true;
      this.draw(page);
    } catch (error) {
      if (this.stopped || ticket !== this.ticket) return;
      this.error.hidden = false;
      this.error.textContent = `Cannot list executions: ${error.message}`;
    }
    if (!this.stopped && ticket === this.ticket) this.timer = setTimeout(() => this.refresh(), POLL_MS);
  }

  /** Counts of the executions whose state may have changed since last read. */
  async readProgress(items) {
    const stale = items.filter((item) => {
      const known = this.progress.get(item.execution_id);
      return !known || known.key !== `${item.status}|${item.completed_at}` || !TERMINAL.has(item.status);
    });
    const queue = [...stale];
    const worker = async () => {
      for (let item = queue.shift(); item; item = queue.shift()) {
        try {
          const state = await call(`v1/executions/${encodeURIComponent(item.execution_id)}`);
          this.progress.set(item.execution_id, { key: `${item.status}|${item.completed_at}`, counts: state.counts, run: state.run });
        } catch {
          // Shown without progress; read again on the next refresh.
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL_READS, queue.length) }, worker));
  }

  draw(page) {
    const counts = page.counts || {};
    const countsShown = JSON.stringify([page.total, counts]);
    if (countsShown !== this.drawn.counts) {
      this.drawn.counts = countsShown;
      replace(this.counts,
        h("span", { text: `${page.total} execution${page.total === 1 ? "" : "s"}` }),
        STATUSES.filter((s) => counts[s]).map((s) => h("button", {
          type: "button", class: "count", data: { status: s },
          title: `show only ${s}`,
          on: { click: () => { this.statusSelect.value = s; this.setFilter("status", s); } },
        }, badge(s), ` ${counts[s]}`)));
    }
    const rows = new Map();
    const elements = page.items.map((item) => {
      const shows = JSON.stringify([item, this.progress.get(item.execution_id)?.counts, this.duration(item)]);
      const drawn = this.drawn.rows.get(item.execution_id);
      const element = drawn && drawn.shows === shows ? drawn.element : this.row(item);
      rows.set(item.execution_id, { shows, element });
      return element;
    });
    this.drawn.rows = rows;
    const current = this.body.children;
    if (elements.length !== current.length || elements.some((element, i) => element !== current[i])) {
      replace(this.body, elements);
    }
    this.empty.hidden = page.items.length > 0;
    this.newer.disabled = this.cursors.length <= 1;
    this.older.disabled = !page.next_cursor;
    this.pageNote.textContent = `page ${this.cursors.length}`;
  }

  row(item) {
    const known = this.progress.get(item.execution_id);
    let progress = h("span", { class: "note", text: "-" });
    if (known) {
      const c = known.counts;
      const done = finishedActions(c);
      progress = h("span", { class: "progress", title: `${c.completed} completed, ${c.failed} failed, ${c.skipped} skipped, ${c.cancelled} cancelled, ${c.running} running, ${c.waiting} waiting` },
        h("progress", { max: c.total || 1, value: done }), ` ${done}/${c.total}`);
    }
    const href = executionHref(item.execution_id);
    return h("tr", { data: { execution: item.execution_id, status: item.status } },
      h("td", {}, h("a", { href, class: "mono", text: item.execution_id })),
      h("td", {}, badge(item.status)),
      h("td", { class: "mono", text: item.plan_id }),
      h("td", {}, timeCell(item.started_at || item.submitted_at)),
      h("td", { text: this.duration(item) }),
      h("td", {}, progress));
  }

  duration(item) {
    const end = TERMINAL.has(item.status) ? item.completed_at : null;
    return item.started_at ? fmtDuration(msBetween(item.started_at, end)) : "-";
  }
}
