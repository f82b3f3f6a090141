// Talking to /api/console/...: one place for the sign-in, the CSRF header and the error shape.

/** An answer the server refused, with its `kind` from the contract (or "network" when nothing answered). */
export class ApiError extends Error {
  constructor(message, kind, status) {
    super(message);
    this.kind = kind;
    this.status = status;
  }
}

// A token given once as /console/?token=... signs this browser in: the server answers with an HttpOnly,
// same-site session cookie (which the event stream sends too, as it cannot send headers), and the token
// leaves the address bar at once. No script ever keeps it.
const signedIn = (async () => {
  const params = new URLSearchParams(location.search);
  const given = params.get("token");
  if (!given) return;
  params.delete("token");
  const rest = params.toString();
  history.replaceState(null, "", `${location.pathname}${rest ? `?${rest}` : ""}${location.hash}`);
  try {
    await fetch("/console/login", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Trajstream-Console": "1" },
      body: JSON.stringify({ token: given }),
    });
  } catch (e) {
    // nothing answered: the first request says so
  }
})();

function headers(extra) {
  return { Accept: "application/json", ...extra };
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
  await signedIn;
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
  await signedIn;
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

/** The stream's URL (the session cookie signs it in). */
export async function streamUrl() {
  await signedIn;
  return "/api/console/stream";
}
