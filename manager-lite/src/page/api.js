// The manager's JSON API as the admin page calls it: the token the user
// typed as "Authorization: Bearer", every error as an Error naming the
// request, and conditional GETs: each answer's ETag is kept with its body,
// sent back as If-None-Match, and a 304 gives the kept body back, so
// polling a fleet where nothing changed moves a few headers.

const kept = new Map(); // path → { etag, body, headers }
const MAX_KEPT = 64;
export const stats = { requests: 0, unchanged: 0 };

let token = "";

export function setToken(t) {
  token = t;
  kept.clear();
}

export const enc = encodeURIComponent;

// { body, headers, changed } of a GET (changed: false for a 304).
export async function get(path) {
  const before = kept.get(path);
  const headers = {};
  if (before) headers["If-None-Match"] = before.etag;
  const resp = await send("GET", path, headers);
  if (resp.status === 304 && before) {
    stats.unchanged += 1;
    return { body: before.body, headers: before.headers, changed: false };
  }
  const body = await parse("GET " + path, resp);
  const etag = resp.headers.get("ETag");
  if (etag) {
    if (kept.size >= MAX_KEPT) kept.delete(kept.keys().next().value);
    kept.set(path, { etag, body, headers: resp.headers });
  }
  return { body, headers: resp.headers, changed: true };
}

export async function post(path) {
  return parse("POST " + path, await send("POST", path, {}));
}

async function send(method, path, headers) {
  if (token) headers.Authorization = "Bearer " + token;
  stats.requests += 1;
  try {
    return await fetch(path, { method, headers, cache: "no-store", credentials: "omit" });
  } catch (e) {
    throw new Error(method + " " + path + ": " + e.message);
  }
}

async function parse(what, resp) {
  const text = await resp.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (e) {
    body = null;
  }
  if (!resp.ok) {
    const msg = body && typeof body.error === "string" ? body.error : text.slice(0, 200);
    throw new Error(what + ": " + resp.status + " " + msg);
  }
  return body;
}
