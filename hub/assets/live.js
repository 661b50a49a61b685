// Live updates for the dashboard: follows the page's event stream (server-sent events,
// `data-live` on <main>) and, after each event, fetches the page again and replaces the
// content of <main>. EventSource reconnects by itself after a lost connection and
// resumes after the last event it received (Last-Event-ID). A refresh waits while the
// person is editing a field of the page.
(function () {
  "use strict";
  function mainElement() { return document.getElementById("main"); }
  var first = mainElement();
  if (!first || !first.dataset.live || !window.EventSource) { return; }
  var status = document.getElementById("live-status");
  var pending = null;
  var busy = false;

  // True while the person has focus in, or has changed, a field of the page: a refresh
  // would throw their input away, so it waits.
  function editing() {
    var main = mainElement();
    if (!main) { return false; }
    var active = document.activeElement;
    if (active && main.contains(active) &&
        (active.tagName === "TEXTAREA" || active.tagName === "SELECT" ||
         (active.tagName === "INPUT" && active.type !== "submit" && active.type !== "hidden"))) {
      return true;
    }
    var fields = main.querySelectorAll("input, textarea, select");
    for (var i = 0; i < fields.length; i++) {
      var field = fields[i];
      if (field.tagName === "SELECT") {
        for (var j = 0; j < field.options.length; j++) {
          if (field.options[j].selected !== field.options[j].defaultSelected) { return true; }
        }
      } else if (field.type !== "hidden" && field.type !== "submit" && field.value !== field.defaultValue) {
        return true;
      }
    }
    return false;
  }

  function refresh() {
    pending = null;
    // An answer shown in place (an error of a form) has no stream: keep it on screen.
    var current = mainElement();
    if (!current || !current.dataset.live) { return; }
    if (editing()) { schedule(1000); return; }
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
        // The unread counts in the header follow too.
        var freshInbox = doc.getElementById("nav-inbox");
        var inbox = document.getElementById("nav-inbox");
        if (freshInbox && inbox) { inbox.innerHTML = freshInbox.innerHTML; }
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
