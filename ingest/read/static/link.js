// trackpipe dashboard, the link page (PVTLNK "Analytics on a link"): conversions, conversion rate, total
// and average value, mean and median time to convert (/api/v1/analytics/conversions), its goals, and the
// click -> conversion delays as a histogram (/api/v1/analytics/conversions/delays).
"use strict";

(function () {
  const TP = window.TP;
  const { $, html, svg, getJSON, fillSelect, shorten, intFormat, moneyFormat, formatRate, formatSeconds } = TP;

  function binLabel(row) {
    const unit = (s) => (s < 3600 ? `${s / 60} min` : s < 86400 ? `${s / 3600} h` : `${s / 86400} d`);
    if (row.from_s === 0) return `< ${unit(row.to_s)}`;
    if (row.to_s === null) return `≥ ${unit(row.from_s)}`;
    return `${unit(row.from_s)} – ${unit(row.to_s)}`;
  }

  function drawHistogram(report) {
    const chart = $("l-hist");
    chart.replaceChildren();
    const width = 800;
    const plot = 150;
    const top = 24;
    chart.setAttribute("viewBox", `0 0 ${width} ${plot + top + 40}`);
    const most = Math.max(0, ...report.rows.map((row) => row.conversions));
    const step = width / Math.max(1, report.rows.length);
    report.rows.forEach((row, i) => {
      const h = most > 0 ? (row.conversions / most) * plot : 0;
      const x = i * step + step * 0.1;
      const group = svg("g", { class: "h-row", "data-from": row.from_s });
      const bar = svg("rect", { class: "h-bar", x: x.toFixed(2), y: (top + plot - h).toFixed(2),
        width: (step * 0.8).toFixed(2), height: h.toFixed(2) });
      bar.append(svg("title", {}, `${binLabel(row)}: ${row.conversions} conversions`));
      group.append(
        bar,
        svg("text", { class: "h-count", x: (x + step * 0.4).toFixed(2), y: (top + plot - h - 6).toFixed(2),
          "text-anchor": "middle" }, intFormat.format(row.conversions)),
        svg("text", { class: "h-label", x: (x + step * 0.4).toFixed(2), y: top + plot + 20,
          "text-anchor": "middle" }, binLabel(row)),
      );
      chart.append(group);
    });
    if (!most) {
      chart.append(svg("text", { class: "empty", x: width / 2, y: top + plot / 2, "text-anchor": "middle" },
        "No conversion with a known click in this period"));
    }
  }

  function render(analytics) {
    $("l-clicks").textContent = intFormat.format(analytics.clicks);
    $("l-conversions").textContent = intFormat.format(analytics.conversions);
    $("l-rate").textContent = formatRate(analytics.conversion_rate);
    $("l-total").textContent = moneyFormat.format(analytics.total_value);
    $("l-average").textContent = moneyFormat.format(analytics.average_value);
    $("l-mean").textContent = formatSeconds(analytics.time_to_convert_mean_s);
    $("l-median").textContent = formatSeconds(analytics.time_to_convert_median_s);
    const body = $("l-goals").tBodies[0];
    body.replaceChildren();
    if (!analytics.rows.length) {
      const tr = html("tr", {});
      tr.append(html("td", { class: "empty", colspan: 4 }, "No conversions in this period"));
      body.append(tr);
    }
    for (const row of analytics.rows) {
      const tr = html("tr", { "data-goal": row.goal_id });
      tr.append(
        html("td", { class: "goal" }, TP.goalText(row.goal_id)),
        html("td", { class: "num" }, intFormat.format(row.conversions)),
        html("td", { class: "num" }, moneyFormat.format(row.total_value)),
        html("td", { class: "num" }, moneyFormat.format(row.average_value)),
      );
      body.append(tr);
    }
  }

  async function refresh(signal, ctx) {
    const { state } = ctx;
    const query = new URLSearchParams({ project: state.project, ...ctx.period });
    const { rows } = await getJSON(`/api/v1/reports/links?${query}`, signal);
    if (!state.link_id && rows.length) state.link_id = rows[0].id;
    const options = rows.map((row) => [row.id, `${shorten(row.id, 60)} (${intFormat.format(row.count)} clicks)`]);
    if (state.link_id && !rows.some((row) => row.id === state.link_id)) {
      options.unshift([state.link_id, `${shorten(state.link_id, 60)} (no clicks in this period)`]);
    }
    if (!options.length) options.push(["", "(no link clicked in this period)"]);
    fillSelect($("l-link"), options, state.link_id);
    $("l-days").textContent = `the last ${ctx.days} days`;
    if (!state.link_id) {
      clear();
      const tr = html("tr", {});
      tr.append(html("td", { class: "empty", colspan: 4 }, "No link clicked in this period"));
      $("l-goals").tBodies[0].append(tr);
      return;
    }
    const params = new URLSearchParams({ link_id: state.link_id, days: ctx.days, project: state.project });
    render(await getJSON(`/api/v1/analytics/conversions?${params}`, signal));
    drawHistogram(await getJSON(`/api/v1/analytics/conversions/delays?${params}`, signal));
    params.set("format", "csv");
    $("l-csv").setAttribute("href", `/api/v1/analytics/conversions?${params}`);
    document.body.dataset.link = state.link_id;
  }

  function clear() {
    for (const id of ["l-clicks", "l-conversions", "l-rate", "l-total", "l-average", "l-mean", "l-median"]) {
      $(id).textContent = "–";
    }
    $("l-goals").tBodies[0].replaceChildren();
    $("l-hist").replaceChildren();
    delete document.body.dataset.link;
  }

  function setup(state, changed) {
    $("l-link").addEventListener("change", (event) => {
      state.link_id = event.target.value;
      changed();
    });
  }

  TP.views.link = { setup, refresh, clear };
})();
