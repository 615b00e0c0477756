// The source page: forget the creation POST (so a reload never shows the write key again)
// and keep the live event debugger fresh by polling its JSON feed every 2 seconds.
(function () {
  "use strict";

  var INTERVAL_MS = 2000;
  var MAX_ROWS = 200;

  function forgetPost() {
    var created = document.querySelector("[data-forget-post]");
    if (created && window.history && history.replaceState) {
      history.replaceState(null, "", created.dataset.forgetPost);
    }
  }

  function span(className, text) {
    var el = document.createElement("span");
    el.className = className;
    el.textContent = text;
    return el;
  }

  function eventItem(row) {
    var item = document.createElement("li");
    item.dataset.id = row.id;
    item.className = "fresh";
    var details = document.createElement("details");
    var summary = document.createElement("summary");
    var type = span("ev-type", "");
    type.appendChild(span("badge", row.type));
    var channel = span("ev-channel", row.channel ? "" : "\u2013");
    if (row.channel) {
      var icon = span("icon", row.icon);
      icon.setAttribute("aria-hidden", "true");
      channel.appendChild(icon);
      channel.appendChild(document.createTextNode(row.channel));
    }
    summary.append(
      span("ev-received", row.received), type, span("ev-label", row.label || "\u2013"),
      span("ev-who", row.who), channel
    );
    var raw = document.createElement("pre");
    raw.textContent = row.raw;
    details.append(summary, raw);
    item.appendChild(details);
    return item;
  }

  function startDebugger(section) {
    var list = section.querySelector("#debugger-events");
    var status = section.querySelector("#debugger-status");
    var toggle = section.querySelector("#debugger-toggle");
    var empty = section.querySelector("#debugger-empty");
    var after = section.dataset.after;
    var paused = false;
    var timer = null;

    function say(text) { if (status.textContent !== text) status.textContent = text; }

    function show(rows) {
      var added = 0;
      for (var i = rows.length - 1; i >= 0; i--) {
        if (list.querySelector('li[data-id="' + rows[i].id + '"]')) continue;
        list.insertBefore(eventItem(rows[i]), list.firstChild);
        added++;
      }
      while (list.children.length > MAX_ROWS) list.removeChild(list.lastChild);
      if (list.children.length) empty.hidden = true;
      return added;
    }

    function stop(text) {
      clearTimeout(timer);
      timer = null;
      toggle.hidden = true;
      say(text);
    }

    function poll() {
      timer = null;
      if (paused) return;
      if (document.hidden) { schedule(); return; }
      var url = section.dataset.eventsUrl + "?after=" + encodeURIComponent(after);
      fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (response) {
          var type = response.headers.get("content-type") || "";
          if (!response.ok || type.indexOf("application/json") !== 0) {
            throw new Error(response.status === 200 ? "signed out" : "HTTP " + response.status);
          }
          return response.json();
        })
        .then(function (body) {
          after = body.after;
          var added = show(body.events);
          if (!paused) {
            say(added ? added + (added === 1 ? " new event" : " new events") + ". Live: checking every 2 seconds."
                      : "Live: checking for new events every 2 seconds.");
            schedule();
          }
        })
        .catch(function (error) {
          stop("Live updates stopped (" + error.message + "). Reload the page to start again.");
        });
    }

    function schedule() {
      if (!timer && !paused) timer = setTimeout(poll, INTERVAL_MS);
    }

    toggle.addEventListener("click", function () {
      paused = !paused;
      toggle.setAttribute("aria-pressed", paused ? "true" : "false");
      toggle.textContent = paused ? "Resume" : "Pause";
      if (paused) {
        clearTimeout(timer);
        timer = null;
        say("Paused. New events are not fetched until you resume.");
      } else {
        say("Live: checking for new events every 2 seconds.");
        poll();
      }
    });

    toggle.hidden = false;
    say("Live: checking for new events every 2 seconds.");
    schedule();
  }

  document.addEventListener("DOMContentLoaded", function () {
    forgetPost();
    var section = document.getElementById("debugger");
    if (section && window.fetch) startDebugger(section);
  });
})();
