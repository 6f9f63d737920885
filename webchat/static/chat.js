"use strict";
// The survivor's chat page; protocol in docs/protocol.md. Nothing is stored on the device:
// the chat id and resume secret live only in variables.
const DEFAULT_STRINGS = {
  hotline: "Hotline:",
  leave: "Leave quickly",
  esc_hint: "You can also press Esc twice to leave this page quickly.",
  welcome_title: "Chat with an advocate",
  welcome: "This chat is private. The conversation is not saved on this device, and it is erased when the chat ends.",
  start_chat: "Start chat",
  connecting: "Connecting…",
  started: "Chat started. You can write your message now.",
  conversation: "Conversation",
  message: "Message",
  send: "Send",
  end_chat: "End chat",
  confirm_end: "End this chat? The conversation will be erased.",
  keep_chatting: "Keep chatting",
  ending: "Ending the chat…",
  you: "You",
  role_advocate: "Advocate",
  role_interpreter: "Interpreter",
  role_supervisor: "Supervisor",
  role_hotline: "Hotline",
  sending: "Sending…",
  delivered: "Delivered",
  not_sent: "Not sent",
  try_again: "Try again",
  reconnecting: "Connection lost. Reconnecting…",
  reconnected: "Reconnected.",
  ended_title: "Chat ended",
  ended: "This chat has ended, and the conversation has been erased from this page.",
  unavailable_title: "Chat not available",
  unavailable: "Chat is not available right now.",
  call: "You can call the hotline: {phone}",
  too_long: "This message is too long. Please shorten it or send it in parts.",
  send_failed: "A message could not be sent. You can try again.",
  rate_limited: "Messages are being sent too quickly. Yours will be sent in a moment.",
};

(function () {
  const $ = (id) => document.getElementById(id);
  const str = (v) => (typeof v === "string" ? v : "");
  let config;
  try { config = JSON.parse($("hotline-config").textContent); } catch (e) { /* defaults */ }
  if (!config || typeof config !== "object") config = {};
  const S = Object.assign({}, DEFAULT_STRINGS);
  for (const [k, v] of Object.entries(config.strings || {})) if (typeof v === "string") S[k] = v;
  const wsPath = /^\/[^/]/.test(str(config.ws_path)) ? config.ws_path : "/ws";
  let exitUrl = "about:blank";
  try {
    const u = new URL(str(config.exit_url), location.href);
    if (/^https?:$/.test(u.protocol)) exitUrl = u.href;
  } catch (e) { /* keep about:blank */ }
  const phone = str(config.hotline_phone).trim();

  const notice = $("notice"), noticeTitle = $("notice-title"), chatSec = $("chat");
  const log = $("log"), statusEl = $("status"), confirmBox = $("confirm");
  const composer = $("composer"), box = $("message"), sendBtn = $("send"), endBtn = $("end");

  for (const e of document.querySelectorAll("[data-s]")) e.textContent = S[e.dataset.s];
  for (const e of document.querySelectorAll("[data-s-label]")) e.setAttribute("aria-label", S[e.dataset.sLabel]);
  $("program-name").textContent = str(config.program_name) || document.title;
  if (phone) {
    $("phone").textContent = phone;
    $("phone").setAttribute("href", "tel:" + phone.replace(/[^0-9+*#]/g, ""));
    $("phone-line").hidden = false;
  }

  let ws = null;        // the current socket
  let state = "idle";   // idle | connecting | active | ended | unavailable
  let attached = false; // the current socket is attached to our chat
  let chat = null, secret = null, lastSeq = 0, endRequested = false;
  let retry = 0, retryTimer = 0, openTimer = 0;
  const pending = new Map(); // id -> {id, text, el}: sent, not yet acknowledged

  const setStatus = (t) => { statusEl.textContent = t; };
  const setComposer = (on) => { box.disabled = sendBtn.disabled = endBtn.disabled = !on; };
  const send = (obj) => { if (ws && ws.readyState === 1) ws.send(JSON.stringify(obj)); };
  const sendSay = (p) => { if (attached) send({ type: "say", id: p.id, text: p.text }); };
  const make = (tag, cls, text) => {
    const e = document.createElement(tag);
    e.className = cls;
    if (text) e.appendChild(document.createTextNode(text));
    return e;
  };

  function newId() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  function openSocket() {
    clearTimeout(retryTimer);
    let sock;
    try {
      sock = new WebSocket((location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + wsPath);
    } catch (e) { dropped(); return; }
    ws = sock;
    attached = false;
    openTimer = setTimeout(() => { if (ws === sock && sock.readyState !== 1) sock.close(); }, 10000);
    sock.onopen = () => {
      if (ws !== sock) return;
      clearTimeout(openTimer);
      send(chat ? { type: "resume", chat, secret, seen: lastSeq } : { type: "start" });
    };
    sock.onmessage = (ev) => {
      let f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      if (ws === sock && f && typeof f === "object") handle(f);
    };
    sock.onclose = () => {
      if (ws !== sock) return;
      clearTimeout(openTimer);
      ws = null;
      attached = false;
      dropped();
    };
  }

  function dropped() {
    if (state === "active") {
      setStatus(S.reconnecting);
      retryTimer = setTimeout(openSocket, Math.min(10000, 1000 * 2 ** retry)); // 1, 2, 4, 8, 10 s
      retry = Math.min(retry + 1, 10);
    } else if (state === "connecting") {
      finish("unavailable");
    }
  }

  function handle(f) {
    switch (f.type) {
      case "started":
        if (state !== "connecting" || typeof f.chat !== "string" || typeof f.secret !== "string") return;
        chat = f.chat; secret = f.secret; state = "active"; attached = true; retry = 0;
        setComposer(true);
        setStatus(S.started);
        box.focus();
        break;
      case "resumed":
        if (!chat) return;
        attached = true; retry = 0;
        if (endRequested) { send({ type: "end" }); return; }
        setStatus(S.reconnected);
        for (const p of pending.values()) sendSay(p); // same id and text: never delivered twice
        break;
      case "message":
        if (state !== "active") return;
        if (typeof f.seq === "number") {
          if (f.seq <= lastSeq) return; // already shown before a reconnect
          lastSeq = f.seq;
        }
        if (!endRequested && typeof f.text === "string") addMessage(f.role, f.text);
        break;
      case "ack": {
        const p = pending.get(f.id);
        if (p) { pending.delete(f.id); setMsgState(p.el, "delivered"); }
        break;
      }
      case "ended":
        if (state === "active") finish("ended");
        break;
      case "error":
        onError(f.code, typeof f.id === "string" ? pending.get(f.id) : undefined);
    }
  }

  // bad_frame, not_started, already_started: nothing the survivor can do about them.
  function onError(code, p) {
    if (code === "too_long") {
      p = p || Array.from(pending.values()).pop();
      if (p) { pending.delete(p.id); failed(p, false); if (!box.value) box.value = p.text; }
      setStatus(S.too_long);
    } else if (code === "send_failed") {
      if (p) { pending.delete(p.id); failed(p, true); }
      setStatus(S.send_failed);
    } else if (code === "empty") {
      if (p) { pending.delete(p.id); p.el.remove(); }
    } else if (code === "rate_limited") {
      setStatus(S.rate_limited);
      setTimeout(() => {
        if (p) { if (pending.has(p.id)) sendSay(p); } else if (endRequested && attached) send({ type: "end" });
      }, 3000);
    } else if (code === "unavailable") {
      finish("unavailable");
    }
  }

  function addMessage(role, text) {
    const mine = role === "you";
    // An unknown role is shown as an automatic notice, not as a person.
    if (!mine && !/^(advocate|interpreter|supervisor)$/.test(role)) role = "hotline";
    const el = make("div", "msg " + (mine ? "you" : role === "hotline" ? "note" : "them"));
    const body = make("p", "text", text);
    el.setAttribute("dir", "auto");
    body.setAttribute("dir", "auto");
    el.append(make("p", "who", mine ? S.you : S["role_" + role]), body);
    if (mine) el.appendChild(make("p", "state"));
    const follow = nearBottom(log.clientHeight);
    log.appendChild(el);
    if (follow && !mine) reveal(el); // don't pull down a reader who scrolled up
    return el;
  }

  // Keep the newest message in view when the log shrinks (status line, on-screen keyboard).
  const nearBottom = (height) => log.scrollHeight - log.scrollTop - height < 40;
  let logHeight = 0;
  if (window.ResizeObserver) {
    new ResizeObserver(() => {
      if (nearBottom(logHeight)) log.scrollTop = log.scrollHeight; // judged by the old height
      logHeight = log.clientHeight;
    }).observe(log);
  }

  // Show el: scrolls the log, or the page on short screens where the page scrolls.
  function reveal(el) {
    el.scrollIntoView({ block: "nearest" });
    if (!composer.hidden) composer.scrollIntoView({ block: "nearest" });
  }

  function setMsgState(el, key) {
    el.classList.toggle("failed", key === "not_sent");
    el.querySelector(".state").textContent = S[key];
  }

  function failed(p, canRetry) {
    setMsgState(p.el, "not_sent");
    if (!canRetry) return;
    const b = make("button", "btn small", S.try_again);
    b.type = "button";
    b.addEventListener("click", () => {
      b.remove();
      const q = { id: newId(), text: p.text, el: p.el }; // a fresh id: the failed one may be remembered
      pending.set(q.id, q);
      setMsgState(q.el, "sending");
      sendSay(q);
      box.focus();
    });
    p.el.querySelector(".state").append(" ", b);
    reveal(p.el);
  }

  function sendMessage() {
    const text = box.value.trim();
    if (!text || state !== "active" || endRequested) return;
    const id = newId();
    // Over the gateway's limit, or a frame over 64 KiB (the gateway would close the socket).
    const maxChars = Number(config.max_message_chars) || 0;
    if ((maxChars && [...text].length > maxChars) ||
        new TextEncoder().encode(JSON.stringify({ type: "say", id, text })).length > 65000) {
      setStatus(S.too_long);
      return;
    }
    box.value = "";
    if (attached) setStatus("");
    const p = { id, text, el: addMessage("you", text) };
    setMsgState(p.el, "sending");
    reveal(p.el);
    pending.set(id, p);
    sendSay(p);
    box.focus();
  }

  // Forget the conversation on the page, and any unsent text.
  function wipe() {
    pending.clear();
    log.textContent = "";
    box.value = "";
  }

  function start() {
    state = "connecting";
    chat = secret = null;
    lastSeq = 0;
    endRequested = false;
    wipe();
    notice.hidden = confirmBox.hidden = true;
    chatSec.hidden = composer.hidden = false;
    setComposer(false);
    statusEl.classList.remove("sr");
    setStatus(S.connecting);
    log.focus();
    openSocket();
  }

  function finish(kind) {
    const sock = ws;
    ws = null;
    if (sock) sock.close();
    clearTimeout(retryTimer);
    clearTimeout(openTimer);
    state = kind;
    attached = false;
    chat = secret = null;
    retry = 0;
    wipe();
    setComposer(false);
    showNotice(S[kind + "_title"], S[kind] + (phone ? " " + S.call.replace("{phone}", phone) : ""));
    statusEl.classList.add("sr"); // the notice shows it; screen readers hear it
    setStatus($("notice-text").textContent);
    noticeTitle.focus();
  }

  function showNotice(title, text) {
    noticeTitle.textContent = title;
    $("notice-text").textContent = text;
    chatSec.hidden = true;
    notice.hidden = false;
  }

  function keepChatting() {
    confirmBox.hidden = true;
    composer.hidden = false;
    endBtn.focus();
  }

  function confirmEnd() {
    confirmBox.hidden = true;
    composer.hidden = false;
    endRequested = true;
    wipe();
    setComposer(false);
    setStatus(S.ending);
    log.focus();
    if (attached) send({ type: "end" });
  }

  function leave() {
    send({ type: "end" }); // if a chat is open; don't wait for the answer
    wipe();
    location.replace(exitUrl);
  }

  $("start").addEventListener("click", start);
  sendBtn.addEventListener("click", sendMessage);
  endBtn.addEventListener("click", () => {
    composer.hidden = true;
    confirmBox.hidden = false;
    $("confirm-keep").focus();
  });
  $("confirm-keep").addEventListener("click", keepChatting);
  $("confirm-end").addEventListener("click", confirmEnd);
  $("leave").addEventListener("click", leave);
  box.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      sendMessage();
    }
  });
  let lastEsc = 0;
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape" || e.repeat || e.isComposing) return;
    if (Date.now() - lastEsc < 1000) return leave();
    lastEsc = Date.now();
    if (!confirmBox.hidden) keepChatting();
  });
  window.addEventListener("online", () => {
    if (state === "active" && !ws) { retry = 0; openSocket(); }
  });

  showNotice(S.welcome_title, S.welcome);
})();
