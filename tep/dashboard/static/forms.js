// The resume/reject form of a waitpoint, generated from its JSON Schema: a field per top-level
// property of a simple type (string, number, integer, boolean, enum), JSON text for the rest.

import { ApiError } from "./api.js";
import { h, replace } from "./dom.js";

let formCount = 0;

function typeOf(schema) {
  if (!schema || typeof schema !== "object") return null;
  if (Array.isArray(schema.enum)) return "enum";
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type;
  return ["string", "number", "integer", "boolean"].includes(type) ? type : null;
}

class FieldError extends Error {}

function field(name, schema, required, prefix) {
  const id = `${prefix}-${name}`;
  const type = typeOf(schema);
  const hint = [type || "JSON", schema && schema.description].filter(Boolean).join(" · ");
  let input;
  let read;
  if (type === "enum") {
    input = h("select", { id, name },
      required ? null : h("option", { value: "", text: "(not set)" }),
      schema.enum.map((value, i) => h("option", { value: String(i), text: JSON.stringify(value) })));
    read = () => (input.value === "" ? undefined : schema.enum[Number(input.value)]);
  } else if (type === "boolean" && required) {
    input = h("input", { id, name, type: "checkbox" });
    read = () => input.checked;
  } else if (type === "boolean") {
    input = h("select", { id, name },
      h("option", { value: "", text: "(not set)" }),
      h("option", { value: "true", text: "true" }),
      h("option", { value: "false", text: "false" }));
    read = () => (input.value === "" ? undefined : input.value === "true");
  } else if (type === "number" || type === "integer") {
    input = h("input", { id, name, type: "number", step: type === "integer" ? "1" : "any", required });
    read = () => (input.value === "" ? undefined : Number(input.value));
  } else if (type === "string") {
    input = h("input", { id, name, type: "text", required, autocomplete: "off" });
    read = () => (input.value === "" && !required ? undefined : input.value);
  } else {
    input = h("textarea", { id, name, rows: 3, class: "code", spellcheck: false });
    read = () => {
      if (input.value.trim() === "") return undefined;
      try {
        return JSON.parse(input.value);
      } catch (error) {
        throw new FieldError(`${name}: not JSON (${error.message})`);
      }
    };
  }
  const label = h("label", { for: id }, name, required ? h("span", { class: "required", text: " *" }) : null);
  return {
    element: h("div", { class: "field" }, label, input, h("small", { class: "hint", text: hint })),
    read,
  };
}

/** Fields for `schema`, and a function reading the data they give (throws FieldError). */
function fieldsFor(schema, prefix) {
  const properties = schema && typeof schema === "object" ? schema.properties : null;
  if (!properties || typeof properties !== "object" || !Object.keys(properties).length) {
    const id = `${prefix}-data`;
    const area = h("textarea", { id, name: "data", rows: 5, class: "code", spellcheck: false, value: "{}" });
    const element = h("div", { class: "field" }, h("label", { for: id, text: "data (JSON)" }), area);
    const read = () => {
      try {
        return JSON.parse(area.value || "null");
      } catch (error) {
        throw new FieldError(`data: not JSON (${error.message})`);
      }
    };
    return { elements: [element], read };
  }
  const required = new Set(Array.isArray(schema.required) ? schema.required : []);
  const fields = Object.entries(properties).map(([name, sub]) => [name, field(name, sub, required.has(name), prefix)]);
  const read = () => {
    const data = {};
    for (const [name, { read: value }] of fields) {
      const v = value();
      if (v !== undefined) data[name] = v;
    }
    return data;
  };
  return { elements: fields.map(([, f]) => f.element), read };
}

function showErrors(list, error) {
  const lines = error instanceof ApiError ? error.lines() : [String(error.message || error)];
  replace(list, lines.map((line) => h("li", { text: line })));
  list.hidden = false;
}

/**
 * The form resuming a waitpoint with data matching `schema`, or rejecting it with a reason.
 * `onResume(data)` and `onReject(reason)` return promises; their errors are listed in the form.
 */
export function waitpointForm(schema, { onResume, onReject }) {
  formCount += 1;
  const prefix = `wp${formCount}`;
  const { elements, read } = fieldsFor(schema, prefix);
  const errors = h("ul", { class: "errors", hidden: true, attrs: { role: "alert" } });
  const resumeButton = h("button", { type: "submit", class: "primary", text: "Resume" });
  const reason = h("input", { id: `${prefix}-reason`, type: "text", placeholder: "why", autocomplete: "off" });
  const rejectButton = h("button", { type: "button", class: "danger", text: "Reject" });
  const busy = async (work) => {
    errors.hidden = true;
    resumeButton.disabled = rejectButton.disabled = true;
    try {
      await work();
    } catch (error) {
      showErrors(errors, error);
    } finally {
      resumeButton.disabled = rejectButton.disabled = false;
    }
  };
  const form = h("form", {
    class: "waitpoint-form",
    attrs: { "aria-label": "resume the waitpoint" },
    on: {
      submit: (event) => {
        event.preventDefault();
        busy(() => onResume(read()));
      },
    },
  },
  elements,
  h("div", { class: "buttons" }, resumeButton),
  h("div", { class: "reject" },
    h("label", { for: reason.id, text: "reject reason" }), reason, rejectButton),
  errors);
  rejectButton.addEventListener("click", () => busy(() => {
    if (!reason.value.trim()) throw new FieldError("a reason is needed to reject");
    return onReject(reason.value.trim());
  }));
  return form;
}
