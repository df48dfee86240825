// trackpipe dashboard, the Top-5 view: the filters (push message, campaign, link, experiment variation;
// at most one, as the API takes), the rate base they imply, the bar chart and the table. The pickers are
// filled from /api/v1/reports/{pushes,campaigns,links,experiments} of the project and period.
"use strict";

(function () {
  const { $, html, svg, getJSON, fillSelect, shorten, intFormat, moneyFormat, formatRate, formatTime } = window.TP;
  const FILTERS = ["push", "campaign", "link", "experiment"];
  const LISTS = { push: "pushes", campaign: "campaigns", link: "links", experiment: "experiments" };
  //: what the conversion rate divides by, per rate base (schemas/reports.py RateBase)
  const RATE_BASES = {
    visitors: ["converters", "visitors"],
    campaign_visitors: ["converters", "visitors of the campaign"],
    clicks: ["conversions", "clicks on the link"],
    push_opens: ["conversions", "opens of the push message"],
    exposed_visitors: ["converters", "visitors exposed to the variation"],
  };

  function filterParams(state) {
    // the one filter chosen, as the API's parameters
    if (state.push) return { push: state.push };
    if (state.campaign) return { campaign: state.campaign };
    if (state.link) return { link: state.link };
    if (state.experiment && state.variation) return { experiment: state.experiment, variation: state.variation };
    return {};
  }

  async function fillPickers(state, period, signal) {
    const query = new URLSearchParams({ project: state.project, ...period });
    for (const name of FILTERS) {
      const { rows } = await getJSON(`/api/v1/reports/${LISTS[name]}?${query}`, signal);
      const options = [["", name === "experiment" ? "All visitors" : "All"]];
      let chosen = state[name] || "";
      if (name === "experiment") {
        for (const row of rows) {
          options.push([JSON.stringify([row.id, row.variation]),
            `${shorten(row.id, 40)} / ${shorten(row.variation, 20)} (${intFormat.format(row.count)} exposed)`]);
        }
        chosen = state.experiment ? JSON.stringify([state.experiment, state.variation]) : "";
      } else {
        const unit = { push: "opens", campaign: "visitors", link: "clicks" }[name];
        for (const row of rows) {
          options.push([row.id, `${shorten(row.id, 40)} (${intFormat.format(row.count)} ${unit})`]);
        }
      }
      if (chosen && !options.some(([value]) => value === chosen)) options.push([chosen, `${shorten(chosen, 40)} (none in this period)`]);
      fillSelect($(`f-${name}`), options, chosen);
    }
  }

  function choose(state, name, value) {
    // one filter at a time: choosing one clears the others
    for (const other of FILTERS) state[other] = "";
    state.variation = "";
    if (!value) return;
    if (name === "experiment") [state.experiment, state.variation] = JSON.parse(value);
    else state[name] = value;
  }

  function renderRateBase(report) {
    const [top, bottom] = RATE_BASES[report.rate_base] || RATE_BASES.visitors;
    const text = `Conversion rate = ${top} / ${bottom} (${intFormat.format(report.rate_base_count)})`;
    $("rate-base").textContent = text;
    $("rate-legend").textContent = `Conversion rate (${top} / ${bottom})`;
    document.body.dataset.rateBase = report.rate_base;
  }

  function renderChart(rows, pick) {
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
      const shown = window.TP.goalName(name) || name;
      const goalLabel = svg("text", { class: "label-goal", x: 0, y: y + 16 }, shorten(shown, 18));
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
      group.addEventListener("click", () => pick(row.goal_id));
      chart.append(group);
    });
  }

  function renderTable(rows, pick) {
    const body = $("top").tBodies[0];
    body.replaceChildren();
    if (!rows.length) {
      body.append(html("tr", {}));
      body.rows[0].append(html("td", { class: "empty", colspan: 6 }, "No conversions in this period"));
      return;
    }
    rows.forEach((row, i) => {
      const tr = html("tr", { "data-goal": row.goal_id });
      const goal = html("td", { class: "goal" });
      const button = html("button", { type: "button", class: "goal-pick", title: "Show this goal over time" },
        row.goal_id);
      button.addEventListener("click", () => pick(row.goal_id));
      const named = window.TP.goalName(row.goal_id);
      if (named !== undefined) goal.append(html("span", { class: "goal-name" }, named), " ");
      goal.append(button);
      tr.append(
        html("td", { class: "num" }, i + 1),
        goal,
        html("td", { class: "num conversions" }, intFormat.format(row.conversions)),
        html("td", { class: "num converters" }, intFormat.format(row.converters)),
        html("td", { class: "num rate" }, formatRate(row.conversion_rate)),
        html("td", { class: "num revenue" }, moneyFormat.format(row.revenue)),
      );
      body.append(tr);
    });
  }

  function render(report, pick) {
    $("visitors").textContent = intFormat.format(report.visitors);
    $("period-text").textContent = `${formatTime(report.from)} – ${formatTime(report.to)}`;
    renderRateBase(report);
    renderChart(report.rows, pick);
    renderTable(report.rows, pick);
    document.body.dataset.project = report.project;
  }

  function renderNothing() {
    $("visitors").textContent = "–";
    $("period-text").textContent = "–";
    $("rate-base").textContent = "";
    renderChart([], () => {});
    renderTable([], () => {});
    delete document.body.dataset.project;
  }

  window.TP.top = { FILTERS, filterParams, fillPickers, choose, render, renderNothing };
})();
