// The server's API key, for servers started with --api-key-file: taken once from the address
// (http://HOST:PORT/#key=KEY, which start-up prints; a fragment never reaches the server) or asked for
// when the API answers 401, then kept in this tab's sessionStorage only. Loaded before app.js, which
// calls apiFetch for everything under /api/.
"use strict";

const KEY_STORE = "happysad-api-key";

(function keyFromAddress() {
  const m = /^#key=([^&]+)/.exec(location.hash);
  if (!m) return;
  sessionStorage.setItem(KEY_STORE, decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + location.search);  // out of the address bar and history
})();

function apiHeaders(headers) {
  const key = sessionStorage.getItem(KEY_STORE);
  const h = new Headers(headers || {});
  if (key) h.set("Authorization", "Bearer " + key);
  return h;
}

// fetch() with the key; on 401, ask for the key once and try again.
async function apiFetch(url, opts) {
  opts = opts || {};
  let resp = await fetch(url, { ...opts, headers: apiHeaders(opts.headers) });
  if (resp.status === 401) {
    const key = window.prompt("This happysad server needs its API key:");
    if (key && key.trim()) {
      sessionStorage.setItem(KEY_STORE, key.trim());
      resp = await fetch(url, { ...opts, headers: apiHeaders(opts.headers) });
    }
  }
  return resp;
}

// A WebSocket URL with the key (browsers cannot send headers on a WebSocket).
function apiSocketUrl(path) {
  const key = sessionStorage.getItem(KEY_STORE);
  const u = new URL(path, location.href);
  u.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (key) u.searchParams.set("api_key", key);
  return u.toString();
}
