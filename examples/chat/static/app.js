// MARIE chat example: the browser side of the protocol in docs/protocol.md.
// Plain JavaScript, no build step. All user-supplied text is rendered with
// textContent; nothing here ever assigns innerHTML. Answers are markdown: `marked`
// (marked.umd.js) turns them into HTML, with any raw HTML in them shown as text, and
// DOMPurify (purify.min.js) sanitises that HTML into a DOM fragment before it is shown.
"use strict";

(() => {
  const CONVERSATION_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
  const ACK_TIMEOUT_MS = 10000;
  const HISTORY_LIMIT = 100;

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("connection-status"),
    loginPanel: $("login-panel"),
    devForm: $("dev-login-form"),
    tokenForm: $("token-login-form"),
    loginUser: $("login-user"),
    loginAdmin: $("login-admin"),
    loginToken: $("login-token"),
    loginError: $("login-error"),
    sessionPanel: $("session-panel"),
    sessionUser: $("session-user"),
    sessionRoles: $("session-roles"),
    logout: $("logout-button"),
    conversationPanel: $("conversation-panel"),
    newConversation: $("new-conversation-button"),
    joinForm: $("join-form"),
    conversationInput: $("conversation-id"),
    currentBox: $("current-conversation-box"),
    current: $("current-conversation"),
    members: $("members"),
    inviteForm: $("invite-form"),
    inviteUser: $("invite-user"),
    adminPanel: $("admin-panel"),
    announceForm: $("announce-form"),
    announceText: $("announce-text"),
    messages: $("messages"),
    composer: $("composer"),
    input: $("message-input"),
    send: $("send-button"),
    attach: $("attach-box"),
    fileInput: $("file-input"),
    strip: $("attachment-strip"),
    cancel: $("cancel-button"),
    typing: $("typing-indicator"),
    queueBox: $("queue-box"),
    queue: $("queue"),
    budget: $("budget"),
    sidebarToggle: $("sidebar-toggle"),
    backdrop: $("sidebar-backdrop"),
    conversationsPanel: $("conversations-panel"),
    search: $("conversation-search"),
    showArchived: $("show-archived"),
    refreshList: $("conversations-refresh"),
    list: $("conversation-list"),
    listNote: $("conversation-list-note"),
    more: $("conversations-more"),
    chatHead: $("chat-head"),
    heading: $("conversation-heading"),
    modelBox: $("model-box"),
    modelSelect: $("model-select"),
    policyBox: $("answer-policy-box"),
    policySelect: $("answer-policy-select"),
    askBox: $("ask-assistant-box"),
    ask: $("ask-assistant"),
    mentionList: $("mention-list"),
    promptBox: $("system-prompt-box"),
    promptForm: $("system-prompt-form"),
    promptInput: $("system-prompt-input"),
    promptStatus: $("system-prompt-status"),
    leave: $("leave-conversation"),
    deleteConversation: $("delete-conversation"),
    confirmDialog: $("confirm-dialog"),
    confirmText: $("confirm-text"),
    confirmOk: $("confirm-ok"),
  };

  const state = {
    mode: "dev",          // "dev" | "jwt", from GET /api/auth/mode
    token: null,          // in memory, and in sessionStorage for a reload of this tab (see saveSession)
    roles: [],
    userId: null,
    session: null,        // private resume handle from `connected`
    socket: null,
    conversationId: null, // the conversation shown
    members: [],
    streams: new Map(),   // stream_id -> stream view (see streamView)
    rendered: new Map(),  // message_id -> element, to merge history and live events
    inflight: new Map(),  // event -> requests awaiting an ack (their errors are shown once, from the ack)
    sending: 0,           // send_message requests awaiting their ack
    resumeFailed: new Set(), // stream ids whose resume_stream failed (never retried)
    typingUsers: new Map(), // user_id -> timer that hides them (the server also says when they stop)
    typingSentAt: 0,        // when this tab last said it is typing
    branchRequest: null,    // {kind, replaces?, claimed?}: this tab's edit/regenerate/switch awaiting its ack
    branchStreams: new Map(), // stream_id -> {replaces?}: answers of this tab's edits and regenerations
    branchLoads: 0,         // reloads of the active branch asked for (only the newest is shown)
    queue: new Map(),       // stream_id -> {li, userId}: sends waiting for the running answer (`queued`)
    queueGone: new Set(),   // stream ids taken out of the queue (started, cancelled, failed): not shown again
    usageLoads: 0,          // get_usage requests asked for (only the newest is shown)
    attachments: [],        // files chosen for the next message, in the strip (see chooseFiles)
    filesOff: false,        // the server takes no files (an upload answered 404): no attach button
    thumbs: new Map(),      // file_id -> {promise, url, dropped}: object URLs of the images shown
    opens: 0,               // openConversation calls (only the newest one goes on after an await)
    joinedId: null,         // the conversation this connection has joined (its join was acknowledged)
    details: null,          // get_conversation ack of the conversation shown (title, model, members, settings)
    detailsLoads: 0,        // get_conversation requests asked for (only the newest is shown)
    restoring: null,        // the conversation to open once a session restored after a reload connects
    usage: null,            // the last get_usage ack, to say again how long until the budget resets
    // Group conversations (docs/protocol.md section 10).
    pendingSends: new Set(),// this tab's sends awaiting their ack: {li, conversationId, message, added?} (see onMessageAdded)
    historyShown: null,     // the conversation whose history is shown (until then message_added is placed without checks)
    policyShown: null,      // "conversation_id|answer_policy" the Ask toggle was last set for (see renderDetails)
    marking: null,          // mark_read: {conversationId, messageId, sent, busy} (one request at a time, the newest mark wins)
    mention: null,          // the @completion open in the composer: {start, end, names, active}
    list: {
      items: new Map(),     // conversation_id -> {data, li}: the conversations listed
      archived: false,      // the archive is shown (list_conversations.archived)
      query: "",            // the title search (list_conversations.query)
      nextBefore: null,     // the cursor of the next page, null on the last one
      pages: 0,             // pages loaded since the list was last loaded from its start
      loads: 0,             // list_conversations requests asked for (only the newest is shown)
      renaming: null,       // the conversation_id whose title is being edited
    },
  };

  // ---------------------------------------------------------------- helpers

  /** Builds an element; children are nodes or strings (as text nodes). */
  function h(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null) continue;
      if (key === "class") node.className = value;
      else node.setAttribute(key, String(value));
    }
    node.append(...children.filter((c) => c !== undefined && c !== null));
    return node;
  }

  function randomId(prefix) {
    const bytes = new Uint8Array(6);
    crypto.getRandomValues(bytes);
    return prefix + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function formatTime(value) {
    const date = typeof value === "number"
      ? new Date(value < 1e12 ? value * 1000 : value) // seconds or milliseconds
      : new Date(value);
    return Number.isNaN(date.getTime()) ? "" : date.toLocaleTimeString();
  }

  function timeOf(value) {
    if (typeof value === "number") return value < 1e12 ? value * 1000 : value;
    const t = Date.parse(value);
    return Number.isNaN(t) ? null : t;
  }

  function setStatus(text, stateName) {
    ui.status.textContent = text;
    ui.status.dataset.state = stateName;
  }

  function showLoginError(text) {
    ui.loginError.textContent = text || "";
    ui.loginError.hidden = !text;
  }

  /** Emits an event with an ack; resolves with an ok ack, rejects with {code, message}. */
  function request(event, payload) {
    return new Promise((resolve, reject) => {
      if (!state.socket || !state.socket.connected) {
        reject({ code: "disconnected", message: "Not connected to the server." });
        return;
      }
      // The server reports a failure both as an `error` event and in the ack: the
      // ack is shown (it has the context), so the matching `error` event is not.
      state.inflight.set(event, (state.inflight.get(event) || 0) + 1);
      const settled = () => setTimeout(() => {
        const n = (state.inflight.get(event) || 1) - 1;
        if (n > 0) state.inflight.set(event, n); else state.inflight.delete(event);
      }, 1000);
      state.socket.timeout(ACK_TIMEOUT_MS).emit(event, payload, (err, res) => {
        settled();
        if (err) reject({ code: "timeout", message: `No answer to ${event}.` });
        else if (res && res.status === "ok") resolve(res);
        else reject({ code: (res && res.code) || "error", message: (res && res.message) || "Request failed." });
      });
    });
  }

  function describeError(err) {
    const code = err && err.code ? err.code : "error";
    const message = err && err.message ? humanTimes(err.message) : "Something went wrong.";
    return `${message} (${code})`;
  }

  /** "in 3 h 20 min", "in 12 min", "in 2 d 4 h", "in under a minute". */
  function inWords(ms) {
    const minutes = Math.ceil(Math.max(0, ms) / 60000);
    if (minutes <= 1) return ms <= 0 ? "now" : "in under a minute";
    if (minutes < 60) return `in ${minutes} min`;
    const hours = Math.floor(minutes / 60);
    if (hours < 48) return `in ${hours} h${minutes % 60 ? ` ${minutes % 60} min` : ""}`;
    const days = Math.floor(hours / 24);
    return `in ${days} d${hours % 24 ? ` ${hours % 24} h` : ""}`;
  }

  /** A time (ms since the epoch) in words, in UTC as the server's periods are: "00:00 UTC, in 3 h". */
  function resetWords(at, now = Date.now()) {
    const date = new Date(at);
    if (Number.isNaN(date.getTime())) return "";
    const hhmm = `${String(date.getUTCHours()).padStart(2, "0")}:${String(date.getUTCMinutes()).padStart(2, "0")} UTC`;
    // Within a day the hour says it; further away (a weekly budget) the day too.
    const day = at - now > 86_400_000
      ? `${date.toLocaleDateString("en-GB", { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" })} `
      : "";
    return `${day}${hhmm}, ${inWords(at - now)}`;
  }

  /**
   * A server message naming a time (as the server words it, "2026-12-08 00:00 UTC", or in
   * milliseconds since the epoch from older servers), with that time in words and how far off.
   */
  function humanTimes(message) {
    return String(message)
      .replace(/\b(resets?|starts? again|expires?) at (\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}) UTC/g,
        (_, verb, y, mo, d, h, mi) => `${verb} at ${resetWords(Date.UTC(+y, +mo - 1, +d, +h, +mi))}`)
      .replace(/\b(resets?|starts? again|expires?) at (\d{12,14})(?: \(ms since the Unix epoch\))?/g,
        (_, verb, ms) => `${verb} at ${resetWords(Number(ms))}`);
  }

  // --------------------------------------------------------------- markdown

  function escapeHtml(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  /**
   * Markdown of an answer -> a sanitised DOM fragment, or null when marked or DOMPurify did
   * not load (the answer is then shown as plain text). Raw HTML in the markdown is shown as
   * text (a `<script>` in an answer reads as `<script>`); images are links (a model's answer
   * loads nothing by itself); links open in a new tab without the page as opener. DOMPurify
   * then removes whatever else could run or reach out, whatever marked made.
   */
  const renderMarkdown = (() => {
    if (!window.marked || typeof window.marked.Marked !== "function" || typeof window.DOMPurify !== "function") return null;
    const md = new window.marked.Marked({ gfm: true, breaks: false, async: false });
    md.use({
      renderer: {
        html(token) {
          const text = escapeHtml(token.text || "");
          return token.block ? `<p>${text.trim()}</p>\n` : text;
        },
        image(token) {
          const label = `image: ${token.text || token.href || ""}`;
          return token.href ? `<a href="${escapeHtml(token.href)}">${escapeHtml(label)}</a>` : escapeHtml(label);
        },
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

  /** A code block with a Copy button above it (its label comes from CSS: the text stays the code's). */
  function withCopyButtons(fragment) {
    for (const pre of fragment.querySelectorAll("pre")) {
      const button = h("button", {
        type: "button", class: "secondary code-copy", "data-testid": "copy-code", "aria-label": "Copy code", title: "Copy code",
      });
      const box = h("div", { class: "code-block" });
      pre.replaceWith(box);
      box.append(button, pre);
    }
    return fragment;
  }

  // Answers longer than this are drawn at most once a frame while they stream.
  const RENDER_EVERY_CHUNK_CHARS = 4000;

  /** Shows `view.source` (an answer's markdown) in `view.text`: at once, or once a frame for long answers. */
  function renderAnswer(view, { now = false } = {}) {
    if (!now && view.source.length > RENDER_EVERY_CHUNK_CHARS) {
      if (view.renderPending) return;
      const draw = () => {
        cancelAnimationFrame(view.renderPending.frame);
        clearTimeout(view.renderPending.timer);
        view.renderPending = null;
        drawAnswer(view.text, view.source);
      };
      // A frame, or a timer where frames do not come (a tab in the background).
      view.renderPending = { frame: requestAnimationFrame(draw), timer: setTimeout(draw, 250) };
      return;
    }
    if (view.renderPending) {
      cancelAnimationFrame(view.renderPending.frame);
      clearTimeout(view.renderPending.timer);
      view.renderPending = null;
    }
    drawAnswer(view.text, view.source);
  }

  function drawAnswer(element, source) {
    if (!renderMarkdown) {
      element.textContent = source;
      return;
    }
    let fragment;
    try {
      fragment = renderMarkdown(source);
    } catch {
      element.textContent = source; // never lose an answer to a parser fault
      return;
    }
    element.replaceChildren(withCopyButtons(fragment));
  }

  /** Copy on a code block: the clipboard API, else a selection and execCommand, else the code selected for the user. */
  async function copyCode(button) {
    const code = button.parentNode && button.parentNode.querySelector("pre");
    if (!code) return;
    const text = code.textContent.replace(/\n$/, "");
    let ok = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        ok = true;
      }
    } catch {
      ok = false;
    }
    const range = document.createRange();
    range.selectNodeContents(code);
    const selection = window.getSelection();
    if (!ok) {
      selection.removeAllRanges();
      selection.addRange(range);
      try { ok = document.execCommand("copy"); } catch { ok = false; }
      if (ok) selection.removeAllRanges(); // else left selected: Ctrl+C copies it
    }
    button.dataset.state = ok ? "copied" : "failed";
    button.setAttribute("aria-label", ok ? "Copied" : "Press Ctrl+C to copy");
    clearTimeout(button.resetTimer);
    button.resetTimer = setTimeout(() => {
      delete button.dataset.state;
      button.setAttribute("aria-label", "Copy code");
    }, 2000);
  }

  // --------------------------------------------------------------- rendering

  function isNearBottom() {
    const m = ui.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 80;
  }

  function append(node, before) {
    const stick = isNearBottom();
    if (before) ui.messages.insertBefore(node, before);
    else ui.messages.append(node);
    if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function systemLine(text, kind) {
    const li = h("li", { class: `system ${kind || ""}`.trim(), "data-testid": "system-line", "data-kind": kind || "info" }, text);
    append(li);
    return li;
  }

  function userMessage({ messageId, userId, content, createdAt, pending, siblings, attachments }) {
    const mine = userId && userId === state.userId;
    const li = h("li", {
      class: `msg msg-user${mine ? " mine" : ""}`,
      "data-testid": "user-message",
      "data-message-id": messageId,
      "data-user-id": userId,
      "data-status": pending ? "pending" : "sent",
      "data-siblings": siblingIds(siblings).join(",") || null,
    },
    h("div", { class: "msg-meta" },
      // In a group conversation the author matters: another member's name is shown as it is.
      h("span", { class: "msg-author", "data-testid": "message-author" }, mine ? `${userId} (you)` : userId || "user"),
      createdAt ? h("time", { class: "msg-time" }, formatTime(createdAt)) : null),
    h("p", { class: "msg-text", "data-testid": "message-text" }, content),
    attachmentList(attachments));
    // Only its author may edit a question (docs/protocol.md section 7).
    li.append(messageActions(li, { messageId, siblings, edit: Boolean(mine) }));
    if (messageId !== undefined && messageId !== null) state.rendered.set(String(messageId), li);
    return li;
  }

  // ---------------------------------------------------------------- branches

  /** The `siblings` of a history message as strings, when there are several. */
  function siblingIds(siblings) {
    return Array.isArray(siblings) && siblings.length > 1 ? siblings.map(String) : [];
  }

  /**
   * The branch controls under a message: `< 2/3 >` between its versions (its `siblings`),
   * and Edit (the user's own questions) or Regenerate (answers). Their buttons have the class
   * `branch-control` and start disabled: updateControls() enables them when no answer runs.
   */
  function messageActions(li, { messageId, siblings, edit, regenerate }) {
    const bar = h("div", { class: "msg-actions" });
    const ids = siblingIds(siblings);
    const at = ids.indexOf(String(messageId));
    if (at >= 0) {
      const step = (delta, testId, text, label) => {
        const target = ids[at + delta];
        const button = h("button", {
          type: "button",
          class: "secondary branch-control sibling-step",
          disabled: "",
          "data-testid": testId,
          "data-target": target ?? "",
          "aria-label": label,
          title: label,
        }, text);
        button.addEventListener("click", () => { if (target) switchBranch(target); });
        return button;
      };
      bar.append(h("span", { class: "sibling-switcher", "data-testid": "sibling-switcher" },
        step(-1, "sibling-prev", "<", "Previous version"),
        h("span", { class: "sibling-position", "data-testid": "sibling-position" }, `${at + 1}/${ids.length}`),
        step(1, "sibling-next", ">", "Next version")));
    }
    if (edit) {
      const button = h("button", { type: "button", class: "secondary branch-control", disabled: "", "data-testid": "edit-button" }, "Edit");
      button.addEventListener("click", () => startEditing(li));
      bar.append(button);
    }
    if (regenerate) {
      const button = h("button", { type: "button", class: "secondary branch-control", disabled: "", "data-testid": "regenerate-button" }, "Regenerate");
      button.addEventListener("click", () => regenerateAnswer(li));
      bar.append(button);
    }
    return bar;
  }

  /** Edit: the question becomes a form; Save asks the server for a new version of it. */
  function startEditing(li) {
    if (li.querySelector(".msg-editor")) return;
    const shown = li.querySelector('[data-testid="message-text"]');
    const actions = li.querySelector(".msg-actions");
    const input = h("textarea", {
      class: "edit-input", "data-testid": "edit-input", rows: 3, maxlength: 32000, "aria-label": "Edit your message",
    });
    input.value = shown.textContent;
    const save = h("button", { type: "submit", class: "branch-control", disabled: "", "data-testid": "edit-save" }, "Save");
    const cancel = h("button", { type: "button", class: "secondary", "data-testid": "edit-cancel" }, "Cancel");
    const error = h("p", { class: "msg-error", role: "alert", "data-testid": "edit-error" });
    error.hidden = true;
    const form = h("form", { class: "msg-editor", "data-testid": "edit-form" },
      input, h("div", { class: "msg-editor-actions" }, save, cancel), error);
    const close = () => {
      form.remove();
      shown.hidden = false;
      actions.hidden = false;
    };
    cancel.addEventListener("click", close);
    input.addEventListener("keydown", (e) => {
      if (e.key === "Escape") close();
      else if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        if (!save.disabled) form.requestSubmit();
      }
    });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      const message = input.value;
      const conversationId = state.conversationId;
      if (!message.trim() || !conversationId || save.disabled) return;
      error.hidden = true;
      state.branchRequest = { kind: "edit" };
      updateControls();
      try {
        const res = await request("edit_message", { conversation_id: conversationId, message_id: li.dataset.messageId, message });
        state.branchStreams.set(res.stream_id, {});
        close(); // the new version shows once its answer starts (onStreamStart)
      } catch (err) {
        error.textContent = `Not saved: ${describeError(err)}`;
        error.hidden = false;
      } finally {
        state.branchRequest = null;
        updateControls();
      }
    });
    shown.hidden = true;
    actions.hidden = true;
    li.append(form);
    updateControls();
    input.focus();
  }

  /** Regenerate: a new answer beside this one (the old one stays, as a sibling). */
  async function regenerateAnswer(li) {
    const conversationId = state.conversationId;
    if (!conversationId) return;
    // An answer that failed may not be stored: then the server's default (the active
    // branch's last answer, or its last question when its answer said nothing) is the one.
    const replaces = li.dataset.status === "error" ? undefined : li.dataset.messageId;
    state.branchRequest = { kind: "regenerate", replaces };
    updateControls();
    try {
      const res = await request("regenerate", replaces === undefined
        ? { conversation_id: conversationId }
        : { conversation_id: conversationId, message_id: replaces });
      state.branchStreams.set(res.stream_id, { replaces });
    } catch (err) {
      systemLine(`Could not regenerate: ${describeError(err)}`, "error");
    } finally {
      state.branchRequest = null;
      updateControls();
    }
  }

  /** `< >`: the branch through `messageId` becomes the active one (branch_switched redraws it). */
  async function switchBranch(messageId) {
    const conversationId = state.conversationId;
    if (!conversationId) return;
    state.branchRequest = { kind: "switch" };
    updateControls();
    try {
      await request("switch_branch", { conversation_id: conversationId, message_id: messageId });
    } catch (err) {
      systemLine(`Could not switch: ${describeError(err)}`, "error");
    } finally {
      state.branchRequest = null;
      updateControls();
    }
  }

  /** The edit or regeneration of this tab that `stream_id` answers, if it is one. */
  function askedHere(streamId) {
    const known = state.branchStreams.get(streamId);
    if (known) return known;
    // Its stream_start may come before the ack: the request in flight is this one.
    const asked = state.branchRequest;
    if (asked && asked.kind !== "switch" && !asked.claimed) {
      asked.claimed = true;
      return asked;
    }
    return null;
  }

  function branchKey(messageId, siblings) {
    return `${messageId}|${siblingIds(siblings).join(",")}`;
  }

  /**
   * Shows the active branch again from get_history: after branch_switched, when an edit or
   * regeneration of this tab starts or ends, and when a message or an answer does not follow
   * the newest message shown (another member's edit or regeneration, or something this page
   * missed). `trigger` is the view of that answer: while it is not in the history yet, it
   * stays below the question it answers (for a regeneration, the history still goes through
   * the answer replaced: it is cut there). When the branch only grew, the new messages are
   * added and nothing else changes, so live details (tool statuses) stay.
   */
  async function reloadBranch(conversationId, trigger) {
    const generation = ++state.branchLoads;
    let res;
    try {
      res = await request("get_history", { conversation_id: conversationId, limit: HISTORY_LIMIT });
    } catch (err) {
      if (conversationId === state.conversationId && generation === state.branchLoads) {
        systemLine(`Could not load the history: ${describeError(err)}`, "error");
      }
      return;
    }
    if (conversationId !== state.conversationId || generation !== state.branchLoads) return;
    let messages = sortedHistory(res.messages);
    const running = runningStream();
    const view = trigger || (running && running.view);
    const stored = (id) => id !== undefined && messages.some((m) => String(m.message_id) === id);
    const answering = view && !stored(view.li.dataset.messageId) ? view : null;
    if (answering) {
      let cut = answering.replaces === undefined ? -1
        : messages.findIndex((m) => String(m.message_id) === String(answering.replaces));
      // Another member's regeneration: stream_start does not say which answer it replaces;
      // most likely the last one (the branch is drawn again when it ends, in any case).
      if (cut < 0 && messages.length && messages.at(-1).role === "assistant") cut = messages.length - 1;
      if (cut >= 0) {
        messages = messages.slice(0, cut);
        answering.branch = true;
      }
      if (messages.length && siblingIds(messages.at(-1).siblings).length) answering.branch = true; // an edit
    }
    const stick = isNearBottom();
    const shown = [...ui.messages.children].filter((li) => li.classList.contains("msg") && li !== (answering && answering.li)
      && li.dataset.status !== "pending" && li.dataset.status !== "failed");
    const keys = messages.map((m) => branchKey(m.message_id, m.siblings));
    const grew = shown.length <= keys.length
      && shown.every((li, i) => branchKey(li.dataset.messageId, (li.dataset.siblings || "").split(",")) === keys[i]);
    if (grew) {
      const before = answering && answering.li.parentNode ? answering.li : undefined;
      for (const m of messages.slice(shown.length)) append(historyNode(m), before);
      if (answering && !answering.li.parentNode) append(answering.li);
    } else {
      for (const li of shown) if (li.dataset.messageId !== undefined) state.rendered.delete(li.dataset.messageId);
      const nodes = messages.map(historyNode);
      if (answering) nodes.push(answering.li);
      if (shown.length) shown[0].before(...nodes);
      else ui.messages.append(...nodes);
      for (const li of shown) li.remove();
    }
    if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
    updateControls();
  }

  const STATUS_LABELS = {
    streaming: "streaming…",
    complete: "",
    cancelled: "cancelled",
    interrupted: "interrupted",
    error: "error",
  };

  /** What stands for reasoning the provider redacted (its data is for the model alone). */
  const REDACTED_REASONING = "(reasoning redacted by the provider)";

  /**
   * The reasoning of `parts` (from stream_end or history), joined: readable reasoning as it
   * is, a `redacted_reasoning` part as a short note (once for consecutive ones), never its
   * data; empty reasoning (a signature alone) adds nothing.
   */
  function reasoningOf(parts) {
    if (!Array.isArray(parts)) return "";
    const pieces = [];
    for (const p of parts) {
      if (!p) continue;
      if (p.type === "reasoning" && typeof p.content === "string" && p.content) {
        pieces.push(p.content);
      } else if (p.type === "redacted_reasoning" && pieces[pieces.length - 1] !== REDACTED_REASONING) {
        pieces.push(REDACTED_REASONING);
      }
    }
    return pieces.join("\n");
  }

  // Named assistants (docs/protocol.md section 10): an answer says which one wrote it
  // (stream_start.assistant, history's `assistant`), shown as a name and a small avatar.
  const AVATAR_COLOURS = 8; // .avatar-0 … .avatar-7 in style.css

  /** The avatar of `name`: its first letter in a circle whose colour follows from the name. */
  function fillAvatar(element, name) {
    let hash = 0;
    for (const c of name) hash = (hash * 31 + c.codePointAt(0)) >>> 0;
    element.className = `avatar avatar-${hash % AVATAR_COLOURS}`;
    element.textContent = (Array.from(name)[0] || "?").toUpperCase();
  }

  /** Names the assistant of an answer's view (an app without named assistants: "assistant"). */
  function setAssistantName(view, name) {
    const shown = typeof name === "string" && name ? name : "assistant";
    if (typeof name === "string" && name) view.li.dataset.assistant = name;
    if (view.author.textContent === shown) return;
    view.author.textContent = shown;
    fillAvatar(view.avatar, shown);
  }

  function assistantMessage({ messageId, streamId, content, createdAt, status, reasoning, parts, siblings, assistant }) {
    // The model's reasoning, collapsed; hidden while there is none.
    const thoughts = h("p", { class: "msg-reasoning-text", "data-testid": "reasoning-text" }, reasoning || "");
    const details = h("details", { class: "msg-reasoning", "data-testid": "reasoning" },
      h("summary", {}, "Reasoning"), thoughts);
    details.hidden = !reasoning;
    // The tool calls of the answer, each with its arguments, approval and result.
    const tools = h("ol", { class: "msg-tools", "data-testid": "tool-calls" });
    // The answer's markdown, drawn as sanitised HTML (renderAnswer).
    const text = h("div", { class: "msg-text markdown", "data-testid": "message-text" });
    const label = h("span", { class: "msg-status", "data-testid": "message-status" }, STATUS_LABELS[status] ?? status);
    const author = h("span", { class: "msg-author", "data-testid": "assistant-name" });
    const avatarNode = h("span", { class: "avatar", "aria-hidden": "true" });
    const li = h("li", {
      class: "msg msg-assistant",
      "data-testid": "assistant-message",
      "data-message-id": messageId,
      "data-stream-id": streamId,
      "data-status": status,
      "data-siblings": siblingIds(siblings).join(",") || null,
      "aria-busy": status === "streaming" ? "true" : "false",
    },
    h("div", { class: "msg-meta" },
      avatarNode,
      author,
      createdAt ? h("time", { class: "msg-time" }, formatTime(createdAt)) : null,
      label),
    details,
    tools,
    text);
    li.append(messageActions(li, { messageId, siblings, regenerate: true }));
    if (messageId !== undefined && messageId !== null) state.rendered.set(String(messageId), li);
    const view = { li, text, label, details, thoughts, tools, author, avatar: avatarNode, calls: new Map(), source: content || "", renderPending: null };
    setAssistantName(view, assistant);
    if (view.source) renderAnswer(view, { now: true });
    showToolParts(view, parts);
    return view;
  }

  // ------------------------------------------------------------- tool calls

  /** The card of one tool call in `view`, created on first use. */
  function toolCard(view, id, name) {
    let card = view.calls.get(id);
    if (!card) {
      const title = h("span", { class: "tool-name", "data-testid": "tool-name" }, name || "tool");
      const args = h("code", { class: "tool-args", "data-testid": "tool-args" }, "");
      const status = h("span", { class: "tool-status", "data-testid": "tool-status" }, "calling…");
      const result = h("pre", { class: "tool-result", "data-testid": "tool-result" }, "");
      result.hidden = true;
      const approval = h("div", { class: "tool-approval", "data-testid": "approval" });
      approval.hidden = true;
      const li = h("li", { class: "tool-call", "data-testid": "tool-call", "data-tool-call-id": id },
        h("div", { class: "tool-head" }, h("span", { class: "tool-icon", "aria-hidden": "true" }, "🔧 "), title, " ", status),
        args, approval, result);
      card = { li, title, args, status, result, approval, argsText: "" };
      view.calls.set(id, card);
      view.tools.append(li);
    } else if (name && card.title.textContent !== name) {
      card.title.textContent = name;
    }
    return card;
  }

  function showArguments(card, args) {
    card.args.textContent = JSON.stringify(args);
  }

  function showResult(card, data) {
    card.result.hidden = false;
    if (data.error !== undefined && data.error !== null) {
      card.li.dataset.outcome = "error";
      card.result.textContent = `error: ${data.error}`;
      if (!card.li.dataset.decision) card.status.textContent = "failed";
    } else {
      card.li.dataset.outcome = "ok";
      card.result.textContent = typeof data.output === "string" ? data.output : JSON.stringify(data.output, null, 2);
      const done = typeof data.duration_ms === "number" ? `done in ${data.duration_ms} ms` : "done";
      card.status.textContent = card.decisionText ? `${card.decisionText}, ${done}` : done;
    }
    card.approval.hidden = true;
    card.approval.replaceChildren();
  }

  /** The tool calls and results of `parts` (from stream_end or history) on their cards. */
  function showToolParts(view, parts) {
    if (!Array.isArray(parts)) return;
    for (const p of parts) {
      if (!p || typeof p.tool_call_id !== "string") continue;
      const card = toolCard(view, p.tool_call_id, p.name);
      if (p.type === "tool_call") showArguments(card, p.arguments);
      // A result shown live keeps its status (who approved it, how long it ran).
      else if (p.type === "tool_result" && !card.li.dataset.outcome) showResult(card, p);
    }
  }

  /** tool_approval_request: Approve and Deny for any member. */
  function showApprovalRequest(view, data) {
    const card = toolCard(view, data.tool_call_id, data.name);
    showArguments(card, data.arguments);
    card.status.textContent = "waiting for approval";
    card.li.dataset.approvalId = data.approval_id;
    const decide = (approved) => async () => {
      for (const b of card.approval.querySelectorAll("button")) b.disabled = true;
      try {
        await request("approve_tool", { conversation_id: data.conversation_id, approval_id: data.approval_id, approved });
      } catch (err) {
        // Another member (or tab) decided first: its tool_approval updates this card.
        note.textContent = err.code === "conflict" ? "Already decided." : describeError(err);
        for (const b of card.approval.querySelectorAll("button")) b.disabled = false;
      }
    };
    const expires = typeof data.expires_at === "number" ? ` (expires ${formatTime(data.expires_at)})` : "";
    const note = h("span", { class: "tool-approval-note", "data-testid": "approval-note" }, "");
    const approve = h("button", { type: "button", class: "approve", "data-testid": "approve" }, "Approve");
    const deny = h("button", { type: "button", class: "deny", "data-testid": "deny" }, "Deny");
    approve.addEventListener("click", decide(true));
    deny.addEventListener("click", decide(false));
    card.approval.replaceChildren(h("span", {}, `Run ${data.name}?${expires} `), approve, deny, note);
    card.approval.hidden = false;
  }

  function showApproval(view, data) {
    let card = null;
    for (const c of view.calls.values()) if (c.li.dataset.approvalId === data.approval_id) card = c;
    if (!card) return;
    const who = data.decided_by || "nobody";
    card.li.dataset.decision = data.approved ? "approved" : "denied";
    card.decisionText = data.approved ? `approved by ${who}`
      : data.reason === "expired" && !data.decided_by ? "expired: not approved in time"
        : `denied by ${who}${data.reason ? `: ${data.reason}` : ""}`;
    card.status.textContent = card.decisionText;
    card.approval.hidden = true;
    card.approval.replaceChildren();
  }

  /** What each numbered tool event does to the answer's view. */
  const TOOL_EVENTS = {
    tool_call_start: (view, d) => toolCard(view, d.tool_call_id, d.name),
    tool_call_delta: (view, d) => {
      const card = toolCard(view, d.tool_call_id);
      card.argsText += d.delta;
      card.args.textContent = card.argsText;
    },
    tool_call: (view, d) => showArguments(toolCard(view, d.tool_call_id, d.name), d.arguments),
    tool_approval_request: showApprovalRequest,
    tool_approval: showApproval,
    tool_result: (view, d) => showResult(toolCard(view, d.tool_call_id, d.name), d),
  };

  function setAssistantStatus(view, status, note) {
    view.li.dataset.status = status;
    view.li.setAttribute("aria-busy", status === "streaming" ? "true" : "false");
    view.label.textContent = note || (STATUS_LABELS[status] ?? status);
  }

  function clearMessages() {
    state.historyShown = null;
    clearTyping();
    state.typingSentAt = 0;
    ui.messages.replaceChildren();
    state.rendered.clear();
    state.streams.clear();
    clearQueue();
  }

  /** The role of `userId` in the conversation shown, from get_conversation ("owner", "member"), if known. */
  function roleOf(userId) {
    const members = state.details && Array.isArray(state.details.members) ? state.details.members : [];
    const found = members.find((m) => m && m.user_id === userId);
    return found ? found.role : null;
  }

  /**
   * Who may enter the conversation shown, with their roles: joined's `members` (ids, the
   * authority on who is in), roles from get_conversation. The owner (or an admin) may
   * remove the others; a member may leave.
   */
  function renderMembers() {
    const detailed = state.details && Array.isArray(state.details.members) ? state.details.members.map((m) => m.user_id) : [];
    const ids = [...new Set([...state.members, ...detailed])];
    const iAmOwner = roleOf(state.userId) === "owner";
    const mayRemove = iAmOwner || state.roles.includes("admin");
    const items = ids.map((userId) => {
      const role = roleOf(userId);
      const me = userId === state.userId;
      let remove = null;
      if (mayRemove && !me && role !== "owner" && detailed.includes(userId)) {
        remove = h("button", {
          type: "button", class: "secondary small", "data-testid": "member-remove", "aria-label": `Remove ${userId}`, title: `Remove ${userId}`,
        }, "Remove");
        remove.addEventListener("click", () => removeMember(userId, remove));
      }
      return h("li", { class: "member", "data-testid": "member", "data-user-id": userId, "data-role": role },
        h("span", { class: "member-name" }, me ? `${userId} (you)` : userId),
        role ? h("span", { class: `role role-${role}`, "data-testid": "member-role" }, role) : null,
        remove);
    });
    ui.members.replaceChildren(...items);
    if (!items.length) ui.members.append(h("li", { class: "muted" }, "—"));
    const mine = roleOf(state.userId);
    ui.leave.hidden = !state.conversationId || mine !== "member";
    ui.deleteConversation.hidden = !state.conversationId || !(mine === "owner" || state.roles.includes("admin"));
  }

  function memberIds(members) {
    if (!Array.isArray(members)) return [];
    return members
      .map((m) => (typeof m === "string" ? m : m && (m.user_id || m.id)))
      .filter((m) => typeof m === "string");
  }

  // ----------------------------------------------------------------- streams

  /** The stream view for stream_id, created (in the current conversation) on first use. */
  function streamView(data) {
    let view = state.streams.get(data.stream_id);
    if (!view) {
      const parts = assistantMessage({ messageId: data.message_id, streamId: data.stream_id, status: "streaming", assistant: data.assistant });
      // held: the last seq shown; resuming: a resume_stream is in flight; lossy: resuming failed,
      // so the live tail is shown as it comes (stream_end still brings the whole text).
      view = { ...parts, held: 0, resuming: false, lossy: false, ended: false, cancelling: false };
      state.streams.set(data.stream_id, view);
      append(parts.li);
    } else if (data.message_id !== undefined && view.li.dataset.messageId === undefined) {
      view.li.dataset.messageId = data.message_id;
      state.rendered.set(String(data.message_id), view.li);
    }
    // A view made before its stream_start (a late joiner's) learns its assistant from it.
    if (typeof data.assistant === "string" && data.assistant) setAssistantName(view, data.assistant);
    return view;
  }

  /** The last seq shown of each answer still running, by stream id. */
  function heldPositions() {
    const held = {};
    for (const [streamId, view] of state.streams) {
      if (!view.ended && !view.lossy) held[streamId] = view.held;
    }
    return held;
  }

  function runningStream() {
    for (const [streamId, view] of state.streams) if (!view.ended) return { streamId, view };
    return null;
  }

  function updateControls() {
    // Not before the join is acknowledged: until then the server refuses `typing` (and files
    // would go to a conversation that may not exist yet).
    const joined = Boolean(state.conversationId) && state.joinedId === state.conversationId
      && Boolean(state.socket && state.socket.connected);
    const running = runningStream();
    ui.input.disabled = !joined;
    ui.input.placeholder = !joined ? (state.conversationId ? "Not connected…" : "Join a conversation to chat")
      // Only a message to be answered waits; one for the people in the room goes at once.
      : running ? (willAnswer("", answerFor("")) ? "An answer is running: what you send now waits for its turn"
        : "An answer is running: a message for an assistant (@name) waits for its turn")
        : "Write a message (Enter to send, Shift+Enter for a new line)";
    // While an answer runs, a send waits in the conversation's queue (sendMessage); while
    // files upload, it waits for them.
    const waiting = uploading();
    ui.send.disabled = !joined || waiting;
    ui.send.title = waiting ? "Waiting for the files to upload" : running ? "Sent now, answered after the running answer" : "";
    // Files alone make a message: the text is then optional.
    ui.input.required = uploadedFiles(state.conversationId).length === 0;
    ui.attach.hidden = state.filesOff;
    ui.fileInput.disabled = !joined || state.filesOff;
    ui.ask.disabled = !joined;
    if (!joined) closeMentions();
    ui.cancel.hidden = !running;
    ui.cancel.disabled = !joined || !running || running.view.cancelling;
    ui.cancel.textContent = running && running.view.cancelling ? "Cancelling…" : "Cancel";
    // Edit, Regenerate and < >: not while an answer runs (the server says `busy`), nor while
    // one of them or a send awaits its ack; a message needs its id.
    const branchBusy = !joined || Boolean(running) || state.sending > 0 || state.branchRequest !== null;
    for (const button of ui.messages.querySelectorAll(".branch-control")) {
      const li = button.closest(".msg");
      button.disabled = branchBusy || !li || li.dataset.messageId === undefined || button.dataset.target === "";
    }
  }

  function onStreamStart(data) {
    if (data.conversation_id !== state.conversationId) return;
    // A queued send's turn: out of the queue (its question came just before, as message_added).
    if (state.queue.has(data.stream_id)) removeQueued(data.stream_id);
    const isNew = !state.streams.has(data.stream_id);
    const view = streamView(data);
    updateControls();
    if (!isNew) return;
    const asked = askedHere(data.stream_id);
    if (asked) {
      view.branch = true; // drawn again from the history when it ends (its siblings)
      view.replaces = asked.replaces;
    }
    // The question it answers was told just before, as message_added (docs/protocol.md
    // section 10), so it is normally the newest message shown. When it is not (a
    // regeneration: its question is older, and the answer replaced must go; an edit not drawn
    // yet; a message this page missed), the history shows the branch again. This tab's own
    // edits and regenerations are drawn from it in any case (their `< 1/2 >`). Before the
    // history is shown (a join), it brings all of that itself.
    const parent = data.parent_id === undefined || data.parent_id === null ? null : String(data.parent_id);
    const placed = parent !== null && parent === lastStoredId();
    if (asked || (!placed && state.historyShown === data.conversation_id)) reloadBranch(data.conversation_id, view);
  }

  /**
   * Every numbered event of an answer (chunks, reasoning, tool events): one `seq` sequence,
   * one rule, then `apply` puts it in its place.
   */
  function onNumbered(data, apply) {
    if (data.conversation_id !== state.conversationId) return;
    const view = streamView(data);
    if (view.ended || typeof data.seq !== "number") return;
    // docs/protocol.md section 3: an event continues what the page holds when its first
    // position (`first_seq` on a merged chunk, else `seq`) is the held seq + 1. Anything else
    // is a repeat (dropped) or shows a gap: live events that came before the catch-up of a
    // resume. Those are dropped too, and a resume from the held seq fills the gap, in order.
    const first = typeof data.first_seq === "number" ? data.first_seq : data.seq;
    if (data.seq <= view.held) return; // a repeat
    if (first !== view.held + 1 && !view.lossy) {
      resumeStream(data.stream_id);
      return;
    }
    view.held = data.seq;
    // Kept so that a `stream_reset` can take back what a failed step showed.
    (view.applied ||= []).push({ seq: data.seq, apply, data });
    apply(view, data);
    if (isNearBottom()) ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  /**
   * stream_reset: a model step failed mid-way and is asked again. Everything the answer
   * showed after `after_seq` is taken back: its text, reasoning and tool cards are drawn
   * again from the events kept, and a note says it is being retried.
   */
  function onStreamReset(data) {
    onNumbered(data, (view) => {
      const kept = (view.applied || []).filter((e) => e.seq <= data.after_seq);
      view.applied = kept;
      view.source = "";
      view.thoughts.textContent = "";
      view.details.hidden = true;
      view.tools.replaceChildren();
      view.calls = new Map();
      for (const e of kept) e.apply(view, e.data);
      renderAnswer(view, { now: true });
      view.applied.push({ seq: data.seq, apply: () => {}, data });
      setAssistantStatus(view, "streaming", `retrying (${data.attempt})…`);
    });
  }

  /** stream_chunk and stream_reasoning. */
  function onStreamPiece(data, kind) {
    if (typeof data.content !== "string") return;
    onNumbered(data, (view) => {
      if (kind === "reasoning") {
        view.details.hidden = false;
        view.thoughts.append(data.content);
      } else {
        view.source += data.content;
        renderAnswer(view);
      }
    });
  }

  /**
   * Whether `data` ends a queued send that never started (cancelled while it waited, or
   * refused when its turn came): it leaves the queue and has no answer to show.
   */
  function endsUnstarted(data) {
    if (state.streams.has(data.stream_id)) return false;
    const known = state.queue.has(data.stream_id) || state.queueGone.has(data.stream_id);
    // A page that joined after the send was queued never saw it: a cancelled stream that
    // said nothing and never started is one too.
    if (!known && !(data.status === "cancelled" && !data.full_content)) return false;
    removeQueued(data.stream_id);
    return true;
  }

  function onStreamEnd(data) {
    if (data.conversation_id !== state.conversationId) return;
    refreshUsage(); // the answer is counted before its end is sent
    if (endsUnstarted(data)) return;
    const view = streamView(data);
    view.ended = true;
    if (typeof data.full_content === "string") view.source = data.full_content; // authoritative
    renderAnswer(view, { now: true });
    const reasoning = reasoningOf(data.parts);
    if (reasoning) {
      view.thoughts.textContent = reasoning;
      view.details.hidden = false;
    }
    showToolParts(view, data.parts); // authoritative too, should the page have missed any
    const status = data.status || "complete";
    // The asker's token budget ran out mid-answer (docs/protocol.md section 7).
    const budget = data.finish_reason === "budget";
    if (budget) view.li.dataset.finishReason = "budget";
    setAssistantStatus(view, status, budget ? "stopped: token budget used up" : undefined);
    updateControls();
    // The list: this conversation is the most recent now, with this answer as its preview.
    if (typeof data.full_content === "string") noteActivity(data.conversation_id, "assistant", data.full_content);
    seen(data.conversation_id, data.message_id); // stored before its end was sent
    // An edit's or regeneration's answer is stored now: the branch has a new version.
    if (view.branch) reloadBranch(data.conversation_id, view);
  }

  function onStreamError(data) {
    if (data.conversation_id !== state.conversationId) return;
    refreshUsage();
    if (!state.streams.has(data.stream_id) && (state.queue.has(data.stream_id) || state.queueGone.has(data.stream_id))) {
      const entry = state.queue.get(data.stream_id);
      removeQueued(data.stream_id);
      const who = !entry ? "A queued message" : entry.userId === state.userId ? "Your queued message" : `${entry.userId}'s queued message`;
      systemLine(`${who} was not answered: ${data.error || "unknown"} (${data.code || "error"})`, "error");
      return;
    }
    const view = streamView(data);
    view.ended = true;
    setAssistantStatus(view, "error", `error: ${data.error || data.code || "unknown"}${data.retryable ? " (retryable)" : ""}`);
    updateControls();
  }

  function onMessageResponse(data) {
    if (data.conversation_id !== state.conversationId) return;
    if (data.message_id !== undefined && state.rendered.has(String(data.message_id))) return;
    append(assistantMessage({ messageId: data.message_id, content: data.message, status: "complete", assistant: data.assistant }).li);
    updateControls();
    if (typeof data.message === "string") noteActivity(data.conversation_id, "assistant", data.message);
    seen(data.conversation_id, data.message_id);
  }

  /** Asks for the chunks of a running answer that this page missed (joined or reconnected mid-answer). */
  async function resumeStream(streamId) {
    const view = state.streams.get(streamId);
    const conversationId = state.conversationId;
    if (state.resumeFailed.has(streamId)) {
      if (view) {
        view.lossy = true;
        view.label.textContent = "streaming (joined mid-answer)…";
      }
      return;
    }
    if (view && view.resuming) return; // one at a time: it sends everything after `held`
    if (view) view.resuming = true;
    try {
      await request("resume_stream", { conversation_id: conversationId, stream_id: streamId, last_seq: view ? view.held : 0 });
    } catch (err) {
      state.resumeFailed.add(streamId);
      if (view) view.lossy = true;
      if (conversationId !== state.conversationId || !view || view.ended) return;
      if (err.code === "not_found") {
        // The answer ended while we were away: the history has it.
        await openConversation(conversationId, { rejoin: true });
      } else {
        // The live tail still arrives through the room, and stream_end has the whole text.
        view.label.textContent = "streaming (joined mid-answer)…";
      }
    } finally {
      if (view) view.resuming = false;
    }
  }

  // ------------------------------------------------------ group conversations

  // docs/protocol.md section 10: every user message stored (anyone's send or edit, this
  // tab's too) is told to the room as `message_added`, before the answer to it starts; the
  // conversation's `answer_policy` (and a send's `answer`) says whether an assistant answers,
  // and `@name` which one.

  /**
   * Whether `li` (an item of the list) is a message stored on the server: not a send of this
   * tab awaiting its ack, nor one that failed, nor an answer still running or one that failed.
   */
  function isStored(li) {
    if (!li.classList.contains("msg") || li.dataset.messageId === undefined) return false;
    const status = li.dataset.status;
    return status !== "pending" && status !== "failed" && status !== "streaming" && status !== "error";
  }

  /** The newest stored message shown: what the next message follows, what mark_read marks. */
  function lastStoredId() {
    const items = ui.messages.children;
    for (let i = items.length - 1; i >= 0; i -= 1) if (isStored(items[i])) return items[i].dataset.messageId;
    return null;
  }

  /** The first answer still running in the list: a message stored meanwhile goes above it. */
  function runningAnchor() {
    for (const li of ui.messages.children) if (li.classList.contains("msg-assistant") && li.dataset.status === "streaming") return li;
    return undefined;
  }

  /**
   * Where a message just stored goes: above what is not stored yet (an answer running, which
   * the server stores after the messages posted while it runs; a send of this tab awaiting
   * its ack), else at the end.
   */
  function storedAnchor(except) {
    for (const li of ui.messages.children) {
      if (li === except || !li.classList.contains("msg")) continue;
      if ((li.classList.contains("msg-assistant") && li.dataset.status === "streaming")
        || (li.dataset.status === "pending" && li.dataset.messageId === undefined)) return li;
    }
    return undefined;
  }

  /** This tab's send that `m` (a message_added) stores, when it is one awaiting its ack. */
  function claimSend(m) {
    if (m.user_id !== state.userId) return null;
    for (const send of state.pendingSends) {
      if (send.added || send.conversationId !== state.conversationId || send.message !== m.content) continue;
      send.added = m;
      return send;
    }
    return null;
  }

  /** message_added: a user message was stored; shown once, by message_id (a resume may tell it again). */
  function onMessageAdded(data) {
    const m = data && data.message;
    if (!m || m.message_id === undefined || m.message_id === null || typeof data.conversation_id !== "string") return;
    const conversationId = data.conversation_id;
    const id = String(m.message_id);
    if (conversationId !== state.conversationId) {
      // A room this tab is leaving: its item counts it.
      addUnread(conversationId, 1);
      return;
    }
    // A queued send whose turn came: out of the queue, into the conversation.
    for (const [streamId, entry] of state.queue) if (entry.messageId === id) removeQueued(streamId);
    const fresh = !state.rendered.has(id);
    if (fresh) {
      const parent = m.parent_id === undefined || m.parent_id === null ? null : String(m.parent_id);
      // A message follows the newest one shown (a send goes after the active branch's leaf).
      // One that does not is an edit (beside an older message: the branch moved) or follows
      // something this page missed: the history shows the branch again. Before the history
      // is shown (a join), it goes below whatever the history brings.
      if (state.historyShown === conversationId && parent !== lastStoredId()) {
        reloadBranch(conversationId);
      } else {
        const send = claimSend(m);
        let li;
        if (send) {
          li = send.li;
          li.dataset.messageId = id;
          li.dataset.status = "sent";
          state.rendered.set(id, li);
        } else {
          li = historyNode(m);
        }
        append(li, storedAnchor(li));
        updateControls();
      }
      if (typeof m.content === "string") noteActivity(conversationId, "user", m.content);
    }
    // Read (one told again is marked again, harmlessly; it is not counted twice).
    if (fresh || inView()) seen(conversationId, id);
  }

  /** The names of the app's assistants (get_conversation.assistants), first the one that answers by default. */
  function assistantNames() {
    const list = state.details && Array.isArray(state.details.assistants) ? state.details.assistants : [];
    return list.map((a) => a && a.name).filter((n) => typeof n === "string" && n);
  }

  /** Whether `text` calls an assistant in: `@name` (any case) at the start of a word, as the server reads it. */
  function mentionsAssistant(text) {
    const names = assistantNames().map((n) => n.toLowerCase());
    for (const match of String(text).matchAll(/(?:^|\s)@([A-Za-z0-9_-]+)/g)) {
      if (names.includes(match[1].toLowerCase())) return true;
    }
    return false;
  }

  function answerPolicy() {
    return state.details && typeof state.details.answer_policy === "string" ? state.details.answer_policy : null;
  }

  /**
   * send_message.answer for `text`, or undefined to let the conversation's policy decide. The
   * Ask toggle starts as the policy does (on for `always`), so `answer` is sent only where the
   * user changed it; an @name calls its assistant whatever the toggle says, and a `never`
   * conversation is never asked (the server refuses `answer:true` there).
   */
  function answerFor(text) {
    const policy = answerPolicy();
    if (!policy || policy === "never" || mentionsAssistant(text)) return undefined;
    if (policy === "always") return ui.ask.checked ? undefined : false;
    return ui.ask.checked ? true : undefined; // "mention": asked without naming anyone
  }

  /** Whether a send of `text` with `answer` is answered (an answered one may have to queue). */
  function willAnswer(text, answer) {
    if (answer !== undefined) return answer;
    const policy = answerPolicy();
    return policy === null || policy === "always" || (policy === "mention" && mentionsAssistant(text));
  }

  /** "Who answers": update_conversation {answer_policy}; the choice shows once the server took it. */
  async function chooseAnswerPolicy() {
    const conversationId = state.conversationId;
    const policy = ui.policySelect.value;
    if (!conversationId || !state.details) return;
    ui.policySelect.disabled = true;
    try {
      const res = await request("update_conversation", { conversation_id: conversationId, answer_policy: policy });
      if (conversationId === state.conversationId && state.details) state.details.answer_policy = res.answer_policy;
      upsertItem(res);
    } catch (err) {
      if (conversationId === state.conversationId) systemLine(`Could not change who answers: ${describeError(err)}`, "error");
    } finally {
      ui.policySelect.disabled = false;
      renderDetails();
    }
  }

  // ------------------------------------------------------------- @completion

  /** The `@word` being typed at the caret when it starts a word: {start, end, prefix}. */
  function mentionAtCaret() {
    const input = ui.input;
    if (input.selectionStart !== input.selectionEnd) return null;
    const end = input.selectionStart;
    const match = /(?:^|\s)@([A-Za-z0-9_-]*)$/.exec(input.value.slice(0, end));
    return match ? { start: end - match[1].length - 1, end, prefix: match[1] } : null;
  }

  /** Shows (or hides) the assistants whose name starts with the `@word` typed. */
  function updateMentions() {
    const at = ui.input.disabled || document.activeElement !== ui.input ? null : mentionAtCaret();
    const prefix = at ? at.prefix.toLowerCase() : "";
    const names = at ? assistantNames().filter((n) => n.toLowerCase().startsWith(prefix)) : [];
    // Nothing to complete: nothing typed matches, or the name is typed whole.
    if (!names.length || (names.length === 1 && names[0].toLowerCase() === prefix)) {
      closeMentions();
      return;
    }
    const before = state.mention && state.mention.names[state.mention.active];
    state.mention = { ...at, names, active: Math.max(0, names.indexOf(before)) };
    renderMentions();
  }

  function renderMentions() {
    const m = state.mention;
    ui.mentionList.replaceChildren(...m.names.map((name, i) => {
      const badge = h("span", { "aria-hidden": "true" });
      fillAvatar(badge, name);
      const option = h("li", {
        id: `mention-option-${i}`,
        role: "option",
        class: "mention-option",
        "data-testid": "mention-option",
        "data-name": name,
        "aria-selected": String(i === m.active),
      }, badge, `@${name}`);
      option.addEventListener("mousedown", (e) => e.preventDefault()); // the input keeps the focus
      option.addEventListener("click", () => {
        if (!state.mention) return;
        state.mention.active = i;
        pickMention();
      });
      return option;
    }));
    ui.mentionList.hidden = false;
    ui.input.setAttribute("aria-expanded", "true");
    ui.input.setAttribute("aria-activedescendant", `mention-option-${m.active}`);
  }

  function closeMentions() {
    if (!state.mention && ui.mentionList.hidden) return;
    state.mention = null;
    ui.mentionList.hidden = true;
    ui.mentionList.replaceChildren();
    ui.input.setAttribute("aria-expanded", "false");
    ui.input.removeAttribute("aria-activedescendant");
  }

  /** The highlighted name replaces the `@word` typed, followed by a space. */
  function pickMention() {
    const m = state.mention;
    if (!m) return;
    const value = ui.input.value;
    const rest = value.slice(m.end);
    const insert = `@${m.names[m.active]}${/^\s/.test(rest) ? "" : " "}`;
    ui.input.value = value.slice(0, m.start) + insert + rest;
    const caret = m.start + insert.length;
    ui.input.setSelectionRange(caret, caret);
    closeMentions();
    ui.input.focus();
  }

  /** A key in the composer while the list is open: arrows move, Tab or Enter picks, Escape closes. */
  function mentionKey(e) {
    const m = state.mention;
    if (!m || e.isComposing || e.altKey || e.ctrlKey || e.metaKey) return false;
    if (e.key === "ArrowDown" || e.key === "ArrowUp") {
      m.active = (m.active + (e.key === "ArrowDown" ? 1 : m.names.length - 1)) % m.names.length;
      renderMentions();
    } else if ((e.key === "Tab" || e.key === "Enter") && !e.shiftKey) {
      pickMention();
    } else if (e.key === "Escape") {
      closeMentions();
    } else {
      return false;
    }
    e.preventDefault();
    return true;
  }

  // ------------------------------------------------------------ unread marks

  // list_conversations gives each item's `unread`; the conversation shown is marked read
  // (mark_read with its newest message) when it opens, when a message arrives while the user
  // sees it, and when the tab comes back into view.

  /** The item's badge says `count` (or `add` more). */
  function setUnread(conversationId, count, add = false) {
    const item = state.list.items.get(conversationId);
    if (!item) return;
    item.data.unread = Math.max(0, (add ? Number(item.data.unread) || 0 : 0) + count);
    fillItem(item);
  }

  function addUnread(conversationId, count) {
    setUnread(conversationId, count, true);
  }

  /** Whether the user sees the conversation shown now. */
  function inView() {
    return document.visibilityState === "visible";
  }

  /** `messageId` arrived in the conversation shown: read if the user sees it, else one more unread. */
  function seen(conversationId, messageId) {
    if (conversationId !== state.conversationId || state.historyShown !== conversationId) return;
    if (inView()) {
      setUnread(conversationId, 0);
      markRead(conversationId, messageId);
    } else {
      addUnread(conversationId, 1);
    }
  }

  /** The conversation shown is read up to its newest message (opened, or back in view). */
  function seenAll() {
    const conversationId = state.conversationId;
    if (!conversationId || state.historyShown !== conversationId || !inView()) return;
    setUnread(conversationId, 0);
    const newest = lastStoredId();
    if (newest !== null) markRead(conversationId, newest);
  }

  /** mark_read, one request at a time: the newest mark asked for meanwhile follows it. */
  async function markRead(conversationId, messageId) {
    if (messageId === undefined || messageId === null) return;
    let mark = state.marking;
    if (!mark || mark.conversationId !== conversationId) {
      mark = { conversationId, messageId: null, sent: null, busy: false };
      state.marking = mark;
    }
    mark.messageId = String(messageId);
    if (mark.busy) return;
    mark.busy = true;
    try {
      while (mark.messageId !== mark.sent) {
        const next = mark.messageId;
        mark.sent = next;
        // Best effort: only the badge depends on it (an answer that said nothing is not stored: not_found).
        await request("mark_read", { conversation_id: conversationId, message_id: next }).catch(() => {});
      }
    } finally {
      mark.busy = false;
    }
  }

  let listRefreshTimer = null;

  /**
   * The list's first page again, merged, soon (one request for several notices): how it
   * brings the `unread` of conversations this tab is not in the room of (message_added only
   * reaches the room).
   */
  function refreshListSoon() {
    clearTimeout(listRefreshTimer);
    listRefreshTimer = setTimeout(() => {
      if (!state.list.renaming) loadList({ merge: true });
    }, 300);
  }

  // ----------------------------------------------------------- conversations

  /** The messages of a get_history ack, oldest first, whatever order the server used (stable for equal times). */
  function sortedHistory(messages) {
    const keyed = (Array.isArray(messages) ? messages : []).map((m, i) => ({ m, i, t: timeOf(m.created_at) }));
    if (keyed.every((k) => k.t !== null)) keyed.sort((a, b) => a.t - b.t || a.i - b.i);
    return keyed.map((k) => k.m);
  }

  /** A message of get_history as a list item. */
  function historyNode(m) {
    return m.role === "assistant"
      ? assistantMessage({ messageId: m.message_id, content: m.content, createdAt: m.created_at, status: "complete", reasoning: reasoningOf(m.parts), parts: m.parts, siblings: m.siblings, assistant: m.assistant }).li
      : m.role === "user"
        ? userMessage({ messageId: m.message_id, userId: m.user_id, content: m.content, createdAt: m.created_at, siblings: m.siblings, attachments: m.attachments })
        : h("li", { class: "system", "data-testid": "system-line" }, `${m.role || "system"}: ${m.content}`);
  }

  /** Loads the history into the list, right after `afterNode` (the join line). */
  async function loadHistory(conversationId, afterNode, current = () => conversationId === state.conversationId) {
    let res;
    try {
      res = await request("get_history", { conversation_id: conversationId, limit: HISTORY_LIMIT });
    } catch (err) {
      if (current()) systemLine(`Could not load the history: ${describeError(err)}`, "error");
      return;
    }
    if (!current()) return;
    const messages = sortedHistory(res.messages);
    // History is older than anything that arrived live meanwhile: insert above it.
    const anchor = afterNode && afterNode.parentNode ? afterNode.nextSibling : ui.messages.firstChild;
    for (const m of messages) {
      if (m.message_id !== undefined && state.rendered.has(String(m.message_id))) continue;
      append(historyNode(m), anchor);
    }
    if (!messages.length && afterNode) afterNode.textContent += " No messages yet: say something!";
    ui.messages.scrollTop = ui.messages.scrollHeight;
    state.historyShown = conversationId;
    updateControls();
    seenAll(); // opened: read up to its newest message
  }

  /** Joins a conversation and shows it; `rejoin` reloads the one shown (after a reconnect). */
  async function openConversation(conversationId, { rejoin = false } = {}) {
    if (!CONVERSATION_ID.test(conversationId)) {
      systemLine("A conversation id is 1-128 characters of A-Z a-z 0-9 _ . : -", "error");
      return;
    }
    const generation = ++state.opens;
    const current = () => generation === state.opens && conversationId === state.conversationId;
    const previous = state.conversationId;
    if (previous !== conversationId) clearAttachments({ discard: true }); // uploaded to the other conversation
    if (previous && previous !== conversationId && state.socket && state.socket.connected) {
      request("leave_conversation", { conversation_id: previous }).catch(() => {});
    }
    state.conversationId = conversationId;
    state.joinedId = null;
    state.members = [];
    if (previous !== conversationId) state.details = null;
    clearMessages();
    ui.current.textContent = conversationId;
    ui.conversationInput.value = conversationId;
    ui.currentBox.hidden = false;
    renderMembers();
    renderDetails();
    markActiveItem();
    closeDrawer();
    updateControls();
    const joinLine = systemLine(rejoin ? `Rejoining ${conversationId}…` : `Joining ${conversationId}…`);
    let created = false;
    try {
      const res = await request("join_conversation", { conversation_id: conversationId });
      if (!current()) return;
      state.joinedId = conversationId;
      if (res.members) { state.members = memberIds(res.members); renderMembers(); }
      created = res.created === true;
    } catch (err) {
      if (!current()) return;
      state.conversationId = null;
      state.details = null;
      ui.currentBox.hidden = true;
      renderDetails();
      markActiveItem();
      systemLine(`Could not join ${conversationId}: ${describeError(err)}`, "error");
      // Deleted, or no longer ours: not in the list any more either.
      if (err.code === "not_found" || err.code === "forbidden") dropItem(conversationId);
      updateControls();
      return;
    }
    const url = new URL(window.location.href);
    url.hash = conversationId;
    history.replaceState(null, "", url);
    joinLine.textContent = created ? `Created ${conversationId}: invite others to join it.` : `Joined ${conversationId}.`;
    updateControls();
    refreshUsage();
    loadDetails(conversationId);
    await loadHistory(conversationId, joinLine, current);
  }

  /**
   * The conversation shown is gone for this user (deleted, or they were removed or left):
   * its messages are taken away and `why` is said in their place.
   */
  function closeConversation(conversationId, why) {
    if (conversationId !== state.conversationId) return;
    state.opens += 1; // whatever was loading for it stops
    clearAttachments();
    clearMessages();
    state.conversationId = null;
    state.joinedId = null;
    state.details = null;
    state.members = [];
    ui.currentBox.hidden = true;
    ui.current.textContent = "";
    if (ui.conversationInput.value === conversationId) ui.conversationInput.value = "";
    const url = new URL(window.location.href);
    url.hash = "";
    history.replaceState(null, "", url);
    renderDetails();
    markActiveItem();
    systemLine(why, "closed");
    updateControls();
  }

  /** get_conversation for the conversation shown: title, model, prompt, members with roles, what may be changed. */
  async function loadDetails(conversationId) {
    const generation = ++state.detailsLoads;
    let res;
    try {
      res = await request("get_conversation", { conversation_id: conversationId });
    } catch (err) {
      if (conversationId === state.conversationId && generation === state.detailsLoads && err.code !== "disconnected") {
        systemLine(`Could not load the conversation's details: ${describeError(err)}`, "error");
      }
      return;
    }
    upsertItem(res); // the list follows what it says (a conversation just created enters it)
    if (conversationId !== state.conversationId || generation !== state.detailsLoads) return;
    state.details = res;
    // Its members are the authority now (one removed meanwhile is no longer listed).
    if (Array.isArray(res.members)) state.members = memberIds(res.members);
    renderMembers();
    renderDetails();
  }

  /** The models a conversation may use (the default first), from get_conversation. */
  function offeredModels() {
    const d = state.details;
    return d && Array.isArray(d.models) ? d.models.filter((m) => typeof m === "string" && m) : [];
  }

  /** The chat's heading (title), the model picker and the prompt box, from state.details. */
  function renderDetails() {
    const d = state.conversationId ? state.details : null;
    ui.chatHead.hidden = !state.conversationId;
    ui.heading.textContent = d ? titleOf(d) : state.conversationId || "";
    ui.heading.title = state.conversationId || "";
    const models = d ? offeredModels() : [];
    ui.modelBox.hidden = models.length === 0;
    if (models.length) {
      const chosen = d.model && models.includes(d.model) ? d.model : models[0];
      const options = [...models];
      if (d.model && !models.includes(d.model)) options.push(d.model); // no longer offered: still shown
      const same = ui.modelSelect.options.length === options.length
        && [...ui.modelSelect.options].every((o, i) => o.value === options[i]);
      if (!same) {
        ui.modelSelect.replaceChildren(...options.map((m, i) => h("option", { value: m }, i === 0 ? `${m} (default)` : m)));
      }
      if (!ui.modelSelect.disabled) ui.modelSelect.value = d.model || models[0];
      ui.modelSelect.dataset.model = chosen;
    } else {
      delete ui.modelSelect.dataset.model;
    }
    // Who answers (answer_policy), and the composer's Ask toggle: it starts as the policy
    // does (on for `always`, off for `mention`), again whenever the policy or the conversation
    // changes; a `never` conversation has none (people only).
    const policy = d && typeof d.answer_policy === "string" ? d.answer_policy : null;
    ui.policyBox.hidden = policy === null;
    if (policy !== null && !ui.policySelect.disabled) ui.policySelect.value = policy;
    ui.policySelect.dataset.policy = policy || "";
    const policyKey = policy === null ? null : `${state.conversationId}|${policy}`;
    if (policyKey !== state.policyShown) {
      state.policyShown = policyKey;
      ui.ask.checked = policy === "always";
    }
    ui.askBox.hidden = policy === null || policy === "never";
    updateControls(); // the composer's hint follows the policy and the toggle
    const maxPrompt = d && typeof d.max_system_prompt_chars === "number" ? d.max_system_prompt_chars : 0;
    ui.promptBox.hidden = maxPrompt <= 0;
    if (maxPrompt > 0) {
      ui.promptInput.maxLength = maxPrompt;
      // Not while the user edits it.
      if (document.activeElement !== ui.promptInput && !ui.promptForm.dataset.dirty) ui.promptInput.value = d.system_prompt || "";
    }
  }

  /** Model picker: update_conversation {model}; the choice shows once the server took it. */
  async function chooseModel() {
    const conversationId = state.conversationId;
    const models = offeredModels();
    // The first is "the default": "" follows the app's default, should it change.
    const model = ui.modelSelect.value === models[0] ? "" : ui.modelSelect.value;
    if (!conversationId || !state.details) return;
    ui.modelSelect.disabled = true;
    try {
      const res = await request("update_conversation", { conversation_id: conversationId, model });
      if (conversationId === state.conversationId && state.details) Object.assign(state.details, { model: res.model, title: res.title, system_prompt: res.system_prompt });
      upsertItem(res);
    } catch (err) {
      if (conversationId === state.conversationId) systemLine(`Could not change the model: ${describeError(err)}`, "error");
    } finally {
      ui.modelSelect.disabled = false;
      renderDetails();
    }
  }

  /** The prompt box: update_conversation {system_prompt} ("" removes it). */
  async function saveSystemPrompt() {
    const conversationId = state.conversationId;
    if (!conversationId) return;
    const prompt = ui.promptInput.value.trim();
    ui.promptStatus.textContent = "Saving…";
    try {
      const res = await request("update_conversation", { conversation_id: conversationId, system_prompt: prompt });
      if (conversationId !== state.conversationId) return;
      delete ui.promptForm.dataset.dirty;
      if (state.details) state.details.system_prompt = res.system_prompt;
      ui.promptInput.value = res.system_prompt || "";
      ui.promptStatus.textContent = prompt ? "Saved: the next answer follows it." : "Removed.";
    } catch (err) {
      if (conversationId === state.conversationId) ui.promptStatus.textContent = `Not saved: ${describeError(err)}`;
    }
  }

  /** Remove on a member (the owner's): remove_member, once confirmed. */
  async function removeMember(userId, button) {
    const conversationId = state.conversationId;
    if (!conversationId) return;
    if (!await confirmAction(`Remove ${userId} from this conversation? They will no longer be able to open it.`, "Remove")) return;
    button.disabled = true;
    try {
      await request("remove_member", { conversation_id: conversationId, user_id: userId });
      if (conversationId !== state.conversationId) return;
      state.members = state.members.filter((m) => m !== userId);
      systemLine(`Removed ${userId}.`);
      loadDetails(conversationId);
    } catch (err) {
      button.disabled = false;
      if (conversationId === state.conversationId) systemLine(`Could not remove ${userId}: ${describeError(err)}`, "error");
    }
  }

  /** Leave (a member's): remove_member with one's own id, for good; `removed` follows. */
  async function leaveConversation() {
    const conversationId = state.conversationId;
    if (!conversationId) return;
    const title = state.details ? titleOf(state.details) : conversationId;
    if (!await confirmAction(`Leave “${title}” for good? Only an invitation lets you back in.`, "Leave")) return;
    try {
      await request("remove_member", { conversation_id: conversationId, user_id: state.userId });
      dropItem(conversationId);
      closeConversation(conversationId, "You left this conversation.");
    } catch (err) {
      if (conversationId === state.conversationId) systemLine(`Could not leave: ${describeError(err)}`, "error");
    }
  }

  /** Delete (the owner's, or an admin's): delete_conversation, once confirmed; `conversation_deleted` follows. */
  async function deleteConversation(conversationId) {
    const item = state.list.items.get(conversationId);
    const data = item ? item.data : conversationId === state.conversationId ? state.details : null;
    const title = data ? titleOf(data) : conversationId;
    if (!await confirmAction(`Delete “${title}” for everyone? Its messages and files are removed. This cannot be undone.`, "Delete")) return;
    try {
      await request("delete_conversation", { conversation_id: conversationId });
      dropItem(conversationId);
      closeConversation(conversationId, "You deleted this conversation.");
    } catch (err) {
      listNote(`Could not delete “${title}”: ${describeError(err)}`, "error");
    }
  }

  // ------------------------------------------------------ conversation list

  /** A conversation's title, or what stands for it until it has one. */
  function titleOf(c) {
    return c && typeof c.title === "string" && c.title.trim() ? c.title : "New conversation";
  }

  function listNote(text, kind) {
    ui.listNote.textContent = text || "";
    ui.listNote.dataset.kind = kind || "info";
    ui.listNote.hidden = !text;
  }

  /**
   * Whether a conversation belongs in the list as it is shown (archive or not, the search).
   * The server decides what a search finds (titles; on SQL stores message text too): what it
   * listed stays; one it did not list enters only when its title holds the search.
   */
  function fitsList(c, { listed = false } = {}) {
    if (Boolean(c.archived) !== state.list.archived) return false;
    const query = state.list.query.trim().toLowerCase();
    if (!query || listed) return true;
    return typeof c.title === "string" && c.title.toLowerCase().includes(query);
  }

  /** Most recently active first; ties by id, as the server orders them. */
  function byActivity(a, b) {
    const ta = Number(a.updated_at) || 0;
    const tb = Number(b.updated_at) || 0;
    if (ta !== tb) return tb - ta;
    return a.conversation_id < b.conversation_id ? -1 : a.conversation_id > b.conversation_id ? 1 : 0;
  }

  /**
   * Loads the list from its start, or its next page (`more`). With `merge`, the first page
   * updates the list without clearing it (a refresh in the background: pages loaded with
   * More and a title being edited stay).
   */
  async function loadList({ more = false, merge = false } = {}) {
    if (!state.socket || !state.socket.connected) return;
    const generation = ++state.list.loads;
    const payload = { limit: 30 };
    if (state.list.archived) payload.archived = true;
    const query = state.list.query.trim();
    if (query) payload.query = query.slice(0, 200);
    if (more && state.list.nextBefore) payload.before = state.list.nextBefore;
    ui.list.setAttribute("aria-busy", "true");
    ui.more.disabled = true;
    let res;
    try {
      res = await request("list_conversations", payload);
    } catch (err) {
      if (generation === state.list.loads) {
        ui.list.setAttribute("aria-busy", "false");
        ui.more.disabled = false;
        listNote(`Could not load the list: ${describeError(err)}`, "error");
      }
      return;
    }
    if (generation !== state.list.loads) return;
    ui.list.setAttribute("aria-busy", "false");
    ui.more.disabled = false;
    listNote("");
    const got = Array.isArray(res.conversations) ? res.conversations : [];
    if (merge) {
      // The whole list fits in this page: what it lacks is gone.
      if (res.next_before === null && state.list.pages <= 1) {
        const ids = new Set(got.map((c) => c.conversation_id));
        for (const id of [...state.list.items.keys()]) if (!ids.has(id) && id !== state.list.renaming) dropItem(id);
      }
      for (const c of got) upsertItem(c, { fromList: true });
      if (state.list.pages <= 1) state.list.nextBefore = typeof res.next_before === "string" ? res.next_before : null;
      renderList();
      return;
    }
    if (!more) {
      for (const item of state.list.items.values()) item.li.remove();
      state.list.items.clear();
      state.list.renaming = null;
      state.list.pages = 0;
    }
    state.list.pages += 1;
    for (const c of got) upsertItem(c, { fromList: true });
    state.list.nextBefore = typeof res.next_before === "string" ? res.next_before : null;
    renderList();
  }

  /**
   * The list as it is shown, again: items in order, More when there is a next page, a note
   * when it is empty.
   */
  function renderList() {
    const items = [...state.list.items.values()].sort((a, b) => byActivity(a.data, b.data));
    // Only what moved is moved: an item being renamed keeps its focus.
    items.forEach((item, i) => {
      if (ui.list.children[i] !== item.li) ui.list.insertBefore(item.li, ui.list.children[i] || null);
    });
    while (ui.list.children.length > items.length) ui.list.lastElementChild.remove();
    ui.more.hidden = !state.list.nextBefore;
    if (!items.length && ui.listNote.dataset.kind !== "error") {
      listNote(state.list.query.trim() ? "No conversation matches the search."
        : state.list.archived ? "Nothing archived." : "No conversations yet: start one with New conversation.");
    } else if (items.length && ui.listNote.dataset.kind !== "error") {
      listNote("");
    }
    markActiveItem();
  }

  /**
   * A conversation record (from list_conversations, get_conversation, an update's ack or
   * conversation_updated) into the list: added, updated, moved to its place, or taken out
   * when it does not belong in the list shown. Fields it lacks are kept.
   */
  function upsertItem(record, { fromList = false } = {}) {
    if (!record || typeof record.conversation_id !== "string") return;
    const id = record.conversation_id;
    const item = state.list.items.get(id);
    const data = { ...(item ? item.data : {}) };
    for (const [key, value] of Object.entries(record)) {
      if (value !== undefined && key !== "status" && key !== "members" && key !== "models") data[key] = value;
    }
    if (data.archived === undefined) data.archived = false;
    // The conversation the user sees is read (marked as its messages arrive): a list read a
    // moment before a mark counts none there.
    if (id === state.conversationId && state.historyShown === id && inView()) data.unread = 0;
    if (!fitsList(data, { listed: fromList || Boolean(item) })) {
      if (item) dropItem(id);
      return;
    }
    if (!item && !fromList && state.list.nextBefore) {
      // Older than every conversation loaded: it shows when its page is loaded (More).
      let oldest = null;
      for (const it of state.list.items.values()) if (!oldest || byActivity(it.data, oldest) > 0) oldest = it.data;
      if (oldest && byActivity(data, oldest) > 0) return;
    }
    if (item) {
      item.data = data;
      fillItem(item);
    } else {
      const created = { data, li: null };
      created.li = itemNode(created);
      state.list.items.set(id, created);
    }
    if (!fromList) renderList();
  }

  function dropItem(conversationId) {
    const item = state.list.items.get(conversationId);
    if (!item) return;
    state.list.items.delete(conversationId);
    if (state.list.renaming === conversationId) state.list.renaming = null;
    item.li.remove();
    renderList();
  }

  /** Whether this user may delete `data` (its creator, or an admin). */
  function mayDelete(data) {
    return data.created_by === state.userId || state.roles.includes("admin");
  }

  /** One conversation of the list: opens on a click; Rename, Archive (or Unarchive) and Delete. */
  function itemNode(item) {
    const id = item.data.conversation_id;
    const li = h("li", { class: "conversation-item", "data-testid": "conversation-item", "data-conversation-id": id });
    const open = h("button", { type: "button", class: "conversation-open", "data-testid": "conversation-open" },
      h("span", { class: "conversation-title", "data-testid": "conversation-title" }),
      h("span", { class: "conversation-preview", "data-testid": "conversation-preview" }),
      h("time", { class: "conversation-time" }),
      // What this user has not read there (list_conversations' `unread`, kept current by this page).
      h("span", { class: "unread-badge", "data-testid": "unread-badge", "aria-hidden": "true", hidden: "" }));
    open.addEventListener("click", () => {
      if (state.list.renaming === id) return;
      if (id === state.conversationId) { closeDrawer(); return; }
      openConversation(id);
    });
    const rename = h("button", { type: "button", class: "link-button", "data-testid": "conversation-rename" }, "Rename");
    rename.addEventListener("click", () => startRename(item));
    const archive = h("button", { type: "button", class: "link-button", "data-testid": "conversation-archive" });
    archive.addEventListener("click", () => archiveConversation(item.data.conversation_id, !item.data.archived));
    const remove = h("button", { type: "button", class: "link-button danger-link", "data-testid": "conversation-delete" }, "Delete");
    remove.addEventListener("click", () => deleteConversation(id));
    li.append(open, h("div", { class: "conversation-actions" }, rename, archive, remove));
    Object.assign(item, { open, rename, archive, remove });
    item.li = li;
    fillItem(item);
    return li;
  }

  /** An item's title, preview, time and buttons, from its data. */
  function fillItem(item) {
    const { data, li } = item;
    const title = li.querySelector(".conversation-title");
    if (state.list.renaming !== data.conversation_id) title.textContent = titleOf(data);
    title.classList.toggle("untitled", !(typeof data.title === "string" && data.title.trim()));
    li.dataset.archived = data.archived ? "true" : "false";
    const last = data.last_message && typeof data.last_message.preview === "string" ? data.last_message : null;
    li.querySelector(".conversation-preview").textContent = last ? last.preview : "No messages yet";
    const time = li.querySelector(".conversation-time");
    const at = Number(data.updated_at);
    time.textContent = at ? shortTime(at) : "";
    if (at) time.dateTime = new Date(at).toISOString();
    item.archive.textContent = data.archived ? "Unarchive" : "Archive";
    item.archive.dataset.testid = data.archived ? "conversation-unarchive" : "conversation-archive";
    item.remove.hidden = !mayDelete(data);
    const unread = Math.max(0, Number(data.unread) || 0);
    const badge = li.querySelector(".unread-badge");
    badge.hidden = unread === 0;
    badge.textContent = unread > 99 ? "99+" : String(unread);
    li.dataset.unread = String(unread);
    item.open.setAttribute("aria-label", `${titleOf(data)}${unread ? ` (${unread} unread)` : ""}${last ? `: ${last.preview}` : ""}`);
  }

  /** "14:05" today, "12 Mar" otherwise. */
  function shortTime(ms) {
    const date = new Date(ms);
    const today = new Date();
    return date.toDateString() === today.toDateString()
      ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })
      : date.toLocaleDateString([], { day: "numeric", month: "short" });
  }

  function markActiveItem() {
    for (const [id, item] of state.list.items) {
      const active = id === state.conversationId;
      item.li.classList.toggle("active", active);
      if (active) item.open.setAttribute("aria-current", "true"); else item.open.removeAttribute("aria-current");
    }
  }

  /** Rename: the title becomes a field; Enter saves (update_conversation), Escape cancels. */
  function startRename(item) {
    const id = item.data.conversation_id;
    if (state.list.renaming && state.list.renaming !== id) {
      const other = state.list.items.get(state.list.renaming);
      if (other) stopRename(other);
    }
    if (item.li.querySelector(".rename-input")) return;
    state.list.renaming = id;
    const input = h("input", {
      class: "rename-input", "data-testid": "conversation-rename-input", maxlength: 200, "aria-label": "New title", autocomplete: "off",
    });
    input.value = typeof item.data.title === "string" ? item.data.title : "";
    input.addEventListener("keydown", async (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        stopRename(item);
        item.open.focus();
      } else if (e.key === "Enter" && !e.isComposing) {
        e.preventDefault();
        const title = input.value.replace(/\s+/g, " ").trim();
        if (!title || title === item.data.title) { stopRename(item); return; }
        input.disabled = true;
        try {
          const res = await request("update_conversation", { conversation_id: id, title });
          stopRename(item);
          upsertItem(res);
          if (id === state.conversationId && state.details) { state.details.title = res.title; renderDetails(); }
          item.open.focus();
        } catch (err) {
          input.disabled = false;
          input.setCustomValidity(describeError(err));
          input.reportValidity();
          listNote(`Not renamed: ${describeError(err)}`, "error");
        }
      }
    });
    input.addEventListener("input", () => input.setCustomValidity(""));
    input.addEventListener("blur", () => { if (!input.disabled) setTimeout(() => stopRename(item), 0); });
    item.li.classList.add("renaming");
    item.open.before(input);
    input.focus();
    input.select();
  }

  function stopRename(item) {
    const input = item.li.querySelector(".rename-input");
    if (input) input.remove();
    item.li.classList.remove("renaming");
    if (state.list.renaming === item.data.conversation_id) state.list.renaming = null;
    fillItem(item);
  }

  /** Archive and Unarchive: archive_conversation; the item leaves the list shown. */
  async function archiveConversation(conversationId, archived) {
    try {
      await request("archive_conversation", { conversation_id: conversationId, archived });
      dropItem(conversationId);
      listNote(archived ? "Archived: see it under Archived." : "Back in your conversations.");
    } catch (err) {
      listNote(`Could not ${archived ? "archive" : "unarchive"} it: ${describeError(err)}`, "error");
    }
  }

  /** A message of the conversation shown was stored: its item moves to the top with it as preview. */
  function noteActivity(conversationId, role, text) {
    const item = state.list.items.get(conversationId);
    if (!item) {
      // Not listed yet (created here, or unarchived elsewhere): its record says where it goes.
      if (state.socket && state.socket.connected) {
        request("get_conversation", { conversation_id: conversationId }).then((res) => upsertItem(res), () => {});
      }
      return;
    }
    const updatedAt = Math.max(Date.now(), (Number(item.data.updated_at) || 0) + 1);
    upsertItem({
      conversation_id: conversationId,
      updated_at: updatedAt,
      last_message: { role, preview: Array.from(String(text)).slice(0, 140).join(""), created_at: updatedAt },
    });
  }

  const POLICY_WORDS = { always: "every message", mention: "on @mention", never: "nobody (people only)" };

  /** conversation_updated: to every member, joined or not. */
  function onConversationUpdated(data) {
    if (!data || typeof data.conversation_id !== "string") return;
    const id = data.conversation_id;
    const item = state.list.items.get(id);
    if (item) {
      upsertItem({ conversation_id: id, title: data.title, model: data.model, answer_policy: data.answer_policy, updated_at: data.updated_at });
    } else if (!state.list.archived && state.socket && state.socket.connected && id !== state.conversationId) {
      // A conversation this list does not have yet (an invitation, a new one): its record
      // says whether it belongs (not in this user's archive, the search).
      request("get_conversation", { conversation_id: id }).then((res) => upsertItem(res), () => {});
    }
    if (id === state.conversationId) {
      if (state.details) {
        const before = state.details.answer_policy;
        Object.assign(state.details, { title: data.title, model: data.model, updated_at: data.updated_at });
        if (typeof data.answer_policy === "string") {
          state.details.answer_policy = data.answer_policy;
          // Another member changed who answers: said, since what a send does changes with it.
          if (before && before !== data.answer_policy && data.updated_by && data.updated_by !== state.userId) {
            systemLine(`${data.updated_by} set who answers: ${POLICY_WORDS[data.answer_policy] || data.answer_policy}.`, "settings");
          }
        }
      }
      renderDetails();
      loadDetails(id); // the prompt and the members may have changed too
    } else {
      // Not in its room, so no message_added from it: the list says what is unread there.
      refreshListSoon();
    }
  }

  function onConversationDeleted(data) {
    if (!data || typeof data.conversation_id !== "string") return;
    const id = data.conversation_id;
    dropItem(id);
    const by = data.deleted_by === state.userId ? "you" : data.deleted_by || "its owner";
    closeConversation(id, `This conversation was deleted by ${by}.`);
  }

  function onRemoved(data) {
    if (!data || typeof data.conversation_id !== "string") return;
    const id = data.conversation_id;
    dropItem(id);
    closeConversation(id, data.removed_by === state.userId ? "You left this conversation."
      : `${data.removed_by || "The owner"} removed you from this conversation.`);
  }

  // ---------------------------------------------------------------- dialogs

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

  // ----------------------------------------------------------- the drawer

  // On a narrow screen the sidebar is a drawer over the chat (see style.css).
  const narrow = window.matchMedia("(max-width: 800px)");

  function setDrawer(open) {
    document.body.dataset.drawer = open ? "open" : "closed";
    ui.sidebarToggle.setAttribute("aria-expanded", String(open));
  }

  function closeDrawer() {
    if (document.body.dataset.drawer === "open") setDrawer(false);
  }

  function onJoined(data) {
    if (data.conversation_id !== state.conversationId) return;
    state.members = memberIds(data.members);
    if (!state.members.includes(state.userId) && state.userId) state.members.push(state.userId);
    renderMembers();
    const active = data.active_stream;
    const streamId = typeof active === "string" ? active : active && active.stream_id;
    if (streamId && !state.streams.has(streamId)) {
      streamView({ stream_id: streamId, message_id: active && active.message_id });
      updateControls();
      resumeStream(streamId);
    }
    // The sends already waiting when this page joined (it missed their `queued`).
    for (const waiting of Array.isArray(data.queued) ? data.queued : []) addQueued(waiting);
  }

  // ------------------------------------------------------------------ queue

  /**
   * A send waiting for the running answer (`queued` to the room, or this tab's ack with
   * `queued`): its author and text, and Cancel on this user's own ones. It leaves the list
   * when its answer starts (onStreamStart) or its stream ends without starting (cancelled).
   */
  function addQueued(data) {
    const streamId = data && data.stream_id;
    if (!streamId || data.conversation_id !== state.conversationId) return;
    if (state.queue.has(streamId) || state.queueGone.has(streamId) || state.streams.has(streamId)) return;
    const userId = data.user_id;
    const mine = Boolean(userId) && userId === state.userId;
    const text = typeof data.message === "string" ? data.message : "";
    let cancel = null;
    if (mine) {
      cancel = h("button", { type: "button", class: "secondary", "data-testid": "queued-cancel", title: "Take it out of the queue" }, "Cancel");
      cancel.addEventListener("click", () => cancelQueued(streamId, cancel));
    }
    const li = h("li", { class: `queued${mine ? " mine" : ""}`, "data-testid": "queued-message", "data-stream-id": streamId },
      h("span", { class: "queued-author", "data-testid": "queued-author" }, mine ? `${userId} (you)` : userId || "user"),
      h("span", { class: "queued-text", "data-testid": "queued-text", title: text }, text),
      cancel);
    // Its message_id: its message_added, when its turn comes, takes it out of the queue.
    const messageId = data.message_id === undefined || data.message_id === null ? null : String(data.message_id);
    state.queue.set(streamId, { li, userId, messageId });
    ui.queue.append(li);
    ui.queueBox.hidden = false;
  }

  function removeQueued(streamId) {
    state.queueGone.add(streamId);
    const entry = state.queue.get(streamId);
    if (!entry) return;
    state.queue.delete(streamId);
    entry.li.remove();
    ui.queueBox.hidden = state.queue.size === 0;
  }

  function clearQueue() {
    state.queue.clear();
    state.queueGone.clear();
    ui.queue.replaceChildren();
    ui.queueBox.hidden = true;
  }

  /** Cancel on a queued send: `cancel_stream` with its stream_id; its `stream_end` removes it. */
  async function cancelQueued(streamId, button) {
    const conversationId = state.conversationId;
    if (!conversationId) return;
    button.disabled = true;
    button.textContent = "Cancelling…";
    try {
      await request("cancel_stream", { conversation_id: conversationId, stream_id: streamId });
    } catch (err) {
      if (conversationId !== state.conversationId || !state.queue.has(streamId)) return;
      button.disabled = false;
      button.textContent = "Cancel";
      systemLine(`Could not cancel: ${describeError(err)}`, "error");
    }
  }

  // ----------------------------------------------------------------- budget

  const PERIOD_WORDS = { minute: "this minute", hour: "this hour", day: "today", week: "this week" };

  /** The user's token budget (get_usage): after joining and after each answer ends. */
  async function refreshUsage() {
    if (!state.socket || !state.socket.connected) return;
    const generation = ++state.usageLoads;
    let res;
    try {
      res = await request("get_usage", {});
    } catch {
      res = null; // an older server without budgets: no line
    }
    if (generation !== state.usageLoads) return;
    showUsage(res);
  }

  function showUsage(res) {
    state.usage = res;
    const limit = res && typeof res.limit === "number" ? res.limit : null;
    ui.budget.hidden = limit === null;
    if (limit === null) {
      ui.budget.textContent = "";
      return;
    }
    const used = typeof res.used === "number" ? res.used : 0;
    const left = Math.max(0, limit - used);
    const period = PERIOD_WORDS[res.period] || (res.period ? `this ${res.period}` : "");
    // When it starts again, in UTC as the server's periods, and how long until then.
    const resets = typeof res.resets_at === "number" ? `, resets at ${resetWords(res.resets_at)}` : "";
    ui.budget.textContent = `Budget: ${left} of ${limit} tokens left${period ? ` ${period}` : ""}${resets}`;
    ui.budget.dataset.left = String(left);
    ui.budget.dataset.state = left === 0 ? "empty" : left * 10 < limit ? "low" : "ok";
    ui.budget.title = typeof res.resets_at === "number" ? `Starts again at ${new Date(res.resets_at).toLocaleString()}` : "";
  }

  // ------------------------------------------------------------------ files

  // Files travel over HTTP, never over the socket: each chosen file is uploaded at once
  // (POST /api/chat/files, to the conversation shown) and waits in the strip above the input;
  // the next message names the uploaded ones by id (send_message.attachments). Messages show
  // their files (history's `attachments`): images as thumbnails, read with the token in the
  // Authorization header into object URLs (revoked when no message shows them any more),
  // other files as chips that download them the same way.

  /** 1536 -> "1.5 KB". */
  function formatSize(bytes) {
    if (typeof bytes !== "number" || !Number.isFinite(bytes) || bytes < 0) return "";
    if (bytes < 1024) return `${bytes} B`;
    const units = ["KB", "MB", "GB"];
    let value = bytes / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
  }

  function isImageType(type) {
    return typeof type === "string" && type.startsWith("image/");
  }

  /** What a file's badge says: "PDF", its extension ("MD", "CSV"), else "TXT" or "FILE". */
  function fileKind(name, type) {
    if (type === "application/pdf") return "PDF";
    const ext = /\.([A-Za-z0-9]{1,4})$/.exec(name || "");
    if (ext) return ext[1].toUpperCase();
    return typeof type === "string" && type.startsWith("text/") ? "TXT" : "FILE";
  }

  function fileUrl(fileId) {
    return `/api/chat/files/${encodeURIComponent(fileId)}`;
  }

  /** The {code, message, status} of a failed HTTP answer: its JSON body, else its status. */
  function httpError(status, text) {
    try {
      const body = JSON.parse(text);
      if (body && typeof body.code === "string") return { code: body.code, message: body.message || "", status };
    } catch {
      // not JSON: a proxy's page, or no such route
    }
    return { code: `http_${status || "error"}`, message: status ? `The server answered ${status}.` : "No answer from the server.", status };
  }

  /** GET /api/chat/files/{file_id} with the token in the header: a Blob, or rejects with {code, message}. */
  async function fetchFile(fileId) {
    let res;
    try {
      res = await fetch(fileUrl(fileId), { headers: { Authorization: `Bearer ${state.token}` } });
    } catch {
      throw { code: "network", message: "Cannot reach the server." };
    }
    if (!res.ok) throw httpError(res.status, await res.text().catch(() => ""));
    return res.blob();
  }

  /**
   * POST /api/chat/files (multipart: conversation_id, file) through XMLHttpRequest, for its
   * upload progress: resolves with the file's record, rejects with {code, message, status}.
   */
  function uploadFile(entry) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      entry.xhr = xhr;
      xhr.open("POST", "/api/chat/files");
      xhr.setRequestHeader("Authorization", `Bearer ${state.token}`);
      xhr.upload.addEventListener("progress", (e) => {
        if (e.lengthComputable && e.total > 0) showProgress(entry, e.loaded / e.total);
      });
      xhr.addEventListener("load", () => {
        if (xhr.status !== 201) {
          reject(httpError(xhr.status, xhr.responseText));
          return;
        }
        try {
          const meta = JSON.parse(xhr.responseText);
          if (!meta || typeof meta.file_id !== "string") throw new Error("no file_id");
          resolve(meta);
        } catch {
          reject({ code: "error", message: "The server's answer to the upload was not understood." });
        }
      });
      xhr.addEventListener("error", () => reject({ code: "network", message: "The upload broke off." }));
      xhr.addEventListener("abort", () => reject({ code: "aborted", message: "Upload cancelled." }));
      const form = new FormData();
      form.append("conversation_id", entry.conversationId);
      form.append("file", entry.file, entry.file.name);
      xhr.send(form);
    });
  }

  function uploading() {
    return state.attachments.some((e) => e.state === "uploading");
  }

  /** Files of the strip ready to go with a message in `conversationId`. */
  function uploadedFiles(conversationId) {
    return state.attachments.filter((e) => e.state === "uploaded" && e.conversationId === conversationId);
  }

  /**
   * A file uploaded but not sent: deleted on the server, which frees it from the user's
   * quota. Best effort: a failure only leaves the file counted.
   */
  function discardUpload(meta) {
    fetch(fileUrl(meta.file_id), { method: "DELETE", headers: { Authorization: `Bearer ${state.token}` } })
      .catch(() => {});
  }

  /** The files chosen in the file input: each in the strip, uploaded to the conversation shown. */
  function chooseFiles(files) {
    const conversationId = state.conversationId;
    if (!conversationId || state.filesOff) return;
    for (const file of files) {
      const entry = { file, conversationId, state: "uploading", meta: null, xhr: null, preview: null };
      entry.li = pendingNode(entry);
      state.attachments.push(entry);
      ui.strip.append(entry.li);
      startUpload(entry);
    }
    ui.strip.hidden = state.attachments.length === 0;
    updateControls();
  }

  /** A file in the strip: a thumbnail of the local file (images) or an icon, its name and size, progress, Remove. */
  function pendingNode(entry) {
    const { file } = entry;
    const name = file.name || "file";
    let preview;
    if (isImageType(file.type)) {
      entry.preview = URL.createObjectURL(file);
      preview = h("img", { class: "attachment-preview", src: entry.preview, alt: name, "data-testid": "pending-attachment-preview" });
    } else {
      preview = h("span", { class: "attachment-kind", "aria-hidden": "true" }, fileKind(name, file.type));
    }
    const progress = h("progress", { class: "attachment-progress", max: 100, "aria-label": `Uploading ${name}` });
    const status = h("span", { class: "attachment-status", "data-testid": "pending-attachment-status" }, "uploading…");
    const remove = h("button", {
      type: "button",
      class: "secondary attachment-remove",
      "data-testid": "pending-attachment-remove",
      "aria-label": `Remove ${name}`,
      title: `Remove ${name}`,
    }, "×");
    remove.addEventListener("click", () => removeAttachment(entry));
    const error = h("p", { class: "attachment-error", role: "alert", "data-testid": "pending-attachment-error" });
    error.hidden = true;
    Object.assign(entry, { progress, status, error });
    return h("li", { class: "attachment-pending", "data-testid": "pending-attachment", "data-state": entry.state, "data-name": name },
      preview,
      h("span", { class: "attachment-label" },
        h("span", { class: "attachment-name", title: name }, name),
        h("span", { class: "attachment-size" }, formatSize(file.size))),
      progress, status, remove, error);
  }

  function showProgress(entry, fraction) {
    const percent = Math.min(100, Math.round(fraction * 100));
    entry.progress.value = percent;
    entry.status.textContent = `uploading ${percent} %`;
  }

  function showUploaded(entry) {
    entry.state = "uploaded";
    entry.li.dataset.state = "uploaded";
    entry.li.dataset.fileId = entry.meta.file_id;
    entry.progress.hidden = true;
    entry.status.textContent = "ready";
  }

  async function startUpload(entry) {
    try {
      entry.meta = await uploadFile(entry);
      if (!state.attachments.includes(entry)) {
        discardUpload(entry.meta); // removed meanwhile
        return;
      }
      showUploaded(entry);
    } catch (err) {
      if (err.code === "aborted" || !state.attachments.includes(entry)) return; // removed
      // Shown next to the file, which is not sent; Remove takes it out of the strip.
      entry.state = "failed";
      entry.li.dataset.state = "failed";
      entry.li.dataset.code = err.code;
      entry.progress.hidden = true;
      entry.status.textContent = "not uploaded";
      entry.error.textContent = describeError(err);
      entry.error.hidden = false;
      // A server without files (no such route, or it says so; the conversation shown exists):
      // the attach button goes away.
      if (err.status === 404 && (err.code.startsWith("http_") || /no files/i.test(err.message))) state.filesOff = true;
    } finally {
      entry.xhr = null;
      updateControls();
    }
  }

  function dropPreview(entry) {
    if (entry.xhr) entry.xhr.abort(); // an upload under way stops (one that ended stays on the server)
    if (entry.preview) URL.revokeObjectURL(entry.preview);
    entry.preview = null;
    entry.li.remove();
  }

  /** Remove on a file of the strip. */
  function removeAttachment(entry) {
    const at = state.attachments.indexOf(entry);
    if (at < 0) return;
    state.attachments.splice(at, 1);
    if (entry.state === "uploaded" && entry.meta) discardUpload(entry.meta);
    dropPreview(entry);
    ui.strip.hidden = state.attachments.length === 0;
    updateControls();
    // Its button is gone: the next file's Remove, or the message, has the focus.
    const next = ui.strip.querySelector(".attachment-remove");
    (next || ui.input).focus();
  }

  /** Empties the strip; with `discard`, the files uploaded and not sent are deleted too. */
  function clearAttachments({ discard = false } = {}) {
    for (const entry of state.attachments) {
      if (discard && entry.state === "uploaded" && entry.meta) discardUpload(entry.meta);
      dropPreview(entry);
    }
    state.attachments = [];
    ui.strip.hidden = true;
  }

  /** The uploaded files of a message that was not sent, back in the (empty) strip. */
  function restoreAttachments(entries) {
    for (const entry of entries) {
      entry.li = pendingNode(entry);
      showUploaded(entry);
      state.attachments.push(entry);
      ui.strip.append(entry.li);
    }
    ui.strip.hidden = state.attachments.length === 0;
  }

  /** The files of a message (history's `attachments`), or nothing. */
  function attachmentList(attachments) {
    if (!Array.isArray(attachments) || attachments.length === 0) return null;
    return h("ul", { class: "msg-attachments", "data-testid": "message-attachments", "aria-label": "Attached files" },
      ...attachments.filter((a) => a && typeof a.file_id === "string").map(attachmentNode));
  }

  /**
   * One file of a message: an image as a thumbnail (loaded once the item is in the list,
   * see watchThumbnails) that opens in full, anything else as a chip that downloads it.
   */
  function attachmentNode(a) {
    const name = typeof a.name === "string" && a.name ? a.name : "file";
    const size = formatSize(a.size);
    const label = size ? `${name} (${size})` : name;
    const attrs = { class: "attachment", "data-testid": "attachment", "data-file-id": a.file_id, "data-name": name, "data-content-type": a.content_type };
    if (isImageType(a.content_type)) {
      const img = h("img", { class: "attachment-thumb", alt: name, title: label, "data-testid": "attachment-image", "data-file-id": a.file_id });
      const link = h("a", { class: "attachment-open", target: "_blank", rel: "noopener" }, img);
      return h("li", { ...attrs, class: "attachment attachment-image", "data-state": "loading" }, link);
    }
    const note = h("span", { class: "attachment-note", "data-testid": "attachment-note" });
    const button = h("button", {
      type: "button",
      class: "secondary attachment-chip",
      "data-testid": "attachment-download",
      "aria-label": `Download ${label}`,
      title: `Download ${label}`,
    },
    h("span", { class: "attachment-kind", "aria-hidden": "true" }, fileKind(name, a.content_type)),
    h("span", { class: "attachment-name" }, name),
    size ? h("span", { class: "attachment-size" }, size) : null);
    button.addEventListener("click", () => downloadAttachment(a, name, button, note));
    return h("li", { ...attrs, class: "attachment attachment-file", "data-state": "ready" }, button, note);
  }

  /** A chip's download: the bytes with the token in the header, saved under the file's name. */
  async function downloadAttachment(a, name, button, note) {
    button.disabled = true;
    note.textContent = "";
    try {
      const url = URL.createObjectURL(await fetchFile(a.file_id));
      const link = h("a", { href: url, download: name, hidden: "" });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000); // once the download has its bytes
    } catch (err) {
      note.textContent = `Not downloaded: ${describeError(err)}`;
    } finally {
      button.disabled = false;
    }
  }

  /** The object URL of an image file, fetched once for every message that shows it. */
  function thumbnail(fileId) {
    let entry = state.thumbs.get(fileId);
    if (!entry) {
      entry = { url: null, dropped: false };
      entry.promise = fetchFile(fileId).then((blob) => {
        if (entry.dropped) return null;
        entry.url = URL.createObjectURL(blob);
        return entry.url;
      }, (err) => {
        if (state.thumbs.get(fileId) === entry) state.thumbs.delete(fileId);
        throw err;
      });
      state.thumbs.set(fileId, entry);
    }
    return entry.promise;
  }

  /** This tab's own upload: its thumbnail from the local file, without asking the server. */
  function seedThumbnail(fileId, blob) {
    if (state.thumbs.has(fileId)) return;
    const url = URL.createObjectURL(blob);
    state.thumbs.set(fileId, { url, dropped: false, promise: Promise.resolve(url) });
  }

  async function showThumbnail(img) {
    if (!img.isConnected || img.getAttribute("src") || img.dataset.loading) return;
    const item = img.closest(".attachment");
    img.dataset.loading = "true";
    let url;
    try {
      url = await thumbnail(img.dataset.fileId);
    } catch (err) {
      // Gone (a restarted server keeps no files), or no longer this user's to see.
      if (item) {
        item.dataset.state = "error";
        item.dataset.code = err.code;
        item.replaceChildren(h("span", { class: "attachment-missing", "data-testid": "attachment-note" },
          `${item.dataset.name}: ${describeError(err)}`));
      }
      return;
    } finally {
      delete img.dataset.loading;
    }
    if (!url || !img.isConnected) return; // taken away meanwhile: loaded again if it comes back
    img.addEventListener("load", () => { if (item) item.dataset.state = "loaded"; }, { once: true });
    img.addEventListener("error", () => { if (item) item.dataset.state = "error"; }, { once: true });
    img.src = url;
    const link = img.closest("a");
    if (link) link.href = url;
  }

  /** Object URLs of images that no message shows any more are revoked. */
  function sweepThumbnails() {
    if (state.thumbs.size === 0) return;
    const shown = new Set([...ui.messages.querySelectorAll("img[data-file-id]")].map((img) => img.dataset.fileId));
    for (const [fileId, entry] of state.thumbs) {
      if (shown.has(fileId)) continue;
      state.thumbs.delete(fileId);
      entry.dropped = true;
      if (entry.url) URL.revokeObjectURL(entry.url);
    }
  }

  /** Thumbnails load when their message enters the list, and are revoked once none shows them. */
  function watchThumbnails() {
    new MutationObserver((records) => {
      let removed = false;
      for (const record of records) {
        if (record.removedNodes.length) removed = true;
        for (const node of record.addedNodes) {
          if (node.nodeType !== Node.ELEMENT_NODE) continue;
          if (node.matches("img[data-file-id]")) showThumbnail(node);
          for (const img of node.querySelectorAll("img[data-file-id]")) showThumbnail(img);
        }
      }
      if (removed) sweepThumbnails();
    }).observe(ui.messages, { childList: true, subtree: true });
  }

  // ---------------------------------------------------------------- sending

  // ------------------------------------------------------------------- typing

  const TYPING_REPEAT_MS = 2000; // the server forgets a `typing` after 5 s without a repeat
  const TYPING_HIDE_MS = 6000;   // in case its `typing:false` is lost (it is volatile)

  function renderTyping() {
    const names = [...state.typingUsers.keys()];
    ui.typing.hidden = names.length === 0;
    ui.typing.textContent = names.length === 0 ? ""
      : names.length === 1 ? `${names[0]} is typing…`
        : `${names.slice(0, -1).join(", ")} and ${names.at(-1)} are typing…`;
  }

  function clearTyping() {
    for (const timer of state.typingUsers.values()) clearTimeout(timer);
    state.typingUsers.clear();
    renderTyping();
  }

  function onUserTyping(data) {
    if (data.conversation_id !== state.conversationId || data.user_id === state.userId) return;
    clearTimeout(state.typingUsers.get(data.user_id));
    if (data.typing) {
      state.typingUsers.set(data.user_id, setTimeout(() => {
        state.typingUsers.delete(data.user_id);
        renderTyping();
      }, TYPING_HIDE_MS));
    } else {
      state.typingUsers.delete(data.user_id);
    }
    renderTyping();
  }

  /** Tells the room this tab is typing (at most every TYPING_REPEAT_MS), or stopped. */
  function sayTyping(typing) {
    if (!state.conversationId || state.joinedId !== state.conversationId || !state.socket || !state.socket.connected) return;
    const now = Date.now();
    if (typing && now - state.typingSentAt < TYPING_REPEAT_MS) return;
    if (!typing && state.typingSentAt === 0) return;
    state.typingSentAt = typing ? now : 0;
    // Volatile on the other side too: a failure is not worth a line.
    request("typing", { conversation_id: state.conversationId, typing }).catch(() => {});
  }

  async function sendMessage() {
    const message = ui.input.value;
    const conversationId = state.conversationId;
    if (!conversationId) return;
    if (uploading()) return; // Send is disabled until the files are uploaded
    // The files uploaded to this conversation go with it (failed ones are not sent); the
    // strip clears, and an image's thumbnail is the local file. Files alone make a message.
    const files = uploadedFiles(conversationId);
    if (!message.trim() && files.length === 0) return;
    const attachments = files.map(({ meta }) => ({ file_id: meta.file_id, name: meta.name, content_type: meta.content_type, size: meta.size }));
    for (const { meta, file } of files) if (isImageType(meta.content_type)) seedThumbnail(meta.file_id, file);
    clearAttachments();
    // Whether it asks for an answer (the Ask toggle, an @name, the conversation's policy).
    const answer = answerFor(message);
    const answered = willAnswer(message, answer);
    // While an answer runs (or others wait, or a send of this tab awaits its ack), a send that
    // is answered waits its turn in the queue: its question is shown there, and in the
    // conversation once its turn comes. Otherwise the app's default decides (MARIE_ON_BUSY).
    // A message that asks no answer is never queued: it is stored at once, above the answer
    // that runs (which the server stores after it).
    const queueing = answered && (Boolean(runningStream()) || state.queue.size > 0 || state.sending > 0);
    const li = userMessage({ userId: state.userId, content: message, pending: true, createdAt: Date.now(), attachments });
    if (!queueing) append(li, answered ? undefined : runningAnchor());
    // message_added tells this send to the room (this tab too), maybe before its ack: it is
    // matched to `li` then (onMessageAdded), not shown twice.
    const send = { li, conversationId, message, added: null };
    state.pendingSends.add(send);
    ui.input.value = "";
    closeMentions();
    ui.send.disabled = true;
    sayTyping(false);
    state.sending += 1;
    try {
      const payload = { conversation_id: conversationId, message, stream: true, client_message_id: randomId("c-") };
      if (queueing) payload.on_busy = "enqueue";
      if (answer !== undefined) payload.answer = answer;
      if (attachments.length) payload.attachments = attachments.map((a) => a.file_id);
      const res = await request("send_message", payload);
      if (typeof res.queued === "number") {
        li.remove();
        addQueued({ conversation_id: conversationId, stream_id: res.stream_id, message_id: res.message_id, user_id: state.userId, message });
        return;
      }
      li.dataset.status = "sent";
      noteActivity(conversationId, "user", message);
      const id = res.message_id === undefined || res.message_id === null ? null : String(res.message_id);
      if (send.added && String(send.added.message_id) !== id) {
        // The message_added taken for this send was another tab's identical one (same user,
        // same text): it gets an item of its own.
        const theirs = historyNode(send.added);
        if (li.parentNode) li.before(theirs);
        delete li.dataset.messageId;
      }
      let shown = false;
      if (id !== null) {
        const other = state.rendered.get(id);
        if (other && other !== li) {
          li.remove(); // message_added (or the history) shows it already
          shown = true;
        } else {
          li.dataset.messageId = id;
          state.rendered.set(id, li);
        }
      }
      if (!shown && !li.parentNode && conversationId === state.conversationId) {
        // Answered at once after all, or not answered: above its answer if that started
        // before this ack, else with the messages stored.
        const running = state.streams.get(res.stream_id);
        if (running && running.li.parentNode) running.li.before(li);
        else append(li, storedAnchor(li));
      }
    } catch (err) {
      if (send.added) return; // told to the room: it is stored, whatever became of the ack
      li.dataset.status = "failed";
      li.append(h("p", { class: "msg-error", role: "alert" }, `Not sent: ${describeError(err)}`));
      if (!li.parentNode && conversationId === state.conversationId) append(li);
      if (!ui.input.value) ui.input.value = message; // give the text back
      // and the files (still on the server), unless others were chosen meanwhile
      if (conversationId === state.conversationId && state.attachments.length === 0) restoreAttachments(files);
      if (err.code === "budget_exceeded") refreshUsage();
    } finally {
      state.pendingSends.delete(send);
      state.sending -= 1;
      updateControls();
    }
  }

  async function cancelStream() {
    const running = runningStream();
    if (!running || !state.conversationId) return;
    running.view.cancelling = true;
    updateControls();
    try {
      await request("cancel_stream", { conversation_id: state.conversationId, stream_id: running.streamId });
    } catch (err) {
      running.view.cancelling = false;
      systemLine(`Could not cancel: ${describeError(err)}`, "error");
      updateControls();
    }
  }

  // ------------------------------------------------------------- connection

  function connect() {
    disconnect();
    setStatus("Connecting…", "connecting");
    // The token travels in the CONNECT packet's auth, never in the URL. The
    // callback form re-reads it on every reconnect, with the resume handle and
    // where this page stands in each running answer: the server resumes those at
    // once, before their live tail (docs/protocol.md section 1).
    const socket = io({
      forceNew: true,
      auth: (cb) => cb(state.session
        ? { token: state.token, previous_session: state.session, last_seqs: heldPositions() }
        : { token: state.token }),
    });
    state.socket = socket;

    socket.on("connected", (data) => {
      state.session = data.session || null;
      state.userId = data.user_id || state.userId;
      saveSession(); // the server took the token: a reload of this tab connects again with it
      signedIn();
      setStatus(`Connected as ${state.userId}`, "connected");
      loadList();
      // A fresh session: rooms are gone, join the shown conversation again (or, after a
      // reload, the one in the URL).
      const restoring = state.restoring;
      state.restoring = null;
      if (state.conversationId) openConversation(state.conversationId, { rejoin: true });
      else if (restoring) openConversation(restoring, { rejoin: true });
      else updateControls();
    });
    socket.on("reconnected", (data) => {
      setStatus(`Reconnected as ${state.userId}`, "connected");
      loadList({ merge: true }); // what changed while the connection was down
      const rooms = Array.isArray(data.rooms) ? data.rooms : [];
      if (!state.conversationId) { updateControls(); return; }
      if (!rooms.includes(state.conversationId)) {
        openConversation(state.conversationId, { rejoin: true });
        return;
      }
      systemLine("Reconnected.");
      updateControls();
      // Answers named in auth.last_seqs were resumed by the reconnect itself.
      const resumed = new Set((data.active_streams || []).filter((s) => s.resumed).map((s) => s.stream_id));
      const running = runningStream();
      if (running && !resumed.has(running.streamId)) resumeStream(running.streamId);
    });
    socket.on("connect_error", (err) => {
      // socketioxide can only send a message string: it carries the error code.
      const code = (err && err.data && err.data.code) || (err && err.message) || "error";
      if (socket.active) {
        setStatus(`Cannot reach the server (${code}); retrying…`, "connecting");
        return;
      }
      setStatus(code === "unauthorized" ? "Refused: unauthorized" : `Refused: ${code}`, "error");
      if (state.socket === socket) {
        state.socket = null;
        signedOut(code === "unauthorized"
          ? "The server refused the credentials (unauthorized). Log in again."
          : `The server refused the connection (${code}).`);
      }
    });
    socket.on("disconnect", (reason) => {
      if (reason === "io client disconnect") return;
      setStatus(socket.active ? "Connection lost; reconnecting…" : `Disconnected (${reason})`, socket.active ? "connecting" : "disconnected");
      updateControls();
    });

    socket.on("joined", onJoined);
    socket.on("left", (data) => {
      if (data.conversation_id === state.conversationId) systemLine(`You left ${data.conversation_id}.`);
    });
    socket.on("user_joined", (data) => {
      if (data.conversation_id !== state.conversationId) return;
      if (data.user_id && !state.members.includes(data.user_id)) { state.members.push(data.user_id); renderMembers(); }
      systemLine(`${data.user_id} joined.`, "presence");
    });
    socket.on("user_left", (data) => {
      // Leaving the room keeps the access: the members list (who may join) stays, unless
      // they were removed (or left for good): get_conversation says.
      if (data.conversation_id !== state.conversationId) return;
      systemLine(`${data.user_id} left.`, "presence");
      loadDetails(data.conversation_id);
    });
    // The user's conversations: to each of their connections, joined or not (section 9).
    socket.on("conversation_updated", onConversationUpdated);
    socket.on("conversation_deleted", onConversationDeleted);
    socket.on("removed", onRemoved);
    socket.on("announcement", (data) => systemLine(`Announcement: ${data.message}`, "announcement"));
    socket.on("error", (data) => {
      const d = data || {};
      if (d.event ? state.inflight.has(d.event) : state.inflight.size > 0) return; // shown from the ack
      systemLine(`Error${d.event ? ` in ${d.event}` : ""}: ${d.message || "unknown"} (${d.code || "error"})`, "error");
    });
    socket.on("queued", addQueued);
    socket.on("message_added", onMessageAdded);
    socket.on("stream_start", onStreamStart);
    socket.on("stream_reset", onStreamReset);
    socket.on("stream_chunk", (data) => onStreamPiece(data, "text"));
    socket.on("stream_reasoning", (data) => onStreamPiece(data, "reasoning"));
    for (const [name, apply] of Object.entries(TOOL_EVENTS)) socket.on(name, (data) => onNumbered(data, apply));
    socket.on("user_typing", onUserTyping);
    socket.on("branch_switched", (data) => {
      // Whoever switched (this tab too): show the branch that is active now.
      if (data.conversation_id === state.conversationId) reloadBranch(data.conversation_id);
    });
    socket.on("stream_end", onStreamEnd);
    socket.on("stream_error", onStreamError);
    socket.on("message_response", onMessageResponse);
  }

  function disconnect() {
    if (state.socket) {
      state.socket.removeAllListeners();
      state.socket.disconnect();
      state.socket = null;
    }
  }

  function signedIn() {
    const first = document.body.dataset.signedIn !== "true";
    document.body.dataset.signedIn = "true";
    ui.loginPanel.hidden = true;
    ui.sessionPanel.hidden = false;
    ui.conversationsPanel.hidden = false;
    ui.conversationPanel.hidden = false;
    ui.sessionUser.textContent = state.userId || "?";
    ui.sessionRoles.textContent = state.roles.length ? `(${state.roles.join(", ")})` : "";
    ui.adminPanel.hidden = !state.roles.includes("admin");
    // On a phone, the list comes first when no conversation is open.
    if (first) setDrawer(narrow.matches && !state.conversationId && !state.restoring);
  }

  function signedOut(reason) {
    disconnect();
    forgetSession();
    Object.assign(state, { token: null, roles: [], userId: null, session: null, conversationId: null, joinedId: null, members: [], details: null, restoring: null, usage: null, marking: null, policyShown: null });
    state.pendingSends.clear();
    closeMentions();
    state.opens += 1;
    clearAttachments();
    clearMessages();
    for (const item of state.list.items.values()) item.li.remove();
    Object.assign(state.list, { items: new Map(), archived: false, query: "", nextBefore: null, pages: 0, renaming: null });
    state.list.loads += 1;
    ui.search.value = "";
    ui.showArchived.checked = false;
    ui.more.hidden = true;
    listNote("");
    document.body.dataset.signedIn = "false";
    setDrawer(false);
    ui.loginPanel.hidden = false;
    ui.sessionPanel.hidden = true;
    ui.conversationsPanel.hidden = true;
    ui.conversationPanel.hidden = true;
    ui.adminPanel.hidden = true;
    ui.currentBox.hidden = true;
    ui.budget.hidden = true;
    renderDetails();
    showLoginError(reason);
    if (!reason) setStatus("Disconnected", "disconnected");
    updateControls();
  }

  // The login of this tab survives a reload (sessionStorage: this tab only, gone when it
  // closes); Log out, or a refusal of the token, forgets it.
  const SESSION_KEY = "marie-chat.session";

  function saveSession() {
    try {
      sessionStorage.setItem(SESSION_KEY, JSON.stringify({ token: state.token, userId: state.userId, roles: state.roles, mode: state.mode }));
    } catch {
      // storage refused (a private window's quota): the login lasts until a reload
    }
  }

  function forgetSession() {
    try { sessionStorage.removeItem(SESSION_KEY); } catch { /* nothing kept */ }
  }

  function storedSession() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
      return saved && typeof saved.token === "string" && saved.token ? saved : null;
    } catch {
      return null;
    }
  }

  async function devLogin() {
    showLoginError("");
    const userId = ui.loginUser.value.trim();
    const roles = ui.loginAdmin.checked ? ["admin"] : [];
    let res;
    let body;
    try {
      res = await fetch("/api/dev/token", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ user_id: userId, roles }),
      });
      body = await res.json().catch(() => ({}));
    } catch {
      showLoginError("Cannot reach the server.");
      return;
    }
    if (res.status === 404) {
      showLoginError("Dev tokens are disabled on this server: paste a token instead.");
      showTokenLogin();
      return;
    }
    if (!res.ok || typeof body.token !== "string") {
      showLoginError(`${body.message || "Login failed."} (${body.code || res.status})`);
      return;
    }
    state.token = body.token;
    state.userId = body.user_id || userId;
    state.roles = Array.isArray(body.roles) ? body.roles : roles;
    state.session = null;
    connect();
  }

  function tokenLogin() {
    showLoginError("");
    const token = ui.loginToken.value.trim();
    if (!token) return;
    state.token = token;
    state.userId = null;
    state.roles = rolesFromJwt(token);
    state.session = null;
    connect();
  }

  /** Best effort, for showing the admin panel only: the server decides. */
  function rolesFromJwt(token) {
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const claims = JSON.parse(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")));
      return Array.isArray(claims.roles) ? claims.roles.filter((r) => typeof r === "string") : [];
    } catch {
      return [];
    }
  }

  function showTokenLogin() {
    ui.devForm.hidden = true;
    ui.tokenForm.hidden = false;
  }

  // ------------------------------------------------------------------ wiring

  ui.devForm.addEventListener("submit", (e) => { e.preventDefault(); devLogin(); });
  ui.tokenForm.addEventListener("submit", (e) => { e.preventDefault(); tokenLogin(); });
  ui.logout.addEventListener("click", () => signedOut());

  ui.newConversation.addEventListener("click", () => {
    const id = randomId("conv-");
    ui.conversationInput.value = id;
    openConversation(id);
  });
  ui.joinForm.addEventListener("submit", (e) => {
    e.preventDefault();
    openConversation(ui.conversationInput.value.trim());
  });
  ui.inviteForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const userId = ui.inviteUser.value.trim();
    if (!userId || !state.conversationId) return;
    try {
      await request("invite", { conversation_id: state.conversationId, user_id: userId });
      systemLine(`Invited ${userId}: they can now join ${state.conversationId}.`);
      if (!state.members.includes(userId)) { state.members.push(userId); renderMembers(); }
      ui.inviteUser.value = "";
      loadDetails(state.conversationId); // their role
    } catch (err) {
      systemLine(`Could not invite ${userId}: ${describeError(err)}`, "error");
    }
  });
  ui.announceForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const message = ui.announceText.value.trim();
    if (!message) return;
    try {
      await request("system_announcement", { message });
      ui.announceText.value = "";
    } catch (err) {
      systemLine(`Could not announce: ${describeError(err)}`, "error");
    }
  });

  ui.composer.addEventListener("submit", (e) => { e.preventDefault(); if (!ui.send.disabled) sendMessage(); });
  ui.input.addEventListener("keydown", (e) => {
    if (mentionKey(e)) return; // the @completion list is open: its keys first
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      if (!ui.send.disabled) sendMessage();
    }
  });
  ui.cancel.addEventListener("click", cancelStream);
  ui.fileInput.addEventListener("change", () => {
    chooseFiles([...ui.fileInput.files]);
    ui.fileInput.value = ""; // the same file may be chosen again
  });
  watchThumbnails();
  ui.input.addEventListener("input", () => {
    sayTyping(ui.input.value.trim().length > 0);
    updateMentions();
  });
  ui.input.addEventListener("blur", () => {
    sayTyping(false);
    closeMentions();
  });
  // The caret moved: the @word under it may be another one.
  ui.input.addEventListener("click", updateMentions);
  ui.input.addEventListener("keyup", (e) => {
    if (["ArrowLeft", "ArrowRight", "Home", "End"].includes(e.key)) updateMentions();
  });
  ui.messages.addEventListener("click", (e) => {
    const button = e.target.closest(".code-copy");
    if (button && ui.messages.contains(button)) copyCode(button);
  });

  // The conversation list: search (debounced), the archive, More, Refresh.
  let searchTimer = null;
  ui.search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      if (ui.search.value.trim() === state.list.query.trim()) return;
      state.list.query = ui.search.value;
      loadList();
    }, 300);
  });
  ui.search.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && ui.search.value) { ui.search.value = ""; ui.search.dispatchEvent(new Event("input")); }
  });
  ui.showArchived.addEventListener("change", () => {
    state.list.archived = ui.showArchived.checked;
    loadList();
  });
  ui.refreshList.addEventListener("click", () => loadList());
  ui.more.addEventListener("click", () => loadList({ more: true }));
  // Besides conversation_updated (an invitation, a rename: refreshListSoon), the list (and
  // its unread counts) is read again now and then while the tab is in view, and when it
  // comes back into view.
  const LIST_REFRESH_MS = 30000;
  setInterval(() => {
    if (document.visibilityState === "visible" && !state.list.renaming) loadList({ merge: true });
  }, LIST_REFRESH_MS);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible") return;
    seenAll(); // what arrived while the tab was out of view is read now
    if (!state.list.renaming) loadList({ merge: true });
  });
  // How long until the budget resets, kept current.
  setInterval(() => { if (state.usage && !ui.budget.hidden) showUsage(state.usage); }, 60000);

  // The conversation shown: its model, its instructions, leave, delete.
  ui.modelSelect.addEventListener("change", chooseModel);
  ui.policySelect.addEventListener("change", chooseAnswerPolicy);
  ui.ask.addEventListener("change", updateControls);
  ui.promptForm.addEventListener("submit", (e) => { e.preventDefault(); saveSystemPrompt(); });
  ui.promptInput.addEventListener("input", () => { ui.promptForm.dataset.dirty = "true"; ui.promptStatus.textContent = ""; });
  ui.leave.addEventListener("click", leaveConversation);
  ui.deleteConversation.addEventListener("click", () => { if (state.conversationId) deleteConversation(state.conversationId); });

  // The drawer (narrow screens).
  ui.sidebarToggle.addEventListener("click", () => setDrawer(document.body.dataset.drawer !== "open"));
  ui.backdrop.addEventListener("click", closeDrawer);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && !ui.confirmDialog.open && document.body.dataset.drawer === "open" && narrow.matches) closeDrawer();
  });
  narrow.addEventListener("change", () => { if (!narrow.matches) closeDrawer(); });

  async function init() {
    const fromHash = decodeURIComponent(window.location.hash.slice(1));
    if (CONVERSATION_ID.test(fromHash)) ui.conversationInput.value = fromHash;
    try {
      const res = await fetch("/api/auth/mode");
      const body = await res.json();
      state.mode = body.mode === "jwt" ? "jwt" : "dev";
    } catch {
      state.mode = "dev";
    }
    if (state.mode === "jwt") showTokenLogin();
    else ui.devForm.hidden = false;
    ui.loginPanel.dataset.mode = state.mode;
    updateControls();
    // A reload: connect again as before, and open the conversation of the URL.
    const saved = storedSession();
    if (saved && saved.mode === state.mode) {
      state.token = saved.token;
      state.userId = typeof saved.userId === "string" ? saved.userId : null;
      state.roles = Array.isArray(saved.roles) ? saved.roles.filter((r) => typeof r === "string") : [];
      state.session = null;
      state.restoring = CONVERSATION_ID.test(fromHash) ? fromHash : null;
      signedIn();
      connect();
    } else if (saved) {
      forgetSession(); // the server's mode changed: that token is of no use
    }
  }

  init();
})();
