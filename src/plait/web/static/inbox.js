// The agent workspace: live updates over Server-Sent Events (the queue and the open
// conversation are fetched again as HTML when they change), forms sent with fetch, keyboard
// shortcuts, the reply box (reply or note, Ctrl/Cmd+Enter, canned replies by "/shortcut"),
// the "Log a call" form's local time, and on the settings page the provider fields of the
// chosen channel.
// Without JavaScript every form still works by posting and coming back.
(function () {
  "use strict";

  var REFRESH_DELAY_MS = 250;
  var CLOCK_REFRESH_MS = 60000;
  var MAX_SUGGESTIONS = 8;

  var ws, statusEl, csrf, conversationId, canned = [];
  var timer = null, wanted = { queue: false, conversation: false }, headDeferred = false;

  // --- small helpers ----------------------------------------------------------------

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }

  function say(text) {
    if (!statusEl) return;
    statusEl.textContent = "";
    window.setTimeout(function () { statusEl.textContent = text; }, 30);
  }

  function typing(el) {
    return !!el && (el.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(el.tagName));
  }

  function errorText(html, status) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var alert = doc.querySelector("main [role=alert]");
    return alert ? alert.textContent.trim() : "The server answered " + status + ".";
  }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        var type = response.headers.get("content-type") || "";
        if (!response.ok || type.indexOf("application/json") !== 0) {
          throw new Error(response.ok ? "you were signed out" : "HTTP " + response.status);
        }
        return response.json();
      });
  }

  function post(form, submitter) {
    var data = new URLSearchParams();
    new FormData(form).forEach(function (value, key) { data.append(key, value); });
    if (submitter && submitter.name) data.append(submitter.name, submitter.value);
    return fetch(form.action, {
      method: "POST",
      body: data,
      credentials: "same-origin",
      redirect: "manual",
      headers: { "X-CSRF-Token": csrf, Accept: "text/html" }
    }).then(function (response) {
      if (response.type === "opaqueredirect" || response.ok) return;
      return response.text().then(function (html) { throw new Error(errorText(html, response.status)); });
    });
  }

  // --- swapping refreshed parts in, keeping focus and scroll --------------------------

  function focusKey(el) {
    if (el.id) return "#" + el.id;
    var item = el.closest("[data-id]");
    if (item) return '[data-id="' + item.dataset.id + '"] ' + el.tagName.toLowerCase();
    if (el.getAttribute("href")) return 'a[href="' + el.getAttribute("href") + '"]';
    if (el.name) return el.tagName.toLowerCase() + '[name="' + el.name + '"][value="' + el.value + '"]';
    return null;
  }

  function swap(el, html) {
    if (!el) return;
    var active = document.activeElement;
    var key = active && el.contains(active) ? focusKey(active) : null;
    var open = $all("details[open]", el).map(function (d) { return d.className; });
    el.innerHTML = html;
    open.forEach(function (name) {
      var details = name && $("details." + name.split(" ").join("."), el);
      if (details) details.open = true;
    });
    if (key) {
      var again = $(key, el);
      if (again) again.focus({ preventScroll: true });
    }
  }

  function ids(root) {
    return $all("[data-id]", root).map(function (el) { return el.dataset.id; });
  }

  function markFresh(root, before) {
    var added = [];
    $all("[data-id]", root).forEach(function (el) {
      if (before.indexOf(el.dataset.id) === -1) { el.classList.add("fresh"); added.push(el); }
    });
    return added;
  }

  // --- live updates -------------------------------------------------------------------

  function queueParams() {
    var params = new URLSearchParams();
    if (ws.dataset.queue) params.set("queue", ws.dataset.queue);
    if (ws.dataset.channel) params.set("channel", ws.dataset.channel);
    return params;
  }

  function refreshQueue() {
    var params = queueParams();
    if (conversationId) params.set("selected", conversationId);
    return getJSON("/inbox/queue?" + params.toString()).then(function (parts) {
      var list = $("#queue-list");
      var before = ids(list);
      swap($("#queues"), parts.queues);
      swap(list, parts.list);
      var added = markFresh(list, before);
      if (added.length && !conversationId) {
        say(added.length === 1 ? "1 new conversation." : added.length + " new conversations.");
      }
    });
  }

  function refreshConversation() {
    if (!conversationId) return Promise.resolve();
    return getJSON("/inbox/" + conversationId + "/parts?" + queueParams().toString()).then(function (parts) {
      var thread = $("#thread");
      var atBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 80;
      var before = ids(thread);
      var top = thread.scrollTop;
      swap(thread, parts.thread);
      var added = markFresh(thread, before);
      thread.scrollTop = atBottom ? thread.scrollHeight : top;
      var inbound = added.filter(function (el) { return el.classList.contains("msg-inbound"); });
      if (inbound.length) {
        var who = $(".msg-who", inbound[inbound.length - 1]);
        say("New message" + (who ? " from " + who.textContent.trim() : "") + ".");
      }
      var head = $("#conv-head");
      if (head.contains(document.activeElement) && typing(document.activeElement)) {
        headDeferred = parts.head;
      } else {
        swap(head, parts.head);
        prepareHead();
      }
      swap($("#customer"), parts.customer);
    });
  }

  function schedule(what) {
    wanted.queue = wanted.queue || what.queue;
    wanted.conversation = wanted.conversation || what.conversation;
    if (timer) return;
    timer = window.setTimeout(function () {
      timer = null;
      var todo = wanted;
      wanted = { queue: false, conversation: false };
      var jobs = [];
      if (todo.queue) jobs.push(refreshQueue());
      if (todo.conversation) jobs.push(refreshConversation());
      Promise.all(jobs).catch(function (error) {
        say("Could not refresh (" + error.message + "). Reload the page.");
      });
    }, REFRESH_DELAY_MS);
  }

  function listen() {
    if (!window.EventSource) return;
    var source = new EventSource("/inbox/events?since=" + encodeURIComponent(ws.dataset.since));
    source.addEventListener("change", function (event) {
      var changed = JSON.parse(event.data).ids || [];
      schedule({ queue: true, conversation: !!conversationId && changed.indexOf(conversationId) !== -1 });
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        say("Live updates stopped. Reload the page to start them again.");
      }
    });
    window.setInterval(function () { schedule({ queue: true }); }, CLOCK_REFRESH_MS);
  }

  // --- forms ----------------------------------------------------------------------------

  var DONE = {
    resolved: "Conversation resolved.",
    pending: "Marked pending.",
    snoozed: "Conversation snoozed.",
    open: "Conversation reopened."
  };

  function localOffset(form, input) {
    var moment = new Date(input.value);
    $("[data-tz-offset]", form).value = isNaN(moment) ? "0" : String(moment.getTimezoneOffset());
  }

  function onSubmit(event) {
    var form = event.target;
    if (!ws.contains(form) || (form.method || "").toLowerCase() !== "post") return;
    if (form.id === "call-form") {
      // posted as a page: the call may join another conversation, which the server opens
      localOffset(form, $("#call-started", form));
      return;
    }
    event.preventDefault();
    var submitter = event.submitter || null;
    if (form.id === "reply-form") {
      var body = $("#reply-body");
      if (!body.value.trim()) { body.focus(); showReplyError("Write something first."); return; }
    }
    var snooze = $("[data-snooze-default]", form);
    if (snooze) localOffset(form, snooze);
    var buttons = $all("button", form);
    buttons.forEach(function (b) { b.disabled = true; });
    post(form, submitter).then(function () {
      buttons.forEach(function (b) { b.disabled = false; });
      afterSubmit(form, submitter);
    }).catch(function (error) {
      buttons.forEach(function (b) { b.disabled = false; });
      if (form.id === "reply-form") showReplyError(error.message);
      else say("Not done: " + error.message);
    });
  }

  function afterSubmit(form, submitter) {
    if (form.classList.contains("availability")) {
      var button = $("button", form);
      var on = button.value === "1";
      button.setAttribute("aria-pressed", on ? "true" : "false");
      button.value = on ? "0" : "1";
      $(".toggle-state", button).textContent = on ? "On" : "Off";
      say(on ? "You are available for new conversations." : "You get no new conversations automatically.");
      return;
    }
    if (form.id === "reply-form") {
      var note = isNote();
      $("#reply-body").value = "";
      hideSuggestions();
      showReplyError("");
      say(note ? "Note added." : "Reply sent.");
    } else {
      var status = submitter && submitter.name === "status" ? submitter.value : ($("input[name=status]", form) || {}).value;
      say(DONE[status] || "Saved.");
    }
    schedule({ queue: true, conversation: true });
  }

  function showReplyError(text) {
    var el = $("#reply-error");
    if (!el) return;
    el.textContent = text;
    el.hidden = !text;
  }

  // --- the reply box --------------------------------------------------------------------

  function isNote() {
    var note = $('#reply-form input[name=mode][value=note]');
    return !!note && note.checked;
  }

  function setMode(mode) {
    var radio = $('#reply-form input[name=mode][value="' + mode + '"]');
    if (!radio || radio.disabled) return false;
    radio.checked = true;
    modeChanged();
    return true;
  }

  function modeChanged() {
    var form = $("#reply-form");
    var note = isNote();
    form.classList.toggle("note-mode", note);
    var route = $("#reply-inbox");
    if (route) route.disabled = note;
    $("#reply-send").textContent = note ? "Add note" : "Send";
    $("#reply-body").placeholder = note
      ? "Write an internal note (only agents see it)…"
      : "Write a reply… type / for canned replies";
  }

  var suggestion = { items: [], active: 0, start: 0 };

  function slashToken(textarea) {
    var before = textarea.value.slice(0, textarea.selectionStart);
    var match = /(^|\s)\/([a-z0-9_-]*)$/.exec(before);
    return match ? { start: before.length - match[2].length - 1, query: match[2] } : null;
  }

  function showSuggestions(textarea) {
    var list = $("#canned-suggestions");
    var token = slashToken(textarea);
    if (!list || !token || !canned.length) { hideSuggestions(); return; }
    var items = canned.filter(function (c) { return c.shortcut.indexOf(token.query) === 0; }).slice(0, MAX_SUGGESTIONS);
    if (!items.length) { hideSuggestions(); return; }
    suggestion = { items: items, active: 0, start: token.start };
    list.innerHTML = "";
    items.forEach(function (item, index) {
      var li = document.createElement("li");
      li.id = "canned-option-" + index;
      li.setAttribute("role", "option");
      var code = document.createElement("code");
      code.textContent = "/" + item.shortcut;
      var text = document.createElement("span");
      text.className = "muted";
      text.textContent = item.body;
      li.append(code, text);
      li.addEventListener("mousedown", function (event) { event.preventDefault(); insertCanned(item); });
      list.appendChild(li);
    });
    list.hidden = false;
    highlight(0);
  }

  function highlight(index) {
    suggestion.active = index;
    $all("#canned-suggestions li").forEach(function (li, i) {
      li.setAttribute("aria-selected", i === index ? "true" : "false");
    });
    var body = $("#reply-body");
    body.setAttribute("aria-activedescendant", "canned-option-" + index);
    say("/" + suggestion.items[index].shortcut + ": press Enter or Tab to insert.");
  }

  function hideSuggestions() {
    var list = $("#canned-suggestions");
    if (list) list.hidden = true;
    var body = $("#reply-body");
    if (body) body.removeAttribute("aria-activedescendant");
    suggestion.items = [];
  }

  function insertCanned(item, start) {
    var body = $("#reply-body");
    var from = start === undefined ? (slashToken(body) || { start: body.selectionStart }).start : start;
    var to = body.selectionStart;
    body.value = body.value.slice(0, from) + item.body + body.value.slice(to);
    var caret = from + item.body.length;
    body.focus();
    body.setSelectionRange(caret, caret);
    hideSuggestions();
  }

  function onReplyKey(event) {
    var open = suggestion.items.length && !$("#canned-suggestions").hidden;
    if ((event.ctrlKey || event.metaKey) && event.key === "Enter") {
      event.preventDefault();
      $("#reply-form").requestSubmit($("#reply-send"));
    } else if (open && (event.key === "ArrowDown" || event.key === "ArrowUp")) {
      event.preventDefault();
      var step = event.key === "ArrowDown" ? 1 : -1;
      highlight((suggestion.active + step + suggestion.items.length) % suggestion.items.length);
    } else if (open && (event.key === "Enter" || event.key === "Tab")) {
      event.preventDefault();
      insertCanned(suggestion.items[suggestion.active], suggestion.start);
    } else if (event.key === "Escape") {
      if (open) hideSuggestions(); else event.target.blur();
    }
  }

  function prepareReply() {
    var form = $("#reply-form");
    if (!form) return;
    var body = $("#reply-body");
    $all("input[name=mode]", form).forEach(function (radio) { radio.addEventListener("change", modeChanged); });
    body.addEventListener("keydown", onReplyKey);
    body.addEventListener("input", function () { showSuggestions(body); });
    body.addEventListener("blur", function () { window.setTimeout(hideSuggestions, 150); });
    var picker = $("#canned-picker");
    if (picker) {
      picker.closest(".canned-picker").hidden = false;
      picker.addEventListener("change", function () {
        var item = canned.filter(function (c) { return c.shortcut === picker.value; })[0];
        picker.value = "";
        if (item) insertCanned(item, body.selectionStart);
      });
    }
    modeChanged();
  }

  function prepareHead() {
    var input = $("[data-snooze-default]");
    if (input) {
      var tomorrow = new Date();
      tomorrow.setDate(tomorrow.getDate() + 1);
      tomorrow.setHours(9, 0, 0, 0);
      var pad = function (n) { return String(n).padStart(2, "0"); };
      input.value = tomorrow.getFullYear() + "-" + pad(tomorrow.getMonth() + 1) + "-" + pad(tomorrow.getDate()) + "T09:00";
      var note = $("[data-tz-note]");
      if (note) note.textContent = "(your time)";
    }
  }

  function localInputValue(date) {
    var pad = function (n) { return String(n).padStart(2, "0"); };
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) +
      "T" + pad(date.getHours()) + ":" + pad(date.getMinutes());
  }

  function prepareCall() {
    var form = $("#call-form");
    if (!form) return;
    var started = $("#call-started", form);
    var note = $("[data-tz-note]", form);
    if (note) note.textContent = "(your time)";
    if (started.hasAttribute("data-call-now")) {
      // "now" in the browser's time: set when the form is opened, so it is not stale
      started.value = localInputValue(new Date());
      form.closest("details").addEventListener("toggle", function (event) {
        if (event.target.open && started.hasAttribute("data-call-now")) started.value = localInputValue(new Date());
      });
      started.addEventListener("change", function () { started.removeAttribute("data-call-now"); });
    }
    var error = $("#call-error", form);
    var invalid = $("[aria-invalid=true]", form);
    if (error && invalid) {
      var target = invalid.tagName === "FIELDSET" ? $("input", invalid) : invalid;
      target.focus();
    }
  }

  // --- keyboard shortcuts ----------------------------------------------------------------

  function go(step) {
    var links = $all("#queue-list .qi-link");
    if (!links.length) { say("No conversations in this queue."); return; }
    var current = links.findIndex(function (a) { return a.getAttribute("aria-current") === "true"; });
    var next = current === -1 ? (step > 0 ? 0 : links.length - 1) : current + step;
    if (next < 0 || next >= links.length) { say(step > 0 ? "That was the last conversation." : "That was the first conversation."); return; }
    window.location.href = links[next].href;
  }

  function press(selector, missing) {
    var button = $(selector);
    if (!button) { say(missing); return; }
    button.form.requestSubmit(button);
  }

  function focusReply(mode) {
    if (!$("#reply-form")) { say("Open a conversation first."); return; }
    setMode(mode);
    $("#reply-body").focus();
  }

  function onKey(event) {
    if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event.target)) return;
    var help = $("#shortcuts-help");
    if (help && help.open) return;
    var actions = {
      r: function () { focusReply("reply"); },
      n: function () { focusReply("note"); },
      e: function () { press('[data-shortcut="resolve"]', conversationId ? "This conversation is resolved already." : "Open a conversation first."); },
      a: function () { press('[data-shortcut="assign-me"]', conversationId ? "This conversation is yours already." : "Open a conversation first."); },
      j: function () { go(1); },
      k: function () { go(-1); },
      "?": function () { if (help) help.showModal(); }
    };
    var action = actions[event.key];
    if (!action) return;
    event.preventDefault();
    action();
  }

  // --- set-up -----------------------------------------------------------------------------

  function startWorkspace() {
    ws = $("#workspace");
    statusEl = $("#live-status");
    csrf = ws.dataset.csrf;
    conversationId = ws.dataset.conversation || null;
    var data = $("#canned-data");
    canned = data ? JSON.parse(data.textContent) : [];
    var thread = $("#thread");
    if (thread) thread.scrollTop = thread.scrollHeight;
    var helpButton = $("#shortcuts-button");
    var help = $("#shortcuts-help");
    if (helpButton && help && help.showModal) {
      helpButton.hidden = false;
      helpButton.addEventListener("click", function () { help.showModal(); });
    }
    document.addEventListener("submit", onSubmit);
    document.addEventListener("keydown", onKey);
    document.addEventListener("focusout", function () {
      window.setTimeout(function () {
        var head = $("#conv-head");
        if (headDeferred && head && !head.contains(document.activeElement)) {
          swap(head, headDeferred);
          headDeferred = false;
          prepareHead();
        }
      }, 0);
    });
    prepareHead();
    prepareReply();
    prepareCall();
    listen();
  }

  function startSettings(form) {
    var channel = $("#inbox-channel", form);
    var fields = $all("[data-channels]", form);
    var hint = $("[data-no-js-hint]", form);
    if (hint) hint.hidden = true;
    function show() {
      fields.forEach(function (field) {
        var on = field.dataset.channels.split(" ").indexOf(channel.value) !== -1;
        field.hidden = !on;
        $all("input", field).forEach(function (input) { input.disabled = !on; });
      });
      $(".provider-fields", form).hidden = !fields.some(function (f) { return !f.hidden; });
    }
    channel.addEventListener("change", show);
    show();
  }

  document.addEventListener("DOMContentLoaded", function () {
    if ($("#workspace") && window.fetch) startWorkspace();
    var settings = $("#inbox-form");
    if (settings) startSettings(settings);
  });
})();
