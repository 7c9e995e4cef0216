// The cliper serving page: plain JS over the /v1 API (no build step, no external resources).
"use strict";

const $ = (id) => document.getElementById(id);

async function api(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await res.json();
  if (!res.ok) throw new Error(body.error ? body.error.message : res.statusText);
  return body;
}

function status(text, isError) {
  const el = $("status");
  el.textContent = text;
  el.className = isError ? "error" : "";
}

function card(item) {
  const div = document.createElement("div");
  div.className = "card";
  div.dataset.itemId = item.item_id;
  const img = document.createElement("img");
  img.src = item.thumbnail;
  img.alt = item.title || item.item_id;
  img.loading = "eager";
  const title = document.createElement("div");
  title.className = "title";
  title.textContent = item.title || item.item_id;
  const meta = document.createElement("div");
  meta.className = "meta";
  const bits = [item.brand, item.score !== undefined ? "score " + item.score.toFixed(3) : null].filter(Boolean);
  meta.textContent = bits.join(" · ");
  div.append(img, title, meta);
  div.addEventListener("click", () => showSimilar(item));
  return div;
}

function fill(id, items, note, noteText) {
  const row = $(id);
  row.replaceChildren(...items.map(card));
  if (note) $(note).textContent = noteText;
  $(id + "-section").hidden = false;
}

function k() {
  const v = parseInt($("k-input").value, 10);
  return Number.isFinite(v) && v > 0 ? Math.min(v, 100) : 10;
}

let currentSimilar = null;

async function showUser(userId) {
  if (!userId) return;
  status("loading " + userId + " ...");
  try {
    const enc = encodeURIComponent(userId);
    const [user, recs] = await Promise.all([
      api(`/v1/users/${enc}?limit=20`),
      api(`/v1/users/${enc}/recommendations?k=${k()}`),
    ]);
    fill("history", user.history, "history-note", `(${user.n_seen} items, excluded from recommendations)`);
    fill("recs", recs.items, "recs-note", `(top ${recs.items.length}, ${recs.index} search)`);
    status("user " + userId);
  } catch (e) {
    status(e.message, true);
  }
}

async function showSimilar(item) {
  currentSimilar = item;
  const space = $("similar-space").value;
  try {
    const res = await api(`/v1/items/${encodeURIComponent(item.item_id)}/similar?k=${k()}&space=${space}`);
    $("similar-title").textContent = item.title || item.item_id;
    fill("similar", res.items);
    $("similar-section").scrollIntoView({ block: "nearest" });
    status("similar to " + item.item_id + " (" + space + ")");
  } catch (e) {
    status(e.message, true);
  }
}

async function search(q) {
  if (!q.trim()) return;
  try {
    const res = await api(`/v1/search?q=${encodeURIComponent(q)}&k=${k()}`);
    fill("search", res.items, "search-note", `for "${q}"`);
    status(`${res.items.length} results`);
  } catch (e) {
    $("search-section").hidden = false;
    $("search").replaceChildren();
    $("search-note").textContent = e.message;
    status(e.message, true);
  }
}

async function init() {
  $("user-form").addEventListener("submit", (ev) => { ev.preventDefault(); showUser($("user-input").value.trim()); });
  $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); search($("search-input").value); });
  $("similar-space").addEventListener("change", () => currentSimilar && showSimilar(currentSimilar));
  try {
    const [health, users] = await Promise.all([api("/healthz"), api("/v1/users?limit=100")]);
    $("user-list").replaceChildren(...users.users.map((u) => {
      const o = document.createElement("option");
      o.value = u.user_id;
      o.label = `${u.n_seen} items`;
      return o;
    }));
    const idx = health.index;
    const recall = idx.recall ? `, recall@${idx.recall.k} ${idx.recall.value}` : "";
    $("footer").textContent = `${health.users} users, ${health.items} items; index ${idx.kind}${recall}; ` +
      `search ${health.search.available ? "on" : "off (" + health.search.reason + ")"}`;
    $("search-input").disabled = !health.search.available;
    const params = new URLSearchParams(location.search);
    const first = params.get("user") || (users.users[0] && users.users[0].user_id);
    if (first) { $("user-input").value = first; await showUser(first); }
  } catch (e) {
    status(e.message, true);
  }
}

init();
