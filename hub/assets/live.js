// The dashboard's script. Attachment uploads with progress (below), and live updates: follows the page's event stream (server-sent events,
// `data-live` on <main>) and, after each event, fetches the page again and replaces the
// content of <main>. EventSource reconnects by itself after a lost connection and
// resumes after the last event it received (Last-Event-ID). A refresh waits while the
// person is editing a field of the page.
(function () {
  "use strict";
  // Attachments of the new-task form: a file input with `data-upload="FIELD"` uploads
  // each chosen file at once (PUT /files, the CSRF token in a header) with a progress
  // bar, and adds the stored file's id to the form as a hidden FIELD; the form cannot be
  // sent while an upload is running.
  var uploading = 0;
  function submitButtons(form, disabled) {
    var buttons = form.querySelectorAll("button[type=submit]");
    for (var i = 0; i < buttons.length; i++) { buttons[i].disabled = disabled; }
  }
  function upload(input, file) {
    var form = input.form;
    var list = document.getElementById(input.getAttribute("aria-describedby"));
    var item = document.createElement("li");
    var label = document.createElement("span");
    label.textContent = file.name + " ";
    var bar = document.createElement("progress");
    bar.max = 100; bar.value = 0;
    bar.setAttribute("aria-label", "uploading " + file.name);
    var state = document.createElement("span");
    state.className = "meta";
    item.appendChild(label); item.appendChild(bar); item.appendChild(state);
    list.appendChild(item);
    uploading += 1;
    submitButtons(form, true);
    var xhr = new XMLHttpRequest();
    xhr.open("PUT", "/files?name=" + encodeURIComponent(file.name));
    xhr.setRequestHeader("X-CSRF-Token", form.elements.csrf.value);
    if (file.type) { xhr.setRequestHeader("Content-Type", file.type); }
    xhr.upload.onprogress = function (event) {
      if (event.lengthComputable) { bar.value = Math.round(100 * event.loaded / event.total); }
    };
    function finished(message, ok) {
      uploading -= 1;
      if (uploading === 0) { submitButtons(form, false); }
      state.textContent = " " + message;
      item.dataset.state = ok ? "done" : "failed";
    }
    xhr.onload = function () {
      var answer = null;
      try { answer = JSON.parse(xhr.responseText); } catch (e) { answer = null; }
      if (xhr.status === 201 && answer && answer.id) {
        bar.value = 100;
        var hidden = document.createElement("input");
        hidden.type = "hidden";
        hidden.name = input.dataset.upload;
        hidden.value = answer.id;
        item.appendChild(hidden);
        finished("uploaded", true);
      } else {
        var reason = answer && answer.error ? answer.error.message : ("HTTP " + xhr.status);
        finished("failed: " + reason, false);
      }
    };
    xhr.onerror = function () { finished("failed: the connection was lost", false); };
    xhr.send(file);
  }
  // "More steps" adds an empty step row in place (without JavaScript it reloads the
  // form with one more row, losing what was typed).
  document.addEventListener("click", function (event) {
    var link = event.target;
    if (!link || link.id !== "more-steps") { return; }
    var rows = document.querySelectorAll("fieldset.step-row");
    var last = rows[rows.length - 1];
    if (!last || rows.length >= Number(link.dataset.max)) { return; }
    event.preventDefault();
    var from = Number(last.dataset.index);
    var to = from + 1;
    var row = last.cloneNode(true);
    row.dataset.index = String(to);
    var rename = function (text) {
      return text.split("step-" + from + "-").join("step-" + to + "-")
        .split("steps." + from + ".").join("steps." + to + ".");
    };
    var named = row.querySelectorAll("[id], [name], [for], [aria-describedby], [data-upload]");
    for (var i = 0; i < named.length; i++) {
      var el = named[i];
      ["id", "name", "for", "aria-describedby", "data-upload"].forEach(function (attr) {
        if (el.hasAttribute(attr)) { el.setAttribute(attr, rename(el.getAttribute(attr))); }
      });
      if (el.tagName === "SELECT") {
        for (var j = 0; j < el.options.length; j++) { el.options[j].selected = el.options[j].defaultSelected; }
      } else if (el.tagName === "INPUT" || el.tagName === "TEXTAREA") {
        el.value = "";
        el.removeAttribute("required");
        el.placeholder = rename(el.placeholder || "").split("step-" + to).join("step-" + (to + 1));
      } else if (el.tagName === "UL") {
        el.innerHTML = "";
      }
    }
    row.querySelector("legend").textContent = "Step " + (to + 1);
    last.parentNode.insertBefore(row, last.nextSibling);
    link.href = "/tasks/new?steps=" + Math.min(to + 2, Number(link.dataset.max));
    row.querySelector("input[type=text]").focus();
  });
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!input || input.type !== "file" || !input.dataset.upload || !input.form) { return; }
    for (var i = 0; i < input.files.length; i++) { upload(input, input.files[i]); }
    input.value = "";
  });
})();

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
