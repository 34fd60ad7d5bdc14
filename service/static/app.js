// With Sense web page: fills the server-rendered shells from the JSON API with fetch().
// No framework; every text from the API goes into the DOM with textContent, never as HTML.
"use strict";

const PAGE_SIZE = 5;
// Below this best score the search page says that nothing fits well (the score is the calibrated
// probability that experts say the description fits).
const WEAK_MATCH = 0.5;

// ---- The page's language -----------------------------------------------------------------------
// Every text this file shows goes through _() or ngettext(), in English (the msgids). The server
// extracts these calls (service/web/i18n.py, with Babel, as `make messages` does) and renders their
// translations into the page as JSON: #page-text = {lang, messages: {msgid: text | {category: text}}}.
// Formatting is Python's: "%(name)s" and "%(num)d" take the params of the same name.

const PAGE_TEXT = (() => {
  const node = document.getElementById("page-text");
  try {
    return node ? JSON.parse(node.textContent) : {};
  } catch {
    return {};
  }
})();
const LANG = PAGE_TEXT.lang || document.documentElement.lang || "en";
const MESSAGES = PAGE_TEXT.messages || {};
const PLURAL_RULES = new Intl.PluralRules(LANG);

function interpolate(text, params) {
  return text.replace(/%(?:\((\w+)\))?([sd%])/g, (match, name, kind) => {
    if (kind === "%") return "%";
    return name in params ? String(params[name]) : match;
  });
}

// The text for msgid in the page's language, with params filled in.
function _(msgid, params = {}) {
  const text = MESSAGES[msgid];
  return interpolate(typeof text === "string" && text ? text : msgid, params);
}

// The plural form for n (Russian has three: 1 фотография, 2 фотографии, 5 фотографий); params.num is n.
function ngettext(singular, plural, n, params = {}) {
  const forms = MESSAGES[singular];
  let text = n === 1 ? singular : plural;
  if (forms && typeof forms === "object") {
    text = forms[PLURAL_RULES.select(n)] || forms.other || forms.many || text;
  }
  return interpolate(text, { num: n, ...params });
}

const DECIMAL = (1.5).toLocaleString(LANG).charAt(1);

// The content rule's notice. The API always sends it in English, the law's text (in place of a
// photo, a flagged description or a query); the page shows it in its own language.
const API_NOTICE = "This image is unavailable in your country in compliance with local laws";
const noticeText = () => _("This image is unavailable in your country in compliance with local laws");
const shownText = (text) => (text === API_NOTICE ? noticeText() : text);

// ---- API access ------------------------------------------------------------------------------

class ApiError extends Error {
  // message: the page's own text for the error (errorText); the API's English text is in body.error.
  constructor(status, body) {
    super("");
    this.status = status;
    this.body = body;
    this.message = errorText(status, body);
  }
}

// The page's text for an API error. The API's messages are English and for developers; the page
// maps the cases it can meet to its own words and says something general for the rest.
function errorText(status, body) {
  const apiText = String(body?.error || "");
  if (status === 0) return _("The server could not be reached. Check your connection and try again.");
  if (status === 401) {
    return _("Sign in with your API token at the top of the page: it is needed to add descriptions, rate them and upload photos.");
  }
  if (status === 403) {
    if (apiText.startsWith("writes are disabled")) return _("This server does not accept changes: it has no API token set up.");
    return _("The API token is not valid. Check it at the top of the page.");
  }
  if (status === 404) return _("It is not here any more: it may have been deleted. Reload the page.");
  if (status === 409) return _("Search by this photo is not ready yet. Try again in a minute.");
  if (status === 413) return _("The file is too large.");
  if (status === 422 && body?.field === "file") {
    return _("This file cannot be taken: send a JPEG, PNG or WebP photo within the size limits.");
  }
  if (status === 400 || status === 415 || status === 422) return _("The server did not accept what was sent. Check the form and try again.");
  if (status === 429) return _("Too many searches in a minute. Wait a little and try again.");
  if (status === 451) return noticeText();
  if (status === 503) return _("The service is temporarily unavailable. Try again in a minute.");
  if (status >= 500) return _("Something went wrong on the server. Try again later.");
  return _("The request failed (error %(status)s).", { status });
}

// The signed-in person ({name, role, may, csrf}) or null. The key itself is sent once, to sign in
// (POST /api/session), and never kept: the browser holds an httpOnly session cookie that no script
// can read, and this page keeps only the session's CSRF token, in memory (GET /api/me gives it
// again on every page load). Nothing of it goes to the browser's storage.
let session = null;
let sessionReady = Promise.resolve(null);  // GET /api/me on load: who the session cookie is, if anyone

// fetch() a JSON API endpoint. Resolves with the parsed body; rejects with an ApiError whose
// message is the page's text for the error. `auth`: a change made as the signed-in person, which
// carries the session's CSRF token (the cookie goes with every same-origin fetch by itself).
async function api(path, { method = "GET", json, form, auth = false } = {}) {
  const headers = { Accept: "application/json" };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;  // FormData: the browser sets the multipart Content-Type itself
  }
  if (auth) {
    await sessionReady;
    if (session?.csrf) headers["X-CSRF-Token"] = session.csrf;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, credentials: "same-origin" });
  } catch {
    throw new ApiError(0, null);
  }
  if (auth && response.status === 401 && session) showSession(null);  // the session has ended
  let data = null;
  try {
    data = await response.json();
  } catch {
    // not JSON: fall through to the status line
  }
  if (!response.ok) throw new ApiError(response.status, data);
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

const formatScore = (score) => Number(score).toFixed(2).replace(".", DECIMAL);
const photoUrl = (id) => `/photos/${encodeURIComponent(id)}`;
const descriptionId = (d) => d.description_id ?? d.id;

// One result card: the photo (linked to its page), its rank and score, and a list that
// fillDescriptions() completes.
function photoCard(result, rank, { small = false, scoreName = _("score"), scoreHelp = _("How well the photo fits, from 0 to 1") } = {}) {
  // A photo the content rule withholds comes with a notice and no image URL: the notice, in the
  // page's language (the API's is English), stands where the picture would be.
  const notice = noticeText();
  const img = result.notice && !result.image_url
    ? el("div", { class: "notice-card", role: "img", "aria-label": notice }, notice)
    : el("img", { src: result.thumbnail_url || result.image_url || `${photoUrl(result.photo_id)}/image`,
                  alt: _("Photo %(id)s", { id: result.photo_id }), decoding: "async" });
  const score = Math.max(0, Math.min(1, Number(result.score) || 0));
  // The width through element.style (the CSSOM), which the page's CSP allows; a style="" attribute
  // would need 'unsafe-inline' in style-src.
  const bar = el("span");
  bar.style.width = `${(score * 100).toFixed(0)}%`;
  const body = el("div", { class: "card-body" },
    el("p", { class: "score-line" },
      el("span", { class: "rank" }, `#${rank}`),
      el("span", { class: "score", title: scoreHelp },
        el("span", { class: "visually-hidden" }, `${scoreName} `), formatScore(result.score))),
    el("div", { class: "score-bar", "aria-hidden": "true" }, bar));
  if (!small) body.append(el("ul", { class: "card-descriptions", "aria-label": _("Descriptions") }));
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
    if (img) img.alt = shownText(photo.descriptions?.[0]?.text || _("Photo %(id)s", { id: photoId }));
    const descriptions = photo.descriptions || [];
    if (descriptions.length === 0) list.append(el("li", { class: "muted" }, _("No descriptions yet.")));
    for (const d of descriptions.slice(0, 3)) list.append(el("li", {}, shownText(d.text)));
    if (descriptions.length > 3) {
      const more = ngettext("and %(num)d more description", "and %(num)d more descriptions", descriptions.length - 3);
      list.append(el("li", {}, el("a", { href: photoUrl(photoId) }, more)));
    }
  } catch (err) {
    if (isCurrent()) {
      list.append(el("li", { class: "card-error error-text" }, _("Descriptions unavailable: %(reason)s", { reason: err.message })));
    }
  }
}

// ---- Sign-in -----------------------------------------------------------------------------------

// Show the sign-in form, or "Signed in as NAME" and the sign-out button, for `me` (null: signed out).
function showSession(me) {
  session = me;
  const form = document.getElementById("sign-in");
  const signedIn = document.getElementById("signed-in");
  if (!form || !signedIn) return;
  form.hidden = Boolean(me);
  signedIn.hidden = !me;
  document.getElementById("signed-in-as").textContent = me ? _("Signed in as %(name)s", { name: me.name }) : "";
}

function initSignIn() {
  const form = document.getElementById("sign-in");
  if (!form) return;
  const input = document.getElementById("api-token");
  const status = document.getElementById("sign-in-status");
  sessionReady = api("/api/me").catch(() => null).then((me) => {
    showSession(me);
    return me;
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = input.value.trim();
    if (!key) return;
    setStatus(status, _("Signing in…"), "busy");
    try {
      const me = await api("/api/session", { method: "POST", json: { key } });
      input.value = "";  // the key is not kept, not even in the page
      sessionReady = Promise.resolve(me);
      showSession(me);
      setStatus(status, "");
    } catch (err) {
      setStatus(status, err.message, "error");
    }
  });
  document.getElementById("sign-out").addEventListener("click", async () => {
    try {
      await api("/api/session", { method: "DELETE", auth: true });
    } catch {
      // the session may have ended already: the page is signed out either way
    }
    sessionReady = Promise.resolve(null);
    showSession(null);
    setStatus(status, _("Signed out."), "ok");
  });
}

// Who is signed in ({name, role, may}), or null.
function whoAmI() {
  return sessionReady.then(() => session);
}

// "Fits" / "Does not fit" under a search result, for a signed-in person whose role may vote: a
// vote on (photo, query). A later vote on the same pair replaces the earlier one.
async function addVoteControl(card, photoId, query, isCurrent) {
  const me = await whoAmI();
  if (!me || !me.may || !me.may.vote || !isCurrent()) return;
  const itemStatus = el("span", { class: "status", role: "status", "aria-live": "polite" });
  const label = _("Does photo %(id)s fit “%(query)s”?", { id: photoId, query });
  const fits = el("button", { type: "button", class: "secondary", "data-match": "true", "aria-pressed": "false" }, _("Fits"));
  const doesNot = el("button", { type: "button", class: "secondary", "data-match": "false", "aria-pressed": "false" },
    _("Does not fit"));
  const buttons = [fits, doesNot];
  async function vote(match) {
    buttons.forEach((b) => { b.disabled = true; });
    setStatus(itemStatus, _("Saving…"), "busy");
    try {
      await api("/api/ratings", { method: "POST", auth: true, json: { photo_id: photoId, query, match } });
      buttons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.match === String(match))));
      setStatus(itemStatus, match ? _("Thanks: marked as fitting.") : _("Thanks: marked as not fitting."), "ok");
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

// The page's text for the API's `message` (why a page of results came back short). The API's
// wording is English; the page recognises the cases its own searches meet (no filters, no
// min_score) and says something general for any other.
function shortfallText(message) {
  const text = String(message || "");
  if (!text) return "";
  if (text === "there are no photos to search yet") return _("There are no photos to search yet.");
  const only = /^only (\d+) photos? can be searched/.exec(text);
  if (!only) return _("Fewer photos than a full page were found.");
  const count = ngettext("Only %(num)d photo can be searched.", "Only %(num)d photos can be searched.", Number(only[1]));
  return /offset \d+ is past the last of them$/.test(text) ? `${count} ${_("This page is past the last of them.")}` : count;
}

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
    setStatus(status, _("Searching…"), "busy");
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
      notice.textContent = noticeText();
      notice.hidden = false;
      return;
    }
    const items = data.results || [];
    const first = (data.offset ?? offset) + 1;
    const last = first + items.length - 1;
    let range = _("No photos found.");
    if (items.length > 1) range = _("Photos %(first)s–%(last)s for “%(query)s”.", { first, last, query });
    else if (items.length === 1) range = _("Photo %(first)s for “%(query)s”.", { first, query });
    // Scores come best first: when even the best fits poorly, say so rather than show the bars bare.
    const weak = offset === 0 && items.length > 0 && Number(items[0].score) < WEAK_MATCH;
    if (weak) range = _("No photo fits this description well; the closest ones:");
    results.classList.toggle("weak", weak);
    // the API says why a page came back short (e.g. "only 16 photos can be searched")
    const message = shortfallText(data.message);
    setStatus(status, message ? `${range} ${message}` : range, message || weak ? "info" : "");
    items.forEach((item, i) => {
      const card = photoCard(item, first + i);
      results.append(card);
      fillDescriptions(card, item.photo_id, isCurrent);
      addVoteControl(card, item.photo_id, query, isCurrent);
    });
    prev.disabled = offset === 0;
    next.disabled = items.length < PAGE_SIZE;
    pageInfo.textContent = items.length ? `${first}–${last}` : "";
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
    if (expert?.pairs) {
      const mean = Number(expert.mean_score).toFixed(2).replace(".", DECIMAL);
      rows.push([_("Experts"), ngettext("%(mean)s of 4 on average, %(num)d rated pair",
                                        "%(mean)s of 4 on average, %(num)d rated pairs", expert.pairs, { mean })]);
    }
    const votes = (v) => _("%(yes)s match, %(no)s no match", { yes: v.yes, no: v.no });
    const crowd = ratings?.crowd;
    if (crowd?.pairs) rows.push([_("Crowd"), votes(crowd)]);
    const live = ratings?.live_votes;
    if (live && (live.yes || live.no)) rows.push([_("Your votes"), votes(live)]);
    return rows;
  }

  async function rate(description, match, buttons, itemStatus) {
    buttons.forEach((b) => { b.disabled = true; });
    setStatus(itemStatus, _("Saving…"), "busy");
    try {
      await api("/api/ratings", {
        method: "POST", auth: true,
        json: { photo_id: photoId, description_id: descriptionId(description), match },
      });
      buttons.forEach((b) => b.setAttribute("aria-pressed", String(b.dataset.match === String(match))));
      setStatus(itemStatus, match ? _("Thanks: marked as a match.") : _("Thanks: marked as not a match."), "ok");
    } catch (err) {
      setStatus(itemStatus, err.message, "error");
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  function descriptionItem(d) {
    const textId = `description-${descriptionId(d)}`;
    const itemStatus = el("span", { class: "status", role: "status", "aria-live": "polite" });
    const yes = el("button", { type: "button", class: "secondary", "data-match": "true", "aria-describedby": textId }, _("Match"));
    const no = el("button", { type: "button", class: "secondary", "data-match": "false", "aria-describedby": textId }, _("No match"));
    yes.addEventListener("click", () => rate(d, true, [yes, no], itemStatus));
    no.addEventListener("click", () => rate(d, false, [yes, no], itemStatus));
    const by = d.author ? _("by %(author)s", { author: d.author })
      : { dataset: _("from the dataset"), owner: _("by the uploader") }[d.source];
    return el("li", { class: "description", "data-description-id": descriptionId(d) },
      el("p", { id: textId, class: "description-text" }, shownText(d.text)),
      by ? el("p", { class: "muted small" }, by) : null,
      el("div", { class: "rate-row" }, yes, no, itemStatus));
  }

  function showMeta(photo) {
    const rows = [
      [_("Place"), photo.place],
      [_("Camera"), photo.camera],
      [_("Taken"), photo.taken_at ? new Date(photo.taken_at).toLocaleString(LANG) : null],
      [_("Uploaded by"), photo.uploader],
      [_("Size"), photo.width && photo.height ? _("%(width)s × %(height)s px", { width: photo.width, height: photo.height }) : null],
      [_("File"), photo.file_name],
      ...ratingRows(photo.ratings),
    ];
    meta.replaceChildren(...rows.filter(([, v]) => v).flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
  }

  async function load() {
    setStatus(status, _("Loading…"), "busy");
    try {
      const photo = await api(`/api/photos/${photoId}`);
      showMeta(photo);
      const descriptions = photo.descriptions || [];
      list.replaceChildren(...descriptions.map(descriptionItem));
      setStatus(status, descriptions.length ? "" : _("No descriptions yet. Add the first one below."), "info");
      const first = descriptions[0]?.text;
      if (first) document.getElementById("photo-image").alt = shownText(first);
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
    setStatus(formStatus, _("Saving…"), "busy");
    try {
      await api(`/api/photos/${photoId}/descriptions`, {
        method: "POST", auth: true, json: author ? { text, author } : { text },
      });
      form.elements.text.value = "";
      setStatus(formStatus, _("Added. Thank you!"), "ok");
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
    setStatus(similarStatus, _("Loading…"), "busy");
    try {
      const data = await api("/api/search/similar", { method: "POST", json: { photo_id: photoId, limit: PAGE_SIZE } });
      const items = (data.results || []).filter((r) => r.photo_id !== photoId);
      similar.replaceChildren(...items.map((r, i) => photoCard(r, i + 1, {
        small: true, scoreName: _("similarity"), scoreHelp: _("How alike the two photos look (cosine similarity)"),
      })));
      setStatus(similarStatus, items.length ? "" : _("No similar photos."), "info");
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
    setStatus(status, _("Uploading…"), "busy");
    try {
      const fields = new FormData(form);
      for (const [name, value] of [...fields]) {  // leave out optional fields left blank
        if (typeof value === "string" && !value.trim()) fields.delete(name);
      }
      const data = await api("/api/photos", { method: "POST", auth: true, form: fields });
      const link = (id) => el("a", { href: photoUrl(id) }, _("photo %(id)s", { id }));
      const parts = data.duplicate_of
        ? [_("This photo is already here:"), " ", link(data.duplicate_of), "."]
        : [_("Uploaded:"), " ", link(data.photo_id), "."];
      const near = (data.near_duplicates || []).map((n) => (typeof n === "object" ? n.photo_id : n));
      if (near.length) {
        parts.push(" ", _("Looks much like:"), " ");
        near.forEach((id, i) => parts.push(i ? ", " : "", link(id)));
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

// ---- Language switch ---------------------------------------------------------------------------

// The switch's links are ?lang=<code> (the server keeps the choice in a cookie). Keep the rest of
// the current URL (the search) when following one, and drop ?lang= from the address once served.
function initLanguages() {
  const url = new URL(location.href);
  if (url.searchParams.has("lang")) {
    url.searchParams.delete("lang");
    history.replaceState(history.state, "", url);
  }
  for (const link of document.querySelectorAll("a[data-lang]")) {
    link.addEventListener("click", () => {
      const target = new URL(location.href);
      target.searchParams.set("lang", link.dataset.lang);
      link.href = target.href;
    });
  }
}

// ---- Start -------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  initLanguages();
  initSignIn();
  const init = { search: initSearch, photo: initPhoto, upload: initUpload }[document.body.dataset.page];
  if (init) init();
});
