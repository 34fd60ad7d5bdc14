// With Sense web page: fills the server-rendered shells from the JSON API with fetch().
// No framework; every text from the API goes into the DOM with textContent, never as HTML.
"use strict";

const PAGE_SIZE = 5;
const TOKEN_KEY = "withsense.apiToken";

// ---- API access ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function apiToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

// fetch() a JSON API endpoint. Resolves with the parsed body; rejects with an ApiError whose
// message is the API's own "error" text when it sent one.
async function api(path, { method = "GET", json, form, auth = false } = {}) {
  const headers = { Accept: "application/json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;  // FormData: the browser sets the multipart Content-Type itself
  }
  if (auth && apiToken()) headers.Authorization = `Bearer ${apiToken()}`;
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch {
    throw new ApiError("The server could not be reached. Check your connection and try again.", 0, null);
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    // not JSON: fall through to the status line
  }
  if (!response.ok) {
    let message = (data && data.error) || `${response.status} ${response.statusText}`.trim();
    if (response.status === 401 || response.status === 403) {
      message += apiToken() ? " (check the API token at the top of the page)" : " (enter the API token at the top of the page)";
    }
    throw new ApiError(message, response.status, data);
  }
  return data;
}

// ---- DOM helpers -------------------------------------------------------------------------------

// el("a", {href: "/x", class: "y"}, "text", childNode): a new element. Attributes starting with
// "on" are listeners; strings become text nodes.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function setStatus(node, text, kind = "") {
  node.textContent = text || "";
  node.className = `status${kind ? " " + kind : ""}`;
}

const formatScore = (score) => Number(score).toFixed(2);
const sentence = (text) => {
  const t = String(text).trim();
  return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".");
};
const photoUrl = (id) => `/photos/${encodeURIComponent(id)}`;
const descriptionId = (d) => d.description_id ?? d.id;

// One result card: the photo (linked to its page), its rank and score, and a list that
// fillDescriptions() completes.
function photoCard(result, rank, { small = false, scoreName = "score", scoreHelp = "How well the photo matches, from 0 to 1" } = {}) {
  // A photo the content rule withholds comes with a notice and no image URL: the notice stands
  // where the picture would be.
  const img = result.notice && !result.image_url
    ? el("div", { class: "notice-card", role: "img", "aria-label": result.notice }, result.notice)
    : el("img", { src: result.thumbnail_url || result.image_url || `${photoUrl(result.photo_id)}/image`,
                  alt: `Photo ${result.photo_id}`, decoding: "async" });
  const score = Math.max(0, Math.min(1, Number(result.score) || 0));
  const body = el("div", { class: "card-body" },
    el("p", { class: "score-line" },
      el("span", { class: "rank" }, `#${rank}`),
      el("span", { class: "score", title: scoreHelp },
        el("span", { class: "visually-hidden" }, `${scoreName} `), formatScore(result.score))),
    el("div", { class: "score-bar", "aria-hidden": "true" },
      el("span", { style: `width: ${(score * 100).toFixed(0)}%` })));
  if (!small) body.append(el("ul", { class: "card-descriptions", "aria-label": "Descriptions" }));
  return el("li", { class: "card", "data-photo-id": result.photo_id },
    el("a", { class: "card-photo", href: photoUrl(result.photo_id) }, img), body);
}

// Fetch the photo and list its descriptions in the card; on failure, say why in the card.
async function fillDescriptions(card, photoId, isCurrent) {
  const list = card.querySelector(".card-descriptions");
  try {
    const photo = await api(`/api/photos/${encodeURIComponent(photoId)}`);
    if (!isCurrent()) return;
    const img = card.querySelector("img");
    if (img) img.alt = photo.descriptions?.[0]?.text || `Photo ${photoId}`;
    const descriptions = photo.descriptions || [];
    if (descriptions.length === 0) list.append(el("li", { class: "muted" }, "No descriptions yet."));
    for (const d of descriptions.slice(0, 3)) list.append(el("li", {}, d.text));
    if (descriptions.length > 3) {
      list.append(el("li", {}, el("a", { href: photoUrl(photoId) }, `and ${descriptions.length - 3} more`)));
    }
  } catch (err) {
    if (isCurrent()) list.append(el("li", { class: "card-error error-text" }, `Descriptions unavailable: ${err.message}`));
  }
}

// ---- API token field ---------------------------------------------------------------------------

let signedIn = null;  // the promise of GET /api/me for the key in the box (null: not asked yet)

function initToken() {
  const input = document.getElementById("api-token");
  if (!input) return;
  input.value = apiToken();
  input.addEventListener("input", () => {
    const value = input.value.trim();
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
    signedIn = null;
  });
}

// Who the key in the box belongs to ({name, role, may}), or null without a key or with a bad one.
function whoAmI() {
  if (!apiToken()) return Promise.resolve(null);
  if (!signedIn) signedIn = api("/api/me", { auth: true }).catch(() => null);
  return signedIn;
}

// "Fits" / "Does not fit" under a search result, for a signed-in person whose role may vote: a
// vote on (photo, query). A later vote on the same pair replaces the earlier one.
async function addVoteControl(card, photoId, query, isCurrent) {
  const me = await whoAmI();
  if (!me || !me.may || !me.may.vote || !isCurrent()) return;
  const itemStatus = el("span", { class: "status", role: "status", "aria-live": "polite" });
  const label = `Does photo ${photoId} fit “${query}”?`;
  const fits = el("button", { type: "button", class: "secondary", "data-match": "true", "aria-pressed": "false" }, "Fits");
  const doesNot = el("button", { type: "button", class: "secondary", "data-match": "false", "aria-pressed": "false" },
    "Does not fit");
  const buttons = [fits, doesNot];
  async function vote(match) {
    buttons.forEach((b) => { b.disabled = true; });
    setStatus(itemStatus, "Saving…", "busy");
    try {
      await api("/api/ratings", { method: "POST", auth: true, json: { photo_id: photoId, query, match } });
      buttons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.match === String(match))));
      setStatus(itemStatus, match ? "Thanks: marked as fitting." : "Thanks: marked as not fitting.", "ok");
    } catch (err) {
      setStatus(itemStatus, err.message, "error");
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }
  fits.addEventListener("click", () => vote(true));
  doesNot.addEventListener("click", () => vote(false));
  card.querySelector(".card-body").append(
    el("div", { class: "rate-row vote-row", role: "group", "aria-label": label }, fits, doesNot, itemStatus));
}

// ---- Search page -------------------------------------------------------------------------------

function initSearch() {
  const form = document.getElementById("search-form");
  const input = document.getElementById("q");
  const status = document.getElementById("search-status");
  const notice = document.getElementById("notice");
  const results = document.getElementById("results");
  const pager = document.getElementById("pager");
  const prev = document.getElementById("prev");
  const next = document.getElementById("next");
  const pageInfo = document.getElementById("page-info");
  let generation = 0;  // answers to older searches are dropped
  let current = { query: "", offset: 0 };

  function readUrl() {
    const params = new URLSearchParams(location.search);
    const offset = Math.max(0, parseInt(params.get("offset") || "0", 10) || 0);
    return { query: (params.get("q") || "").trim(), offset };
  }

  function writeUrl({ query, offset }) {
    const params = new URLSearchParams({ q: query });
    if (offset > 0) params.set("offset", offset);
    history.pushState(null, "", `?${params}`);
  }

  function clear() {
    results.replaceChildren();
    notice.hidden = true;
    notice.textContent = "";
    pager.hidden = true;
  }

  async function run({ query, offset }) {
    current = { query, offset };
    input.value = query;
    clear();
    if (!query) {
      setStatus(status, "");
      return;
    }
    const mine = ++generation;
    const isCurrent = () => mine === generation;
    setStatus(status, "Searching…", "busy");
    results.setAttribute("aria-busy", "true");
    let data;
    try {
      data = await api("/api/search", { method: "POST", json: { query, limit: PAGE_SIZE, offset } });
    } catch (err) {
      if (isCurrent()) {
        setStatus(status, err.message, "error");
        results.removeAttribute("aria-busy");
      }
      return;
    }
    if (!isCurrent()) return;
    results.removeAttribute("aria-busy");
    document.title = `${query} · With Sense`;
    if (data.blocked) {
      setStatus(status, "");
      notice.textContent = data.notice;
      notice.hidden = false;
      return;
    }
    const items = data.results || [];
    const first = (data.offset ?? offset) + 1;
    const range = items.length ? `Photos ${first}–${first + items.length - 1} for “${query}”.` : "No photos found.";
    // the API says why a page came back short (e.g. "only 16 photos can be searched")
    const message = data.message ? ` ${sentence(data.message)}` : "";
    setStatus(status, range + message, message ? "info" : "");
    items.forEach((item, i) => {
      const card = photoCard(item, first + i);
      results.append(card);
      fillDescriptions(card, item.photo_id, isCurrent);
      addVoteControl(card, item.photo_id, query, isCurrent);
    });
    prev.disabled = offset === 0;
    next.disabled = items.length < PAGE_SIZE;
    pageInfo.textContent = items.length ? `${first}–${first + items.length - 1}` : "";
    pager.hidden = prev.disabled && next.disabled;
  }

  function go(state) {
    writeUrl(state);
    run(state);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const query = input.value.trim();
    if (query) go({ query, offset: 0 });
  });
  prev.addEventListener("click", () => go({ ...current, offset: Math.max(0, current.offset - PAGE_SIZE) }));
  next.addEventListener("click", () => go({ ...current, offset: current.offset + PAGE_SIZE }));
  window.addEventListener("popstate", () => run(readUrl()));
  run(readUrl());
}

// ---- Photo page --------------------------------------------------------------------------------

function initPhoto() {
  const main = document.getElementById("main");
  const photoId = Number(main.dataset.photoId);
  const status = document.getElementById("photo-status");
  const meta = document.getElementById("photo-meta");
  const list = document.getElementById("descriptions");
  const form = document.getElementById("description-form");
  const formStatus = document.getElementById("description-status");

  // The photo's ratings summary from the API, as short lines for the metadata list.
  function ratingRows(ratings) {
    const rows = [];
    const expert = ratings?.expert;
    if (expert?.pairs) rows.push(["Experts", `${Number(expert.mean_score).toFixed(2)} of 4 on average, ${expert.pairs} rated pairs`]);
    const crowd = ratings?.crowd;
    if (crowd?.pairs) rows.push(["Crowd", `${crowd.yes} match, ${crowd.no} no match`]);
    const live = ratings?.live_votes;
    if (live && (live.yes || live.no)) rows.push(["Your votes", `${live.yes} match, ${live.no} no match`]);
    return rows;
  }

  async function rate(description, match, buttons, itemStatus) {
    buttons.forEach((b) => { b.disabled = true; });
    setStatus(itemStatus, "Saving…", "busy");
    try {
      await api("/api/ratings", {
        method: "POST", auth: true,
        json: { photo_id: photoId, description_id: descriptionId(description), match },
      });
      buttons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.match === String(match))));
      setStatus(itemStatus, match ? "Thanks: marked as a match." : "Thanks: marked as not a match.", "ok");
    } catch (err) {
      setStatus(itemStatus, err.message, "error");
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  function descriptionItem(d) {
    const textId = `description-${descriptionId(d)}`;
    const itemStatus = el("span", { class: "status", role: "status", "aria-live": "polite" });
    const yes = el("button", { type: "button", class: "secondary", "data-match": "true", "aria-describedby": textId }, "Match");
    const no = el("button", { type: "button", class: "secondary", "data-match": "false", "aria-describedby": textId }, "No match");
    yes.addEventListener("click", () => rate(d, true, [yes, no], itemStatus));
    no.addEventListener("click", () => rate(d, false, [yes, no], itemStatus));
    const by = d.author ? `by ${d.author}` : { dataset: "from the dataset", owner: "by the uploader" }[d.source];
    return el("li", { class: "description", "data-description-id": descriptionId(d) },
      el("p", { id: textId, class: "description-text" }, d.text),
      by ? el("p", { class: "muted small" }, by) : null,
      el("div", { class: "rate-row" }, yes, no, itemStatus));
  }

  function showMeta(photo) {
    const rows = [
      ["Place", photo.place],
      ["Camera", photo.camera],
      ["Taken", photo.taken_at ? new Date(photo.taken_at).toLocaleString() : null],
      ["Uploaded by", photo.uploader],
      ["Size", photo.width && photo.height ? `${photo.width} × ${photo.height} px` : null],
      ["File", photo.file_name],
      ...ratingRows(photo.ratings),
    ];
    meta.replaceChildren(...rows.filter(([, v]) => v).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  }

  async function load() {
    setStatus(status, "Loading…", "busy");
    try {
      const photo = await api(`/api/photos/${photoId}`);
      showMeta(photo);
      const descriptions = photo.descriptions || [];
      list.replaceChildren(...descriptions.map(descriptionItem));
      setStatus(status, descriptions.length ? "" : "No descriptions yet. Add the first one below.", "info");
      const first = descriptions[0]?.text;
      if (first) document.getElementById("photo-image").alt = first;
    } catch (err) {
      setStatus(status, err.message, "error");
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = form.elements.text.value.trim();
    const author = form.elements.author.value.trim();
    if (!text) return;
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    setStatus(formStatus, "Saving…", "busy");
    try {
      await api(`/api/photos/${photoId}/descriptions`, {
        method: "POST", auth: true, json: author ? { text, author } : { text },
      });
      form.elements.text.value = "";
      setStatus(formStatus, "Added. Thank you!", "ok");
      await load();
    } catch (err) {
      setStatus(formStatus, err.message, "error");
    } finally {
      button.disabled = false;
    }
  });

  async function loadSimilar() {
    const similar = document.getElementById("similar");
    const similarStatus = document.getElementById("similar-status");
    setStatus(similarStatus, "Loading…", "busy");
    try {
      const data = await api("/api/search/similar", { method: "POST", json: { photo_id: photoId, limit: PAGE_SIZE } });
      const items = (data.results || []).filter((r) => r.photo_id !== photoId);
      similar.replaceChildren(...items.map((r, i) => photoCard(r, i + 1, {
        small: true, scoreName: "similarity", scoreHelp: "How alike the two photos look (cosine similarity)",
      })));
      setStatus(similarStatus, data.message || (items.length ? "" : "No similar photos."), "info");
    } catch (err) {
      setStatus(similarStatus, err.message, "error");
    }
  }

  load();
  loadSimilar();
}

// ---- Upload page -------------------------------------------------------------------------------

function initUpload() {
  const form = document.getElementById("upload-form");
  const status = document.getElementById("upload-status");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    setStatus(status, "Uploading…", "busy");
    try {
      const fields = new FormData(form);
      for (const [name, value] of [...fields]) {  // leave out optional fields left blank
        if (typeof value === "string" && !value.trim()) fields.delete(name);
      }
      const data = await api("/api/photos", { method: "POST", auth: true, form: fields });
      const parts = [];
      if (data.duplicate_of) {
        parts.push("This photo is already here: ", el("a", { href: photoUrl(data.duplicate_of) }, `photo ${data.duplicate_of}`), ".");
      } else {
        parts.push("Uploaded: ", el("a", { href: photoUrl(data.photo_id) }, `photo ${data.photo_id}`), ".");
      }
      const near = (data.near_duplicates || []).map((n) => (typeof n === "object" ? n.photo_id : n));
      if (near.length) {
        parts.push(" Looks much like ");
        near.forEach((id, i) => parts.push(i ? ", " : "", el("a", { href: photoUrl(id) }, `photo ${id}`)));
        parts.push(".");
      }
      setStatus(status, "", "ok");
      status.append(...parts);
      form.reset();
    } catch (err) {
      setStatus(status, err.message, "error");
    } finally {
      button.disabled = false;
    }
  });
}

// ---- Start -------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  initToken();
  const init = { search: initSearch, photo: initPhoto, upload: initUpload }[document.body.dataset.page];
  if (init) init();
});
