// Talking to /api/console/...: one place for the token, the CSRF header and the error shape.

const TOKEN_KEY = "trajstream-console-token";

/** An answer the server refused, with its `kind` from the contract (or "network" when nothing answered). */
export class ApiError extends Error {
  constructor(message, kind, status) {
    super(message);
    this.kind = kind;
    this.status = status;
  }
}

// A token given once as /console/?token=... is kept in this browser, then sent as a bearer header.
function token() {
  const given = new URLSearchParams(location.search).get("token");
  try {
    if (given) localStorage.setItem(TOKEN_KEY, given);
    return given || localStorage.getItem(TOKEN_KEY) || "";
  } catch (e) {
    return given || "";
  }
}

function headers(extra) {
  const h = { Accept: "application/json", ...extra };
  const t = token();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

async function answer(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (e) {
    body = null;
  }
  if (!response.ok) {
    const kind = (body && body.kind) || (response.status === 504 ? "timeout" : response.status >= 500 ? "unavailable" : "bad_request");
    const message = (body && body.error) || `${response.status} ${response.statusText}`;
    throw new ApiError(message, kind, response.status);
  }
  if (body === null) throw new ApiError("the server answered something that is not JSON", "bad_request", response.status);
  return body;
}

/** GET /api/console/<path>?<params> (params: an object; empty values are left out). */
export async function get(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") query.set(k, v);
  }
  const qs = query.toString();
  let response;
  try {
    response = await fetch(`/api/console/${path}${qs ? `?${qs}` : ""}`, { headers: headers() });
  } catch (e) {
    throw new ApiError("the console server is not answering", "network", 0);
  }
  return answer(response);
}

/** POST with the JSON body and the header the server's CSRF guard asks for. */
export async function post(path, body) {
  let response;
  try {
    response = await fetch(`/api/console/${path}`, {
      method: "POST",
      headers: headers({ "Content-Type": "application/json", "X-Trajstream-Console": "1" }),
      body: JSON.stringify(body),
    });
  } catch (e) {
    throw new ApiError("the console server is not answering", "network", 0);
  }
  return answer(response);
}

/** The stream's URL; EventSource cannot send headers, so a token travels in the query. */
export function streamUrl() {
  const t = token();
  return `/api/console/stream${t ? `?token=${encodeURIComponent(t)}` : ""}`;
}
