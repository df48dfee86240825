// trackpipe dashboard, the Top-5 view over time: conversions, revenue (bars) and conversion rate (line)
// per hour or day for the period, the filter and a goal (picked in the Top-5 or here), drawn as inline SVG
// from /api/v1/reports/series. The numbers are in a table below the chart too.
"use strict";

(function () {
  const { $, html, svg, getJSON, fillSelect, shorten, intFormat, moneyFormat, formatRate } = window.TP;
  const WIDTH = 800;
  const LEFT = 90;
  const RIGHT = 16;
  const PANEL = 70; // the height of each panel's plot
  const GAP = 34;
  const PANELS = [
    { key: "conversions", label: "Conversions", kind: "bar", format: (v) => intFormat.format(v) },
    { key: "revenue", label: "Revenue", kind: "bar", format: (v) => moneyFormat.format(v) },
    { key: "conversion_rate", label: "Conversion rate", kind: "line", format: formatRate },
  ];

  function interval(state, ctx) {
    // hours only for periods of up to 31 days (the API's limit); a one-day period is per hour by default
    const from = Date.parse(ctx.period.from || "");
    const to = ctx.period.to ? Date.parse(ctx.period.to) : Date.now() + window.TP.DAY_MS;
    const long = Number.isNaN(from) || to - from > 31 * window.TP.DAY_MS;
    $("s-interval").querySelector("option[value='hour']").disabled = long;
    if (long) return "day";
    return state.interval || (state.period === "1" ? "hour" : "day");
  }

  function label(at, unit) {
    return unit === "hour" ? String(at).slice(5, 16).replace("T", " ") : String(at).slice(0, 10);
  }

  function draw(report) {
    const chart = $("series-chart");
    chart.replaceChildren();
    const rows = report.rows;
    const height = PANELS.length * (PANEL + GAP) + 24;
    chart.setAttribute("viewBox", `0 0 ${WIDTH} ${height}`);
    const plot = WIDTH - LEFT - RIGHT;
    const step = rows.length ? plot / rows.length : plot;
    const empty = !rows.some((row) => row.conversions || row.base_count);
    PANELS.forEach((panel, p) => {
      const top = p * (PANEL + GAP) + 20;
      const bottom = top + PANEL;
      const most = Math.max(0, ...rows.map((row) => row[panel.key]));
      const group = svg("g", { class: `panel panel-${panel.key}`, "data-max": most });
      group.append(
        svg("text", { class: "panel-label", x: 0, y: top - 6 }, `${panel.label} (max ${panel.format(most)})`),
        svg("line", { class: "axis", x1: LEFT, x2: WIDTH - RIGHT, y1: bottom, y2: bottom }),
        svg("text", { class: "tick", x: LEFT - 6, y: top + 10, "text-anchor": "end" }, panel.format(most)),
        svg("text", { class: "tick", x: LEFT - 6, y: bottom, "text-anchor": "end" }, panel.format(0)),
      );
      const points = [];
      rows.forEach((row, i) => {
        const value = row[panel.key];
        const h = most > 0 ? (value / most) * PANEL : 0;
        const title = svg("title", {}, `${label(row.at, report.interval)}: ${panel.format(value)}`);
        if (panel.kind === "bar") {
          const width = Math.max(1, Math.min(step * 0.8, 48));
          const bar = svg("rect", { class: `s-bar s-${panel.key}`, "data-at": row.at,
            x: (LEFT + i * step + (step - width) / 2).toFixed(2), y: (bottom - h).toFixed(2),
            width: width.toFixed(2), height: h.toFixed(2) });
          bar.append(title);
          group.append(bar);
        } else {
          const x = LEFT + i * step + step / 2;
          points.push(`${x.toFixed(2)},${(bottom - h).toFixed(2)}`);
          const dot = svg("circle", { class: `s-dot s-${panel.key}`, "data-at": row.at, cx: x.toFixed(2),
            cy: (bottom - h).toFixed(2), r: rows.length > 60 ? 1.5 : 3 });
          dot.append(title);
          group.append(dot);
        }
      });
      if (points.length > 1) group.prepend(svg("polyline", { class: "s-line", points: points.join(" ") }));
      chart.append(group);
    });
    if (rows.length) {
      const y = height - 4;
      chart.append(svg("text", { class: "tick", x: LEFT, y }, label(rows[0].at, report.interval)));
      if (rows.length > 1) {
        chart.append(svg("text", { class: "tick", x: WIDTH - RIGHT, y, "text-anchor": "end" },
          label(rows[rows.length - 1].at, report.interval)));
      }
    }
    if (empty) {
      chart.append(svg("text", { class: "empty", x: WIDTH / 2, y: PANEL / 2 + 20, "text-anchor": "middle" },
        "No conversions in this period"));
    }
  }

  function table(report) {
    const body = $("series-table").tBodies[0];
    body.replaceChildren();
    for (const row of report.rows) {
      const tr = html("tr", { "data-at": row.at });
      tr.append(
        html("td", {}, label(row.at, report.interval)),
        html("td", { class: "num" }, intFormat.format(row.conversions)),
        html("td", { class: "num" }, intFormat.format(row.converters)),
        html("td", { class: "num" }, moneyFormat.format(row.revenue)),
        html("td", { class: "num" }, intFormat.format(row.base_count)),
        html("td", { class: "num" }, formatRate(row.conversion_rate)),
      );
      body.append(tr);
    }
  }

  async function refresh(signal, ctx, top) {
    const { state } = ctx;
    const goals = top.rows.map((row) => row.goal_id);
    if (state.goal && !goals.includes(state.goal)) goals.push(state.goal);
    fillSelect($("s-goal"), [["", "All goals"], ...goals.map((g) => [g, shorten(window.TP.goalText(g), 60)])], state.goal);
    const unit = interval(state, ctx);
    $("s-interval").value = unit;
    const params = new URLSearchParams({ project: state.project, ...ctx.period, interval: unit,
      ...window.TP.top.filterParams(state) });
    if (state.goal) params.set("goal", state.goal);
    const report = await getJSON(`/api/v1/reports/series?${params}`, signal);
    $("series-title").textContent = `Over time: ${state.goal ? shorten(window.TP.goalText(state.goal), 60) : "all goals"}, per ${unit}`;
    draw(report);
    table(report);
    params.set("format", "csv");
    $("series-csv").setAttribute("href", `/api/v1/reports/series?${params}`);
  }

  function setup(state, changed) {
    $("s-goal").addEventListener("change", (event) => {
      state.goal = event.target.value;
      changed();
    });
    $("s-interval").addEventListener("change", (event) => {
      state.interval = event.target.value;
      changed();
    });
  }

  function clear() {
    $("series-chart").replaceChildren();
    $("series-table").tBodies[0].replaceChildren();
  }

  window.TP.series = { setup, refresh, clear };
})();
