// trackpipe dashboard: the views of a project over a period, read from the report API like any client.
// Everything that comes from the API is rendered with textContent / setAttribute, never as HTML.
// Page parameters (kept in the address bar, so a view can be shared): view (top|link|experiment|manage),
// project, period (1|7|30|90|365|custom), from, to (YYYY-MM-DD, custom period, both days included),
// refresh (seconds between auto-refreshes); the Top-5's filter (push | campaign | link | experiment +
// variation), the goal and interval of its time series (goal, interval); the link page's link_id; the
// experiment page's exp and exp_goal.
// The reports need a key (the admin key or a project's read key) unless the edge has none configured
// and this browser runs on its host: on a 401 the page asks for it, keeps it in sessionStorage only
// (gone with the tab, never in the address) and sends it as "Authorization: Bearer <key>".
"use strict";

(function () {
  const TP = window.TP;
  const { $, html, getJSON, setKey } = TP;
  const PERIODS = ["1", "7", "30", "90", "365", "custom"];
  const VIEWS = ["top", "link", "experiment", "manage"];
  //: the address parameters besides project and period, each kept when set
  const KEPT = ["push", "campaign", "link", "experiment", "variation", "goal", "interval", "link_id", "exp",
    "exp_goal"];

  const pageParams = new URL(window.location.href).searchParams;
  const refreshSeconds = Math.max(1, Number.parseInt(pageParams.get("refresh") || "30", 10) || 30);
  const state = {
    view: VIEWS.includes(pageParams.get("view")) ? pageParams.get("view") : "top",
    project: pageParams.get("project") || "",
    period: PERIODS.includes(pageParams.get("period")) ? pageParams.get("period") : "30",
    from: pageParams.get("from") || "",
    to: pageParams.get("to") || "",
  };
  for (const name of KEPT) state[name] = pageParams.get(name) || "";
  if (!["hour", "day"].includes(state.interval)) state.interval = "";
  let timer = null;
  let inflight = null;
  let renders = 0;
  let shownProjects = null;

  function lock(message) {
    // Nothing read with a previous key stays on the page.
    TP.top.renderNothing();
    TP.ops.hide();
    for (const view of Object.values(TP.views)) view.clear();
    TP.series.clear();
    shownProjects = null;
    $("project").replaceChildren();
    $("key-form").hidden = false;
    setStatus(message, true);
    document.body.dataset.state = "locked";
    $("key").focus();
  }

  async function downloadCsv(event) {
    if (!TP.key()) return; // no key in use: the plain link works
    event.preventDefault();
    const link = event.currentTarget;
    try {
      const response = await fetch(link.getAttribute("href"), { headers: TP.authorization(), cache: "no-store" });
      if (!response.ok) throw new Error(`HTTP ${response.status} from the CSV export`);
      const url = URL.createObjectURL(await response.blob());
      const name = `${link.dataset.name}-${state.project.replace(/[^A-Za-z0-9._-]/g, "_").slice(0, 100)}.csv`;
      const save = html("a", { href: url, download: name });
      document.body.append(save);
      save.click();
      save.remove();
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
      if (state.to && !Number.isNaN(to)) params.to = new Date(to + TP.DAY_MS).toISOString();
      return params;
    }
    // "Last N days": today and the N - 1 days before it, whole UTC days (the API's default end is the
    // start of tomorrow), the periods the daily aggregates answer without reading raw events.
    const today = new Date();
    const startOfToday = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate());
    return { from: new Date(startOfToday - (Number(state.period) - 1) * TP.DAY_MS).toISOString() };
  }

  function periodDays() {
    // the link analytics count days back from now: the custom period's start, else the period's days
    if (state.period !== "custom") return Number(state.period);
    const from = Date.parse(`${state.from}T00:00:00Z`);
    return Number.isNaN(from) ? 30 : Math.max(1, Math.ceil((Date.now() - from) / TP.DAY_MS));
  }

  function setStatus(text, isError) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", Boolean(isError));
  }

  function syncAddress() {
    const address = new URL(window.location.href);
    const params = address.searchParams;
    if (state.view !== "top") params.set("view", state.view);
    else params.delete("view");
    if (state.project) params.set("project", state.project);
    params.set("period", state.period);
    for (const name of ["from", "to"]) {
      if (state.period === "custom" && state[name]) params.set(name, state[name]);
      else params.delete(name);
    }
    for (const name of KEPT) {
      if (state[name]) params.set(name, state[name]);
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

  function showView() {
    for (const view of VIEWS) {
      $(`view-${view}`).hidden = view !== state.view;
      const tab = $(`tab-${view}`);
      if (view === state.view) tab.setAttribute("aria-current", "page");
      else tab.removeAttribute("aria-current");
    }
    document.body.dataset.view = state.view;
  }

  const context = () => ({ state, period: periodParams(), days: periodDays(), setStatus, changed });

  async function refreshTop(signal, mine) {
    const period = periodParams();
    await TP.top.fillPickers(state, period, signal);
    const params = new URLSearchParams({ project: state.project, ...period, ...TP.top.filterParams(state) });
    const report = await getJSON(`/api/v1/reports/top-events?${params}`, signal);
    if (mine !== inflight) return;
    TP.top.render(report, (goal) => {
      state.goal = goal;
      changed();
      $("s-goal").focus();
    });
    params.set("format", "csv");
    $("csv").setAttribute("href", `/api/v1/reports/top-events?${params}`);
    await TP.series.refresh(signal, context(), report);
  }

  async function refresh() {
    if (inflight) inflight.abort();
    const mine = new AbortController();
    inflight = mine;
    document.body.dataset.state = "loading";
    showView();
    try {
      showProjects((await getJSON("/api/v1/projects", mine.signal)).rows);
      syncAddress();
      if (!state.project) {
        TP.top.renderNothing();
        setStatus("No events yet: send some to /track.");
      } else {
        await TP.loadGoalNames(state.project, mine.signal);
        if (state.view === "top") await refreshTop(mine.signal, mine);
        else await TP.views[state.view].refresh(mine.signal, context());
        if (mine !== inflight) return;
        syncAddress(); // with what the view chose by default (the first link, experiment)
        setStatus("");
      }
      await TP.ops.refresh(mine.signal, state.project);
      if (mine !== inflight) return;
      $("key-form").hidden = true;
      $("updated").textContent = `${new Date().toISOString().slice(11, 19)} UTC`;
      document.body.dataset.renders = String(++renders);
      document.body.dataset.state = "ready";
    } catch (error) {
      if (error.name === "AbortError") return;
      if (error.status === 401) {
        const refused = Boolean(TP.key());
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
        // not while a form of the page is being filled in
        const editing = document.activeElement && document.activeElement.closest("form.edit");
        if (!document.hidden && !editing && document.body.dataset.state !== "locked") refresh();
      }, refreshSeconds * 1000);
    }
    $("refresh-note").textContent = on ? `auto-refresh every ${refreshSeconds} s` : "auto-refresh off";
  }

  function showCustomRange() {
    const custom = state.period === "custom";
    $("custom-range").hidden = !custom;
    if (custom && !state.to) state.to = new Date().toISOString().slice(0, 10);
    if (custom && !state.from) state.from = new Date(Date.now() - 29 * TP.DAY_MS).toISOString().slice(0, 10);
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
    for (const name of KEPT) if (name !== "interval") state[name] = ""; // another project's ids
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
  for (const name of TP.top.FILTERS) {
    $(`f-${name}`).addEventListener("change", (event) => {
      TP.top.choose(state, name, event.target.value);
      changed();
    });
  }
  for (const view of VIEWS) {
    $(`tab-${view}`).addEventListener("click", () => {
      state.view = view;
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
  for (const link of document.querySelectorAll("a.csv")) link.addEventListener("click", downloadCsv);
  $("forget-key").hidden = !TP.key();
  $("auto").addEventListener("change", schedule);
  $("refresh").addEventListener("click", refresh);
  for (const form of document.querySelectorAll("form.filters")) {
    form.addEventListener("submit", (event) => event.preventDefault());
  }
  $("controls").addEventListener("submit", (event) => event.preventDefault());
  for (const view of Object.values(TP.views)) view.setup(state, changed);
  TP.series.setup(state, changed);
  schedule();
  refresh();
})();
