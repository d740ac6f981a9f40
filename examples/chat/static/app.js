// MARIE chat example: the page. The protocol (docs/protocol.md) is the TypeScript client's
// business: /marie-client.js is @marie-rs/client built for the page (clients/js, global
// `Marie`). It connects and resumes, applies every answer's events by `seq` (merged chunks,
// gaps, repeats, stream_reset), follows approvals, client tools, branches, the queue, typing,
// budgets, members, the conversation list and unread marks, and gives each as a snapshot.
// This file draws those snapshots and turns clicks into the client's commands; it keeps only
// what is the page's own: the login, files being attached, an editor open, a search typed.
// Plain JavaScript, no build step. User-supplied text goes in through textContent only;
// answers are markdown: `marked` makes HTML of them (raw HTML in them shown as text) and
// DOMPurify sanitises that into a DOM fragment before it is shown.
"use strict";

(() => {
  const { MarieClient, randomId } = window.Marie;
  const CONVERSATION_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
  const noop = () => {};

  // Every element of index.html with an id, by its id in camelCase (`message-input`: ui.messageInput).
  const ui = {};
  for (const el of document.querySelectorAll("[id]")) ui[el.id.replace(/-(\w)/g, (_, c) => c.toUpperCase())] = el;

  const state = {
    mode: "dev",         // "dev" | "jwt", from GET /api/auth/mode
    token: null,         // in memory, and in sessionStorage for a reload of this tab (saveSession)
    roles: [],
    userId: null,
    client: null,        // the Marie.MarieClient of this login
    off: [],             // unsubscribes from the client's stores and events
    status: null,        // the connection status last drawn
    welcomed: false,     // the client's first connection was taken (signed in, the list read)
    restoring: null,     // after a reload: the conversation of the URL, opened once connected
    id: null,            // the conversation shown
    conv: null,          // its Marie.Conversation (client.conversation(id): one object per id)
    convOff: noop,
    ready: false,        // its join and history are in: what arrives from now on is marked read when seen
    views: new Map(),    // key -> the view of one of its messages (userView, answerView)
    sends: new Map(),    // clientMessageId -> a send of this tab: {text, files, queued, at, error}
    branchBusy: false,   // an edit, regeneration or branch switch of this tab awaits its ack
    queueShown: new Map(), // stream_id -> the queued send drawn (whose it was, should its turn fail)
    policyShown: null,   // {id, policy} the Ask toggle was last set for
    drawn: {},           // signatures of what was drawn last (members, queue, models): unchanged is not redrawn
    attachments: [],     // files chosen for the next message, in the strip (chooseFiles)
    filesOff: false,     // the server takes no files (an upload answered 404): no attach button
    thumbs: new Map(),   // file_id -> promise of its object URL, for the conversation shown
    mention: null,       // the @completion open in the composer: {start, end, names, active}
    rows: new Map(),     // conversation_id -> its row in the list ({li, open, item, fill})
    renaming: null,      // the conversation_id whose title is being edited
    listNote: null,      // {text, kind}: what the last list action said
  };

  // ---------------------------------------------------------------- helpers

  /** Builds an element: attributes (`on…` ones are listeners), children as nodes or strings (text). */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (typeof value === "function") node.addEventListener(key.slice(2), value);
      else if (key === "class") node.className = value;
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    node.append(...children.filter((c) => c !== undefined && c !== null && c !== false));
    return node;
  }

  /** Whether `value` differs from what was drawn last as `key` (a part drawn again only when it changed keeps its focus and clicks). */
  const changed = (key, value) => state.drawn[key] !== (state.drawn[key] = JSON.stringify(value));

  /** Sets (or, for an empty value, removes) data-* attributes. */
  function setData(el, values) {
    for (const [key, value] of Object.entries(values)) {
      if (value === undefined || value === null || value === "" || value === false) delete el.dataset[key];
      else el.dataset[key] = String(value);
    }
  }

  const formatTime = (t) => new Date(t < 1e12 ? t * 1000 : t).toLocaleTimeString(); // seconds or milliseconds
  const visible = () => document.visibilityState === "visible";

  const setStatus = (text, name) => Object.assign(ui.connectionStatus, { textContent: text }).setAttribute("data-state", name);
  const showLoginError = (text) => Object.assign(ui.loginError, { textContent: text || "", hidden: !text });

  /** A MarieError (or any error) in words: "message (code)", the times in the message readable. */
  function describeError(err) {
    return `${err && err.message ? humanTimes(err.message) : "Something went wrong."} (${(err && err.code) || "error"})`;
  }

  /** "in 3 h 20 min", "in 12 min", "in 2 d 4 h", "in under a minute". */
  function inWords(ms) {
    const minutes = Math.ceil(Math.max(0, ms) / 60000);
    if (minutes <= 1) return ms <= 0 ? "now" : "in under a minute";
    if (minutes < 60) return `in ${minutes} min`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `in ${hours} h${minutes % 60 ? ` ${minutes % 60} min` : ""}`;
    return `in ${Math.floor(hours / 24)} d${hours % 24 ? ` ${hours % 24} h` : ""}`;
  }

  /** A time (ms since the epoch) in words, in UTC as the server's periods are: "00:00 UTC, in 3 h". */
  function resetWords(at, now = Date.now()) {
    const date = new Date(at);
    if (Number.isNaN(date.getTime())) return "";
    const hhmm = `${String(date.getUTCHours()).padStart(2, "0")}:${String(date.getUTCMinutes()).padStart(2, "0")} UTC`;
    // Within a day the hour says it; further away (a weekly budget) the day too.
    const day = at - now > 86_400_000
      ? `${date.toLocaleDateString("en-GB", { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" })} ` : "";
    return `${day}${hhmm}, ${inWords(at - now)}`;
  }

  /** A server message naming a time ("resets at 2026-12-08 00:00 UTC", or ms since the epoch) with it in words. */
  function humanTimes(message) {
    return String(message)
      .replace(/\b(resets?|starts? again|expires?) at (\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}) UTC/g,
        (_, verb, y, mo, d, hh, mi) => `${verb} at ${resetWords(Date.UTC(+y, +mo - 1, +d, +hh, +mi))}`)
      .replace(/\b(resets?|starts? again|expires?) at (\d{12,14})(?: \(ms since the Unix epoch\))?/g,
        (_, verb, ms) => `${verb} at ${resetWords(Number(ms))}`);
  }

  // A snapshot changes once per event; drawing waits for the end of the task, so a burst (a
  // merged catch-up, a history read) is drawn once, and a command that a drawing starts (a
  // read mark) never draws inside a drawing.
  const batched = (draw) => {
    let queued = false;
    return () => {
      if (!queued) queueMicrotask(() => { queued = false; draw(); });
      queued = true;
    };
  };

  // --------------------------------------------------------------- markdown

  const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);

  /**
   * An answer's markdown -> a sanitised DOM fragment, or null when marked or DOMPurify did not
   * load (answers are then plain text). Raw HTML in the markdown is shown as text; images are
   * links (an answer loads nothing by itself); links open in a new tab without the page as
   * opener. DOMPurify then removes whatever else could run or reach out.
   */
  const renderMarkdown = (() => {
    if (!window.marked || typeof window.marked.Marked !== "function" || typeof window.DOMPurify !== "function") return null;
    const md = new window.marked.Marked({ gfm: true, breaks: false, async: false });
    md.use({
      renderer: {
        html: (token) => (token.block ? `<p>${escapeHtml(token.text || "").trim()}</p>\n` : escapeHtml(token.text || "")),
        image: (token) => (token.href ? `<a href="${escapeHtml(token.href)}">${escapeHtml(`image: ${token.text || token.href}`)}</a>`
          : escapeHtml(`image: ${token.text || ""}`)),
      },
    });
    const purify = window.DOMPurify(window); // an instance of its own: its hooks touch nothing else
    purify.addHook("uponSanitizeAttribute", (node, data) => {
      // Classes only for a code block's language: page styles are not the model's to use.
      if (data.attrName === "class") data.keepAttr = node.nodeName === "CODE" && /^language-[\w+#.-]{1,40}$/.test(data.attrValue);
    });
    purify.addHook("afterSanitizeAttributes", (node) => {
      if (node.nodeName === "A" && node.hasAttribute("href")) {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      }
    });
    const config = {
      RETURN_DOM_FRAGMENT: true,
      FORBID_TAGS: ["img", "picture", "source", "video", "audio", "track", "iframe", "frame", "object", "embed",
        "svg", "math", "style", "link", "meta", "base", "form", "input", "button", "select", "option", "textarea", "dialog"],
      FORBID_ATTR: ["style", "id", "name", "srcset", "ping"],
    };
    return (text) => purify.sanitize(md.parse(text).trim(), config);
  })();

  /** Draws markdown into `element`, each code block with a Copy button (its label comes from CSS). */
  function drawMarkdown(element, source) {
    let fragment = null;
    try {
      fragment = renderMarkdown && renderMarkdown(source);
    } catch {
      fragment = null; // never lose an answer to a parser fault
    }
    if (!fragment) return void (element.textContent = source);
    for (const pre of fragment.querySelectorAll("pre")) {
      const box = h("div", { class: "code-block" });
      pre.replaceWith(box);
      box.append(h("button", { type: "button", class: "secondary code-copy", "data-testid": "copy-code", "aria-label": "Copy code",
        title: "Copy code", onclick: copyCode }), pre);
    }
    element.replaceChildren(fragment);
  }

  // Answers longer than this are drawn at most once a frame while they stream (a frame, or
  // 250 ms in a background tab, where frames do not come): parsing it all per chunk is slow.
  const DRAW_EVERY_CHUNK_CHARS = 4000;

  function drawAnswerText(view, now) {
    if (now || view.source.length <= DRAW_EVERY_CHUNK_CHARS) {
      if (view.drawPending) {
        cancelAnimationFrame(view.drawPending.frame);
        clearTimeout(view.drawPending.timer);
        view.drawPending = null;
      }
      drawMarkdown(view.text, view.source);
    } else if (!view.drawPending) {
      const draw = () => drawAnswerText(view, true);
      view.drawPending = { frame: requestAnimationFrame(draw), timer: setTimeout(draw, 250) };
    }
  }

  /** Copy on a code block: the code without its last line break; without a clipboard, it is selected for Ctrl+C. */
  async function copyCode(e) {
    const button = e.currentTarget;
    const code = button.parentNode.querySelector("pre");
    let ok = true;
    try {
      await navigator.clipboard.writeText(code.textContent.replace(/\n$/, ""));
    } catch {
      ok = false;
      window.getSelection().selectAllChildren(code);
    }
    const show = (label, done) => {
      setData(button, { state: done });
      button.setAttribute("aria-label", label);
    };
    show(ok ? "Copied" : "Press Ctrl+C to copy", ok ? "copied" : "failed");
    clearTimeout(button.resetTimer);
    button.resetTimer = setTimeout(() => show("Copy code", null), 2000);
  }

  // ----------------------------------------------------- the conversation shown

  const scheduleDraw = batched(() => drawConversation());

  function drawConversation() {
    const s = state.conv ? state.conv.getSnapshot() : null;
    // Deleted, or this user removed (a state from before this open counts once it joined again).
    if (s && s.closed && state.ready) {
      const { reason, by } = s.closed;
      return closeConversation(reason === "deleted" ? `This conversation was deleted by ${by === state.userId ? "you" : by || "its owner"}.`
        : by === state.userId ? "You left this conversation." : `${by || "The owner"} removed you from this conversation.`);
    }
    drawMessages(s);
    drawQueue(s);
    drawDetails(s);
    drawMembers(s);
    updateControls(s);
    const typing = s ? s.typingUsers : [];
    ui.typingIndicator.hidden = typing.length === 0;
    ui.typingIndicator.textContent = typing.length > 1 ? `${typing.slice(0, -1).join(", ")} and ${typing.at(-1)} are typing…`
      : typing.length ? `${typing[0]} is typing…` : "";
    // What arrives while the user sees the conversation is read (mark_read of the newest).
    if (s && state.ready && s.unread > 0 && visible()) state.conv.markRead().catch(noop);
  }

  const isNearBottom = () => ui.messages.scrollHeight - ui.messages.scrollTop - ui.messages.clientHeight < 80;

  /** A line of the page's own (joins, errors, presence): it stays where it was said. */
  function systemLine(text, kind = "info") {
    const stick = isNearBottom();
    const li = ui.messages.appendChild(h("li", { class: `system ${kind}`, "data-testid": "system-line", "data-kind": kind }, text));
    if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
    return li;
  }

  /**
   * The messages: the active branch, then this tab's sends awaiting their ack (or refused),
   * then the answers running. Each view is kept by key (an answer's by its stream, so the
   * answer that streamed is the message it became) and updated in place: an editor, a focused
   * button or a thumbnail survives the next chunk.
   */
  function drawMessages(s) {
    if (!s) return;
    const stick = isNearBottom();
    const wanted = [];
    const use = (key, make, data) => {
      let view = state.views.get(key);
      if (!view) state.views.set(key, (view = make()));
      view.update(data, s);
      wanted.push(view);
    };
    for (const m of s.messages) {
      if (m.role === "assistant") use(m.streamId ? `s:${m.streamId}` : `m:${m.id}`, answerView, m);
      else use(`m:${m.id}`, userView, { ...m, status: "sent" });
    }
    for (const [id, send] of state.sends) {
      // A send that waits in the queue shows there, not here (drawQueue).
      if (send.error || (!send.queued && s.sending.some((p) => p.clientMessageId === id))) {
        use(`p:${id}`, userView, { content: send.text, userId: state.userId, createdAt: send.at,
          attachments: send.files.map(wireFile), status: send.error ? "failed" : "pending", error: send.error });
      }
    }
    for (const a of s.answers) use(`s:${a.streamId}`, answerView, a);
    const keep = new Set(wanted);
    for (const [key, view] of state.views) if (!keep.has(view)) state.views.delete(key);
    place(wanted.map((v) => v.li));
    if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  /** Puts the messages in this order; the page's own lines stay, so a message goes after what was said before it. */
  function place(nodes) {
    const wanted = new Set(nodes);
    for (const li of [...ui.messages.children]) if (li.classList.contains("msg") && !wanted.has(li)) li.remove();
    const present = nodes.filter((n) => n.parentNode === ui.messages);
    const order = [...ui.messages.children].filter((n) => wanted.has(n));
    if (present.some((n, i) => order[i] !== n)) for (const n of present) n.remove(); // a branch moved: all in order again
    let next = null;
    for (let i = nodes.length - 1; i >= 0; i -= 1) {
      if (nodes[i].parentNode !== ui.messages) ui.messages.insertBefore(nodes[i], next);
      next = nodes[i];
    }
  }

  // --------------------------------------------------------------- messages

  /** A user message: its author (another member's name as it is), text, files, and its branch controls. */
  function userView() {
    const li = h("li", { class: "msg msg-user", "data-testid": "user-message" });
    const view = {
      li,
      update(m) {
        const sig = JSON.stringify([m.id, m.status, m.content, m.siblings, (m.attachments || []).map((a) => a.file_id), m.error && m.error.message]);
        if (sig === view.sig) return;
        view.sig = sig;
        const mine = Boolean(m.userId) && m.userId === state.userId;
        li.className = `msg msg-user${mine ? " mine" : ""}`;
        setData(li, { messageId: m.id, userId: m.userId, status: m.status, siblings: m.siblings && m.siblings.length > 1 && m.siblings.join(",") });
        const editor = li.querySelector(".msg-editor");
        const text = h("p", { class: "msg-text", "data-testid": "message-text" }, m.content);
        // Only its author may edit a question (docs/protocol.md section 7).
        const actions = messageActions(li, m, { edit: mine && m.status === "sent" });
        text.hidden = actions.hidden = Boolean(editor);
        li.replaceChildren(...[
          h("div", { class: "msg-meta" },
            h("span", { class: "msg-author", "data-testid": "message-author" }, mine ? `${m.userId} (you)` : m.userId || "user"),
            m.createdAt ? h("time", { class: "msg-time" }, formatTime(m.createdAt)) : null),
          text, attachmentList(m.attachments),
          m.error ? h("p", { class: "msg-error", role: "alert" }, `Not sent: ${describeError(m.error)}`) : null,
          actions, editor].filter(Boolean)); // (replaceChildren would write a null as "null")
      },
    };
    return view;
  }

  function statusLabel(a) {
    if (a.status === "streaming") {
      if (a.cancelling) return "cancelling…";
      if (a.retry) return `retrying${a.retry.attempt ? ` (${a.retry.attempt})` : ""}…`; // a failed step is asked again (stream_reset)
      return a.lossy ? "streaming (joined mid-answer)…" : "streaming…";
    }
    const e = a.error || {};
    if (a.status === "error") return `error: ${e.message || e.code || "unknown"}${e.retryable ? " (retryable)" : ""}`;
    // The asker's token budget ran out mid-answer (docs/protocol.md section 7).
    if (a.finishReason === "budget") return "stopped: token budget used up";
    return a.status === "complete" ? "" : a.status;
  }

  /** The reasoning of an answer's parts: readable reasoning as it is, a redacted part as a note (never its data). */
  function reasoningText(parts) {
    const REDACTED = "(reasoning redacted by the provider)";
    const pieces = [];
    for (const p of parts) {
      if (p.type === "reasoning" && p.text) pieces.push(p.text);
      else if (p.type === "redacted_reasoning" && pieces.at(-1) !== REDACTED) pieces.push(REDACTED);
    }
    return pieces.join("\n");
  }

  /** Named assistants (section 10) have an avatar: a first letter in a circle whose colour follows from the name. */
  function fillAvatar(element, name) {
    let hash = 0;
    for (const c of name) hash = (hash * 31 + c.codePointAt(0)) >>> 0;
    element.className = `avatar avatar-${hash % 8}`; // .avatar-0 … .avatar-7 in style.css
    element.textContent = (Array.from(name)[0] || "?").toUpperCase();
  }

  /**
   * An answer, running (a RunningAnswer) or stored (a ChatMessage): its assistant, status,
   * reasoning (collapsed), tool cards, markdown text, and Regenerate with the switcher.
   */
  function answerView() {
    const thoughts = h("p", { class: "msg-reasoning-text", "data-testid": "reasoning-text" });
    const details = h("details", { class: "msg-reasoning", "data-testid": "reasoning", hidden: true }, h("summary", {}, "Reasoning"), thoughts);
    const tools = h("ol", { class: "msg-tools", "data-testid": "tool-calls" });
    const text = h("div", { class: "msg-text markdown", "data-testid": "message-text" });
    const label = h("span", { class: "msg-status", "data-testid": "message-status" });
    const author = h("span", { class: "msg-author", "data-testid": "assistant-name" });
    const avatar = h("span", { class: "avatar", "aria-hidden": "true" });
    const time = h("time", { class: "msg-time" });
    const li = h("li", { class: "msg msg-assistant", "data-testid": "assistant-message" },
      h("div", { class: "msg-meta" }, avatar, author, time, label), details, tools, text);
    const view = {
      li, text, tools, source: "", drawPending: null, cards: new Map(), actionsSig: null,
      update(a, s) {
        if (view.data === a && view.calls === s.pendingToolCalls && view.approvals === s.pendingApprovals) return;
        Object.assign(view, { data: a, calls: s.pendingToolCalls, approvals: s.pendingApprovals });
        const running = a.status === "streaming";
        setData(li, { messageId: running ? a.messageId : a.id, streamId: a.streamId, status: a.status,
          finishReason: a.finishReason === "budget" && "budget", assistant: a.assistant });
        li.setAttribute("aria-busy", String(running));
        const name = a.assistant || "assistant"; // an app without named assistants: "assistant"
        if (author.textContent !== name) fillAvatar(avatar, (author.textContent = name));
        time.textContent = a.createdAt ? formatTime(a.createdAt) : "";
        label.textContent = statusLabel(a);
        const reasoning = reasoningText(a.parts);
        if (thoughts.textContent !== reasoning) thoughts.textContent = reasoning;
        details.hidden = !reasoning;
        drawToolCards(view, a, s);
        const source = running ? a.text : a.content;
        if (source !== view.source || (!running && view.drawPending)) {
          view.source = source;
          drawAnswerText(view, !running);
        }
        const sig = a.siblings ? a.siblings.join(",") : "";
        if (sig !== view.actionsSig) {
          view.actionsSig = sig;
          setData(li, { siblings: sig });
          li.querySelector(":scope > .msg-actions")?.remove();
          li.append(messageActions(li, a, { regenerate: true }));
        }
      },
    };
    return view;
  }

  // ------------------------------------------------------------- tool cards

  /**
   * The tool calls of an answer, a card each: arguments, approval (Approve / Deny for any
   * member), result. A running answer also shows what its join said it waits on when no event
   * showed it (a catch-up that failed).
   */
  function drawToolCards(view, a, s) {
    const parts = a.parts.filter((p) => p.type === "tool");
    if (a.status === "streaming") {
      const shown = new Set(parts.map((p) => p.toolCallId));
      for (const w of [...s.pendingApprovals, ...s.pendingToolCalls]) {
        if (w.streamId !== a.streamId || shown.has(w.toolCallId)) continue;
        parts.push({ type: "tool", toolCallId: w.toolCallId, name: w.name, input: w.arguments, client: !w.approvalId,
          state: w.approvalId ? "approval-requested" : "input-available", approval: w.approvalId && { approvalId: w.approvalId, expiresAt: w.expiresAt } });
      }
    }
    for (const p of parts) {
      let card = view.cards.get(p.toolCallId);
      if (!card) view.cards.set(p.toolCallId, (card = toolCard(view.tools)));
      const waiting = p.client ? s.pendingToolCalls.find((w) => w.toolCallId === p.toolCallId) : undefined;
      if (card.part !== p || card.waiting !== waiting) fillToolCard(card, p, waiting);
    }
  }

  function toolCard(list) {
    const card = {
      title: h("span", { class: "tool-name", "data-testid": "tool-name" }),
      // A client tool (docs/protocol.md section 11): the browser of whoever asked runs it.
      where: h("span", { class: "tool-where", "data-testid": "tool-client", hidden: true }, "runs in your browser"),
      status: h("span", { class: "tool-status", "data-testid": "tool-status" }),
      args: h("code", { class: "tool-args", "data-testid": "tool-args" }),
      approval: h("div", { class: "tool-approval", "data-testid": "approval", hidden: true }),
      result: h("pre", { class: "tool-result", "data-testid": "tool-result", hidden: true }),
    };
    card.li = h("li", { class: "tool-call", "data-testid": "tool-call" },
      h("div", { class: "tool-head" }, h("span", { class: "tool-icon", "aria-hidden": "true" }, "🔧 "), card.title, " ", card.where, " ", card.status),
      card.args, card.approval, card.result);
    list.append(card.li);
    return card;
  }

  /** Who decided an approval, in words ("approved by jon"), or "" while undecided. */
  function decisionWords(approval) {
    if (!approval || approval.approved === undefined) return "";
    const who = approval.decidedBy || "nobody";
    if (approval.approved) return `approved by ${who}`;
    if (approval.reason === "expired" && !approval.decidedBy) return "expired: not approved in time";
    return `denied by ${who}${approval.reason ? `: ${approval.reason}` : ""}`;
  }

  function fillToolCard(card, p, waiting) {
    Object.assign(card, { part: p, waiting });
    const { li } = card;
    li.dataset.toolCallId = p.toolCallId;
    li.classList.toggle("client-tool", p.client);
    card.title.textContent = p.name;
    card.where.hidden = !p.client;
    card.args.textContent = p.input !== undefined ? JSON.stringify(p.input) : p.inputText;
    const decided = decisionWords(p.approval);
    setData(li, { approvalId: p.approval && p.approval.approvalId, decision: decided && (p.approval.approved ? "approved" : "denied") });
    const done = `done${typeof p.durationMs === "number" ? ` in ${p.durationMs} ms` : ""}`;
    card.status.textContent = {
      "input-streaming": "calling…",
      "input-available": !p.client ? "calling…" : waiting && waiting.running ? "running in your browser…" : "waiting for the browser of whoever asked…",
      "approval-requested": "waiting for approval",
      "approval-responded": decided,
      "output-available": decided ? `${decided}, ${done}` : done,
      "output-error": decided || "failed",
      "output-denied": decided || "denied",
    }[p.state];
    const ok = p.state === "output-available";
    const failed = (p.state === "output-error" || p.state === "output-denied") && p.error !== undefined;
    setData(li, { outcome: ok ? "ok" : failed && "error" });
    card.result.hidden = !ok && !failed;
    card.result.textContent = ok ? (typeof p.output === "string" ? p.output : JSON.stringify(p.output, null, 2)) : failed ? `error: ${p.error}` : "";
    const asks = p.state === "approval-requested" ? p.approval.approvalId : "";
    if (card.approval.dataset.for !== asks) {
      card.approval.dataset.for = asks;
      card.approval.replaceChildren(...(asks ? approvalButtons(p) : []));
    }
    card.approval.hidden = !asks;
  }

  function approvalButtons(p) {
    const note = h("span", { class: "tool-approval-note", "data-testid": "approval-note" });
    const decide = (approved) => async () => {
      approve.disabled = deny.disabled = true;
      try {
        await state.conv.approve(p.approval.approvalId, approved);
      } catch (err) {
        // Another member (or tab) decided first: its tool_approval updates this card.
        note.textContent = err.code === "conflict" ? "Already decided." : describeError(err);
        approve.disabled = deny.disabled = false;
      }
    };
    const approve = h("button", { type: "button", class: "approve", "data-testid": "approve", onclick: decide(true) }, "Approve");
    const deny = h("button", { type: "button", class: "deny", "data-testid": "deny", onclick: decide(false) }, "Deny");
    const expires = p.approval.expiresAt ? ` (expires ${formatTime(p.approval.expiresAt)})` : "";
    return [h("span", {}, `Run ${p.name}?${expires} `), approve, deny, note];
  }

  // ---------------------------------------------------------------- branches

  /**
   * The controls under a message: `< 2/3 >` between its versions (an edit's or a
   * regeneration's siblings), Edit (the user's own questions) or Regenerate (answers). Their
   * buttons are `branch-control`s, enabled by updateControls when no answer runs.
   */
  function messageActions(li, m, { edit = false, regenerate = false }) {
    const button = (testId, text, onclick, extra = {}) =>
      h("button", { type: "button", class: "secondary branch-control", disabled: true, "data-testid": testId, onclick, ...extra }, text);
    const step = (target, testId, text, label) => button(testId, text, () => branchCommand((c) => c.switchBranch(target), "Could not switch"),
      { class: "secondary branch-control sibling-step", "data-target": target || "", "aria-label": label, title: label });
    const b = m.branch;
    return h("div", { class: "msg-actions" },
      b && h("span", { class: "sibling-switcher", "data-testid": "sibling-switcher" },
        step(b.previousId, "sibling-prev", "<", "Previous version"),
        h("span", { class: "sibling-position", "data-testid": "sibling-position" }, `${b.index + 1}/${b.count}`),
        step(b.nextId, "sibling-next", ">", "Next version")),
      edit && button("edit-button", "Edit", () => startEditing(li, m.id)),
      // An answer that failed may not be stored: the server's default (the branch's last answer) then.
      regenerate && button("regenerate-button", "Regenerate", () => branchCommand((c) => c.regenerate(
        li.dataset.status === "error" ? undefined : li.dataset.messageId), "Could not regenerate")));
  }

  /** An edit, regeneration or switch: the branch controls wait for its ack; the client redraws the branch. */
  async function branchCommand(run, failure, onError) {
    const conv = state.conv;
    state.branchBusy = true;
    scheduleDraw();
    try {
      await run(conv);
      return true;
    } catch (err) {
      if (onError) onError(err);
      else if (conv === state.conv) systemLine(`${failure}: ${describeError(err)}`, "error");
      return false;
    } finally {
      state.branchBusy = false;
      scheduleDraw();
    }
  }

  /** Edit: the question becomes a form; Save asks for a new version of it (its answer follows). */
  function startEditing(li, messageId) {
    if (li.querySelector(".msg-editor")) return;
    const shown = () => li.querySelectorAll(':scope > [data-testid="message-text"], :scope > .msg-actions');
    const close = () => {
      form.remove();
      for (const el of shown()) el.hidden = false;
    };
    const input = h("textarea", { class: "edit-input", "data-testid": "edit-input", rows: 3, maxlength: 32000, "aria-label": "Edit your message",
      onkeydown: (e) => {
        if (e.key === "Escape") close();
        else if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
          e.preventDefault();
          if (!save.disabled) form.requestSubmit();
        }
      } });
    input.value = li.querySelector('[data-testid="message-text"]').textContent;
    const save = h("button", { type: "submit", class: "branch-control", disabled: true, "data-testid": "edit-save" }, "Save");
    const error = h("p", { class: "msg-error", role: "alert", "data-testid": "edit-error", hidden: true });
    const form = h("form", { class: "msg-editor", "data-testid": "edit-form", onsubmit: async (e) => {
      e.preventDefault();
      if (!input.value.trim() || save.disabled) return;
      error.hidden = true;
      const ok = await branchCommand((c) => c.edit(messageId, input.value), "", (err) => {
        error.textContent = `Not saved: ${describeError(err)}`;
        error.hidden = false;
      });
      if (ok) close(); // the new version shows with its answer
    } }, input, h("div", { class: "msg-editor-actions" }, save,
      h("button", { type: "button", class: "secondary", "data-testid": "edit-cancel", onclick: close }, "Cancel")), error);
    for (const el of shown()) el.hidden = true;
    li.append(form);
    updateControls(state.conv.getSnapshot());
    input.focus();
  }

  // ------------------------------------------------ queue, details, members

  /** The sends waiting for the running answer (on_busy "enqueue"), Cancel on this user's own. */
  function drawQueue(s) {
    const queue = s ? s.queue : [];
    if (!changed("queue", queue.map((q) => [q.streamId, q.userId, q.message, q.mine, q.cancelling]))) return;
    state.queueShown = new Map(queue.map((q) => [q.streamId, q]));
    ui.queue.replaceChildren(...queue.map((q) => h("li", { class: `queued${q.mine ? " mine" : ""}`, "data-testid": "queued-message", "data-stream-id": q.streamId },
      h("span", { class: "queued-author", "data-testid": "queued-author" }, q.userId === state.userId ? `${q.userId} (you)` : q.userId || "user"),
      h("span", { class: "queued-text", "data-testid": "queued-text", title: q.message }, q.message),
      // Cancel: cancel_stream with its stream; its end takes it out of the queue.
      q.mine && h("button", { type: "button", class: "secondary", "data-testid": "queued-cancel", title: "Take it out of the queue", disabled: q.cancelling,
        onclick: () => command((c) => c.cancel(q.streamId), "Could not cancel") }, q.cancelling ? "Cancelling…" : "Cancel"))));
    ui.queueBox.hidden = queue.length === 0;
  }

  /** A queued send that could not be answered when its turn came: said (its answer never shows). */
  function onAnswerEvent(conv, e) {
    const queued = e.event === "stream_error" && conv === state.conv && state.queueShown.get(e.data.stream_id);
    if (!queued) return;
    const who = queued.userId === state.userId ? "Your queued message" : `${queued.userId || "A"}'s queued message`;
    systemLine(`${who} was not answered: ${e.data.error || "unknown"} (${e.data.code || "error"})`, "error");
  }

  const PERIOD_WORDS = { minute: "this minute", hour: "this hour", day: "today", week: "this week" };

  /** The user's token budget (client.usage, read again after each answer ends); none: no line. */
  function drawBudget() {
    const b = state.client ? state.client.usage.getSnapshot() : null;
    ui.budget.hidden = !b || b.limit === null;
    if (ui.budget.hidden) return;
    const left = Math.max(0, b.limit - b.used);
    const period = PERIOD_WORDS[b.period] || (b.period ? `this ${b.period}` : "");
    ui.budget.textContent = `Budget: ${left} of ${b.limit} tokens left${period ? ` ${period}` : ""}${b.resetsAt !== null ? `, resets at ${resetWords(b.resetsAt)}` : ""}`;
    ui.budget.dataset.left = String(left);
    ui.budget.dataset.state = left === 0 ? "empty" : left * 10 < b.limit ? "low" : "ok";
    ui.budget.title = b.resetsAt !== null ? `Starts again at ${new Date(b.resetsAt).toLocaleString()}` : "";
  }

  const titleOf = (title) => (typeof title === "string" && title.trim() ? title : "New conversation");
  const POLICY_WORDS = { always: "every message", mention: "on @mention", never: "nobody (people only)" };

  /** The heading, the model picker, "Who answers" with the Ask toggle, and the prompt box, from `info`. */
  function drawDetails(s) {
    const d = s && s.info;
    ui.chatHead.hidden = !state.id;
    ui.conversationHeading.textContent = d ? titleOf(d.title) : state.id || "";
    ui.conversationHeading.title = state.id || "";
    const models = d ? d.models : [];
    ui.modelBox.hidden = models.length === 0;
    const options = models.length && d.model && !models.includes(d.model) ? [...models, d.model] : models; // no longer offered: still shown
    if (changed("models", options)) ui.modelSelect.replaceChildren(...options.map((m, i) => h("option", { value: m }, i === 0 ? `${m} (default)` : m)));
    if (models.length && !ui.modelSelect.disabled) ui.modelSelect.value = d.model || models[0];
    setData(ui.modelSelect, { model: models.length && (models.includes(d.model) ? d.model : models[0]) });
    // The Ask toggle starts as the policy does (on for `always`), again whenever the policy or
    // the conversation changes; a `never` conversation has none (people only).
    const policy = d && d.answerPolicy ? d.answerPolicy : null;
    ui.answerPolicyBox.hidden = policy === null;
    if (policy !== null && !ui.answerPolicySelect.disabled) ui.answerPolicySelect.value = policy;
    ui.answerPolicySelect.dataset.policy = policy || "";
    const shown = state.policyShown;
    if (!shown || shown.id !== state.id || shown.policy !== policy) {
      // Another member changed who answers: said, since what a send does changes with it.
      if (shown && shown.id === state.id && shown.policy && policy && d.updatedBy && d.updatedBy !== state.userId) {
        systemLine(`${d.updatedBy} set who answers: ${POLICY_WORDS[policy] || policy}.`, "settings");
      }
      state.policyShown = { id: state.id, policy };
      ui.askAssistant.checked = policy === "always";
    }
    ui.askAssistantBox.hidden = policy === null || policy === "never";
    const maxPrompt = d && d.maxSystemPromptChars ? d.maxSystemPromptChars : 0;
    ui.systemPromptBox.hidden = maxPrompt <= 0;
    if (maxPrompt) {
      ui.systemPromptInput.maxLength = maxPrompt;
      // Not while the user edits it.
      if (document.activeElement !== ui.systemPromptInput && !ui.systemPromptForm.dataset.dirty) ui.systemPromptInput.value = d.systemPrompt || "";
    }
  }

  /** Who may enter the conversation, with their roles; the owner (or an admin) removes, a member leaves. */
  function drawMembers(s) {
    const roles = new Map((s && s.info ? s.info.members : []).map((m) => [m.userId, m.role]));
    const ids = s ? [...new Set([...s.members, ...roles.keys()])] : [];
    const mine = roles.get(state.userId);
    const mayRemove = mine === "owner" || state.roles.includes("admin");
    ui.leaveConversation.hidden = !state.id || mine !== "member";
    ui.deleteConversation.hidden = !state.id || !mayRemove;
    if (!changed("members", [ids.map((u) => [u, roles.get(u)]), mayRemove])) return;
    const remove = async (userId, e) => {
      if (!await confirmAction(`Remove ${userId} from this conversation? They will no longer be able to open it.`, "Remove")) return;
      e.target.disabled = true;
      await command((c) => c.removeMember(userId).then(() => c.refreshInfo()), `Could not remove ${userId}`, () => systemLine(`Removed ${userId}.`));
      e.target.disabled = false;
    };
    ui.members.replaceChildren(...ids.map((userId) => {
      const role = roles.get(userId);
      return h("li", { class: "member", "data-testid": "member", "data-user-id": userId, "data-role": role },
        h("span", { class: "member-name" }, userId === state.userId ? `${userId} (you)` : userId),
        role && h("span", { class: `role role-${role}`, "data-testid": "member-role" }, role),
        mayRemove && userId !== state.userId && role && role !== "owner" && h("button", { type: "button", class: "secondary small",
          "data-testid": "member-remove", "aria-label": `Remove ${userId}`, title: `Remove ${userId}`, onclick: (e) => remove(userId, e) }, "Remove"));
    }));
    if (!ids.length) ui.members.append(h("li", { class: "muted" }, "—"));
  }

  /** What may be done now: send (joined, files uploaded), cancel (an answer runs), the branch controls (none runs). */
  function updateControls(s) {
    const joined = Boolean(s && s.joined && s.connected);
    const running = s ? s.running : null;
    ui.messageInput.disabled = !joined;
    ui.messageInput.placeholder = !joined ? (state.id ? "Not connected…" : "Join a conversation to chat")
      // Only a message to be answered waits; one for the people in the room goes at once.
      : running ? (state.conv.willAnswer("", answerFor("")) ? "An answer is running: what you send now waits for its turn"
        : "An answer is running: a message for an assistant (@name) waits for its turn")
        : "Write a message (Enter to send, Shift+Enter for a new line)";
    const uploading = state.attachments.some((e) => e.state === "uploading");
    ui.sendButton.disabled = !joined || uploading;
    ui.sendButton.title = uploading ? "Waiting for the files to upload" : running ? "Sent now, answered after the running answer" : "";
    ui.messageInput.required = uploadedFiles().length === 0; // files alone make a message
    ui.attachBox.hidden = state.filesOff;
    ui.fileInput.disabled = !joined || state.filesOff;
    ui.askAssistant.disabled = !joined;
    if (!joined) closeMentions();
    ui.cancelButton.hidden = !running;
    ui.cancelButton.disabled = !joined || !running || running.cancelling;
    ui.cancelButton.textContent = running && running.cancelling ? "Cancelling…" : "Cancel";
    // Edit, Regenerate and < >: not while an answer runs (the server says `busy`), nor while
    // one of them or a send awaits its ack; a message needs its id.
    const busy = !joined || Boolean(running) || s.sending.length > 0 || state.branchBusy;
    for (const button of ui.messages.querySelectorAll(".branch-control")) {
      button.disabled = busy || button.closest(".msg").dataset.messageId === undefined || button.dataset.target === "";
    }
  }

  // ------------------------------------------------------- opening and closing

  /** Joins a conversation and shows it (the one shown before is left: its room, not its membership). */
  async function openConversation(id) {
    if (!CONVERSATION_ID.test(id)) return void systemLine("A conversation id is 1-128 characters of A-Z a-z 0-9 _ . : -", "error");
    if (!state.client) return;
    if (state.id !== id) {
      clearAttachments({ discard: true }); // uploaded to the other conversation
      if (state.conv) state.conv.leave().catch(noop);
    }
    detachConversation();
    const conv = state.client.conversation(id);
    const offs = [conv.subscribe(scheduleDraw), conv.observeAnswers((e) => onAnswerEvent(conv, e))];
    Object.assign(state, { id, conv, convOff: () => offs.forEach((off) => off()) });
    ui.currentConversation.textContent = ui.conversationId.value = id;
    ui.currentConversationBox.hidden = false;
    // The URL names the conversation shown from now on: a reload before the join is done
    // opens this one, not the one shown before.
    setHash(id);
    closeDrawer();
    const line = systemLine(`Joining ${id}…`);
    drawConversation();
    scheduleList();
    try {
      const ack = await conv.join(); // and its history and details
      if (state.conv !== conv) return;
      line.textContent = ack.created ? `Created ${id}: invite others to join it.` : `Joined ${id}.`;
      if (!conv.getSnapshot().messages.length) line.textContent += " No messages yet: say something!";
      state.ready = true;
      if (visible()) conv.markRead().catch(noop); // opened: read up to its newest message
    } catch (err) {
      if (state.conv !== conv) return;
      // The connection dropped (or did not answer) while joining, as it may right after a
      // reload: join again once it is back, rather than leaving the conversation closed.
      if (err && (err.code === "disconnected" || err.code === "timeout")) {
        state.restoring = id;
        line.textContent = `Joining ${id} when the connection is back…`;
        return;
      }
      detachConversation();
      state.id = null;
      ui.currentConversationBox.hidden = true;
      setHash("");
      systemLine(`Could not join ${id}: ${describeError(err)}`, "error");
    }
    scheduleDraw();
    scheduleList();
  }

  function setHash(id) {
    const url = new URL(window.location.href);
    url.hash = id;
    history.replaceState(null, "", url);
  }

  /** Stops drawing the conversation shown: its messages, this tab's sends and its thumbnails go. */
  function detachConversation() {
    state.convOff();
    Object.assign(state, { convOff: noop, conv: null, ready: false, drawn: {} });
    state.views.clear();
    state.sends.clear();
    for (const url of state.thumbs.values()) url.then((u) => URL.revokeObjectURL(u), noop);
    state.thumbs.clear();
    ui.messages.replaceChildren();
  }

  /** The conversation shown is gone for this user (deleted, left, removed): `why` takes its place. */
  function closeConversation(why) {
    if (!state.conv) return;
    clearAttachments();
    detachConversation();
    state.id = null;
    ui.currentConversationBox.hidden = true;
    ui.currentConversation.textContent = ui.conversationId.value = "";
    setHash("");
    systemLine(why, "closed");
    drawConversation();
    scheduleList();
  }

  /** A command on the conversation shown; `done` with its result, or a line saying why it failed. */
  async function command(run, failure, done = noop) {
    const conv = state.conv;
    if (!conv) return;
    try {
      const result = await run(conv);
      if (conv === state.conv) done(result);
    } catch (err) {
      if (conv === state.conv) systemLine(`${failure}: ${describeError(err)}`, "error");
    }
  }

  /** Delete (the owner's, or an admin's), once confirmed; every member is told (conversation_deleted). */
  async function deleteConversation(id) {
    const item = state.client.conversations.get(id);
    const title = titleOf(item ? item.title : id === state.id ? state.conv.getSnapshot().title : null);
    if (!await confirmAction(`Delete “${title}” for everyone? Its messages and files are removed. This cannot be undone.`, "Delete")) return;
    try {
      await state.client.deleteConversation(id);
      if (id === state.id) closeConversation("You deleted this conversation.");
    } catch (err) {
      setListNote(`Could not delete “${title}”: ${describeError(err)}`, "error");
    }
  }

  // ---------------------------------------------------------------- sending

  /** The names of the assistants (get_conversation.assistants), the default one first. */
  const assistantNames = () => (state.conv ? state.conv.getSnapshot().assistants.map((a) => a.name) : []);

  /**
   * send_message.answer for `text`, or undefined to let the policy decide. The Ask toggle starts
   * as the policy does, so `answer` is sent only where the user changed it; an @name calls its
   * assistant whatever it says, and a `never` conversation is never asked (the server refuses).
   */
  function answerFor(text) {
    const info = state.conv && state.conv.getSnapshot().info;
    const policy = info && info.answerPolicy;
    if (!policy || policy === "never" || state.conv.mentions(text).length) return undefined;
    if (policy === "always") return ui.askAssistant.checked ? undefined : false;
    return ui.askAssistant.checked ? true : undefined; // "mention": asked without naming anyone
  }

  async function sendMessage() {
    const conv = state.conv;
    const text = ui.messageInput.value;
    const files = uploadedFiles();
    if (!conv || state.attachments.some((e) => e.state === "uploading") || (!text.trim() && !files.length)) return;
    const s = conv.getSnapshot();
    const before = new Set(s.messages.map((m) => m.id));
    // An image's thumbnail in the message is the local file.
    for (const f of files) if (f.file.type.startsWith("image/")) state.thumbs.set(f.record.fileId, Promise.resolve(URL.createObjectURL(f.file)));
    clearAttachments();
    const answer = answerFor(text);
    // While an answer runs (or others wait, or a send of this tab awaits its ack), a send that
    // is answered waits its turn in the queue (shown there). One that asks no answer is never
    // queued: it is stored at once, above the answer that runs. Otherwise the app decides.
    const queued = conv.willAnswer(text, answer) && Boolean(s.running || s.queue.length || s.sending.length);
    const id = randomId("c-");
    const send = { text, files, queued, at: Date.now(), error: null };
    state.sends.set(id, send);
    ui.messageInput.value = "";
    closeMentions();
    conv.typing(false);
    try {
      await conv.send(text, { clientMessageId: id, attachments: files.map((f) => f.record.fileId), onBusy: queued ? "enqueue" : undefined,
        answer, registeredTools: offersClientTools(text) });
      state.sends.delete(id);
    } catch (err) {
      // Stored all the same when the room was told of it (an ack lost on the way).
      const stored = conv.getSnapshot().messages.some((m) => !before.has(m.id) && m.userId === state.userId && m.content === text);
      if (stored) state.sends.delete(id);
      else if (conv === state.conv) {
        send.error = err;
        if (!ui.messageInput.value) ui.messageInput.value = text; // the text back,
        if (!state.attachments.length) restoreAttachments(files); // and the files, still on the server
      }
    }
    scheduleDraw();
  }

  // A client tool (docs/protocol.md section 11), offered to the model with this page's sends:
  // when the model calls it in an answer this page asked for, the client runs `execute` here
  // and submits what it returns (what it throws, as the call's error), and the answer goes on.
  // The echo provider calls it when a message names it: `what is get_time [Asia/Tokyo]`.
  const GET_TIME = {
    description: "The current time in the user's browser, in its time zone or the one given",
    parameters: {
      type: "object",
      properties: { time_zone: { type: "string", description: "An IANA time zone (Europe/Paris); empty: the browser's own" } },
    },
    execute({ time_zone: asked } = {}) {
      const zone = asked || Intl.DateTimeFormat().resolvedOptions().timeZone;
      const now = new Date();
      const local = now.toLocaleString("en-GB", { timeZone: zone, dateStyle: "full", timeStyle: "long" }); // a RangeError for an unknown zone
      return { iso: now.toISOString(), time_zone: zone, local };
    },
  };

  /**
   * Whether a send offers the page's client tools: not one that calls in a named assistant
   * other than the default one. It is for that assistant and the tools the app gave it (the
   * echo provider's `@calc 12*7` uses calc's tool only when calc has one tool).
   */
  const offersClientTools = (text) => state.conv.mentions(text).every((name) => name === assistantNames()[0]);

  // ------------------------------------------------------------- @completion

  /** Shows (or hides) the assistants whose name starts with the `@word` typed at the caret. */
  function updateMentions() {
    const input = ui.messageInput;
    const typed = !input.disabled && document.activeElement === input && input.selectionStart === input.selectionEnd
      && /(?:^|\s)@([A-Za-z0-9_-]*)$/.exec(input.value.slice(0, input.selectionStart));
    const prefix = typed ? typed[1].toLowerCase() : "";
    const names = typed ? assistantNames().filter((n) => n.toLowerCase().startsWith(prefix)) : [];
    // Nothing to complete: nothing typed matches, or the name is typed whole.
    if (!names.length || (names.length === 1 && names[0].toLowerCase() === prefix)) return closeMentions();
    const before = state.mention && state.mention.names[state.mention.active];
    state.mention = { start: input.selectionStart - prefix.length - 1, end: input.selectionStart, names, active: Math.max(0, names.indexOf(before)) };
    drawMentions();
  }

  function drawMentions() {
    const m = state.mention;
    ui.mentionList.replaceChildren(...m.names.map((name, i) => {
      const badge = h("span", { "aria-hidden": "true" });
      fillAvatar(badge, name);
      return h("li", { id: `mention-option-${i}`, role: "option", class: "mention-option", "data-testid": "mention-option",
        "data-name": name, "aria-selected": String(i === m.active), onclick: () => pickMention(i),
        onmousedown: (e) => e.preventDefault() }, badge, `@${name}`); // the input keeps the focus
    }));
    ui.mentionList.hidden = false;
    ui.messageInput.setAttribute("aria-expanded", "true");
    ui.messageInput.setAttribute("aria-activedescendant", `mention-option-${m.active}`);
  }

  function closeMentions() {
    if (!state.mention && ui.mentionList.hidden) return;
    state.mention = null;
    ui.mentionList.hidden = true;
    ui.mentionList.replaceChildren();
    ui.messageInput.setAttribute("aria-expanded", "false");
    ui.messageInput.removeAttribute("aria-activedescendant");
  }

  /** The chosen name replaces the `@word` typed, followed by a space. */
  function pickMention(index) {
    const m = state.mention;
    if (!m) return;
    const input = ui.messageInput;
    const rest = input.value.slice(m.end);
    const insert = `@${m.names[index ?? m.active]}${/^\s/.test(rest) ? "" : " "}`;
    input.value = input.value.slice(0, m.start) + insert + rest;
    input.setSelectionRange(m.start + insert.length, m.start + insert.length);
    closeMentions();
    input.focus();
  }

  /** A key in the composer while the list is open: arrows move, Tab or Enter picks, Escape closes. */
  function mentionKey(e) {
    const m = state.mention;
    if (!m || e.isComposing || e.altKey || e.ctrlKey || e.metaKey) return false;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      m.active = (m.active + (e.key === "ArrowDown" ? 1 : m.names.length - 1)) % m.names.length;
      drawMentions();
    } else if ((e.key === "Tab" || e.key === "Enter") && !e.shiftKey) pickMention();
    else if (e.key === "Escape") closeMentions();
    else return false;
    e.preventDefault();
    return true;
  }

  // ------------------------------------------------------ conversation list

  // client.conversations keeps the list (most recently active first, titles, previews, unread
  // counts) current from the server's events; the rows are kept by id, so that a title being
  // renamed survives a refresh.
  const scheduleList = batched(() => drawList());

  function setListNote(text, kind = "info") {
    state.listNote = text ? { text, kind } : null;
    scheduleList();
  }

  function drawList() {
    if (!state.client) return;
    const l = state.client.conversations.getSnapshot();
    ui.conversationList.setAttribute("aria-busy", String(l.loading));
    ui.conversationsMore.hidden = !l.hasMore;
    ui.conversationsMore.disabled = l.loading;
    const listed = new Set(l.items.map((item) => item.id));
    for (const [id, row] of state.rows) {
      if (listed.has(id)) continue;
      row.li.remove();
      state.rows.delete(id);
      if (state.renaming === id) state.renaming = null;
    }
    l.items.forEach((item, i) => {
      let row = state.rows.get(item.id);
      if (!row) state.rows.set(item.id, (row = listRow(item.id)));
      row.fill(item);
      // Only what moved is moved: a row being renamed keeps its focus.
      if (ui.conversationList.children[i] !== row.li) ui.conversationList.insertBefore(row.li, ui.conversationList.children[i] || null);
    });
    const note = l.error ? { text: `Could not load the list: ${describeError(l.error)}`, kind: "error" } : state.listNote
      || (l.loaded && !l.items.length && { kind: "info", text: l.query.trim() ? "No conversation matches the search."
        : l.archived ? "Nothing archived." : "No conversations yet: start one with New conversation." });
    ui.conversationListNote.textContent = note ? note.text : "";
    ui.conversationListNote.dataset.kind = note ? note.kind : "info";
    ui.conversationListNote.hidden = !note;
  }

  /** "14:05" today, "12 Mar" otherwise. */
  function shortTime(ms) {
    const date = new Date(ms);
    return date.toDateString() === new Date().toDateString()
      ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : date.toLocaleDateString([], { day: "numeric", month: "short" });
  }

  /** One conversation of the list: opens on a click; Rename, Archive (or Unarchive), Delete. */
  function listRow(id) {
    const title = h("span", { class: "conversation-title", "data-testid": "conversation-title" });
    const preview = h("span", { class: "conversation-preview", "data-testid": "conversation-preview" });
    const time = h("time", { class: "conversation-time" });
    const badge = h("span", { class: "unread-badge", "data-testid": "unread-badge", "aria-hidden": "true", hidden: true });
    const row = { item: null };
    const archiveClicked = async () => {
      const archived = !row.item.archived;
      try {
        await state.client.archiveConversation(id, archived); // it leaves the list shown
        setListNote(archived ? "Archived: see it under Archived." : "Back in your conversations.");
      } catch (err) {
        setListNote(`Could not ${archived ? "archive" : "unarchive"} it: ${describeError(err)}`, "error");
      }
    };
    const link = (testId, text, onclick, cls = "link-button") => h("button", { type: "button", class: cls, "data-testid": testId, onclick }, text);
    const archive = link("conversation-archive", "Archive", archiveClicked);
    const remove = link("conversation-delete", "Delete", () => deleteConversation(id), "link-button danger-link");
    row.open = h("button", { type: "button", class: "conversation-open", "data-testid": "conversation-open", onclick: () => {
      if (state.renaming === id) return;
      if (id === state.id) closeDrawer();
      else openConversation(id);
    } }, title, preview, time, badge);
    row.li = h("li", { class: "conversation-item", "data-testid": "conversation-item", "data-conversation-id": id },
      row.open, h("div", { class: "conversation-actions" }, link("conversation-rename", "Rename", () => startRename(row)), archive, remove));
    row.fill = (item) => {
      row.item = item;
      if (state.renaming !== id) title.textContent = titleOf(item.title);
      title.classList.toggle("untitled", !(item.title && item.title.trim()));
      row.li.dataset.archived = String(item.archived);
      const last = item.lastMessage;
      preview.textContent = last ? last.preview : "No messages yet";
      time.textContent = item.updatedAt ? shortTime(item.updatedAt) : "";
      if (item.updatedAt) time.dateTime = new Date(item.updatedAt).toISOString();
      archive.textContent = item.archived ? "Unarchive" : "Archive";
      archive.dataset.testid = item.archived ? "conversation-unarchive" : "conversation-archive";
      remove.hidden = !(item.createdBy === state.userId || state.roles.includes("admin"));
      // The conversation the user sees is read (marked as its messages arrive).
      const unread = id === state.id && state.ready && visible() ? 0 : item.unread;
      badge.hidden = unread === 0;
      badge.textContent = unread > 99 ? "99+" : String(unread);
      row.li.dataset.unread = String(unread);
      row.open.setAttribute("aria-label", `${titleOf(item.title)}${unread ? ` (${unread} unread)` : ""}${last ? `: ${last.preview}` : ""}`);
      row.li.classList.toggle("active", id === state.id);
      if (id === state.id) row.open.setAttribute("aria-current", "true");
      else row.open.removeAttribute("aria-current");
    };
    return row;
  }

  /** Rename: the title becomes a field; Enter saves (the list and the heading follow), Escape cancels. */
  function startRename(row) {
    const id = row.item.id;
    if (state.renaming && state.renaming !== id) state.rows.get(state.renaming)?.li.querySelector(".rename-input")?.blur();
    if (row.li.querySelector(".rename-input")) return;
    state.renaming = id;
    const stop = () => {
      input.remove();
      row.li.classList.remove("renaming");
      if (state.renaming === id) state.renaming = null;
      row.fill(row.item);
    };
    const input = h("input", { class: "rename-input", "data-testid": "conversation-rename-input", maxlength: 200, "aria-label": "New title", autocomplete: "off",
      oninput: () => input.setCustomValidity(""),
      onblur: () => { if (!input.disabled) setTimeout(stop, 0); },
      onkeydown: async (e) => {
        if (e.key === "Escape") {
          e.preventDefault();
          stop();
          row.open.focus();
        } else if (e.key === "Enter" && !e.isComposing) {
          e.preventDefault();
          const title = input.value.replace(/\s+/g, " ").trim();
          if (!title || title === row.item.title) return stop();
          input.disabled = true;
          try {
            await state.client.updateConversation(id, { title });
            stop();
            row.open.focus();
          } catch (err) {
            input.disabled = false;
            input.setCustomValidity(describeError(err));
            input.reportValidity();
            setListNote(`Not renamed: ${describeError(err)}`, "error");
          }
        }
      } });
    input.value = row.item.title || "";
    row.li.classList.add("renaming");
    row.open.before(input);
    input.focus();
    input.select();
  }

  /** The list from its start, as the search and the Archived box say (a failure shows as its error). */
  function loadList(options = {}) {
    state.listNote = null;
    if (state.client) state.client.conversations.load(options).catch(noop);
  }

  // ------------------------------------------------------------------ files

  // Files travel over HTTP, never over the socket: each chosen file is uploaded at once to the
  // conversation shown (client.uploadFile) and waits in the strip above the input; the next
  // message names the uploaded ones (send's `attachments`). Messages show their files: images
  // as thumbnails, read with the token (client.downloadFile) into object URLs, revoked when
  // the conversation is left; other files as chips that download them the same way.

  /** 1536 -> "1.5 KB". */
  function formatSize(bytes) {
    if (typeof bytes !== "number" || !(bytes >= 0)) return "";
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < 3) [value, unit] = [value / 1024, unit + 1];
    return unit === 0 ? `${bytes} B` : `${value < 10 ? value.toFixed(1) : Math.round(value)} ${["", "KB", "MB", "GB"][unit]}`;
  }

  /** What a file's badge says: "PDF", its extension ("MD", "CSV"), else "TXT" or "FILE". */
  function fileKind(name, type) {
    if (type === "application/pdf") return "PDF";
    const ext = /\.([A-Za-z0-9]{1,4})$/.exec(name || "");
    return ext ? ext[1].toUpperCase() : typeof type === "string" && type.startsWith("text/") ? "TXT" : "FILE";
  }

  /** An uploaded file as a message names it (history's `attachments`). */
  const wireFile = ({ record: r }) => ({ file_id: r.fileId, name: r.name, content_type: r.contentType, size: r.size });
  const uploadedFiles = () => state.attachments.filter((e) => e.state === "uploaded" && e.conversationId === state.id);

  /** A file uploaded and not sent is deleted on the server: it stops counting against the quota. */
  function discardUpload(entry) {
    if (entry.record && state.client) state.client.deleteFile(entry.record.fileId).catch(noop);
  }

  /** A file in the strip: a thumbnail of the local file (images) or its kind, its name and size, progress, Remove. */
  function stripItem(entry) {
    const { file } = entry;
    const name = file.name || "file";
    entry.abort = new AbortController();
    entry.preview = file.type.startsWith("image/") ? URL.createObjectURL(file) : null;
    entry.progress = h("progress", { class: "attachment-progress", max: 100, "aria-label": `Uploading ${name}` });
    entry.status = h("span", { class: "attachment-status", "data-testid": "pending-attachment-status" }, "uploading…");
    entry.error = h("p", { class: "attachment-error", role: "alert", "data-testid": "pending-attachment-error", hidden: true });
    entry.li = h("li", { class: "attachment-pending", "data-testid": "pending-attachment", "data-state": entry.state, "data-name": name },
      entry.preview ? h("img", { class: "attachment-preview", src: entry.preview, alt: name, "data-testid": "pending-attachment-preview" })
        : h("span", { class: "attachment-kind", "aria-hidden": "true" }, fileKind(name, file.type)),
      h("span", { class: "attachment-label" }, h("span", { class: "attachment-name", title: name }, name),
        h("span", { class: "attachment-size" }, formatSize(file.size))),
      entry.progress, entry.status,
      h("button", { type: "button", class: "secondary attachment-remove", "data-testid": "pending-attachment-remove", "aria-label": `Remove ${name}`,
        title: `Remove ${name}`, onclick: () => {
          dropAttachments([entry], true);
          // Its button is gone: the next file's Remove, or the message, has the focus.
          (ui.attachmentStrip.querySelector(".attachment-remove") || ui.messageInput).focus();
        } }, "×"),
      entry.error);
    state.attachments.push(entry);
    ui.attachmentStrip.append(entry.li);
    ui.attachmentStrip.hidden = false;
    scheduleDraw();
  }

  function setEntryState(entry, name, status) {
    entry.state = entry.li.dataset.state = name;
    entry.progress.hidden = name !== "uploading";
    entry.status.textContent = status;
    if (entry.record) entry.li.dataset.fileId = entry.record.fileId;
  }

  /** Uploads a file of the strip to the conversation it was chosen in. */
  async function upload(entry) {
    try {
      entry.record = await state.client.uploadFile(entry.conversationId, entry.file, {
        signal: entry.abort.signal,
        onProgress: (sent, total) => {
          entry.progress.value = Math.min(100, Math.round((sent / total) * 100));
          entry.status.textContent = `uploading ${entry.progress.value} %`;
        },
      });
      if (!state.attachments.includes(entry)) return discardUpload(entry); // removed meanwhile
      setEntryState(entry, "uploaded", "ready");
    } catch (err) {
      if (!state.attachments.includes(entry)) return; // removed
      // Shown next to the file, which is not sent; Remove takes it out of the strip.
      setEntryState(entry, "failed", "not uploaded");
      entry.li.dataset.code = err.code;
      entry.error.textContent = describeError(err);
      entry.error.hidden = false;
      // A server without files (no such route, or it says so): the attach button goes away.
      if (err.code === "not_found" && /no files|^HTTP 404$/i.test(err.message)) state.filesOff = true;
    } finally {
      scheduleDraw();
    }
  }

  /** Takes files out of the strip (an upload under way stops; with `discard`, an uploaded one is deleted). */
  function dropAttachments(entries, discard) {
    for (const entry of entries) {
      if (discard && entry.state === "uploaded") discardUpload(entry);
      entry.abort.abort();
      if (entry.preview) URL.revokeObjectURL(entry.preview);
      entry.li.remove();
    }
    state.attachments = state.attachments.filter((e) => !entries.includes(e));
    ui.attachmentStrip.hidden = state.attachments.length === 0;
    scheduleDraw();
  }

  const clearAttachments = ({ discard = false } = {}) => dropAttachments([...state.attachments], discard);

  /** The uploaded files of a message that was not sent, back in the (empty) strip. */
  function restoreAttachments(entries) {
    for (const entry of entries) {
      stripItem(entry);
      setEntryState(entry, "uploaded", "ready");
    }
  }

  function attachmentList(attachments) {
    const files = (attachments || []).filter((a) => a && typeof a.file_id === "string");
    return files.length ? h("ul", { class: "msg-attachments", "data-testid": "message-attachments", "aria-label": "Attached files" }, ...files.map(attachmentNode)) : null;
  }

  /** An image as a thumbnail that opens in full, another file as a chip that downloads it. */
  function attachmentNode(a) {
    const name = a.name || "file";
    const size = formatSize(a.size);
    const label = size ? `${name} (${size})` : name;
    const attrs = { "data-testid": "attachment", "data-file-id": a.file_id, "data-name": name, "data-content-type": a.content_type };
    if (typeof a.content_type === "string" && a.content_type.startsWith("image/")) {
      const img = h("img", { class: "attachment-thumb", alt: name, title: label, "data-testid": "attachment-image", "data-file-id": a.file_id,
        onload: () => { li.dataset.state = "loaded"; }, onerror: () => { li.dataset.state = "error"; } });
      const link = h("a", { class: "attachment-open", target: "_blank", rel: "noopener" }, img);
      const li = h("li", { ...attrs, class: "attachment attachment-image", "data-state": "loading" }, link);
      // Read once for every message that shows it (this tab's own upload: the local file).
      if (!state.thumbs.has(a.file_id)) state.thumbs.set(a.file_id, state.client.downloadFile(a.file_id).then((blob) => URL.createObjectURL(blob)));
      state.thumbs.get(a.file_id).then((url) => { img.src = link.href = url; }, (err) => {
        // Gone (a restarted server keeps no files), or no longer this user's to see.
        Object.assign(li.dataset, { state: "error", code: err.code });
        li.replaceChildren(h("span", { class: "attachment-missing", "data-testid": "attachment-note" }, `${name}: ${describeError(err)}`));
      });
      return li;
    }
    const note = h("span", { class: "attachment-note", "data-testid": "attachment-note" });
    const download = async (e) => {
      const button = e.currentTarget;
      button.disabled = true;
      note.textContent = "";
      try {
        const url = URL.createObjectURL(await state.client.downloadFile(a.file_id));
        const save = h("a", { href: url, download: name, hidden: true });
        document.body.append(save);
        save.click();
        save.remove();
        setTimeout(() => URL.revokeObjectURL(url), 60_000); // once the download has its bytes
      } catch (err) {
        note.textContent = `Not downloaded: ${describeError(err)}`;
      } finally {
        button.disabled = false;
      }
    };
    return h("li", { ...attrs, class: "attachment attachment-file", "data-state": "ready" },
      h("button", { type: "button", class: "secondary attachment-chip", "data-testid": "attachment-download", "aria-label": `Download ${label}`,
        title: `Download ${label}`, onclick: download },
      h("span", { class: "attachment-kind", "aria-hidden": "true" }, fileKind(name, a.content_type)),
      h("span", { class: "attachment-name" }, name), size && h("span", { class: "attachment-size" }, size)),
      note);
  }

  // ------------------------------------------------------- dialogs, drawer

  /** An in-page confirmation: resolves true on OK, false on Cancel or Escape. */
  function confirmAction(text, okLabel) {
    const dialog = ui.confirmDialog;
    if (dialog.open) dialog.close("cancel");
    ui.confirmText.textContent = text;
    ui.confirmOk.textContent = okLabel || "OK";
    dialog.returnValue = "";
    return new Promise((resolve) => {
      dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
      dialog.showModal();
      ui.confirmOk.focus();
    });
  }

  // On a narrow screen the sidebar is a drawer over the chat (see style.css).
  const narrow = window.matchMedia("(max-width: 800px)");

  function setDrawer(open) {
    document.body.dataset.drawer = open ? "open" : "closed";
    ui.sidebarToggle.setAttribute("aria-expanded", String(open));
  }

  const closeDrawer = () => { if (document.body.dataset.drawer === "open") setDrawer(false); };

  // ------------------------------------------------------ connection and login

  /**
   * A client for this login. The token travels in the CONNECT packet's auth, never in the
   * URL; the client reads it again on every reconnect, with its resume handle and where it
   * stands in each answer it follows (docs/protocol.md section 1).
   */
  function connect() {
    disconnect();
    setStatus("Connecting…", "connecting");
    const client = new MarieClient({ token: () => state.token, socketOptions: { forceNew: true } });
    Object.assign(state, { client, status: null, welcomed: false });
    client.registerTool("get_time", GET_TIME);
    const line = (kind, text) => (d) => { if (d && d.conversation_id === state.id) systemLine(text(d), kind); };
    state.off = [
      client.connection.subscribe(() => onConnection(client)),
      client.conversations.subscribe(scheduleList),
      client.usage.subscribe(drawBudget),
      // What happened, said as a line (the state it changed is in the snapshots).
      client.on("user_joined", line("presence", (d) => `${d.user_id} joined.`)),
      client.on("user_left", line("presence", (d) => `${d.user_id} left.`)),
      client.on("announcement", (d) => systemLine(`Announcement: ${d.message}`, "announcement")),
    ];
  }

  function onConnection(client) {
    if (client !== state.client) return;
    const c = client.connection.getSnapshot();
    const was = state.status;
    state.status = c.status;
    scheduleDraw();
    if (c.status === "connected") {
      setStatus(`${c.restored ? "Reconnected" : "Connected"} as ${c.userId}`, "connected");
      if (was === "connected") return;
      // After a drop, the client joined again and resumed what is shown; a join the drop
      // interrupted is made again.
      if (state.welcomed) {
        const interrupted = state.restoring;
        state.restoring = null;
        if (interrupted) return void openConversation(interrupted);
        return void (state.id && systemLine("Reconnected."));
      }
      Object.assign(state, { welcomed: true, userId: c.userId });
      saveSession(); // the server took the token: a reload of this tab connects again with it
      signedIn();
      loadList();
      const restoring = state.restoring;
      state.restoring = null;
      if (restoring) openConversation(restoring);
    } else if (c.status === "refused") {
      const code = c.error ? c.error.code : "error";
      setStatus(code === "unauthorized" ? "Refused: unauthorized" : `Refused: ${code}`, "error");
      signedOut(code === "unauthorized" ? "The server refused the credentials (unauthorized). Log in again." : `The server refused the connection (${code}).`, true);
    } else if (c.status === "reconnecting") {
      setStatus(c.error ? `Cannot reach the server (${c.error.code}); retrying…` : "Connection lost; reconnecting…", "connecting");
    } else {
      setStatus(c.status === "connecting" ? "Connecting…" : "Disconnected", c.status === "connecting" ? "connecting" : "disconnected");
    }
  }

  function disconnect() {
    for (const off of state.off) off();
    state.off = [];
    if (state.client) state.client.close();
    state.client = null;
  }

  function signedIn() {
    const first = document.body.dataset.signedIn !== "true";
    document.body.dataset.signedIn = "true";
    ui.loginPanel.hidden = true;
    ui.sessionPanel.hidden = ui.conversationsPanel.hidden = ui.conversationPanel.hidden = false;
    ui.sessionUser.textContent = state.userId || "?";
    ui.sessionRoles.textContent = state.roles.length ? `(${state.roles.join(", ")})` : "";
    ui.adminPanel.hidden = !state.roles.includes("admin");
    // On a phone, the list comes first when no conversation is open.
    if (first) setDrawer(narrow.matches && !state.id && !state.restoring);
  }

  function signedOut(reason, keepStatus = false) {
    clearAttachments();
    detachConversation();
    disconnect();
    forgetSession();
    Object.assign(state, { token: null, roles: [], userId: null, id: null, restoring: null, policyShown: null, renaming: null, listNote: null });
    closeMentions();
    for (const row of state.rows.values()) row.li.remove();
    state.rows.clear();
    ui.conversationSearch.value = "";
    ui.showArchived.checked = false;
    ui.conversationsMore.hidden = ui.conversationListNote.hidden = true;
    document.body.dataset.signedIn = "false";
    setDrawer(false);
    ui.loginPanel.hidden = false;
    ui.sessionPanel.hidden = ui.conversationsPanel.hidden = ui.conversationPanel.hidden = true;
    ui.adminPanel.hidden = ui.currentConversationBox.hidden = ui.budget.hidden = true;
    drawConversation();
    showLoginError(reason);
    if (!keepStatus) setStatus("Disconnected", "disconnected");
  }

  // The login of this tab survives a reload (sessionStorage: this tab only, gone when it
  // closes); Log out, or a refusal of the token, forgets it. Storage may be refused (a
  // private window's quota): the login then lasts until a reload.
  const SESSION_KEY = "marie-chat.session";
  const saveSession = () => {
    try { sessionStorage.setItem(SESSION_KEY, JSON.stringify({ token: state.token, userId: state.userId, roles: state.roles, mode: state.mode })); } catch { /* not kept */ }
  };
  const forgetSession = () => {
    try { sessionStorage.removeItem(SESSION_KEY); } catch { /* nothing kept */ }
  };
  function storedSession() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
      return saved && typeof saved.token === "string" && saved.token ? saved : null;
    } catch {
      return null;
    }
  }

  /** Dev mode: POST /api/dev/token mints a token for any user (the example's route, not the protocol's). */
  async function devLogin() {
    showLoginError("");
    const userId = ui.loginUser.value.trim();
    const roles = ui.loginAdmin.checked ? ["admin"] : [];
    let res;
    let body;
    try {
      res = await fetch("/api/dev/token", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ user_id: userId, roles }) });
      body = await res.json().catch(() => ({}));
    } catch {
      return showLoginError("Cannot reach the server.");
    }
    if (res.status === 404) {
      showLoginError("Dev tokens are disabled on this server: paste a token instead.");
      return showTokenLogin();
    }
    if (!res.ok || typeof body.token !== "string") return showLoginError(`${body.message || "Login failed."} (${body.code || res.status})`);
    Object.assign(state, { token: body.token, userId: body.user_id || userId, roles: Array.isArray(body.roles) ? body.roles : roles });
    connect();
  }

  /** JWT mode: a pasted token; its `roles` claim only decides whether the admin panel shows (the server decides the rest). */
  function tokenLogin() {
    showLoginError("");
    const token = ui.loginToken.value.trim();
    if (!token) return;
    let roles = [];
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
      if (Array.isArray(claims.roles)) roles = claims.roles.filter((r) => typeof r === "string");
    } catch {
      roles = [];
    }
    Object.assign(state, { token, userId: null, roles });
    connect();
  }

  function showTokenLogin() {
    ui.devLoginForm.hidden = true;
    ui.tokenLoginForm.hidden = false;
  }

  // ------------------------------------------------------------------ wiring

  const on = (element, type, listener) => element.addEventListener(type, listener);
  const onSubmit = (form, listener) => on(form, "submit", (e) => { e.preventDefault(); listener(); });

  onSubmit(ui.devLoginForm, devLogin);
  onSubmit(ui.tokenLoginForm, tokenLogin);
  on(ui.logoutButton, "click", () => signedOut());
  on(ui.newConversationButton, "click", () => openConversation(randomId("conv-").slice(0, 17))); // 12 hex digits: short enough to read out
  onSubmit(ui.joinForm, () => openConversation(ui.conversationId.value.trim()));
  onSubmit(ui.inviteForm, () => {
    const userId = ui.inviteUser.value.trim();
    // The members panel follows (conversation_updated); read now for the new member's role.
    if (userId) command((c) => c.invite(userId).then(() => c.refreshInfo()), `Could not invite ${userId}`, () => {
      systemLine(`Invited ${userId}: they can now join ${state.id}.`);
      ui.inviteUser.value = "";
    });
  });
  onSubmit(ui.announceForm, () => {
    const message = ui.announceText.value.trim();
    if (!message || !state.client) return;
    state.client.announce(message).then(() => { ui.announceText.value = ""; }, (err) => systemLine(`Could not announce: ${describeError(err)}`, "error"));
  });

  onSubmit(ui.composer, () => { if (!ui.sendButton.disabled) sendMessage(); });
  on(ui.messageInput, "keydown", (e) => {
    if (mentionKey(e)) return; // the @completion list is open: its keys first
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (!ui.sendButton.disabled) sendMessage();
    }
  });
  on(ui.messageInput, "input", () => {
    if (state.conv) state.conv.typing(ui.messageInput.value.trim().length > 0); // said at most every 2 s by the client
    updateMentions();
  });
  on(ui.messageInput, "blur", () => {
    if (state.conv) state.conv.typing(false);
    closeMentions();
  });
  // The caret moved: the @word under it may be another one.
  on(ui.messageInput, "click", updateMentions);
  on(ui.messageInput, "keyup", (e) => { if (["ArrowLeft", "ArrowRight", "Home", "End"].includes(e.key)) updateMentions(); });
  on(ui.cancelButton, "click", () => command((c) => c.cancel(), "Could not cancel"));
  on(ui.fileInput, "change", () => {
    // Each file chosen goes in the strip and is uploaded to the conversation shown.
    for (const file of state.id && !state.filesOff ? ui.fileInput.files : []) {
      const entry = { file, conversationId: state.id, state: "uploading", record: null };
      stripItem(entry);
      upload(entry);
    }
    ui.fileInput.value = ""; // the same file may be chosen again
  });

  // The list: search (asked of the server after a pause in the typing), the archive, More, Refresh.
  let searchTimer = null;
  on(ui.conversationSearch, "input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      if (state.client && ui.conversationSearch.value.trim() !== state.client.conversations.getSnapshot().query.trim()) loadList({ query: ui.conversationSearch.value });
    }, 300);
  });
  on(ui.conversationSearch, "keydown", (e) => {
    if (e.key === "Escape" && ui.conversationSearch.value) {
      ui.conversationSearch.value = "";
      ui.conversationSearch.dispatchEvent(new Event("input"));
    }
  });
  on(ui.showArchived, "change", () => loadList({ archived: ui.showArchived.checked }));
  on(ui.conversationsRefresh, "click", () => loadList());
  on(ui.conversationsMore, "click", () => { if (state.client) state.client.conversations.loadMore().catch(noop); });
  // Besides the events, the list (and its unread counts, which only a read brings for the rooms
  // this tab is not in) is read again now and then while the tab is in view, and when it comes
  // back into view, when what arrived meanwhile is marked read too.
  const refreshList = () => { if (state.client && !state.renaming) state.client.conversations.refresh().catch(noop); };
  setInterval(() => { if (visible()) refreshList(); }, 30000);
  on(document, "visibilitychange", () => {
    if (!visible()) return;
    scheduleDraw();
    scheduleList();
    refreshList();
  });
  setInterval(drawBudget, 60000); // how long until the budget resets, kept current

  // The conversation's settings: each select waits for the server, and shows the choice once taken.
  const setting = async (select, changes, failure) => {
    select.disabled = true;
    await command((c) => c.update(changes), failure);
    select.disabled = false;
    scheduleDraw();
  };
  on(ui.modelSelect, "change", () => {
    const info = state.conv && state.conv.getSnapshot().info;
    // The first is "the default": "" follows the app's default, should it change.
    if (info) setting(ui.modelSelect, { model: ui.modelSelect.value === info.models[0] ? "" : ui.modelSelect.value }, "Could not change the model");
  });
  on(ui.answerPolicySelect, "change", () => setting(ui.answerPolicySelect, { answerPolicy: ui.answerPolicySelect.value }, "Could not change who answers"));
  on(ui.askAssistant, "change", scheduleDraw);
  onSubmit(ui.systemPromptForm, async () => {
    const conv = state.conv;
    const prompt = ui.systemPromptInput.value.trim();
    if (!conv) return;
    ui.systemPromptStatus.textContent = "Saving…";
    try {
      const info = await conv.update({ systemPrompt: prompt }); // "" removes it
      if (conv !== state.conv) return;
      delete ui.systemPromptForm.dataset.dirty;
      ui.systemPromptInput.value = info.systemPrompt || "";
      ui.systemPromptStatus.textContent = prompt ? "Saved: the next answer follows it." : "Removed.";
    } catch (err) {
      if (conv === state.conv) ui.systemPromptStatus.textContent = `Not saved: ${describeError(err)}`;
    }
  });
  on(ui.systemPromptInput, "input", () => {
    ui.systemPromptForm.dataset.dirty = "true";
    ui.systemPromptStatus.textContent = "";
  });
  on(ui.leaveConversation, "click", async () => {
    const title = titleOf(state.conv && state.conv.getSnapshot().title);
    if (!await confirmAction(`Leave “${title}” for good? Only an invitation lets you back in.`, "Leave")) return;
    command((c) => c.removeMember(state.userId), "Could not leave", () => closeConversation("You left this conversation."));
  });
  on(ui.deleteConversation, "click", () => { if (state.id) deleteConversation(state.id); });

  // The drawer (narrow screens).
  on(ui.sidebarToggle, "click", () => setDrawer(document.body.dataset.drawer !== "open"));
  on(ui.sidebarBackdrop, "click", closeDrawer);
  on(document, "keydown", (e) => {
    if (e.key === "Escape" && !ui.confirmDialog.open && document.body.dataset.drawer === "open" && narrow.matches) closeDrawer();
  });
  on(narrow, "change", () => { if (!narrow.matches) closeDrawer(); });

  async function init() {
    const fromHash = decodeURIComponent(window.location.hash.slice(1));
    if (CONVERSATION_ID.test(fromHash)) ui.conversationId.value = fromHash;
    try {
      const body = await (await fetch("/api/auth/mode")).json();
      state.mode = body.mode === "jwt" ? "jwt" : "dev";
    } catch {
      state.mode = "dev";
    }
    if (state.mode === "jwt") showTokenLogin();
    else ui.devLoginForm.hidden = false;
    ui.loginPanel.dataset.mode = state.mode;
    updateControls(null);
    // A reload: connect again as before, and open the conversation of the URL.
    const saved = storedSession();
    if (saved && saved.mode === state.mode) {
      Object.assign(state, {
        token: saved.token,
        userId: typeof saved.userId === "string" ? saved.userId : null,
        roles: Array.isArray(saved.roles) ? saved.roles.filter((r) => typeof r === "string") : [],
        restoring: CONVERSATION_ID.test(fromHash) ? fromHash : null,
      });
      signedIn();
      connect();
    } else if (saved) {
      forgetSession(); // the server's mode changed: that token is of no use
    }
  }

  init();
})();
