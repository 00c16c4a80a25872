// The event timeline: every event of the execution in log order; the events after the point
// the page shows (time travel) are dimmed, and a click on one travels there.

import { debounce, h, replace, timeCell } from "./dom.js";
import { summarize } from "./events.js";

const BEFORE = 300;
const AFTER = 100;

export class Timeline {
  /** `onPick(index)`: the user chose the event at `index` of the records. */
  constructor({ onPick }) {
    this.onPick = onPick;
    this.records = [];
    this.at = -1;
    this.filter = h("input", {
      type: "search",
      placeholder: "filter by action or event type",
      attrs: { "aria-label": "filter events" },
      on: { input: debounce(() => this.draw(), 150) },
    });
    this.note = h("p", { class: "note" });
    this.list = h("ol", { class: "timeline-list" });
    this.element = h("section", { class: "timeline" },
      h("div", { class: "timeline-head" }, h("h2", { text: "Events" }), this.filter), this.note, this.list);
  }

  /** Show `records`, the one at index `at` as the current point. */
  render(records, at) {
    this.records = records;
    this.at = at;
    this.draw();
  }

  draw() {
    const needle = this.filter.value.trim().toLowerCase();
    const rows = [];
    this.records.forEach((record, index) => {
      if (!needle) return rows.push(index);
      const event = record.event;
      const text = `${event.type} ${event.action_id || ""}`.toLowerCase();
      if (text.includes(needle)) rows.push(index);
    });
    let start = 0;
    let end = rows.length;
    if (rows.length > BEFORE + AFTER) {
      const here = Math.max(0, rows.findIndex((i) => i >= this.at));
      start = Math.max(0, here - BEFORE);
      end = Math.min(rows.length, start + BEFORE + AFTER);
    }
    const shown = rows.slice(start, end);
    this.note.textContent = shown.length < rows.length ? `events ${start + 1}-${end} of ${rows.length} shown` : "";
    replace(this.list, shown.map((index) => {
      const { sequence, event } = this.records[index];
      const state = index === this.at ? "current" : index > this.at ? "future" : "past";
      return h("li", {
        class: `event ${state}`,
        data: { sequence, type: event.type },
        tabIndex: 0,
        title: "show the execution as of this event",
        on: {
          click: () => this.onPick(index),
          keydown: (e) => { if (e.key === "Enter") this.onPick(index); },
        },
      },
      h("span", { class: "seq", text: sequence }),
      timeCell(event.occurred_at),
      h("span", { class: "etype", text: event.type }),
      h("span", { class: "esummary", text: summarize(event) }));
    }));
    // Scroll the list itself (not the page) to keep the current event in view.
    const current = this.list.querySelector(".current");
    if (current) {
      const top = current.offsetTop; // the list is positioned: relative to it
      if (top < this.list.scrollTop || top > this.list.scrollTop + this.list.clientHeight - current.offsetHeight) {
        this.list.scrollTop = Math.max(0, top - this.list.clientHeight / 2);
      }
    }
  }
}
