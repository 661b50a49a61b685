// Live updates for the dashboard: follows the page's event stream (server-sent events,
// `data-live` on <main>) and, after each event, fetches the page again and replaces the
// content of <main>. EventSource reconnects by itself after a lost connection and
// resumes after the last event it received (Last-Event-ID). A refresh waits while the
// person is typing in a field of the page.
(function () {
  "use strict";
  function mainElement() { return document.getElementById("main"); }
  var first = mainElement();
  if (!first || !first.dataset.live || !window.EventSource) { return; }
  var status = document.getElementById("live-status");
  var pending = null;
  var busy = false;

  function typing() {
    var main = mainElement();
    var active = document.activeElement;
    return active && main && main.contains(active) &&
      (active.tagName === "TEXTAREA" || active.tagName === "INPUT" || active.tagName === "SELECT") &&
      active.value !== "" && active.type !== "submit";
  }

  function refresh() {
    pending = null;
    if (typing()) { schedule(1000); return; }
    if (busy) { schedule(300); return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("main");
        var main = mainElement();
        if (!fresh || !main) { return; }
        main.innerHTML = fresh.innerHTML;
        if (window.htmx && window.htmx.process) { window.htmx.process(main); }
        document.title = doc.title;
        main.dispatchEvent(new CustomEvent("live:updated", { bubbles: true }));
      })
      .catch(function () { /* the next event tries again */ })
      .then(function () { busy = false; });
  }

  function schedule(delay) {
    if (pending) { clearTimeout(pending); }
    pending = setTimeout(refresh, delay);
  }

  function setStatus(text, state) {
    if (!status) { return; }
    status.textContent = text;
    status.dataset.state = state;
  }

  var source = new EventSource(first.dataset.live);
  source.onopen = function () {
    setStatus("live", "open");
    // Catch up with what happened since the page was rendered, or while disconnected.
    schedule(100);
  };
  source.onmessage = function () { schedule(150); };
  source.onerror = function () { setStatus("reconnecting…", "closed"); };
})();
