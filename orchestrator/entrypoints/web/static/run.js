/* The run page's script: live progress (polling this server's JSON), and the invoice table, paged
   from the server or, in a report, from the invoices inlined in the file. No library, no network
   beyond the page's own origin. */
(function () {
  "use strict";
  var root = document.getElementById("run");
  if (!root) { return; }
  var live = root.dataset.mode === "live";
  var runId = root.dataset.runId;
  var POLL_MS = 2000;

  function text(id, value) { var el = document.getElementById(id); if (el) { el.textContent = value; } }
  function fmtInt(n) { return Number(n).toLocaleString("en-US"); }
  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined) { return "unknown"; }
    var s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    var two = function (n) { return (n < 10 ? "0" : "") + n; };
    return h ? h + ":" + two(m) + ":" + two(r) : two(m) + ":" + two(r);
  }
  function cell(row, value, cls) {
    var td = document.createElement("td");
    if (cls) { td.className = cls; }
    td.textContent = value === null || value === undefined ? "" : String(value);
    row.appendChild(td);
    return td;
  }

  /* --- live progress --------------------------------------------------------------------- */
  var last = JSON.parse(document.getElementById("progress-data").textContent);

  function showProgress(p) {
    text("run-state", p.state);
    var badge = document.getElementById("run-state");
    if (badge) { badge.className = "state state-" + p.state; }
    text("run-reason", p.reason || "");
    text("progress-settled", fmtInt(p.settled));
    text("progress-total", fmtInt(p.total));
    text("progress-planning", p.planned ? "" : " (planning: more to come)");
    text("progress-rate", p.rate_per_second.toFixed(1));
    text("progress-eta", fmtDuration(p.eta_seconds));
    text("outcome-total", fmtInt(p.total));
    var fill = document.getElementById("progress-fill");
    if (fill) { fill.style.width = (p.total ? 100 * p.settled / p.total : 0) + "%"; }
    Object.keys(p.counts).forEach(function (state) {
      document.querySelectorAll('[data-count="' + state + '"]').forEach(function (el) { el.textContent = fmtInt(p.counts[state]); });
    });
    Object.keys(p.money).forEach(function (kind) {
      document.querySelectorAll('[data-money="' + kind + '"]').forEach(function (el) { el.textContent = p.money[kind]; });
    });
  }

  function changedShape(a, b) {
    var stepA = a.last_step ? a.last_step.status + a.last_step.at : "", stepB = b.last_step ? b.last_step.status + b.last_step.at : "";
    return a.state !== b.state || a.counts.FAILED !== b.counts.FAILED || stepA !== stepB || a.total !== b.total;
  }

  function refreshSections() {
    /* The sections drawn on the server (chart, timeline, failures, actions) come from this very page. */
    return fetch(window.location.pathname, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        fresh.querySelectorAll("[data-refresh]").forEach(function (section) {
          var current = document.getElementById(section.id);
          if (current) { current.replaceWith(document.importNode(section, true)); }
        });
        var actions = fresh.getElementById("actions"), mine = document.getElementById("actions");
        if (!actions && mine) { mine.remove(); }
      });
  }

  function poll() {
    fetch(runId + "/progress.json", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (p) {
        var reshaped = changedShape(last, p);
        showProgress(p);
        var done = p.final;
        last = p;
        return (reshaped || tick % 5 === 0 ? refreshSections() : Promise.resolve()).then(function () { return done; });
      })
      .catch(function () { return false; })
      .then(function (done) {
        tick += 1;
        if (!done) { window.setTimeout(poll, POLL_MS); }
      });
  }
  var tick = 1;
  if (live && !last.final) { window.setTimeout(poll, POLL_MS); }

  /* --- invoices -------------------------------------------------------------------------- */
  var PAGE = 50;
  var inlined = document.getElementById("invoice-data");
  var everyInvoice = inlined ? JSON.parse(inlined.textContent) : null;

  function startsWith(value, prefix) { return value !== null && String(value).indexOf(prefix) === 0; }
  function matches(line, q, outcome) {
    if (outcome && line.outcome !== outcome) { return false; }
    if (!q) { return true; }
    return startsWith(line.invoice_id, q) || startsWith(line.party_id, q) ||
      (line.party_name !== null && line.party_name.toLowerCase().indexOf(q.toLowerCase()) >= 0);
  }
  /* Both sources answer a query the same way: keyset pages on the item id. */
  var source = everyInvoice ? {
    page: function (q) {
      var found = everyInvoice.filter(function (l) { return matches(l, q.q, q.outcome); });
      var start = 0;
      if (q.after !== null) { start = found.findIndex(function (l) { return l.item_id > q.after; }); if (start < 0) { start = found.length; } }
      else if (q.before !== null) {
        var end = found.findIndex(function (l) { return l.item_id >= q.before; }); if (end < 0) { end = found.length; }
        start = Math.max(0, end - PAGE);
      }
      var lines = found.slice(start, start + PAGE);
      return Promise.resolve({
        lines: lines,
        next_after: start + PAGE < found.length && lines.length ? lines[lines.length - 1].item_id : null,
        previous_before: start > 0 && lines.length ? lines[0].item_id : null
      });
    },
    calls: function (line) { return Promise.resolve(line); }
  } : {
    page: function (q) {
      var params = new URLSearchParams({ q: q.q, outcome: q.outcome, limit: String(PAGE) });
      if (q.after !== null) { params.set("after", q.after); }
      if (q.before !== null) { params.set("before", q.before); }
      return fetch(runId + "/invoices.json?" + params, { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); });
    },
    calls: function (line) {
      return fetch(runId + "/invoices/" + line.item_id + ".json", { credentials: "same-origin", cache: "no-store" })
        .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); });
    }
  };

  var table = document.getElementById("invoice-table");
  var form = document.getElementById("invoice-search");
  var query = { q: "", outcome: "", after: null, before: null };
  var page = null;

  function callsTable(history) {
    var wrap = document.createElement("div");
    var facts = document.createElement("p");
    facts.className = "muted";
    facts.textContent = "attempts " + history.attempts + (history.settled_by_read ? ", settled by reading the invoice" : "") +
      (history.last_error ? "; last error: " + history.last_error : "");
    wrap.appendChild(facts);
    if (!history.calls.length) {
      var none = document.createElement("p"); none.className = "muted"; none.textContent = "No API call recorded for this invoice.";
      wrap.appendChild(none);
      return wrap;
    }
    var t = document.createElement("table"); t.className = "calls";
    var head = t.createTHead().insertRow();
    ["when", "call", "HTTP", "outcome", "ms", "message"].forEach(function (h) { var th = document.createElement("th"); th.textContent = h; head.appendChild(th); });
    var body = t.createTBody();
    history.calls.forEach(function (c) {
      var row = body.insertRow();
      cell(row, c.started_at, "nowrap"); cell(row, c.operation, "mono"); cell(row, c.status_code === null ? "-" : c.status_code);
      cell(row, c.outcome); cell(row, c.latency_ms, "num"); cell(row, c.error || "");
    });
    wrap.appendChild(t);
    return wrap;
  }

  function toggle(button, row, line) {
    var next = row.nextSibling;
    if (next && next.classList && next.classList.contains("details")) { next.remove(); button.textContent = "▸"; return; }
    button.textContent = "▾";
    var details = document.createElement("tr"); details.className = "details";
    var td = document.createElement("td"); td.colSpan = 7; td.textContent = "Loading…";
    details.appendChild(td);
    row.after(details);
    source.calls(line).then(function (history) { td.textContent = ""; td.appendChild(callsTable(history)); },
      function () { td.textContent = "Could not load this invoice's calls."; });
  }

  function render(result) {
    page = result;
    var body = table.tBodies[0];
    body.textContent = "";
    if (!result.lines.length) {
      var empty = body.insertRow(); var td = cell(empty, "No invoice matches.", "muted"); td.colSpan = 7;
    }
    result.lines.forEach(function (line) {
      var row = body.insertRow();
      row.dataset.itemId = line.item_id;
      row.className = "outcome-" + line.outcome;
      var first = document.createElement("td");
      var button = document.createElement("button"); button.type = "button"; button.className = "expand"; button.textContent = "▸";
      button.title = "attempts and API calls";
      button.addEventListener("click", function () { toggle(button, row, line); });
      first.appendChild(button); row.appendChild(first);
      cell(row, line.invoice_id, "mono");
      cell(row, (line.party_id || "") + (line.party_name ? " " + line.party_name : ""));
      cell(row, line.amount, "num"); cell(row, line.outcome); cell(row, line.reason || "", "reason"); cell(row, line.attempts, "num");
    });
    document.getElementById("page-previous").disabled = result.previous_before === null;
    document.getElementById("page-next").disabled = result.next_after === null;
    text("page-info", result.lines.length ? "invoices " + result.lines[0].invoice_id + " … " + result.lines[result.lines.length - 1].invoice_id : "");
    table.dataset.loaded = "true";
  }

  var asked = 0;
  function load(q) {
    /* Only the last query asked is shown: an earlier answer arriving late is dropped. */
    var mine = ++asked;
    query = q;
    return source.page(q).then(function (result) { if (mine === asked) { render(result); } },
      function () { if (mine === asked) { text("page-info", "Could not load invoices."); } });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    load({ q: form.elements.q.value.trim(), outcome: form.elements.outcome.value, after: null, before: null });
  });
  document.getElementById("page-next").addEventListener("click", function () {
    load({ q: query.q, outcome: query.outcome, after: page.next_after, before: null });
  });
  document.getElementById("page-previous").addEventListener("click", function () {
    load({ q: query.q, outcome: query.outcome, after: null, before: page.previous_before });
  });
  load(query);
})();
