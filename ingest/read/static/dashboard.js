// trackpipe dashboard: the Top-5 goals of a project over a period, read from the report API.
// Everything that comes from the API is rendered with textContent / setAttribute, never as HTML.
// Page parameters (kept in the address bar): project, period (1|7|30|90|365|custom), from, to
// (YYYY-MM-DD, custom period, both days included), refresh (seconds between auto-refreshes).
// The reports need a key (the admin key or a project's read key) unless the edge has none configured
// and this browser runs on its host: on a 401 the page asks for it, keeps it in sessionStorage only
// (gone with the tab, never in the address) and sends it as "Authorization: Bearer <key>".
// With the admin key the page also shows the delivery health (/api/v1/endpoints, dead deliveries); a key
// it refuses is not asked again (every refusal counts as a wrong key against this address). The same for
// the alert rules (/api/v1/alerts of the project shown): each rule's state and its last transitions.
"use strict";

(function () {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const DAY_MS = 86400000;
  const PERIODS = ["1", "7", "30", "90", "365", "custom"];
  const KEY_ITEM = "trackpipe.key";
  const DEAD_LIMIT = 500;
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

  const pageParams = new URL(window.location.href).searchParams;
  const refreshSeconds = Math.max(1, Number.parseInt(pageParams.get("refresh") || "30", 10) || 30);
  const state = {
    project: pageParams.get("project") || "",
    period: PERIODS.includes(pageParams.get("period")) ? pageParams.get("period") : "30",
    from: pageParams.get("from") || "",
    to: pageParams.get("to") || "",
  };
  let timer = null;
  let inflight = null;
  let renders = 0;
  let shownProjects = null;
  let healthRefusedFor = null; // the key /api/v1/endpoints refused
  let alertsRefusedFor = null; // the key /api/v1/alerts refused
  const TRANSITIONS_SHOWN = 3;

  const intFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  const moneyFormat = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  const formatRate = (rate) => (rate * 100).toFixed(2) + " %";
  const formatTime = (iso) => String(iso).slice(0, 16).replace("T", " ");
  const formatClock = (iso) => String(iso).slice(11, 19);
  const valueFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 4, useGrouping: false });

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

  async function getJSON(path, signal) {
    const headers = { Accept: "application/json", ...authorization() };
    const response = await fetch(path, { headers, cache: "no-store", signal });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    if (!response.ok) {
      const error = body && body.error;
      const failure = new Error(error ? `${error.code}: ${error.message}` : `HTTP ${response.status} from ${path}`);
      failure.status = response.status;
      throw failure;
    }
    return body;
  }

  function lock(message) {
    // Nothing read with a previous key stays on the page.
    renderNothing();
    $("health").hidden = true;
    $("alerts").hidden = true;
    shownProjects = null;
    $("project").replaceChildren();
    $("key-form").hidden = false;
    setStatus(message, true);
    document.body.dataset.state = "locked";
    $("key").focus();
  }

  async function downloadCsv(event) {
    if (!currentKey) return; // no key in use: the plain link works
    event.preventDefault();
    try {
      const response = await fetch($("csv").getAttribute("href"), { headers: authorization(), cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status} from the CSV export`);
      const url = URL.createObjectURL(await response.blob());
      const name = `top-events-${state.project.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 100)}.csv`;
      const link = html("a", { href: url, download: name });
      document.body.append(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (error) {
      setStatus(`Could not download the CSV: ${error.message}`, true);
    }
  }

  function periodParams() {
    if (state.period === "custom") {
      const params = {};
      if (state.from) params.from = `${state.from}T00:00:00Z`;
      const to = Date.parse(`${state.to}T00:00:00Z`);
      if (state.to && !Number.isNaN(to)) params.to = new Date(to + DAY_MS).toISOString();
      return params;
    }
    // "Last N days": today and the N - 1 days before it, whole UTC days (the API's default end is the
    // start of tomorrow), the periods the daily aggregates answer without reading raw events.
    const today = new Date();
    const startOfToday = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate());
    return { from: new Date(startOfToday - (Number(state.period) - 1) * DAY_MS).toISOString() };
  }

  function setStatus(text, isError) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  function syncAddress() {
    const address = new URL(window.location.href);
    const params = address.searchParams;
    if (state.project) params.set("project", state.project);
    params.set("period", state.period);
    for (const name of ["from", "to"]) {
      if (state.period === "custom" && state[name]) params.set(name, state[name]);
      else params.delete(name);
    }
    window.history.replaceState(null, "", address);
  }

  function showProjects(rows) {
    const ids = rows.map((row) => row.project);
    if (!state.project && ids.length) state.project = ids[0];
    if (state.project && !ids.includes(state.project)) ids.unshift(state.project);
    const key = JSON.stringify(ids);
    if (key === shownProjects) return; // unchanged: leave an open picker alone
    shownProjects = key;
    const select = $("project");
    select.replaceChildren();
    if (!ids.length) select.append(html("option", { value: "", disabled: "" }, "(no events yet)"));
    for (const id of ids) {
      const option = html("option", {}, id);
      option.value = id;
      option.selected = id === state.project;
      select.append(option);
    }
  }

  function renderChart(rows) {
    const chart = $("chart");
    chart.replaceChildren();
    const width = 800;
    const labelWidth = 150;
    const barX = labelWidth + 10;
    const barMax = 520;
    const rowHeight = 56;
    if (!rows.length) {
      chart.setAttribute("viewBox", `0 0 ${width} 60`);
      chart.append(svg("text", { class: "empty", x: width / 2, y: 36, "text-anchor": "middle" },
        "No conversions in this period"));
      return;
    }
    chart.setAttribute("viewBox", `0 0 ${width} ${rows.length * rowHeight + 4}`);
    const most = Math.max(...rows.map((row) => row.conversions), 1);
    rows.forEach((row, i) => {
      const y = i * rowHeight + 6;
      const group = svg("g", { class: "bar-row", "data-goal": row.goal_id });
      const name = String(row.goal_id);
      const goalLabel = svg("text", { class: "label-goal", x: 0, y: y + 16 },
        name.length > 18 ? `${name.slice(0, 17)}…` : name);
      goalLabel.append(svg("title", {}, name));
      const convWidth = row.conversions > 0 ? Math.max(2, (row.conversions / most) * barMax) : 0;
      const rateWidth = Math.min(1, Math.max(0, row.conversion_rate)) * barMax;
      group.append(
        goalLabel,
        svg("rect", { class: "bar-conv", x: barX, y, width: convWidth.toFixed(2), height: 22, rx: 2 }),
        svg("text", { class: "label-conv", x: barX + convWidth + 8, y: y + 16 }, intFormat.format(row.conversions)),
        svg("rect", { class: "track", x: barX, y: y + 28, width: barMax, height: 8, rx: 2 }),
        svg("rect", { class: "bar-rate", x: barX, y: y + 28, width: rateWidth.toFixed(2), height: 8, rx: 2 }),
        svg("text", { class: "label-rate", x: barX + barMax + 8, y: y + 36 }, formatRate(row.conversion_rate)),
      );
      chart.append(group);
    });
  }

  function renderTable(rows) {
    const body = $("top").tBodies[0];
    body.replaceChildren();
    if (!rows.length) {
      body.append(html("tr", {}));
      body.rows[0].append(html("td", { class: "empty", colspan: 6 }, "No conversions in this period"));
      return;
    }
    rows.forEach((row, i) => {
      const tr = html("tr", { "data-goal": row.goal_id });
      tr.append(
        html("td", { class: "num" }, i + 1),
        html("td", { class: "goal" }, row.goal_id),
        html("td", { class: "num conversions" }, intFormat.format(row.conversions)),
        html("td", { class: "num converters" }, intFormat.format(row.converters)),
        html("td", { class: "num rate" }, formatRate(row.conversion_rate)),
        html("td", { class: "num revenue" }, moneyFormat.format(row.revenue)),
      );
      body.append(tr);
    });
  }

  function render(report) {
    $("visitors").textContent = intFormat.format(report.visitors);
    $("period-text").textContent = `${formatTime(report.from)} – ${formatTime(report.to)}`;
    renderChart(report.rows);
    renderTable(report.rows);
    document.body.dataset.project = report.project;
  }

  function renderNothing() {
    $("visitors").textContent = "–";
    $("period-text").textContent = "–";
    renderChart([]);
    renderTable([]);
    delete document.body.dataset.project;
  }

  function renderHealth(endpoints, dead, names) {
    const deadText = dead >= DEAD_LIMIT ? `${DEAD_LIMIT}+` : intFormat.format(dead);
    $("health-dead").textContent = `Dead deliveries (no more attempts): ${deadText}`;
    $("health-ok").hidden = endpoints.length > 0;
    $("endpoints").hidden = !endpoints.length;
    const body = $("endpoints").tBodies[0];
    const labels = [...$("endpoints").tHead.rows[0].cells].map((th) => th.textContent);
    body.replaceChildren();
    for (const endpoint of endpoints) {
      const [kind, ...rest] = String(endpoint.key).split(":");
      const name = kind === "goal" ? names.get(rest.join(":")) : undefined;
      const where = html("td", { class: "endpoint" });
      if (name !== undefined) where.append(html("span", { class: "name" }, name), " ");
      where.append(html("code", {}, endpoint.key));
      const last = endpoint.last_failure_at ? formatTime(endpoint.last_failure_at) : "–";
      const since = endpoint.disabled_at ? formatTime(endpoint.disabled_at) : "";
      const disabled = since ? `disabled (${endpoint.disabled_reason || "unknown"}) since ${since}` : "failing";
      const tr = html("tr", { "data-key": endpoint.key, class: endpoint.disabled_at ? "disabled" : "failing" });
      tr.append(
        where,
        html("td", { class: "num", "data-label": labels[1] }, intFormat.format(endpoint.failures)),
        html("td", { "data-label": labels[2] }, last),
        html("td", { class: "state", "data-label": labels[3] }, disabled),
      );
      body.append(tr);
    }
    $("health").hidden = false;
  }

  async function refreshHealth(signal) {
    // Hidden unless the key in use may read the endpoints (the admin key); never locks the page.
    if (healthRefusedFor === currentKey) {
      $("health").hidden = true;
      return;
    }
    try {
      const { endpoints } = await getJSON("/api/v1/endpoints", signal);
      const { deliveries } = await getJSON(`/api/v1/deliveries?status=dead&limit=${DEAD_LIMIT}`, signal);
      const names = new Map();
      if (endpoints.some((endpoint) => String(endpoint.key).startsWith("goal:"))) {
        try {
          const { goals } = await getJSON("/api/v1/conversions/goals", signal);
          for (const goal of goals) names.set(goal.id, goal.name);
        } catch (error) {
          if (error.name === "AbortError") throw error; // no names: the ids alone
        }
      }
      renderHealth(endpoints, deliveries.length, names);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      if (error.status === 401 || error.status === 403) healthRefusedFor = currentKey;
      $("health").hidden = true;
    }
  }

  function compared(transition) {
    // "(value 4 > 2)": the observed value against what it was compared with, from the numbers themselves
    const { value, threshold } = transition;
    if (value === null || value === undefined) return "(no data)";
    if (threshold === null || threshold === undefined) return `(value ${valueFormat.format(value)})`;
    const sign = value > threshold ? ">" : value < threshold ? "<" : "=";
    return `(value ${valueFormat.format(value)} ${sign} ${valueFormat.format(threshold)})`;
  }

  function ruleState(rule) {
    // [text, class]: the text says it all, the class only adds a colour
    const snoozed = rule.snoozed_until && Date.parse(rule.snoozed_until) > Date.now()
      ? `snoozed until ${formatTime(rule.snoozed_until)}` : "";
    if (!rule.enabled) return ["disabled", "disabled"];
    if (!rule.status) return [snoozed || "not evaluated here", "unknown"];
    const state = String(rule.status.state);
    const known = ["normal", "pending", "firing"].includes(state) ? state : "unknown";
    return [snoozed ? `${state}, ${snoozed}` : state, known];
  }

  function renderAlerts(rules) {
    $("alerts-empty").hidden = rules.length > 0;
    $("rules").hidden = !rules.length;
    const body = $("rules").tBodies[0];
    const labels = [...$("rules").tHead.rows[0].cells].map((th) => th.textContent);
    body.replaceChildren();
    for (const rule of rules) {
      const [stateText, stateClass] = ruleState(rule);
      const what = html("td", { class: "rule" });
      what.append(html("span", { class: "name" }, rule.name), " ",
        html("span", { class: "kind" }, `${rule.kind} · ${rule.metric}`));
      const status = rule.status || {};
      const since = status.episode_started_at ? formatTime(status.episode_started_at) : "–";
      const list = html("ul", { class: "transitions" });
      for (const transition of (status.transitions || []).slice(0, TRANSITIONS_SHOWN)) {
        const to = String(transition.to_state);
        list.append(html("li", { class: `to-${to.replace(/[^a-z]/g, "")}` },
          `${to} at ${formatClock(transition.at)} ${compared(transition)}`));
      }
      const last = html("td", { class: "transitions-cell", "data-label": labels[3] });
      if (list.childElementCount) last.append(list);
      else last.textContent = "–";
      const tr = html("tr", { "data-rule": rule.id, "data-state": stateClass });
      tr.append(
        what,
        html("td", { class: `state state-${stateClass}`, "data-label": labels[1] }, stateText),
        html("td", { class: "since", "data-label": labels[2] }, since),
        last,
      );
      body.append(tr);
    }
    $("alerts").hidden = false;
  }

  async function refreshAlerts(signal) {
    // Hidden unless the key in use may read the rules (the admin key); never locks the page.
    if (alertsRefusedFor === currentKey) {
      $("alerts").hidden = true;
      return;
    }
    try {
      const query = state.project ? `?${new URLSearchParams({ project: state.project })}` : "";
      const { alerts } = await getJSON(`/api/v1/alerts${query}`, signal);
      renderAlerts(alerts);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      if (error.status === 401 || error.status === 403) alertsRefusedFor = currentKey;
      $("alerts").hidden = true; // also 501 / 503: nothing to show
    }
  }

  async function refresh() {
    if (inflight) inflight.abort();
    const mine = new AbortController();
    inflight = mine;
    document.body.dataset.state = "loading";
    try {
      showProjects((await getJSON("/api/v1/projects", mine.signal)).rows);
      syncAddress();
      if (!state.project) {
        renderNothing();
        setStatus("No events yet: send some to /track.");
      } else {
        const params = new URLSearchParams({ project: state.project, ...periodParams() });
        const report = await getJSON(`/api/v1/reports/top-events?${params}`, mine.signal);
        if (mine !== inflight) return;
        render(report);
        params.set("format", "csv");
        $("csv").setAttribute("href", `/api/v1/reports/top-events?${params}`);
        setStatus("");
      }
      await refreshHealth(mine.signal);
      await refreshAlerts(mine.signal);
      if (mine !== inflight) return;
      $("key-form").hidden = true;
      $("updated").textContent = `${new Date().toISOString().slice(11, 19)} UTC`;
      document.body.dataset.renders = String(++renders);
      document.body.dataset.state = "ready";
    } catch (error) {
      if (error.name === "AbortError") return;
      if (error.status === 401) {
        const refused = Boolean(currentKey);
        setKey("");
        lock(refused ? "The key was not accepted: type the admin key or a read key."
          : "These reports need a key: type the admin key or a read key.");
        return;
      }
      setStatus(`Could not load the report: ${error.message}`, true);
      document.body.dataset.state = "error";
    } finally {
      if (inflight === mine) inflight = null;
    }
  }

  function schedule() {
    if (timer !== null) window.clearInterval(timer);
    timer = null;
    const on = $("auto").checked;
    if (on) {
      timer = window.setInterval(() => {
        if (!document.hidden && document.body.dataset.state !== "locked") refresh();
      }, refreshSeconds * 1000);
    }
    $("refresh-note").textContent = on ? `auto-refresh every ${refreshSeconds} s` : "auto-refresh off";
  }

  function showCustomRange() {
    const custom = state.period === "custom";
    $("custom-range").hidden = !custom;
    if (custom && !state.to) state.to = new Date().toISOString().slice(0, 10);
    if (custom && !state.from) state.from = new Date(Date.now() - 29 * DAY_MS).toISOString().slice(0, 10);
    $("from").value = state.from;
    $("to").value = state.to;
  }

  function changed() {
    syncAddress();
    refresh();
  }

  $("period").value = state.period;
  showCustomRange();
  $("project").addEventListener("change", (event) => {
    state.project = event.target.value;
    changed();
  });
  $("period").addEventListener("change", (event) => {
    state.period = event.target.value;
    showCustomRange();
    changed();
  });
  for (const name of ["from", "to"]) {
    $(name).addEventListener("change", (event) => {
      state[name] = event.target.value;
      changed();
    });
  }
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("key").value.trim();
    if (!key) return;
    $("key").value = "";
    setKey(key);
    $("key-form").hidden = true;
    setStatus("");
    refresh();
  });
  $("forget-key").addEventListener("click", () => {
    setKey("");
    refresh();
  });
  $("csv").addEventListener("click", downloadCsv);
  $("forget-key").hidden = !currentKey;
  $("auto").addEventListener("change", schedule);
  $("refresh").addEventListener("click", refresh);
  $("controls").addEventListener("submit", (event) => event.preventDefault());
  schedule();
  refresh();
})();
