// trackpipe dashboard, shared helpers (loaded first): DOM and SVG builders that only ever set text and
// attributes (never HTML), number formats, the key kept in sessionStorage and sent as the bearer header,
// and the API calls. Every other file of the page adds its part to window.TP.
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const KEY_ITEM = "trackpipe.key";
  const $ = (id) => document.getElementById(id);

  function readStoredKey() {
    try {
      return window.sessionStorage.getItem(KEY_ITEM) || "";
    } catch (_) {
      return ""; // storage disabled: the key lasts as long as the page
    }
  }

  let currentKey = readStoredKey();

  function setKey(key) {
    currentKey = key;
    try {
      if (key) window.sessionStorage.setItem(KEY_ITEM, key);
      else window.sessionStorage.removeItem(KEY_ITEM);
    } catch (_) {
      // storage disabled: kept in memory only
    }
    $("forget-key").hidden = !key;
  }

  const authorization = () => (currentKey ? { Authorization: `Bearer ${currentKey}` } : {});

  function html(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  async function request(method, path, body, signal) {
    const headers = { Accept: "application/json", ...authorization() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const options = { method, headers, cache: "no-store", signal };
    if (body !== undefined) options.body = JSON.stringify(body);
    const response = await fetch(path, options);
    let answer = null;
    try {
      answer = await response.json();
    } catch (_) {
      answer = null;
    }
    if (!response.ok) {
      const error = answer && answer.error;
      const failure = new Error(error ? `${error.code}: ${error.message}` : `HTTP ${response.status} from ${path}`);
      failure.status = response.status;
      throw failure;
    }
    return answer;
  }

  const getJSON = (path, signal) => request("GET", path, undefined, signal);

  // The names of the project's configured goals (admin key only: others see the ids alone, and a key
  // refused is not asked again).
  let goalNames = new Map();
  let namesRefusedFor = null;

  async function loadGoalNames(project, signal) {
    goalNames = new Map();
    if (namesRefusedFor === currentKey) return;
    try {
      const { goals } = await getJSON(`/api/v1/conversions/goals?${new URLSearchParams({ project })}`, signal);
      goalNames = new Map(goals.map((goal) => [goal.id, goal.name]));
    } catch (error) {
      if (error.name === "AbortError") throw error;
      if (error.status === 401 || error.status === 403) namesRefusedFor = currentKey;
    }
  }

  function fillSelect(select, options, chosen) {
    // options: [value, text]; keeps an open picker alone when nothing changed
    const key = JSON.stringify([options, chosen]);
    if (select.dataset.filled === key) return;
    select.dataset.filled = key;
    select.replaceChildren();
    for (const [value, text] of options) {
      const option = html("option", {}, text);
      option.value = value;
      option.selected = value === chosen;
      select.append(option);
    }
  }

  function shorten(name, most) {
    const text = String(name);
    return text.length > most ? `${text.slice(0, most - 1)}…` : text;
  }

  async function copyText(text, button) {
    // the clipboard when the browser allows it; the button says what happened either way
    try {
      await navigator.clipboard.writeText(text);
      button.textContent = "Copied";
    } catch (_) {
      button.textContent = "Select and copy";
    }
    window.setTimeout(() => { button.textContent = button.dataset.label || "Copy"; }, 2000);
  }

  window.TP = {
    $,
    html,
    svg,
    request,
    getJSON,
    fillSelect,
    shorten,
    copyText,
    setKey,
    authorization,
    key: () => currentKey,
    loadGoalNames,
    goalName: (id) => goalNames.get(String(id)),
    goalText: (id) => (goalNames.has(String(id)) ? `${goalNames.get(String(id))} (${id})` : String(id)),
    views: {}, // the pages besides the Top-5, by name: {setup(state, changed), refresh(signal, ctx), clear()}
    DAY_MS: 86400000,
    intFormat: new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 }),
    moneyFormat: new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }),
    valueFormat: new Intl.NumberFormat("en-US", { maximumFractionDigits: 4, useGrouping: false }),
    formatRate: (rate) => (rate * 100).toFixed(2) + " %",
    formatTime: (iso) => String(iso).slice(0, 16).replace("T", " "),
    formatClock: (iso) => String(iso).slice(11, 19),
    formatSeconds(seconds) {
      if (seconds === null || seconds === undefined) return "–";
      if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
      if (seconds < 60) return `${seconds.toFixed(1)} s`;
      if (seconds < 3600) return `${(seconds / 60).toFixed(1)} min`;
      if (seconds < 86400) return `${(seconds / 3600).toFixed(1)} h`;
      return `${(seconds / 86400).toFixed(1)} d`;
    },
  };
})();
