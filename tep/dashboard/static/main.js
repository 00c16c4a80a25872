// The dashboard's entry: sign-in with a bearer token, and the pages by the address's hash:
// #/ (executions), #/executions/<id>, #/schedules.

import { adoptTokenFromUrl, ApiError, call, clearToken, getToken, setToken, UNAUTHORIZED } from "./api.js";
import { h, replace } from "./dom.js";
import { executionPage } from "./execution.js";
import { listPage } from "./list.js";
import { schedulesPage } from "./schedules.js";

const main = document.getElementById("main");
const signOut = document.getElementById("sign-out");
let leave = () => {};

/** {page, id, params} of the address's hash. */
function route() {
  const hash = window.location.hash.replace(/^#/, "") || "/";
  const [path, query = ""] = hash.split("?");
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "executions" && parts[1]) return { page: "execution", id: decodeURIComponent(parts[1]), params };
  if (parts[0] === "schedules") return { page: "schedules", params };
  return { page: "executions", params };
}

function markNav(page) {
  for (const link of document.querySelectorAll("[data-nav]")) {
    link.classList.toggle("current", link.dataset.nav === page || (page === "execution" && link.dataset.nav === "executions"));
  }
}

function show() {
  leave();
  leave = () => {};
  if (!getToken()) {
    signIn();
    return;
  }
  signOut.hidden = false;
  const where = route();
  markNav(where.page);
  if (where.page === "execution") leave = executionPage(main, where.id, where.params);
  else if (where.page === "schedules") leave = schedulesPage(main);
  else leave = listPage(main, where.params);
}

function signIn(message = "") {
  leave();
  leave = () => {};
  signOut.hidden = true;
  markNav("");
  const input = h("input", { id: "token", type: "password", autocomplete: "off", required: true, placeholder: "bearer token" });
  const error = h("p", { class: "error-box", hidden: !message, text: message, attrs: { role: "alert" } });
  const form = h("form", {
    class: "sign-in",
    on: {
      submit: async (event) => {
        event.preventDefault();
        setToken(input.value.trim());
        try {
          await call("v1/stats");
        } catch (failure) {
          if (failure instanceof ApiError && failure.status === 403) {
            // A token without the read scope cannot show anything here.
            clearToken();
            error.textContent = "This token may not read (it lacks the read scope).";
            error.hidden = false;
            return;
          }
          if (!(failure instanceof ApiError)) {
            error.textContent = `Cannot reach the API: ${failure.message}`;
            error.hidden = false;
            return;
          }
          return; // 401: UNAUTHORIZED shows this form again with its message
        }
        show();
      },
    },
  },
  h("h1", { text: "Sign in" }),
  h("p", {}, "The dashboard calls the API with a bearer token that has the ", h("code", { text: "read" }),
    " scope (and ", h("code", { text: "operate" }), " to cancel, retry, resume or reject). Under ",
    h("code", { text: "tep up" }), " its banner prints the dashboard's address with a token."),
  h("label", { for: "token", text: "token" }), input,
  h("button", { type: "submit", class: "primary", text: "Sign in" }),
  error,
  h("p", { class: "note", text: "The token is kept in this tab only (session storage) and sent to this server alone." }));
  replace(main, form);
  input.focus();
}

window.addEventListener(UNAUTHORIZED, () => {
  if (!getToken()) return; // already signed out: a late answer of a page left
  clearToken();
  signIn("The API refused the token: sign in again.");
});
window.addEventListener("hashchange", show);
signOut.addEventListener("click", () => {
  clearToken();
  signIn();
});

adoptTokenFromUrl();
show();
