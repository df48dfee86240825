// trackpipe dashboard, the experiment page (Convert-style results): per variation the exposures,
// conversions, rate, revenue and the difference to the baseline with its 95% interval, as a table and an
// interval plot, for any goal or one (/api/v1/experiments/{id}/report).
"use strict";

(function () {
  const TP = window.TP;
  const { $, html, svg, getJSON, fillSelect, shorten, intFormat, moneyFormat, formatRate } = TP;
  const points = (value) => `${value > 0 ? "+" : ""}${(value * 100).toFixed(2)} pp`;

  function drawIntervals(report) {
    const chart = $("e-plot");
    chart.replaceChildren();
    const rows = report.rows.filter((row) => !row.is_baseline);
    const width = 800;
    const left = 170;
    const right = 30;
    const rowHeight = 40;
    const height = Math.max(1, rows.length) * rowHeight + 50;
    chart.setAttribute("viewBox", `0 0 ${width} ${height}`);
    const bounds = rows.filter((row) => row.ci95_low !== null).flatMap((row) => [row.ci95_low, row.ci95_high]);
    const span = Math.max(0.01, ...bounds.map(Math.abs));
    const scale = (v) => left + ((v + span) / (2 * span)) * (width - left - right);
    chart.dataset.span = String(span);
    const axisY = height - 26;
    chart.append(
      svg("line", { class: "zero", x1: scale(0), x2: scale(0), y1: 8, y2: axisY }),
      svg("line", { class: "axis", x1: left, x2: width - right, y1: axisY, y2: axisY }),
      svg("text", { class: "tick", x: left, y: axisY + 18 }, points(-span)),
      svg("text", { class: "tick", x: scale(0), y: axisY + 18, "text-anchor": "middle" },
        `0 (baseline ${shorten(report.baseline ?? "–", 20)})`),
      svg("text", { class: "tick", x: width - right, y: axisY + 18, "text-anchor": "end" }, points(span)),
    );
    if (!rows.length) {
      chart.append(svg("text", { class: "empty", x: width / 2, y: 30, "text-anchor": "middle" },
        "No variation to compare with the baseline"));
    }
    rows.forEach((row, i) => {
      const y = i * rowHeight + 24;
      const group = svg("g", { class: "ci-row", "data-variation": row.variation_id });
      const name = svg("text", { class: "ci-name", x: 0, y: y + 5 }, shorten(row.variation_id, 20));
      name.append(svg("title", {}, row.variation_id));
      group.append(name);
      if (row.ci95_low === null) {
        group.append(svg("text", { class: "ci-none", x: left, y: y + 5 }, "no exposures: no interval"));
      } else {
        const title = `${row.variation_id}: ${points(row.difference)} (95% ${points(row.ci95_low)} to ${points(row.ci95_high)})`;
        const line = svg("line", { class: "ci-line", x1: scale(row.ci95_low).toFixed(2), x2: scale(row.ci95_high).toFixed(2), y1: y, y2: y });
        line.append(svg("title", {}, title));
        group.append(
          line,
          svg("line", { class: "ci-cap", x1: scale(row.ci95_low).toFixed(2), x2: scale(row.ci95_low).toFixed(2), y1: y - 7, y2: y + 7 }),
          svg("line", { class: "ci-cap", x1: scale(row.ci95_high).toFixed(2), x2: scale(row.ci95_high).toFixed(2), y1: y - 7, y2: y + 7 }),
          svg("circle", { class: "ci-point", cx: scale(row.difference).toFixed(2), cy: y, r: 5 }),
        );
      }
      chart.append(group);
    });
  }

  function renderTable(report) {
    const body = $("e-table").tBodies[0];
    body.replaceChildren();
    if (!report.rows.length) {
      const tr = html("tr", {});
      tr.append(html("td", { class: "empty", colspan: 7 }, "No exposures in this period"));
      body.append(tr);
    }
    for (const row of report.rows) {
      const tr = html("tr", { "data-variation": row.variation_id });
      const diff = row.is_baseline ? "baseline"
        : row.difference === null ? "–"
          : `${points(row.difference)} [${points(row.ci95_low)}, ${points(row.ci95_high)}]`;
      tr.append(
        html("td", { class: "goal" }, row.variation_id),
        html("td", { class: "num" }, intFormat.format(row.exposures)),
        html("td", { class: "num" }, intFormat.format(row.conversions)),
        html("td", { class: "num" }, intFormat.format(row.converters)),
        html("td", { class: "num" }, formatRate(row.conversion_rate)),
        html("td", { class: "num" }, moneyFormat.format(row.revenue)),
        html("td", { class: "num diff" }, diff),
      );
      body.append(tr);
    }
  }

  async function refresh(signal, ctx) {
    const { state } = ctx;
    const query = new URLSearchParams({ project: state.project, ...ctx.period });
    const { rows } = await getJSON(`/api/v1/reports/experiments?${query}`, signal);
    const ids = [...new Set(rows.map((row) => row.id))];
    if (!state.exp && ids.length) state.exp = ids[0];
    if (state.exp && !ids.includes(state.exp)) ids.unshift(state.exp);
    const options = ids.map((id) => [id, shorten(id, 60)]);
    if (!options.length) options.push(["", "(no experiment in this period)"]);
    fillSelect($("e-exp"), options, state.exp);
    if (!state.exp) {
      clear();
      renderTable({ rows: [] });
      return;
    }
    const goals = await getJSON(`/api/v1/reports/top-events?${query}&limit=100`, signal);
    const goalIds = goals.rows.map((row) => row.goal_id);
    if (state.exp_goal && !goalIds.includes(state.exp_goal)) goalIds.push(state.exp_goal);
    fillSelect($("e-goal"), [["", "Any goal"], ...goalIds.map((g) => [g, shorten(TP.goalText(g), 60)])], state.exp_goal);
    const params = new URLSearchParams({ project: state.project, ...ctx.period });
    if (state.exp_goal) params.set("goal", state.exp_goal);
    const report = await getJSON(`/api/v1/experiments/${encodeURIComponent(state.exp)}/report?${params}`, signal);
    renderTable(report);
    drawIntervals(report);
    params.set("format", "csv");
    $("e-csv").setAttribute("href", `/api/v1/experiments/${encodeURIComponent(state.exp)}/report?${params}`);
    document.body.dataset.experiment = state.exp;
  }

  function clear() {
    $("e-table").tBodies[0].replaceChildren();
    $("e-plot").replaceChildren();
    delete document.body.dataset.experiment;
  }

  function setup(state, changed) {
    $("e-exp").addEventListener("change", (event) => {
      state.exp = event.target.value;
      changed();
    });
    $("e-goal").addEventListener("change", (event) => {
      state.exp_goal = event.target.value;
      changed();
    });
  }

  TP.views.experiment = { setup, refresh, clear };
})();
