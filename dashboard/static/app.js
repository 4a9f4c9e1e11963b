// tf dashboard: live updates over server-sent events. No framework; the
// pages work without this script, only less live.
"use strict";

function setState(state, text) {
  const el = document.getElementById("live-state");
  if (el) { el.dataset.state = state; el.textContent = text; }
}

function cell(text, cls, label) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  if (label) td.dataset.label = label;
  td.textContent = text || "";
  return td;
}

// Traffic: prepend each new row; fill in status, latency and tokens when the
// outcome arrives. Text goes in through textContent only.
function startTraffic(table) {
  const body = document.getElementById("rows");
  const es = new EventSource(table.dataset.stream);
  es.onopen = () => setState("live", "live");
  es.onerror = () => setState("down", "reconnecting…");
  es.addEventListener("row", (ev) => {
    const r = JSON.parse(ev.data);
    const tr = document.createElement("tr");
    tr.dataset.seq = r.seq;
    tr.dataset.request = r.request_id;
    tr.dataset.live = "1";
    tr.className = "fresh d-" + r.class;
    const t = document.createElement("td");
    t.title = r.stamp;
    t.dataset.label = "Time";
    const a = document.createElement("a");
    a.href = "/traffic/" + r.seq;
    a.textContent = r.time;
    t.appendChild(a);
    tr.appendChild(t);
    const d = document.createElement("td");
    d.dataset.label = "Decision";
    const pill = document.createElement("span");
    pill.className = "pill";
    pill.textContent = r.label;
    d.appendChild(pill);
    tr.appendChild(d);
    [[r.action, "Action"], [r.target, "Target"], [r.rule, "Rule"], [r.gateway, "Gateway"]].forEach(([v, l]) => tr.appendChild(cell(v, "", l)));
    tr.appendChild(cell(r.status, "status", "Status"));
    tr.appendChild(cell(r.latency, "latency", "Latency"));
    tr.appendChild(cell(r.tokens, "tokens", "Tokens"));
    body.insertBefore(tr, body.firstChild);
    const none = document.getElementById("no-rows");
    if (none) none.remove();
    while (body.rows.length > 1000) body.deleteRow(body.rows.length - 1);
  });
  es.addEventListener("outcome", (ev) => {
    const o = JSON.parse(ev.data);
    if (!o.request_id) return;
    for (const tr of body.querySelectorAll("tr")) {
      if (tr.dataset.request === o.request_id) {
        tr.querySelector(".status").textContent = o.status;
        tr.querySelector(".latency").textContent = o.latency;
        tr.querySelector(".tokens").textContent = o.tokens;
      }
    }
  });
  es.addEventListener("failure", (ev) => { setState("down", ev.data); es.close(); });
}

// A Traffic row opens its record, live or not.
function rowLinks(table) {
  table.tBodies[0].addEventListener("click", (ev) => {
    if (ev.target.closest("a")) return;
    const tr = ev.target.closest("tr");
    if (tr && tr.dataset.seq) window.location.href = "/traffic/" + tr.dataset.seq;
  });
}

// Approvals: the server renders the list (escaped by html/template); the
// script merges it by approval id so that a reason being typed survives.
function startApprovals(box) {
  const es = new EventSource(box.dataset.stream);
  es.onopen = () => setState("live", "live");
  es.onerror = () => setState("down", "reconnecting…");
  es.addEventListener("approvals", (ev) => {
    const tpl = document.createElement("template");
    tpl.innerHTML = ev.data;
    const fresh = tpl.content.firstElementChild;
    const cur = document.getElementById("approval-list");
    if (!fresh || !cur) return;
    for (const card of fresh.querySelectorAll("article[data-id]")) {
      const old = cur.querySelector('article[data-id="' + CSS.escape(card.dataset.id) + '"]');
      if (old) card.replaceWith(old);
    }
    cur.replaceWith(fresh);
  });
  es.addEventListener("failure", (ev) => { setState("down", ev.data); es.close(); });
}

document.addEventListener("DOMContentLoaded", () => {
  const table = document.getElementById("traffic");
  if (table) rowLinks(table);
  if (table && table.dataset.stream) startTraffic(table);
  const box = document.getElementById("approvals");
  if (box && box.dataset.stream) startApprovals(box);
});
