// The queue refreshes itself: it polls queue.json and redraws the rows (no page reload),
// and ticks the waiting times and deadlines every second in between.
(function () {
  "use strict";
  var table = document.getElementById("queue");
  if (!table) { return; }
  var tbody = table.querySelector("tbody");
  var strings = JSON.parse(document.getElementById("queue-strings").textContent);
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var url = table.getAttribute("data-json-url");
  var pollMs = parseInt(table.getAttribute("data-poll-ms"), 10) || 3000;
  var skew = Date.parse(table.getAttribute("data-server-now")) - Date.now();
  var status = document.getElementById("queue-status");
  var timer = null;

  function fmt(template, value) { return template.replace("{time}", value); }
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function duration(seconds) {
    seconds = Math.floor(Math.abs(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    if (h) { return h + "h " + pad(m) + "m"; }
    if (m) { return m + "m " + pad(s) + "s"; }
    return s + "s";
  }
  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }
  function badge(className, text) { return el("span", "badge " + className, text); }

  function tick() {
    var now = Date.now() + skew;
    tbody.querySelectorAll("tr[data-case-id]").forEach(function (row) {
      var since = Date.parse(row.getAttribute("data-escalated-at"));
      var deadline = Date.parse(row.getAttribute("data-deadline"));
      if (!isNaN(since)) { row.querySelector("td.waited").textContent = duration((now - since) / 1000); }
      var cell = row.querySelector("td.deadline");
      if (!isNaN(deadline)) {
        var left = (deadline - now) / 1000;
        cell.textContent = fmt(left >= 0 ? strings["in"] : strings.overdue, duration(left));
        cell.classList.toggle("overdue", left < 0);
      }
    });
  }

  function claimForm(row) {
    var form = el("form", "inline");
    form.method = "post";
    form.action = row.claim_url;
    var token = el("input");
    token.type = "hidden"; token.name = "csrf_token"; token.value = csrf;
    var button = el("button", "primary small claim-button", strings["claim.button"]);
    button.type = "submit";
    form.appendChild(token);
    form.appendChild(button);
    return form;
  }

  function renderRow(row) {
    var tr = el("tr", "urgency-" + row.urgency + (row.drill ? " is-drill" : ""));
    tr.setAttribute("data-case-id", row.id);
    tr.setAttribute("data-escalated-at", row.escalated_at || "");
    tr.setAttribute("data-deadline", row.deadline || "");
    var caseCell = el("td", "case");
    var link = el("a", null, "#" + row.id);
    link.href = row.url;
    caseCell.appendChild(link);
    if (row.drill) { caseCell.appendChild(document.createTextNode(" ")); caseCell.appendChild(badge("drill", strings.drill)); }
    tr.appendChild(caseCell);
    tr.appendChild(el("td", "phone mono", row.phone));
    var urgency = el("td");
    urgency.appendChild(badge("urgency urgency-" + row.urgency, row.urgency_label));
    tr.appendChild(urgency);
    tr.appendChild(el("td", null, row.fraud_type_label));
    tr.appendChild(el("td", null, row.trigger_label));
    tr.appendChild(el("td", null, row.area));
    tr.appendChild(el("td", "waited mono", row.waited_text));
    tr.appendChild(el("td", "deadline mono" + (row.overdue ? " overdue" : ""), row.deadline_text));
    var claim = el("td", "claim");
    if (row.claim_mine) { claim.textContent = strings.me; }
    else if (row.claimed_by) { claim.textContent = row.claimed_by; }
    else { claim.appendChild(el("span", "muted", strings["claim.free"])); }
    tr.appendChild(claim);
    tr.appendChild(el("td", "last", row.last_attempt));
    var act = el("td", "act");
    if (!row.claimed_by && row.state !== "closed") { act.appendChild(claimForm(row)); }
    tr.appendChild(act);
    return tr;
  }

  function renderCallbacks(callbacks) {
    var list = document.getElementById("callbacks");
    if (!list) { return; }
    var items = callbacks.map(function (cb) {
      var li = el("li", cb.overdue ? "overdue" : "");
      var link = el("a", null, "#" + cb.case_id);
      link.href = cb.url;
      li.appendChild(link);
      li.appendChild(document.createTextNode(" "));
      li.appendChild(el("span", "mono", cb.phone));
      var who = cb.mine ? strings.me : (cb.owner || strings.anyone);
      li.appendChild(document.createTextNode(" · " + cb.due_local + " · " + who + (cb.note ? " · " + cb.note : "")));
      if (cb.drill) { li.appendChild(document.createTextNode(" ")); li.appendChild(badge("drill", strings.drill)); }
      return li;
    });
    if (!items.length) { items = [el("li", "muted", strings["queue.no_callbacks"])]; }
    list.replaceChildren.apply(list, items);
  }

  function render(data) {
    skew = Date.parse(data.now) - Date.now();
    tbody.replaceChildren.apply(tbody, data.rows.map(renderRow));
    document.getElementById("queue-count").textContent = data.count;
    document.getElementById("queue-empty").hidden = data.rows.length > 0;
    renderCallbacks(data.callbacks);
    status.textContent = strings["queue.updated"].replace("{time}", data.now_local);
    status.classList.remove("overdue");
    tick();
  }

  function poll() {
    fetch(url, { headers: { "Accept": "application/json", "X-Requested-With": "fetch" }, credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 401) { throw new Error("signed-out"); }
        if (!response.ok) { throw new Error("http " + response.status); }
        return response.json();
      })
      .then(function (data) { render(data); schedule(); })
      .catch(function (error) {
        status.classList.add("overdue");
        if (error.message === "signed-out") { status.textContent = strings["queue.signed_out"]; return; }
        status.textContent = strings["queue.offline"];
        schedule();
      });
  }
  function schedule() { timer = window.setTimeout(poll, document.hidden ? pollMs * 3 : pollMs); }

  tick();
  window.setInterval(tick, 1000);
  schedule();
  document.addEventListener("visibilitychange", function () {
    if (!document.hidden) { window.clearTimeout(timer); poll(); }
  });
})();
