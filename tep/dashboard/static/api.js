// Calling the HTTP API with the signed-in bearer token; errors as ApiError (problem+json).

const TOKEN_KEY = "tep.token";

/** Fired on window when the API refused the token (401): the page asks for another. */
export const UNAUTHORIZED = "tep:unauthorized";

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function clearToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** Keep a `?token=` from the opening URL in session storage and remove it from the URL. */
export function adoptTokenFromUrl() {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("token");
  if (token === null) return;
  if (token.trim()) setToken(token.trim());
  url.searchParams.delete("token");
  history.replaceState(history.state, "", url.pathname + url.search + url.hash);
}

/** An error answer of the API: `status`, and the problem document's title, detail, problems. */
export class ApiError extends Error {
  constructor(status, problem) {
    const text = problem.detail || problem.title || `HTTP ${status}`;
    super(text);
    this.status = status;
    this.title = problem.title || `HTTP ${status}`;
    this.detail = problem.detail || null;
    this.problems = Array.isArray(problem.problems) ? problem.problems : [];
  }

  /** One line per problem: "body.data.amount: not an integer". */
  lines() {
    if (!this.problems.length) return [this.message];
    return this.problems.map((p) => {
      const where = (p.loc || []).join(".");
      return where ? `${where}: ${p.message}` : p.message;
    });
  }
}

/** `path` (relative to the page, e.g. "v1/executions") with the non-empty `params`. */
export function url(path, params = {}) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    search.set(key, String(value));
  }
  const query = search.toString();
  return query ? `${path}?${query}` : path;
}

/** The headers every call carries: the bearer token, and `extra`. */
export function authHeaders(extra = {}) {
  const token = getToken();
  return token ? { ...extra, Authorization: `Bearer ${token}` } : { ...extra };
}

async function problemOf(response) {
  try {
    return await response.json();
  } catch {
    return { title: response.statusText || `HTTP ${response.status}` };
  }
}

/**
 * Call the API: JSON in and out. Throws ApiError for an error answer (after firing
 * UNAUTHORIZED for a 401), and the fetch's own error when the server cannot be reached.
 */
export async function call(path, { method = "GET", body, signal, params } = {}) {
  const headers = authHeaders({ Accept: "application/json" });
  const init = { method, headers, signal, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url(path, params), init);
  if (!response.ok) {
    const problem = await problemOf(response);
    if (response.status === 401) window.dispatchEvent(new CustomEvent(UNAUTHORIZED));
    throw new ApiError(response.status, problem);
  }
  if (response.status === 204) return null;
  return response.json();
}

/** Every event of an execution after `after`, in order (read a page at a time). */
export async function allEvents(executionId, { after = 0, signal } = {}) {
  const events = [];
  const path = `v1/executions/${encodeURIComponent(executionId)}/events`;
  let from = after;
  for (;;) {
    const page = await call(path, { params: { after: from, limit: 1000 }, signal });
    events.push(...page.events);
    if (page.events.length < 1000) return events;
    from = page.last_sequence;
  }
}
