// trackpipe dashboard, delivery health and alert rules (admin key only): /api/v1/endpoints, the dead
// deliveries, /api/v1/alerts of the project shown. A key they refuse is not asked again with them.
"use strict";

(function () {
  const { $, html, getJSON, intFormat, valueFormat, formatTime, formatClock } = window.TP;
  const DEAD_LIMIT = 500;
  const TRANSITIONS_SHOWN = 3;
  let healthRefusedFor = null; // the key /api/v1/endpoints refused
  let alertsRefusedFor = null; // the key /api/v1/alerts refused
  const state = { project: "" };

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
    if (healthRefusedFor === window.TP.key()) {
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
      if (error.status === 401 || error.status === 403) healthRefusedFor = window.TP.key();
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
    if (alertsRefusedFor === window.TP.key()) {
      $("alerts").hidden = true;
      return;
    }
    try {
      const query = state.project ? `?${new URLSearchParams({ project: state.project })}` : "";
      const { alerts } = await getJSON(`/api/v1/alerts${query}`, signal);
      renderAlerts(alerts);
    } catch (error) {
      if (error.name === "AbortError") throw error;
      if (error.status === 401 || error.status === 403) alertsRefusedFor = window.TP.key();
      $("alerts").hidden = true; // also 501 / 503: nothing to show
    }
  }

  window.TP.ops = {
    async refresh(signal, project) {
      state.project = project;
      await refreshHealth(signal);
      await refreshAlerts(signal);
    },
    hide() {
      $("health").hidden = true;
      $("alerts").hidden = true;
    },
  };
})();
