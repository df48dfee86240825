// trackpipe dashboard, goals and links of the project (admin key only): create and edit them through
// /api/v1/conversions/goals and /api/v1/links, and copy what a site needs: a goal's postback URL (server
// to server) and pixel snippet, a link's tracking URL and the postback URL its clicks convert with.
"use strict";

(function () {
  const TP = window.TP;
  const { $, html, getJSON, request, fillSelect, shorten, copyText } = TP;
  let goals = [];
  let links = [];
  let ctx = null;

  const pixel = (goal) =>
    `<img src="${goal.track_url}?value=VALUE&currency=${goal.currency || "USD"}&order_id=ORDER_ID" width="1" height="1" alt="">`;
  const postback = () => `${window.location.origin}/pb/?hit={click_id}&tx={order_id}&rev={value}`;

  function copyCell(label, text, kind) {
    // a read-only field with the text (selectable by hand) and a button copying it
    const td = html("td", { class: "copy" });
    const field = html("input", { type: "text", readonly: "", class: `copy-${kind}`, "aria-label": label });
    field.value = text;
    const button = html("button", { type: "button", class: "copy-button", "data-label": "Copy" }, "Copy");
    button.setAttribute("aria-label", `Copy the ${label.toLowerCase()}`);
    button.addEventListener("click", () => {
      field.select();
      copyText(text, button);
    });
    td.append(field, button);
    return td;
  }

  function editButton(label, onClick) {
    const button = html("button", { type: "button", class: "edit-button" }, "Edit");
    button.setAttribute("aria-label", label);
    button.addEventListener("click", onClick);
    const td = html("td", {});
    td.append(button);
    return td;
  }

  function renderGoals() {
    const body = $("m-goals").tBodies[0];
    body.replaceChildren();
    if (!goals.length) {
      const tr = html("tr", {});
      tr.append(html("td", { class: "empty", colspan: 5 }, "No goals yet"));
      body.append(tr);
    }
    for (const goal of goals) {
      const tr = html("tr", { "data-goal": goal.id });
      const name = html("td", { class: "name" });
      name.append(html("span", {}, goal.name), " ", html("code", {}, goal.id));
      const value = goal.value === null ? "–" : `${goal.value} ${goal.currency || ""}`.trim();
      tr.append(
        name,
        html("td", {}, `${goal.goal_type} · ${value}`),
        copyCell("Postback URL", goal.track_url, "postback"),
        copyCell("Pixel snippet", pixel(goal), "pixel"),
        editButton(`Edit the goal ${goal.name}`, () => editGoal(goal)),
      );
      body.append(tr);
    }
    fillSelect($("ml-goal"), [["", "(none)"], ...goals.map((g) => [g.id, shorten(g.name, 50)])], $("ml-goal").value);
  }

  function renderLinks() {
    const body = $("m-links").tBodies[0];
    body.replaceChildren();
    if (!links.length) {
      const tr = html("tr", {});
      tr.append(html("td", { class: "empty", colspan: 5 }, "No links yet"));
      body.append(tr);
    }
    for (const link of links) {
      const tr = html("tr", { "data-link": link.id });
      const what = html("td", { class: "name" });
      const analytics = html("a", { href: `?${new URLSearchParams({ view: "link", project: link.project, link_id: link.id })}` },
        link.id);
      what.append(analytics, " ", html("span", { class: "url" }, link.url));
      if (link.campaign) what.append(" ", html("span", { class: "campaign" }, `campaign ${link.campaign}`));
      tr.append(
        what,
        copyCell("Tracking URL", link.tracking_url, "tracking"),
        copyCell("Postback URL", postback(), "pb"),
        editButton(`Edit the link ${link.id}`, () => editLink(link)),
      );
      body.append(tr);
    }
  }

  function editGoal(goal) {
    $("mg-id").value = goal.id;
    $("mg-name").value = goal.name;
    $("mg-type").value = goal.goal_type;
    $("mg-value").value = goal.value === null ? "" : String(goal.value);
    $("mg-currency").value = goal.currency || "";
    $("mg-postback").value = goal.postback_url || "";
    $("mg-save").textContent = "Save goal";
    $("mg-name").focus();
  }

  function editLink(link) {
    $("ml-id").value = link.id;
    $("ml-url").value = link.url;
    $("ml-campaign").value = link.campaign || "";
    $("ml-goal").value = link.goal || "";
    $("ml-save").textContent = "Save link";
    $("ml-url").focus();
  }

  function resetForms() {
    $("m-goal-form").reset();
    $("m-link-form").reset();
    $("mg-id").value = "";
    $("ml-id").value = "";
    $("mg-save").textContent = "Create goal";
    $("ml-save").textContent = "Create link";
  }

  async function save(event, path, id, body) {
    event.preventDefault();
    const note = $("m-note");
    try {
      const answer = id
        ? await request("PATCH", `${path}/${encodeURIComponent(id)}`, body)
        : await request("POST", path, body);
      note.textContent = id ? "Saved." : "Created.";
      $("m-secret").hidden = !answer.signing_secret;
      $("m-secret-value").value = answer.signing_secret || "";
      resetForms();
      ctx.changed();
    } catch (error) {
      note.textContent = `Not saved: ${error.message}`;
    }
  }

  function goalBody() {
    const value = $("mg-value").value.trim();
    const body = { name: $("mg-name").value.trim(), goal_type: $("mg-type").value,
      value: value === "" ? null : value, currency: $("mg-currency").value.trim() || null,
      postback_url: $("mg-postback").value.trim() || null };
    if (!$("mg-id").value) body.project = ctx.state.project;
    return body;
  }

  function linkBody() {
    const body = { url: $("ml-url").value.trim(), campaign: $("ml-campaign").value.trim() || null,
      goal: $("ml-goal").value || null };
    if (!$("ml-id").value) body.project = ctx.state.project;
    return body;
  }

  async function refresh(signal, context) {
    ctx = context;
    const query = new URLSearchParams({ project: context.state.project });
    try {
      goals = (await getJSON(`/api/v1/conversions/goals?${query}`, signal)).goals;
      links = (await getJSON(`/api/v1/links?${query}`, signal)).links;
    } catch (error) {
      if (error.status !== 403 && error.status !== 401) throw error;
      clear();
      $("m-admin").hidden = true;
      $("m-refused").hidden = false;
      return;
    }
    $("m-admin").hidden = false;
    $("m-refused").hidden = true;
    renderGoals();
    renderLinks();
  }

  function clear() {
    goals = [];
    links = [];
    $("m-goals").tBodies[0].replaceChildren();
    $("m-links").tBodies[0].replaceChildren();
  }

  function setup() {
    $("m-goal-form").addEventListener("submit", (e) => save(e, "/api/v1/conversions/goals", $("mg-id").value, goalBody()));
    $("m-link-form").addEventListener("submit", (e) => save(e, "/api/v1/links", $("ml-id").value, linkBody()));
    for (const id of ["mg-cancel", "ml-cancel"]) $(id).addEventListener("click", resetForms);
  }

  TP.views.manage = { setup, refresh, clear };
})();
