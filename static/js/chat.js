// The chat page: send a message to the model picked, paint the answer as it streams and say which
// model gave it, show "Limit Exceeded" on 429.
// Model output is only ever inserted with textContent, never as HTML.
(function () {
  "use strict";
  var form = document.getElementById("chat-form");
  var log = document.getElementById("log");
  if (!form || !log) return;
  var textarea = document.getElementById("message");
  var sendButton = document.getElementById("send");
  var picker = document.getElementById("key-picker");
  var banner = document.getElementById("banner");
  var csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  var countdown = null;

  // --- safe rendering: paragraphs, lists and fenced code blocks -------------------------
  function render(text, target) {
    target.textContent = "";
    var parts = text.split("```");
    parts.forEach(function (part, i) {
      if (i % 2 === 1) {
        var pre = document.createElement("pre");
        var code = document.createElement("code");
        code.textContent = part.replace(/^[\w+-]*\n/, "");
        pre.appendChild(code);
        target.appendChild(pre);
        return;
      }
      part.split(/\n{2,}/).forEach(function (block) {
        if (!block.trim()) return;
        var lines = block.split("\n");
        var bullet = /^\s*([-*]|\d+[.)])\s+/;
        if (lines.every(function (l) { return bullet.test(l); })) {
          var list = document.createElement(/^\s*\d/.test(lines[0]) ? "ol" : "ul");
          lines.forEach(function (l) {
            var li = document.createElement("li");
            li.textContent = l.replace(bullet, "");
            list.appendChild(li);
          });
          target.appendChild(list);
        } else {
          var p = document.createElement("p");
          p.textContent = block;
          target.appendChild(p);
        }
      });
    });
  }

  document.querySelectorAll("[data-render=markdown]").forEach(function (el) { render(el.textContent, el); });
  log.scrollTop = log.scrollHeight;

  function bubble(role, text) {
    var empty = document.getElementById("chat-empty");
    if (empty) empty.remove();
    var div = document.createElement("div");
    div.className = "bubble bubble-" + role;
    render(text, div);
    log.appendChild(div);
    log.scrollTop = log.scrollHeight;
    return div;
  }

  // Under an answer, as the page shows the kept ones: "answered by <model>".
  function answeredBy(model) {
    var line = document.createElement("p");
    line.className = "answered-by";
    line.textContent = "answered by ";
    var name = document.createElement("span");
    name.className = "model-name";
    name.textContent = model;
    line.appendChild(name);
    log.appendChild(line);
  }

  // --- banner ---------------------------------------------------------------------------------
  function hideBanner() {
    banner.hidden = true;
    banner.className = "banner";
    if (countdown) { clearInterval(countdown); countdown = null; }
  }

  function formatSeconds(s) {
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + sec + "s";
  }

  function showLimit(body) {
    hideBanner();
    banner.className = "banner banner-limit";
    banner.textContent = "";
    var strong = document.createElement("strong");
    strong.textContent = body.message === "Too Many Requests" ? "Too Many Requests" : "Limit Exceeded";
    banner.appendChild(strong);
    var info = document.createElement("span");
    banner.appendChild(info);
    var left = Number(body.retry_after) || 0;
    var tick = function () {
      info.textContent = strong.textContent === "Limit Exceeded"
        ? " — this key's quota is used up. It resets in " + formatSeconds(Math.max(left, 0)) + ". "
        : " — slow down a little and try again in a second. ";
      left -= 1;
    };
    if (body.detail) {
      info.textContent = " — " + body.detail + " "; // the server's words, e.g. what the token budget has left
    } else {
      tick();
      countdown = setInterval(tick, 1000);
    }
    var link = document.createElement("a");
    link.href = "/keys/";
    link.textContent = "Get a bigger plan";
    banner.appendChild(link);
    banner.hidden = false;
  }

  function showError(text) {
    hideBanner();
    banner.className = "banner banner-error";
    banner.textContent = text;
    banner.hidden = false;
  }

  // --- the key's usage bar and model picker --------------------------------------------------
  function showKey(keyId) {
    document.querySelectorAll("[data-for-key]").forEach(function (el) {
      el.hidden = el.dataset.forKey !== String(keyId);
    });
  }

  // One bar (requests or tokens) of the key's usage box, as templates/keys/_bar.html paints it.
  function paintBar(box, measure, used, limit) {
    var bar = box.querySelector('.bar[data-measure="' + measure + '"]');
    if (!bar || used === null || limit === null) return;
    var pct = limit ? Math.min(100, Math.round(100 * used / limit)) : 100;
    var fill = bar.querySelector(".fill");
    fill.dataset.width = pct;
    fill.classList.toggle("full", used >= limit);
    fill.classList.toggle("warn", used < limit && pct >= 80);
    fill.style.width = pct + "%";
    bar.setAttribute("aria-valuenow", used);
  }

  function refreshUsage(keyId) {
    return fetch("/api/keys/" + keyId + "/", { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (key) {
        if (!key) return;
        var box = document.querySelector('.key-usage[data-for-key="' + keyId + '"]');
        if (!box) return;
        paintBar(box, "requests", key.used_today, key.used_today + key.remaining_today);
        var used = box.querySelector("[data-used]");
        if (used) used.textContent = key.used_today;
        paintBar(box, "tokens", key.used_tokens, key.token_quota);
        var usedTokens = box.querySelector("[data-used-tokens]");
        if (usedTokens && key.used_tokens !== null) usedTokens.textContent = key.used_tokens.toLocaleString("en-US");
      });
  }

  // --- sidebar --------------------------------------------------------------------------------
  // A new conversation goes to the top of the list at once, titled as the server titles it.
  function listConversation(id, text) {
    var sidebar = document.querySelector(".chat-sidebar");
    if (!sidebar) return;
    var list = sidebar.querySelector(".conversation-list");
    if (!list) {
      var hint = sidebar.querySelector("p.muted");
      if (hint) hint.remove();
      list = document.createElement("ul");
      list.className = "conversation-list";
      sidebar.appendChild(list);
    }
    list.querySelectorAll("a[aria-current]").forEach(function (a) { a.removeAttribute("aria-current"); });
    var title = text.split(/\s+/).join(" ").trim();
    if (title.length > 60) title = title.slice(0, 59) + "…";
    var item = document.createElement("li");
    var link = document.createElement("a");
    link.href = form.dataset.chatUrl + "c/" + id + "/";
    link.textContent = title;
    link.setAttribute("aria-current", "page");
    item.appendChild(link);
    list.insertBefore(item, list.firstChild);
  }

  if (picker) picker.addEventListener("change", function () { showKey(picker.value); });

  // The model picker of the key chosen (none where the key's gateway picks the model).
  function modelPicked() {
    var modelPicker = document.querySelector(".model-choice:not([hidden]) .model-picker");
    return modelPicker ? modelPicker.value : "";
  }

  // --- sending --------------------------------------------------------------------------------
  var busy = false;

  function send() {
    var text = textarea.value;
    if (busy || !text.trim()) return;
    busy = true;
    sendButton.disabled = true;
    hideBanner();
    var keyId = picker.value;
    var mine = bubble("user", text);
    var answer = null;
    fetch(form.dataset.streamUrl, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "text/event-stream" },
      body: JSON.stringify({
        key_id: keyId, message: text, conversation: log.dataset.conversation || "", model: modelPicked()
      })
    }).then(function (response) {
      if (!response.ok) {
        mine.remove();
        return response.json().catch(function () { return {}; }).then(function (body) {
          if (response.status === 429) {
            showLimit(body);
            refreshUsage(keyId); // the quota may have been spent elsewhere: make the bar agree with the banner
          } else if (response.status === 502) showError("The model did not answer. Your message was not counted — try again.");
          else if (response.status === 503) showError("Tollgate is briefly unavailable. Your message is still here — try again shortly.");
          else showError(body.message || "Something went wrong (" + response.status + ").");
        });
      }
      textarea.value = "";
      var conversation = response.headers.get("X-Conversation-Id");
      if (conversation && conversation !== log.dataset.conversation) {
        if (!log.dataset.conversation) listConversation(conversation, text);
        log.dataset.conversation = conversation;
        history.replaceState(null, "", form.dataset.chatUrl + "c/" + conversation + "/");
      }
      answer = bubble("assistant", "");
      answer.classList.add("streaming");
      var model = response.headers.get("X-Model");
      if (model) answeredBy(model);
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var full = "";
      function pump() {
        return reader.read().then(function (step) {
          if (step.done) return;
          full += decoder.decode(step.value, { stream: true });
          render(full, answer);
          log.scrollTop = log.scrollHeight;
          return pump();
        });
      }
      return pump().then(function () {
        answer.classList.remove("streaming");
      }, function () {
        answer.classList.remove("streaming");
        showError("The answer was cut off by a network error.");
      }).then(function () { return refreshUsage(keyId); });
    }).catch(function () {
      if (!answer) mine.remove();
      showError("Could not reach Tollgate. Check your connection; your message is still here.");
    }).then(function () {
      busy = false;
      sendButton.disabled = false;
      textarea.focus();
    });
  }

  form.addEventListener("submit", function (event) { event.preventDefault(); send(); });
  textarea.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      send();
    }
  });
})();
