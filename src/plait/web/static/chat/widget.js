/* Plait web chat widget. A site embeds it with
 *   <script src="https://plait.example/chat/widget.js" data-inbox="INBOX ID" async></script>
 * It names the visitor by the tracking snippet's anonymous id (analytics.js keeps it in
 * localStorage and a cookie called ajs_anonymous_id; made here the same way if absent), so a
 * chat joins the visitor's browsing in one profile. Replies arrive over Server-Sent Events.
 * Plain JavaScript, no build step; everything lives in a shadow root, away from the page's CSS.
 */
(function () {
  "use strict";

  var script =
    document.currentScript ||
    document.querySelector('script[data-inbox][src*="/chat/widget.js"]');
  if (!script || !script.getAttribute("data-inbox")) return;
  var inboxId = script.getAttribute("data-inbox");
  if (window.__plaitChat && window.__plaitChat[inboxId]) return;
  window.__plaitChat = window.__plaitChat || {};
  window.__plaitChat[inboxId] = true;

  var base = script.src.replace(/\/chat\/widget\.js(\?.*)?$/, "");
  var api = base + "/chat/" + encodeURIComponent(inboxId);
  var ANON_KEY = "ajs_anonymous_id";
  var TOKEN_KEY = "plait_chat:" + inboxId;

  // --- the visitor's anonymous id, shared with analytics.js --------------------------------

  function readStorage(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (e) {
      return null;
    }
  }

  function writeStorage(key, value) {
    try {
      if (value === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch (e) {
      /* storage disabled: the cookie still carries the id */
    }
  }

  function unquote(value) {
    // analytics.js stores JSON in localStorage (and older versions in the cookie too).
    if (!value) return null;
    if (value.charAt(0) === '"') {
      try {
        value = JSON.parse(value);
      } catch (e) {
        return null;
      }
    }
    return typeof value === "string" && value ? value : null;
  }

  function readCookie(name) {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var at = parts[i].indexOf("=");
      if (parts[i].slice(0, at) === name) {
        try {
          return decodeURIComponent(parts[i].slice(at + 1));
        } catch (e) {
          return null;
        }
      }
    }
    return null;
  }

  function writeCookie(name, value) {
    // Like analytics.js: on the widest domain the browser accepts (example.com rather than
    // www.example.com; never a public suffix), so every subdomain shares the id; a year long.
    var tail = "; path=/; max-age=31536000; SameSite=Lax";
    var cookie = name + "=" + encodeURIComponent(value);
    var hostname = location.hostname;
    if (hostname.indexOf(".") > 0 && !/^[0-9.]+$/.test(hostname) && hostname.indexOf(":") < 0) {
      var labels = hostname.split(".");
      for (var i = labels.length - 2; i >= 0; i--) {
        document.cookie = cookie + "; domain=" + labels.slice(i).join(".") + tail;
        if (readCookie(name) === value) return;
      }
    }
    document.cookie = cookie + tail;
  }

  function newId() {
    if (window.crypto && window.crypto.randomUUID) return window.crypto.randomUUID();
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    var hex = Array.prototype.map
      .call(bytes, function (b) {
        return (b + 0x100).toString(16).slice(1);
      })
      .join("");
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join("-");
  }

  function anonymousId() {
    var id = unquote(readStorage(ANON_KEY)) || unquote(readCookie(ANON_KEY));
    if (!id) id = newId();
    if (unquote(readStorage(ANON_KEY)) !== id) writeStorage(ANON_KEY, JSON.stringify(id));
    if (unquote(readCookie(ANON_KEY)) !== id) writeCookie(ANON_KEY, id);
    return id;
  }

  // --- talking to Plait ------------------------------------------------------------------------

  var session = null; // {token, anonymous_id, title, greeting}
  var stream = null;
  var shown = {}; // message ids on screen
  var pending = {}; // client id -> bubble of a message being sent
  var unread = 0;
  var restartedAt = 0;

  function post(path, body) {
    return fetch(api + path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
      credentials: "omit",
      mode: "cors",
    }).then(function (response) {
      return response.json().then(
        function (data) {
          return { status: response.status, data: data };
        },
        function () {
          return { status: response.status, data: {} };
        }
      );
    });
  }

  function startSession(fresh) {
    var kept = null;
    try {
      kept = JSON.parse(readStorage(TOKEN_KEY) || "null");
    } catch (e) {
      kept = null;
    }
    var id = anonymousId();
    var body = { anonymous_id: id };
    if (!fresh && kept && kept.anonymous_id === id) body.token = kept.token;
    return post("/sessions", body).then(function (answer) {
      if (answer.status !== 200) throw new Error((answer.data.error || {}).message || "unavailable");
      session = answer.data;
      writeStorage(TOKEN_KEY, JSON.stringify({ token: session.token, anonymous_id: id }));
      title.textContent = session.title || "Chat";
      if (session.greeting && !greeting.textContent) {
        greeting.textContent = session.greeting;
        greeting.hidden = false;
      }
      listen();
      return session;
    });
  }

  function ensureSession() {
    return session ? Promise.resolve(session) : startSession(false);
  }

  function listen() {
    if (stream) stream.close();
    stream = new EventSource(api + "/stream?token=" + encodeURIComponent(session.token));
    stream.onmessage = function (event) {
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      show(message);
    };
    stream.onopen = function () {
      setStatus("");
    };
    stream.onerror = function () {
      if (stream.readyState === EventSource.CLOSED && Date.now() - restartedAt > 30000) {
        // Refused (the token no longer works): start again, at most twice a minute.
        restartedAt = Date.now();
        stream = null;
        session = null;
        setStatus("Reconnecting…");
        startSession(true).catch(function () {
          setStatus("The chat is not available right now.");
        });
      }
      // Otherwise the browser reconnects by itself, resuming after the last event.
    };
  }

  function send(text) {
    var clientId = newId().replace(/-/g, "");
    var bubble = addBubble("in", text);
    bubble.classList.add("pending");
    pending[clientId] = bubble;
    var body = { text: text, client_id: clientId, url: location.href };
    if (nameInput.value.trim()) body.name = nameInput.value.trim();
    if (emailInput.value.trim()) body.email = emailInput.value.trim();

    function attempt(retried) {
      return ensureSession().then(function () {
        body.token = session.token;
        return post("/messages", body).then(function (answer) {
          if (answer.status === 401 && !retried) {
            session = null;
            return startSession(true).then(function () {
              return attempt(true);
            });
          }
          if (answer.status !== 200 && answer.status !== 201) {
            throw new Error((answer.data.error || {}).message || "not sent");
          }
          return answer.data.message;
        });
      });
    }

    return attempt(false).then(
      function (message) {
        delete pending[clientId];
        bubble.classList.remove("pending");
        if (shown[message.id] && shown[message.id] !== bubble) bubble.remove();
        else shown[message.id] = bubble;
        setStatus("");
      },
      function (error) {
        delete pending[clientId];
        bubble.remove();
        textarea.value = text;
        setStatus("Not sent: " + error.message);
      }
    );
  }

  function show(message) {
    if (shown[message.id]) return;
    if (message.direction === "in" && message.client_id && pending[message.client_id]) {
      shown[message.id] = pending[message.client_id];
      return;
    }
    shown[message.id] = addBubble(message.direction, message.body);
    if (message.direction === "out") {
      if (isOpen() && document.visibilityState === "visible") acknowledge();
      else setUnread(unread + 1);
    }
  }

  var acknowledging = null;
  function acknowledge() {
    if (!session || acknowledging) return;
    acknowledging = setTimeout(function () {
      acknowledging = null;
      if (session) post("/read", { token: session.token }).catch(function () {});
    }, 300);
  }

  // --- the panel ---------------------------------------------------------------------------------

  var host = document.createElement("plait-chat"); // a tag of its own: no page rule matches it
  host.setAttribute("data-plait-chat", inboxId);
  host.style.visibility = "hidden"; // until the stylesheet is in
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;

  function element(tag, attributes, parent) {
    var node = document.createElement(tag);
    for (var name in attributes) {
      if (name === "text") node.textContent = attributes[name];
      else node.setAttribute(name, attributes[name]);
    }
    if (parent) parent.appendChild(node);
    return node;
  }

  var stylesheet = element("link", { rel: "stylesheet", href: base + "/chat/widget.css" }, root);
  stylesheet.onload = stylesheet.onerror = function () {
    host.style.visibility = "";
  };

  var launcher = element(
    "button",
    {
      type: "button",
      class: "launcher",
      "aria-label": "Open chat",
      "aria-expanded": "false",
      "aria-controls": "plait-chat-panel",
      "aria-haspopup": "dialog",
    },
    root
  );
  launcher.innerHTML =
    '<svg viewBox="0 0 24 24" width="26" height="26" aria-hidden="true" focusable="false">' +
    '<path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z"/></svg>';
  var badge = element("span", { class: "badge", hidden: "", "aria-hidden": "true" }, launcher);

  var panel = element(
    "section",
    { id: "plait-chat-panel", class: "panel", role: "dialog", "aria-labelledby": "plait-chat-title" },
    root
  );
  panel.hidden = true;
  var header = element("header", {}, panel);
  var title = element("h2", { id: "plait-chat-title", text: "Chat" }, header);
  var close = element(
    "button",
    { type: "button", class: "close", "aria-label": "Close chat", text: "\u00d7" },
    header
  );
  var greeting = element("p", { class: "greeting" }, panel);
  greeting.hidden = true;
  var log = element("ol", { class: "log", role: "log", "aria-live": "polite", "aria-label": "Conversation" }, panel);

  var details = element("details", { class: "about" }, panel);
  element("summary", { text: "Your name and email (optional)" }, details);
  element("label", { for: "plait-chat-name", text: "Name" }, details);
  var nameInput = element(
    "input",
    { id: "plait-chat-name", type: "text", autocomplete: "name", maxlength: "100" },
    details
  );
  element("label", { for: "plait-chat-email", text: "Email" }, details);
  var emailInput = element(
    "input",
    { id: "plait-chat-email", type: "email", autocomplete: "email", maxlength: "320" },
    details
  );

  var form = element("form", { class: "compose" }, panel);
  element("label", { for: "plait-chat-text", class: "visually-hidden", text: "Message" }, form);
  var textarea = element(
    "textarea",
    { id: "plait-chat-text", rows: "2", maxlength: "5000", placeholder: "Write a message…" },
    form
  );
  element("button", { type: "submit", class: "send", text: "Send" }, form);
  var status = element("p", { class: "status", role: "status" }, panel);

  function addBubble(direction, text) {
    var item = element("li", { class: "message " + (direction === "out" ? "agent" : "visitor") }, log);
    element("span", { class: "visually-hidden", text: direction === "out" ? "Agent: " : "You: " }, item);
    element("span", { class: "body", text: text }, item);
    log.scrollTop = log.scrollHeight;
    return item;
  }

  function setStatus(text) {
    status.textContent = text;
  }

  function setUnread(count) {
    unread = count;
    badge.textContent = count > 9 ? "9+" : String(count);
    badge.hidden = count === 0;
    launcher.setAttribute(
      "aria-label",
      count ? "Open chat (" + count + " new message" + (count > 1 ? "s" : "") + ")" : "Open chat"
    );
  }

  function isOpen() {
    return !panel.hidden;
  }

  function open() {
    panel.hidden = false;
    launcher.setAttribute("aria-expanded", "true");
    host.classList.add("open");
    setUnread(0);
    textarea.focus();
    ensureSession().then(acknowledge, function () {
      setStatus("The chat is not available right now.");
    });
  }

  function shut() {
    panel.hidden = true;
    launcher.setAttribute("aria-expanded", "false");
    host.classList.remove("open");
    launcher.focus();
  }

  launcher.addEventListener("click", function () {
    if (isOpen()) shut();
    else open();
  });
  close.addEventListener("click", shut);
  panel.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      event.preventDefault();
      shut();
    }
  });
  textarea.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit ? form.requestSubmit() : form.dispatchEvent(new Event("submit"));
    }
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = textarea.value.trim();
    if (!text) return;
    textarea.value = "";
    send(text);
  });
  document.addEventListener("visibilitychange", function () {
    if (isOpen() && document.visibilityState === "visible") acknowledge();
  });

  function mount() {
    document.body.appendChild(host);
    // A visitor who chatted before sees new replies (and a badge) without opening the panel.
    if (readStorage(TOKEN_KEY)) startSession(false).catch(function () {});
  }
  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
