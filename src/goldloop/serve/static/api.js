// The server's JSON API: one fetch wrapper that sends the session's CSRF token with every write
// and turns an error answer into an Error carrying the HTTP status and the server's message.

let csrfToken = "";

/** Use ``token`` (from /api/login or /api/me) for the writes that follow. */
export function setCsrfToken(token) { csrfToken = token || ""; }

/** Call ``method path`` with an optional JSON ``body``; resolves to the decoded answer. */
export async function api(method, path, body) {
  const options = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.headers["X-CSRF-Token"] = csrfToken;
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    const error = new Error((data && data.error) || response.statusText || "request failed");
    error.status = response.status;
    throw error;
  }
  return data;
}
