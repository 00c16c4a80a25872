// The schedules page: every schedule with its last and next fire; pause, resume, trigger,
// remove, and a form adding one.

import { ApiError, call } from "./api.js";
import { badge, h, replace, timeCell } from "./dom.js";
import { executionHref } from "./events.js";

const POLL_MS = 5000;

/** Mount the page in `root`; returns its cleanup. */
export function schedulesPage(root) {
  const page = new SchedulesPage(root);
  page.start();
  return () => page.stop();
}

function jsonField(id, label, rows, value, hint) {
  return h("div", { class: "field" },
    h("label", { for: id, text: label }),
    h("textarea", { id, rows, class: "code", spellcheck: false, defaultValue: value }),
    hint ? h("small", { class: "hint", text: hint }) : null);
}

function textField(id, label, value, hint) {
  return h("div", { class: "field" },
    h("label", { for: id, text: label }),
    h("input", { id, type: "text", defaultValue: value, autocomplete: "off" }),
    hint ? h("small", { class: "hint", text: hint }) : null);
}

class SchedulesPage {
  constructor(root) {
    this.root = root;
    this.timer = null;
    this.stopped = false;
  }

  start() {
    this.body = h("tbody");
    this.empty = h("p", { class: "note", hidden: true, text: "No schedules yet." });
    this.message = h("div", { class: "message", hidden: true, attrs: { role: "status" } });
    replace(this.root,
      h("h1", { text: "Schedules" }),
      this.message,
      h("table", { class: "grid schedules" },
        h("thead", {}, h("tr", {}, ["name", "cron", "plan", "state", "next fire", "last fired", "last execution", ""].map((t) => h("th", { text: t })))),
        this.body),
      this.empty,
      this.createForm());
    this.refresh();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  say(text, kind = "info") {
    this.message.hidden = false;
    this.message.dataset.kind = kind;
    this.message.textContent = text;
  }

  async refresh() {
    clearTimeout(this.timer);
    try {
      const list = await call("v1/schedules");
      if (this.stopped) return;
      replace(this.body, list.schedules.map((info) => this.row(info)));
      this.empty.hidden = list.schedules.length > 0;
    } catch (error) {
      if (this.stopped) return;
      this.say(`Cannot list schedules: ${error.message}`, "error");
    }
    if (!this.stopped) this.timer = setTimeout(() => this.refresh(), POLL_MS);
  }

  async act(work, done) {
    try {
      const said = await work();
      this.say(typeof said === "string" ? said : done);
    } catch (error) {
      this.say(error instanceof ApiError ? error.lines().join("; ") : String(error), "error");
    }
    this.refresh();
  }

  row(info) {
    const path = `v1/schedules/${encodeURIComponent(info.name)}`;
    const last = info.last_execution_id
      ? h("span", {}, h("a", { href: executionHref(info.last_execution_id), class: "mono", text: info.last_execution_id }),
        " ", info.last_execution_status ? badge(info.last_execution_status) : "")
      : "-";
    const remove = h("button", {
      type: "button", class: "danger", text: "Remove",
      on: {
        click: () => {
          if (remove.dataset.armed !== "yes") {
            remove.dataset.armed = "yes";
            remove.textContent = "Really remove?";
            return;
          }
          this.act(() => call(path, { method: "DELETE" }), `${info.name} removed`);
        },
      },
    });
    return h("tr", { data: { schedule: info.name } },
      h("td", { class: "mono", text: info.name }),
      h("td", {}, h("code", { text: info.cron }), ` (${info.tz})`),
      h("td", { class: "mono", text: info.plan_id }),
      h("td", {}, badge(info.paused ? "paused" : "active")),
      h("td", {}, info.next_fire ? timeCell(info.next_fire) : "-"),
      h("td", {}, info.last_fired_at ? timeCell(info.last_fired_at) : "-"),
      h("td", {}, last),
      h("td", {}, h("div", { class: "buttons row-buttons" },
        h("button", {
          type: "button", text: info.paused ? "Resume" : "Pause",
          on: { click: () => this.act(() => call(path, { method: "PATCH", body: { paused: !info.paused } }), `${info.name} ${info.paused ? "resumed" : "paused"}`) },
        }),
        h("button", {
          type: "button", text: "Trigger now",
          on: { click: () => this.act(async () => {
            const result = await call(`${path}/trigger`, { method: "POST" });
            return `${info.name} started ${result.execution_id}`;
          }, `${info.name} triggered`) },
        }),
        remove)));
  }

  createForm() {
    const errors = h("ul", { class: "errors", hidden: true, attrs: { role: "alert" } });
    const form = h("form", { class: "schedule-form" },
      h("h2", { text: "Add a schedule" }),
      textField("sched-name", "name", "", "[A-Za-z0-9_-], the prefix of its executions' ids"),
      textField("sched-cron", "cron", "@hourly", "5 or 6 fields, @hourly, @daily, or @every 10m"),
      textField("sched-tz", "time zone", "UTC", "IANA zone the fields are read in"),
      h("div", { class: "field" },
        h("label", { for: "sched-catch-up", text: "catch up" }),
        h("select", { id: "sched-catch-up" }, ["one", "none", "all"].map((v) => h("option", { value: v, text: v })))),
      jsonField("sched-plan", "plan (JSON)", 8, "", "the plan each tick submits, as for POST /v1/executions"),
      jsonField("sched-input", "input (JSON)", 2, "{}", "merged into the plan's input at every tick"),
      h("div", { class: "buttons" }, h("button", { type: "submit", class: "primary", text: "Add schedule" })),
      errors);
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      errors.hidden = true;
      const value = (id) => form.querySelector(`#${id}`).value;
      let plan;
      let input;
      try {
        plan = JSON.parse(value("sched-plan"));
        input = JSON.parse(value("sched-input") || "{}");
      } catch (error) {
        replace(errors, h("li", { text: `not JSON: ${error.message}` }));
        errors.hidden = false;
        return;
      }
      const body = { name: value("sched-name").trim(), cron: value("sched-cron").trim(), tz: value("sched-tz").trim() || "UTC", catch_up: value("sched-catch-up"), plan, input };
      try {
        await call("v1/schedules", { method: "POST", body });
        this.say(`${body.name} added`);
        form.reset();
        this.refresh();
      } catch (error) {
        const lines = error instanceof ApiError ? error.lines() : [String(error)];
        replace(errors, lines.map((line) => h("li", { text: line })));
        errors.hidden = false;
      }
    });
    return form;
  }
}
