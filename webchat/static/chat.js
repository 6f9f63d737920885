"use strict";
// The survivor's chat page; protocol in docs/protocol.md, admin guide in docs/page.md.
// Nothing is stored on the device: the chat id and resume secret live only in variables.
// Every text comes from the catalog in the page's data block (webchat/i18n/<lang>.json).
(function () {
  const $ = (id) => document.getElementById(id);
  const str = (v) => (typeof v === "string" ? v : "");
  let config;
  try { config = JSON.parse($("hotline-config").textContent); } catch (e) { /* below */ }
  if (!config || typeof config !== "object") config = {};
  let S = config.strings || {};
  const T = (k) => str(S[k]);
  const fill = (k, vars) => T(k).replace(/\{(\w+)\}/g, (m, n) => (n in vars ? vars[n] : m));
  let lang = str(config.lang) || "en";
  const path = (v, dflt) => (/^\/([^/]|$)/.test(str(v)) ? v : dflt);
  const wsPath = path(config.ws_path, "/ws");
  let exitUrl = "about:blank";
  try {
    const u = new URL(str(config.exit_url), location.href);
    if (/^https?:$/.test(u.protocol)) exitUrl = u.href;
  } catch (e) { /* keep about:blank */ }
  const phone = str(config.hotline_phone).trim();
  const questions = Array.isArray(config.questions) ? config.questions : [];
  const before = questions.filter((q) => q.when === "before");
  const after = questions.filter((q) => q.when === "after");
  let service = config.status || { accepting: true };

  const notice = $("notice"), noticeTitle = $("notice-title"), chatSec = $("chat"), qSec = $("questions");
  const log = $("log"), statusEl = $("status"), confirmBox = $("confirm"), typingEl = $("typing");
  const composer = $("composer"), box = $("message"), sendBtn = $("send"), endBtn = $("end");

  let ws = null;        // the current socket
  let state = "idle";   // idle | asking | connecting | active | ended | unavailable | displaced
  let screen = "welcome"; // what the notice shows: welcome | ended | unavailable | displaced
  let attached = false; // the current socket is attached to our chat
  let chat = null, secret = null, lastSeq = 0, endRequested = false, surveyDone = false;
  // The chat, sealed by the gateway before it restarted ("restarting"): opaque to the page, kept
  // in this variable only (never in storage) until the restarted gateway has taken it back.
  let handover = null;
  // With several gateways, the one that holds this chat ("started"): later sockets go to it.
  let gateway = "";
  // Sockets refused in a row because they reached another gateway ("wrong_gateway"): after three,
  // the chat's own gateway cannot be reached, and the page says so rather than trying for ever.
  let misrouted = 0;
  let retry = 0, retryTimer = 0, openTimer = 0, pollTimer = 0, typingSaid = 0, typingTimer = 0;
  let paused = false, pauseTimer = 0; // after rate_limited: messages wait until the gateway takes them
  let answer = null; // the answer to an ask, until the gateway says "answered"
  const pending = new Map(); // id -> {id, text, el}: sent, not yet acknowledged

  // ---------------------------------------------------------------- texts and language

  function applyTexts() {
    document.documentElement.lang = lang;
    document.documentElement.dir = config.dir === "rtl" ? "rtl" : "ltr";
    for (const e of document.querySelectorAll("[data-s]")) e.textContent = T(e.dataset.s);
    for (const e of document.querySelectorAll("[data-s-label]")) e.setAttribute("aria-label", T(e.dataset.sLabel));
    for (const e of log.querySelectorAll(".who")) e.textContent = T(e.dataset.key);
    for (const e of log.querySelectorAll(".state")) if (e.dataset.key) setMsgState(e.parentNode, e.dataset.key);
    $("program-name").textContent = str(config.program_name) || document.title;
    if (phone) {
      $("phone").textContent = phone;
      $("phone").setAttribute("href", "tel:" + phone.replace(/[^0-9+*#]/g, ""));
      $("phone-line").hidden = false;
      $("help-call").textContent = fill("call", { phone });
      $("help-call").hidden = false;
    }
    const rights = str(config.rights_url);
    if (/^https?:\/\//.test(rights)) { $("rights-link").href = rights; $("rights-link").hidden = false; }
    buildQuestions($("question-fields"), before, "qb-");
    buildQuestions($("survey-fields"), after, "qa-");
    if (!notice.hidden) renderNotice(false);
  }

  const languages = Array.isArray(config.languages) ? config.languages : [];
  const langSelect = $("lang");
  if (languages.length > 1) {
    for (const l of languages) {
      const o = document.createElement("option");
      o.value = str(l.tag); o.textContent = str(l.name) || o.value; o.lang = o.value;
      langSelect.appendChild(o);
    }
    langSelect.value = lang;
    $("lang-line").hidden = false;
    langSelect.addEventListener("change", () => {
      const tag = langSelect.value;
      fetch(path(config.i18n_path, "/i18n/") + encodeURIComponent(tag) + ".json",
        { credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" })
        .then((r) => (r.ok ? r.json() : Promise.reject(r.status)))
        .then((c) => {
          if (!c || typeof c.strings !== "object") return;
          S = c.strings; lang = str(c.lang) || tag; config.dir = c.dir;
          applyTexts();
          langSelect.focus();
        })
        .catch(() => { langSelect.value = lang; });
    });
  }

  function timeText(iso) {
    const d = new Date(iso);
    const opts = { weekday: "long", day: "numeric", month: "long", hour: "numeric", minute: "2-digit",
      timeZoneName: "short" };
    try { return new Intl.DateTimeFormat(lang, Object.assign({ timeZone: str(config.timezone) || undefined }, opts)).format(d); }
    catch (e) {
      try { return new Intl.DateTimeFormat(lang, opts).format(d); } catch (e2) { return d.toString(); }
    }
  }

  function languageName(tag) {
    try { return new Intl.DisplayNames([lang], { type: "language" }).of(tag) || tag; } catch (e) { return tag; }
  }

  // ---------------------------------------------------------------- optional questions

  // Each question is a group of radio buttons with "Prefer not to say"; none chosen = skipped.
  function buildQuestions(where, list, prefix) {
    const chosen = readAnswers(where);
    where.textContent = "";
    for (const q of list) {
      const set = make("fieldset", "question");
      const legend = make("legend", "", T("q." + q.id));
      const why = make("p", "why", T("why") + " " + T("q." + q.id + ".why"));
      why.id = prefix + q.id + "-why";
      set.setAttribute("aria-describedby", why.id);
      set.append(legend, why);
      const answers = q.language ? (config.chat_languages || []) : (q.answers || []);
      for (const a of answers.concat(["prefer_not"])) {
        const label = make("label", "choice");
        const input = document.createElement("input");
        input.type = "radio";
        input.name = prefix + q.id;
        input.value = a;
        input.dataset.q = q.id;
        if (chosen[q.id] === a) input.checked = true;
        const text = a === "prefer_not" ? T("prefer_not") : q.language ? languageName(a) : T("q." + q.id + "." + a);
        label.append(input, " ", text);
        set.appendChild(label);
      }
      where.appendChild(set);
    }
  }

  function readAnswers(where) {
    const out = {};
    for (const i of where.querySelectorAll("input:checked")) out[i.dataset.q] = i.value;
    return out;
  }

  function clearAnswers(where) {
    for (const i of where.querySelectorAll("input:checked")) i.checked = false;
  }

  // Answers other than the language go on their own, later and in no relation to the chat:
  // no chat id, no cookie. The gateway only adds them to counts (docs/protocol.md).
  function sendAnswers(answers) {
    if (!Object.keys(answers).length || !config.answers_path) return;
    const body = JSON.stringify({ answers });
    const wait = 1000 + (crypto.getRandomValues(new Uint16Array(1))[0] % 9000);
    setTimeout(() => {
      fetch(path(config.answers_path, "/answers"), { method: "POST", body, credentials: "omit", cache: "no-store",
        referrerPolicy: "no-referrer", keepalive: true, headers: { "Content-Type": "application/json" } })
        .catch(() => { /* optional: nothing to tell the survivor */ });
    }, wait);
  }

  // ---------------------------------------------------------------- screens

  function renderNotice(moveFocus) {
    const st = service || {};
    let title, text = "";
    const down = st.reachable === false; // the homeserver does not answer: say so, no "Start chat"
    if (screen === "welcome" && down) {
      title = "unavailable_title";
      text = T("down");
    } else if (screen === "welcome") {
      title = st.accepting ? "welcome_title" : st.closed ? "closure_title" : "closed_title";
      if (st.accepting) text = T("welcome");
    } else {
      title = screen + "_title";
      text = T(screen);
    }
    noticeTitle.textContent = T(title);
    $("notice-text").textContent = text;
    $("notice-text").hidden = !text;
    $("hours").textContent = hoursText(st);
    $("closure-msg").textContent = str(st.message);
    $("closure-msg").hidden = !(st.closed && st.message);
    $("intro").hidden = screen !== "welcome";
    $("survey").hidden = !(screen === "ended" && after.length && !surveyDone);
    $("start").hidden = !st.accepting || down;
    chatSec.hidden = qSec.hidden = true;
    notice.hidden = false;
    if (moveFocus) noticeTitle.focus();
  }

  function hoursText(st) {
    if (st.closed) return T("closed_now");
    if (st.accepting) return st.closes_at ? fill("open_until", { time: timeText(st.closes_at) }) : T("open_now");
    let t = st.open ? T("closing_soon") : T("closed_now");
    if (st.next_open) t += " " + fill("opens_at", { time: timeText(st.next_open) });
    return t;
  }

  // While no chat is open, keep "open or closed" current (an admin may close chat any time).
  function pollStatus() {
    clearTimeout(pollTimer);
    const every = Math.max(1, Number(config.status_poll_seconds) || 10) * 1000;
    pollTimer = setTimeout(() => {
      if (state === "active" || state === "connecting") return;
      fetch(path(config.status_path, "/status"), { credentials: "omit", cache: "no-store", referrerPolicy: "no-referrer" })
        .then((r) => (r.ok ? r.json() : null))
        .then((st) => {
          if (st && typeof st === "object" && JSON.stringify(st) !== JSON.stringify(service)) {
            service = st;
            if (!notice.hidden) renderNotice(false);
          }
        })
        .catch(() => { /* keep what is shown; the hotline number is always there */ })
        .finally(pollStatus);
    }, every);
  }

  // ---------------------------------------------------------------- the socket

  const setStatus = (t) => { statusEl.textContent = t; };
  const setComposer = (on) => { box.disabled = sendBtn.disabled = endBtn.disabled = !on; };
  const send = (obj) => { if (ws && ws.readyState === 1) ws.send(JSON.stringify(obj)); };
  const sendSay = (p) => { if (attached && !paused) send({ type: "say", id: p.id, text: p.text }); };
  const sendAnswer = () => { if (answer && attached && !paused) send(answer); };
  function make(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text) e.appendChild(document.createTextNode(text));
    return e;
  }

  function newId() {
    const b = crypto.getRandomValues(new Uint8Array(16));
    return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  }

  let startFrame = { type: "start" };

  function openSocket() {
    clearTimeout(retryTimer);
    let sock;
    try {
      sock = new WebSocket((location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host + wsPath
        + (chat && gateway ? "?gateway=" + encodeURIComponent(gateway) : ""));
    } catch (e) { dropped(); return; }
    ws = sock;
    attached = false;
    openTimer = setTimeout(() => { if (ws === sock && sock.readyState !== 1) sock.close(); }, 10000);
    sock.onopen = () => {
      if (ws !== sock) return;
      clearTimeout(openTimer);
      const resume = { type: "resume", chat, secret, seen: lastSeq };
      if (handover) resume.state = handover;
      send(chat ? resume : startFrame);
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
      setTyping(false);
      setStatus(T(handover ? "restarting" : "reconnecting"));
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
        gateway = typeof f.gateway === "string" && /^[a-z][a-z0-9]{0,15}$/.test(f.gateway) ? f.gateway : "";
        misrouted = 0;
        setComposer(true);
        setStatus(T("started"));
        box.focus();
        break;
      case "resumed":
        if (!chat) return;
        attached = true; retry = 0; handover = null; misrouted = 0;
        clearTimeout(pauseTimer); paused = false; // a new socket: its own frame budget
        if (endRequested) { send({ type: "end" }); return; }
        setStatus(T("reconnected"));
        for (const p of pending.values()) sendSay(p); // same id and text: never delivered twice
        sendAnswer();
        break;
      case "message":
        if (state !== "active") return;
        if (typeof f.seq === "number") {
          if (f.seq <= lastSeq) return; // already shown before a reconnect
          lastSeq = f.seq;
        }
        if (!endRequested && typeof f.text === "string") {
          if (f.role !== "hotline") setTyping(false);
          addMessage(f.role, f.text);
        }
        break;
      case "restarting":
        // The chat service is restarting: keep the chat's state and resume on the new gateway
        // (the socket closes now; the page reconnects as after a dropped connection).
        if (state !== "active" || typeof f.state !== "string") return;
        handover = f.state;
        attached = false;
        setTyping(false);
        setStatus(T("restarting"));
        break;
      case "typing":
        if (state === "active" && !endRequested) setTyping(f.active === true);
        break;
      case "ask":
        if (typeof f.seq === "number") {
          if (f.seq <= lastSeq) return;
          lastSeq = f.seq;
        }
        if (state === "active" && !endRequested) showAsk(f.question);
        break;
      case "answered":
        answer = null;
        setStatus(T("answer_sent"));
        break;
      case "ack": {
        const p = pending.get(f.id);
        if (p) { pending.delete(f.id); setMsgState(p.el, "delivered"); }
        break;
      }
      case "ended":
        if (state === "active") finish("ended");
        break;
      case "displaced":
        // The chat was resumed from another window or device: this page stops here, and does
        // not reconnect (that would take the chat back and forth).
        if (state === "active") finish("displaced");
        break;
      case "error":
        onError(f, typeof f.id === "string" ? pending.get(f.id) : undefined);
    }
  }

  // bad_frame, not_started, already_started: nothing the survivor can do about them.
  function onError(f, p) {
    const code = f.code;
    if (code === "too_long") {
      p = p || Array.from(pending.values()).pop();
      if (p) { pending.delete(p.id); failed(p, false); if (!box.value) box.value = p.text; }
      setStatus(T("too_long"));
    } else if (code === "send_failed") {
      if (p) { pending.delete(p.id); failed(p, true); }
      setStatus(T("send_failed"));
    } else if (code === "empty") {
      if (p) { pending.delete(p.id); p.el.remove(); }
    } else if (code === "rate_limited") {
      // Nothing more is sent until the gateway takes frames again (retry_after); then every
      // message not yet delivered goes again (a repeated id is never delivered twice).
      setStatus(T("rate_limited"));
      const wait = Math.min(30, Math.max(1, Number(f.retry_after) || 10));
      clearTimeout(pauseTimer);
      paused = true;
      pauseTimer = setTimeout(() => {
        paused = false;
        for (const q of pending.values()) sendSay(q);
        sendAnswer();
        if (endRequested && attached) send({ type: "end" });
      }, wait * 1000);
    } else if (code === "unavailable") {
      finish("unavailable");
    } else if (code === "wrong_gateway") {
      if (++misrouted >= 3) finish("unavailable"); // else the socket closes and the page reconnects
    } else if (code === "closed") {
      if (f.status && typeof f.status === "object") service = f.status;
      else service = Object.assign({}, service, { accepting: false });
      finish("welcome");
    }
  }

  // "Advocate is typing…": shown at once; told to screen readers at most every 30 seconds.
  function setTyping(on) {
    typingEl.textContent = on ? T("typing") : "";
    clearTimeout(typingTimer);
    if (on && Date.now() - typingSaid > 30000) {
      typingSaid = Date.now();
      $("typing-sr").textContent = T("typing");
      typingTimer = setTimeout(() => { $("typing-sr").textContent = ""; }, 5000);
    } else if (!on) {
      $("typing-sr").textContent = "";
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
    const who = make("p", "who", mine ? T("you") : T("role_" + role));
    who.dataset.key = mine ? "you" : "role_" + role;
    el.append(who, body);
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
    const s = el.querySelector(".state");
    const button = s.querySelector("button");
    s.dataset.key = key;
    s.textContent = T(key);
    if (button) { button.textContent = T("try_again"); s.append(" ", button); }
  }

  function failed(p, canRetry) {
    setMsgState(p.el, "not_sent");
    if (!canRetry) return;
    const b = make("button", "btn small", T("try_again"));
    b.type = "button";
    b.addEventListener("click", () => {
      b.remove();
      // The same id: a message the homeserver stored before failing to answer (as while its
      // database restarts) is not delivered a second time.
      const q = { id: p.id, text: p.text, el: p.el };
      pending.set(q.id, q);
      setMsgState(q.el, "sending");
      sendSay(q);
      box.focus();
    });
    p.el.querySelector(".state").append(" ", b);
    reveal(p.el);
  }

  // Control characters other than tab and line breaks are never typed (a paste can carry them);
  // the gateway refuses them, so they are left out. A lone surrogate becomes U+FFFD.
  function cleanText(text) {
    text = text.replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/g, "");
    return typeof text.toWellFormed === "function" ? text.toWellFormed() : text;
  }

  function sendMessage() {
    const text = cleanText(box.value).trim();
    if (!text || state !== "active" || endRequested) return;
    const id = newId();
    // Over the gateway's limits (characters, and bytes of UTF-8: a letter of a non-Latin script
    // takes 2 to 4), or a frame over 64 KiB (the gateway would close the socket): nothing is sent
    // and the text stays in the box.
    const maxChars = Number(config.max_message_chars) || 0;
    const maxBytes = Number(config.max_message_bytes) || 0;
    const encoder = new TextEncoder();
    if ((maxChars && [...text].length > maxChars) || (maxBytes && encoder.encode(text).length > maxBytes) ||
        encoder.encode(JSON.stringify({ type: "say", id, text })).length > 65000) {
      setStatus(T("too_long"));
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
    setTyping(false);
    askBox.hidden = true;
    word1.value = word2.value = "";
    asking = null;
    answer = null;
  }

  // "Start chat": the optional questions first, if there are any.
  function askOrStart() {
    if (!before.length) return start("");
    state = "asking";
    notice.hidden = chatSec.hidden = true;
    qSec.hidden = false;
    $("questions-title").focus();
  }

  function continueFromQuestions(skip) {
    const answers = skip ? {} : readAnswers($("question-fields"));
    clearAnswers($("question-fields"));
    const language = before.some((q) => q.language) ? str(answers.language) : "";
    delete answers.language; // goes with the chat, to the advocate; never counted here
    sendAnswers(answers);
    start(language === "prefer_not" ? "" : language);
  }

  function start(language) {
    clearTimeout(pollTimer);
    state = "connecting";
    chat = secret = handover = null;
    lastSeq = 0;
    endRequested = false;
    surveyDone = false;
    startFrame = language ? { type: "start", language } : { type: "start" };
    wipe();
    notice.hidden = qSec.hidden = confirmBox.hidden = askBox.hidden = true;
    chatSec.hidden = composer.hidden = false;
    setComposer(false);
    statusEl.classList.remove("sr");
    setStatus(T("connecting"));
    log.focus();
    openSocket();
  }

  function finish(kind) {
    const sock = ws;
    ws = null;
    if (sock) sock.close();
    clearTimeout(retryTimer);
    clearTimeout(openTimer);
    clearTimeout(pauseTimer); paused = false;
    state = kind === "welcome" ? "idle" : kind;
    screen = kind;
    attached = false;
    chat = secret = handover = null;
    retry = 0;
    wipe();
    setComposer(false);
    renderNotice(false);
    statusEl.classList.add("sr"); // the notice shows it; screen readers hear it
    setStatus([noticeTitle.textContent, $("notice-text").textContent, $("hours").textContent]
      .filter(Boolean).join(" "));
    noticeTitle.focus();
    pollStatus();
  }

  // The bot asks: consent to an interpreter (Yes/No), or a code word (masked, never shown in the log).
  const askBox = $("ask"), word1 = $("word1"), word2 = $("word2");
  let asking = null;
  function showAsk(question) {
    const kinds = {
      interpreter_consent: ["ask_interpreter", "", ""],
      codeword_new: ["ask_codeword_new", "ask_codeword_new_help", "codeword_save"],
      codeword_verify: ["ask_codeword_verify", "ask_codeword_verify_help", "codeword_check"],
    };
    const kind = kinds[question];
    if (!kind) return;
    asking = question;
    $("ask-text").textContent = T(kind[0]);
    $("ask-help").textContent = T(kind[1]);
    $("ask-help").hidden = !kind[1];
    const consent = question === "interpreter_consent";
    $("ask-consent").hidden = !consent;
    $("ask-word").hidden = consent;
    $("word1-label").textContent = T(kind[0]);
    $("word2-line").hidden = question !== "codeword_new";
    $("word-send").textContent = T(kind[2]);
    word1.value = word2.value = "";
    askBox.hidden = false;
    (consent ? $("ask-yes") : word1).focus();
  }
  function answerAsk(value) {
    if (!asking) return;
    answer = { type: "answer", question: asking, value }; // kept until "answered" (in memory only)
    sendAnswer();
    asking = null;
    word1.value = word2.value = "";
    askBox.hidden = true;
    box.focus();
  }
  function sendWord() {
    const w = word1.value.trim();
    if (!w) { setStatus(T("codeword_empty")); word1.focus(); return; }
    if (asking === "codeword_new" && w !== word2.value.trim()) {
      setStatus(T("codeword_mismatch"));
      word1.value = word2.value = "";
      word1.focus();
      return;
    }
    answerAsk(w);
  }
  $("ask-yes").addEventListener("click", () => answerAsk("yes"));
  $("ask-no").addEventListener("click", () => answerAsk("no"));
  $("word-send").addEventListener("click", sendWord);
  $("word-skip").addEventListener("click", () => answerAsk(""));
  for (const input of [word1, word2]) {
    input.addEventListener("keydown", (e) => { if (e.key === "Enter") { e.preventDefault(); sendWord(); } });
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
    setStatus(T("ending"));
    log.focus();
    if (attached) send({ type: "end" });
  }

  function surveyFinished(sendIt) {
    if (sendIt) sendAnswers(readAnswers($("survey-fields")));
    clearAnswers($("survey-fields"));
    surveyDone = true;
    $("survey").hidden = true;
    $("survey-thanks").hidden = !sendIt;
    if (sendIt) $("survey-thanks").focus(); else noticeTitle.focus();
  }

  function leave() {
    send({ type: "end" }); // if a chat is open; don't wait for the answer
    wipe();
    location.replace(exitUrl);
  }

  $("start").addEventListener("click", () => { $("survey-thanks").hidden = true; askOrStart(); });
  $("q-continue").addEventListener("click", () => continueFromQuestions(false));
  $("q-skip").addEventListener("click", () => continueFromQuestions(true));
  $("survey-send").addEventListener("click", () => surveyFinished(true));
  $("survey-skip").addEventListener("click", () => surveyFinished(false));
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

  applyTexts();
  renderNotice(false);
  pollStatus();
})();
