// raftkv console: a client of the public HTTP API of the node that served it, and nothing else.
// No framework, no build step: hash routes (#/cluster, #/keys/<prefix>, #/key/<key>, #/watch/<prefix>)
// pick a view; every string from the server reaches the page through textContent, never as HTML.
"use strict";

(() => {
  const POLL_MS = 2000;        // cluster view refresh
  const REQUEST_MS = 8000;     // bound on any one API call
  const PAGE = 100;            // entries per list request
  const SHOW = 500;            // rows a key listing shows before "Load more"
  const PREVIEW = 80;          // characters of a value shown in a listing
  const TAIL_ROWS = 500;       // rows the live tail keeps
  // Largest code point: prefix + this sorts after every key that has prefix followed by anything else,
  // so a listing can jump over a whole folder in one request.
  const SKIP = "\u{10FFFF}";
  // With ACLs on, the token lives in this tab's sessionStorage: it is sent only as an Authorization
  // header by this page's own calls, never as a cookie, so another site cannot make the browser send it
  // (docs/security.md, "The web console"), and it is gone when the tab closes.
  const TOKEN_KEY = "raftkv.token";

  const $ = (id) => document.getElementById(id);

  // el builds an element; strings become text nodes, so server data is never parsed as HTML.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const c of children) {
      if (c === undefined || c === null) continue;
      e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }

  function show(node, on) { node.hidden = !on; }

  function message(node, text, kind) {
    node.textContent = text || "";
    node.className = "msg " + (kind || "");
    show(node, !!text);
  }

  // ---- API ----------------------------------------------------------------------------------------

  class APIError extends Error {
    constructor(status, body) {
      super(status === 403 ? "refused for this token: " + ((body && body.error) || "permission denied")
        : (body && body.error) || ("HTTP " + status));
      this.status = status;
      this.code = body && body.code;
      this.body = body || {};
    }
  }

  // api performs one request with a deadline. It resolves with the Response for 2xx answers, and for
  // the statuses in okStatuses (health answers 503 with a full body); anything else throws APIError.
  // A 401 (no token, or one the cluster does not know) shows the token form instead of the view.
  async function api(path, opts, okStatuses) {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(), REQUEST_MS);
    try {
      const o = Object.assign({ signal: ctl.signal, cache: "no-store", credentials: "omit" }, opts || {});
      o.headers = authHeaders(o.headers);
      const sent = token;
      const resp = await fetch(path, o);
      if (resp.ok || (okStatuses || []).includes(resp.status)) return resp;
      let body = null;
      try { body = await resp.json(); } catch (_) { /* not JSON: keep the status */ }
      if (resp.status === 401) askToken(sent, body);
      throw new APIError(resp.status, body);
    } catch (e) {
      if (e instanceof APIError) throw e;
      throw new APIError(0, { error: ctl.signal.aborted ? "no answer within " + REQUEST_MS / 1000 + " s" : "cannot reach the node: " + e.message, code: "unreachable" });
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- token (ACLs) -------------------------------------------------------------------------------

  let token = sessionStorage.getItem(TOKEN_KEY) || "";
  let tokenAsk = null; // why the token form is shown; null while it is not

  function authHeaders(h) {
    const out = Object.assign({}, h || {});
    if (token) out.Authorization = "Bearer " + token;
    return out;
  }

  // askToken forgets the token a 401 answered (sent) and shows the token form saying why. Several
  // calls in flight may each get the 401: only the first one changes the page.
  function askToken(sent, body) {
    if (sent && sent === token) {
      token = "";
      sessionStorage.removeItem(TOKEN_KEY);
    }
    if (tokenAsk !== null) return;
    const why = body && body.error ? " (" + body.error + ")" : "";
    tokenAsk = sent
      ? "The cluster refused the token" + why + ": it is wrong, or has been deleted. Enter another one."
      : "This cluster has ACLs enabled: enter a token to use the console.";
    route();
  }

  function enterLogin() {
    message($("t-msg"), tokenAsk, tokenAsk && tokenAsk.startsWith("The cluster refused") ? "bad" : "");
    $("t-secret").value = "";
    $("t-secret").focus();
    setWho(null);
    const c = $("conn");
    c.textContent = "token needed";
    c.title = "the API answers 401 without a valid token";
    c.className = "conn bad";
    return () => {};
  }

  async function submitToken(ev) {
    ev.preventDefault();
    const secret = $("t-secret").value.trim();
    if (!secret) { message($("t-msg"), "Enter a token secret (rkv_…).", "bad"); return; }
    token = secret;
    tokenAsk = null;
    $("t-submit").disabled = true;
    try {
      // Any valid token may read itself: this proves the secret before the views use it.
      const self = await (await api("/v1/acl/token/self")).json();
      sessionStorage.setItem(TOKEN_KEY, token);
      setWho(self);
      route();
    } catch (e) {
      if (tokenAsk === null) { // not a 401 (that already shows the form with its reason)
        if (e.status === 400) { // ACLs are off on this node: no token is needed
          token = "";
          route();
        } else {
          tokenAsk = "";
          message($("t-msg"), "Checking the token failed: " + e.message, "bad");
        }
      }
    } finally {
      $("t-submit").disabled = false;
    }
  }

  // setWho shows which token the console uses, and a way to drop it.
  function setWho(self) {
    show($("who"), !!token);
    if (!token) return;
    $("who-name").textContent = self
      ? (self.description || "token " + self.accessor_id.slice(0, 8)) + (self.management ? " (management)" : "")
      : "token";
    $("who-name").title = self ? "accessor " + self.accessor_id + (self.policies ? "; policies " + self.policies.join(", ") : "") : "";
  }

  async function loadWho() {
    if (!token) { setWho(null); return; }
    try { setWho(await (await api("/v1/acl/token/self")).json()); } catch (_) { /* a 401 asks again */ }
  }

  function signOut() {
    token = "";
    sessionStorage.removeItem(TOKEN_KEY);
    setWho(null);
    tokenAsk = "Signed out. Enter a token to use the console again.";
    route();
  }

  // Keys travel as one path segment with "/" escaped: the API treats a/b and a%2Fb as the same key.
  const keyPath = (key) => "/v1/kv/" + encodeURIComponent(key);

  function b64bytes(s) {
    const bin = atob(s);
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function bytesB64(bytes) {
    let bin = "";
    for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    return btoa(bin);
  }

  // text returns the bytes as a string, or null when they are not valid UTF-8.
  function text(bytes) {
    try { return new TextDecoder("utf-8", { fatal: true }).decode(bytes); } catch (_) { return null; }
  }

  function preview(bytes) {
    const t = text(bytes);
    if (t === null) return "(binary, " + bytes.length + " bytes)";
    const one = t.replace(/\s+/g, " ");
    return one.length > PREVIEW ? one.slice(0, PREVIEW) + "…" : one;
  }

  // ---- routing ------------------------------------------------------------------------------------

  const views = ["cluster", "keys", "key", "watch", "login"];
  let current = null;   // the view shown
  let leaveView = null; // stops what the shown view runs (polling, a stream)

  function route() {
    const h = location.hash.replace(/^#\/?/, "");
    const slash = h.indexOf("/");
    let name = slash < 0 ? h : h.slice(0, slash);
    let arg = "";
    try { arg = slash < 0 ? "" : decodeURIComponent(h.slice(slash + 1)); } catch (_) { arg = ""; }
    if (!views.includes(name) || name === "login") name = "cluster";
    if (tokenAsk !== null) name = "login"; // the asked-for view shows once a token is accepted
    if (leaveView) { leaveView(); leaveView = null; }
    current = name;
    for (const v of views) show($("view-" + v), v === name);
    for (const v of ["cluster", "keys", "watch"]) {
      $("nav-" + v).classList.toggle("active", v === name || (v === "keys" && name === "key"));
    }
    message($("banner"), "");
    if (name === "cluster") leaveView = enterCluster();
    else if (name === "keys") leaveView = enterKeys(arg);
    else if (name === "key") leaveView = enterKey(arg);
    else if (name === "watch") leaveView = enterWatch(arg);
    else if (name === "login") leaveView = enterLogin();
  }

  // go shows a view; asked for the one already shown (no hashchange), it reloads it.
  function go(name, arg) {
    const hash = "#/" + name + "/" + encodeURIComponent(arg || "");
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  // ---- cluster view -------------------------------------------------------------------------------

  function enterCluster() {
    let stopped = false;
    let timer = null;
    const tick = async () => {
      await refreshCluster();
      if (!stopped) timer = setTimeout(tick, POLL_MS);
    };
    tick();
    return () => { stopped = true; clearTimeout(timer); };
  }

  async function refreshCluster() {
    // The three reads are independent; one failing (say /readyz during an election) must not blank
    // the others.
    const [status, health, ready] = await Promise.allSettled([
      api("/v1/cluster").then((r) => r.json()),
      api("/v1/cluster/health", null, [503]).then((r) => r.json()),
      api("/readyz", null, [503]).then((r) => r.json()),
    ]);
    if (current !== "cluster") return;
    if (status.status === "rejected") {
      setConn(null, status.reason);
      message($("banner"), "Cannot read the cluster status: " + status.reason.message);
      return;
    }
    message($("banner"), "");
    const st = status.value;
    const hl = health.status === "fulfilled" ? health.value : null;
    setConn(st);
    renderSummary(st, hl, health.status === "rejected" ? health.reason : null,
      ready.status === "fulfilled" ? ready.value : { ready: false, reason: ready.reason.message });
    renderMembers(st, hl);
    $("c-updated").textContent = "Updated " + new Date().toLocaleTimeString() + ".";
  }

  function setConn(st, err) {
    const c = $("conn");
    if (st) {
      c.textContent = "node " + st.node_id + " · " + st.state.toLowerCase();
      c.title = "the node this console talks to";
      c.className = "conn ok";
    } else {
      c.textContent = err && err.status === 401 ? "token needed" : "disconnected";
      c.title = err ? err.message : "";
      c.className = "conn bad";
    }
  }

  function renderSummary(st, hl, healthErr, ready) {
    $("c-leader").textContent = st.leader ? st.leader.id : "none";
    $("c-leader").className = st.leader ? "" : "bad";
    $("c-term").textContent = st.term;
    $("c-commit").textContent = st.commit_index;
    $("c-applied").textContent = st.applied_index;
    $("c-last").textContent = st.last_log_index;
    if (hl) {
      $("c-health").textContent = hl.healthy ? "healthy" : "unhealthy";
      $("c-health").className = hl.healthy ? "good" : "bad";
      $("c-tolerance").textContent = "tolerates " + hl.failure_tolerance + " failed voter" + (hl.failure_tolerance === 1 ? "" : "s");
    } else {
      $("c-health").textContent = "unknown";
      $("c-health").className = "bad";
      $("c-tolerance").textContent = healthErr ? healthErr.message : "";
    }
    $("c-node").textContent = st.node_id;
    $("c-ready").textContent = st.state.toLowerCase() + ", " + (ready.ready ? "ready" : "not ready: " + (ready.reason || ready.error || ""));
    $("c-ready").className = ready.ready ? "good" : "bad";
  }

  // memberStatus is what an operator acts on: failed (gossip says dead, or it does not answer),
  // left, unhealthy (answers but lags, has no leader, ...), healthy.
  function memberStatus(m, h) {
    if (m.gossip_state === "dead") return "failed";
    if (m.gossip_state === "left") return "left";
    if (!h) return "unknown";
    if (h.healthy) return "healthy";
    if ((h.reason || "").startsWith("did not answer")) return "failed";
    return "unhealthy";
  }

  function role(m) {
    if (m.leader) return "leader";
    if (m.suffrage === "voter") return "follower";
    if (m.suffrage === "nonvoter") return "non-voter";
    return "not in raft";
  }

  function renderMembers(st, hl) {
    const byId = new Map(((hl && hl.servers) || []).map((s) => [s.id, s]));
    const body = $("members").tBodies[0];
    const rows = st.members.slice().sort((a, b) => a.id.localeCompare(b.id)).map((m) => {
      const h = byId.get(m.id);
      const status = memberStatus(m, h);
      const contact = !h ? "" : h.last_contact_ms < 0 ? "never" : m.leader ? "—" : h.last_contact_ms + " ms";
      return el("tr", { "data-member": m.id, "data-status": status, "data-role": role(m), class: m.leader ? "leader" : "" },
        el("td", {}, el("strong", { text: m.id }), m.id === st.node_id ? el("span", { class: "tag", text: "this node" }) : null),
        el("td", {}, el("span", { class: "badge " + status, "data-field": "status", text: status })),
        el("td", { "data-field": "role" }, role(m)),
        el("td", { "data-field": "gossip" }, m.gossip_state),
        el("td", { class: "num" }, contact),
        el("td", { class: "num" }, h && h.term ? h.term : ""),
        el("td", { class: "num" }, h && h.term ? h.last_index : ""),
        el("td", { class: "num" }, h && h.term ? h.applied_index : ""),
        el("td", { class: "num" }, h && h.term ? h.behind : ""),
        el("td", { class: "addr" }, m.http_addr || ""),
        el("td", { class: "addr" }, m.raft_addr || ""),
        el("td", { class: "reason" }, (h && h.reason) || ""));
    });
    body.replaceChildren(...rows);
    const voters = st.members.filter((m) => m.suffrage === "voter").length;
    $("c-count").textContent = st.members.length + " member" + (st.members.length === 1 ? "" : "s") + ", " + voters + " voter" + (voters === 1 ? "" : "s");
  }

  // ---- key browser --------------------------------------------------------------------------------

  function crumbs(node, path, last) {
    // path "a/b/c": links to the root, a/, a/b/; last (a key) is shown unlinked.
    const parts = [el("a", { href: "#/keys/", text: "keys" })];
    let acc = "";
    const segs = path.split("/");
    for (const s of segs.slice(0, -1)) {
      acc += s + "/";
      parts.push(el("span", { class: "sep", text: " / " }), el("a", { href: "#/keys/" + encodeURIComponent(acc), text: s }));
    }
    if (last) parts.push(el("span", { class: "sep", text: " / " }), el("span", { text: segs[segs.length - 1] }));
    else if (segs[segs.length - 1] !== "") parts.push(el("span", { class: "sep", text: " / " }), el("span", { text: segs[segs.length - 1] + "…" }));
    node.replaceChildren(...parts);
  }

  function enterKeys(prefix) {
    let gen = 0;            // a newer load makes an older one's answers irrelevant
    let after = "";         // list cursor
    let more = false;
    const seen = new Set(); // folders already shown
    let shown = 0;
    const body = $("k-list").tBodies[0];
    body.replaceChildren();
    crumbs($("k-crumbs"), prefix, false);
    $("k-prefix").value = prefix;
    show($("k-create"), false);
    show($("k-empty"), false);
    show($("k-more"), false);
    message($("k-msg"), "");

    // load lists one more screen: keys directly under prefix, and each deeper level once as a folder.
    const load = async () => {
      const my = ++gen;
      $("k-more").disabled = true;
      let budget = SHOW;
      // Each list page carries values, so after a folder (whose contents the next page skips) ask
      // for a few entries, and grow the page again while the entries are plain keys.
      let limit = PAGE;
      try {
        while (budget > 0) {
          const q = new URLSearchParams({ prefix, limit: String(Math.min(limit, budget)) });
          if (after) q.set("after", after);
          const resp = await api("/v1/kv?" + q);
          const entries = await resp.json();
          if (my !== gen) return;
          more = resp.headers.get("X-Kv-More") === "true";
          let folderHit = false;
          for (const e of entries) {
            const rest = e.key.slice(prefix.length);
            const cut = rest.indexOf("/");
            if (cut >= 0) {
              const folder = prefix + rest.slice(0, cut + 1);
              after = folder + SKIP;
              if (seen.has(folder)) continue;
              seen.add(folder);
              body.append(folderRow(folder, prefix));
              budget--; shown++;
              more = true; // the skip cursor moved past this page; ask again to learn whether keys remain
              folderHit = true;
              break;       // the rest of this page is inside the folder
            }
            after = e.key;
            body.append(keyRow(e, prefix));
            budget--; shown++;
          }
          if (!more) break;
          limit = folderHit ? 10 : Math.min(limit * 2, PAGE);
          if (new TextEncoder().encode(after).length > 1024) { // too long for after=: step key by key instead
            after = entries[entries.length - 1].key;
          }
        }
      } catch (e) {
        if (my === gen) message($("k-msg"), "Listing failed: " + e.message, "bad");
        return;
      } finally {
        if (my === gen) $("k-more").disabled = false;
      }
      show($("k-empty"), shown === 0);
      show($("k-more"), more);
    };
    $("k-more").onclick = load;
    load();
    return () => { gen++; };
  }

  function folderRow(folder, prefix) {
    const name = folder.slice(prefix.length);
    return el("tr", { class: "folder", "data-folder": folder },
      el("td", {}, el("a", { href: "#/keys/" + encodeURIComponent(folder), text: name })),
      el("td", { class: "muted", text: "" }), el("td", {}), el("td", {}));
  }

  function keyRow(e, prefix) {
    const bytes = b64bytes(e.value);
    return el("tr", { "data-key": e.key },
      el("td", {}, el("a", { href: "#/key/" + encodeURIComponent(e.key), text: e.key.slice(prefix.length) })),
      el("td", { class: "value", text: preview(bytes) }),
      el("td", { class: "num", text: e.mod_index }),
      el("td", { class: "num", text: e.create_index }));
  }

  function openCreate() {
    const cur = $("k-prefix").value;
    $("k-create-key").value = cur;
    $("k-create-value").value = "";
    message($("k-create-msg"), "");
    show($("k-create"), true);
    $("k-create-key").focus();
  }

  async function submitCreate(ev) {
    ev.preventDefault();
    const key = $("k-create-key").value;
    if (!key) { message($("k-create-msg"), "A key needs a name.", "bad"); return; }
    $("k-create-submit").disabled = true;
    try {
      const resp = await api(keyPath(key) + "?cas=0", {
        method: "PUT", body: $("k-create-value").value, headers: { "Content-Type": "application/octet-stream" },
      });
      const { index } = await resp.json();
      show($("k-create"), false);
      flash = "Created at index " + index + ".";
      go("key", key);
    } catch (e) {
      message($("k-create-msg"), e.code === "cas_mismatch" ? "A key with that name already exists." : "Create failed: " + e.message, "bad");
    } finally {
      $("k-create-submit").disabled = false;
    }
  }

  // ---- one key ------------------------------------------------------------------------------------

  let flash = ""; // a message for the next key view (after a create)

  function enterKey(key) {
    let gen = 0;
    let modIndex = null; // the modify index the shown value has; null when absent or not loaded
    let binary = false;
    crumbs($("v-crumbs"), key, true);
    $("v-key").textContent = key;
    message($("v-msg"), flash, flash ? "good" : "");
    flash = "";

    const load = async (note) => {
      const my = ++gen;
      try {
        const resp = await api(keyPath(key));
        const bytes = new Uint8Array(await resp.arrayBuffer());
        if (my !== gen) return;
        modIndex = resp.headers.get("X-Kv-Mod-Index");
        const t = text(bytes);
        binary = t === null;
        $("v-value").value = binary ? bytesB64(bytes) : t;
        $("v-value").readOnly = binary;
        show($("v-binary"), binary);
        $("v-mod").textContent = modIndex;
        $("v-create").textContent = resp.headers.get("X-Kv-Create-Index");
        $("v-size").textContent = bytes.length + " bytes";
        $("v-read").textContent = resp.headers.get("X-Kv-Index") || "—";
        $("v-save").disabled = binary;
        $("v-delete").disabled = false;
        if (note !== undefined) message($("v-msg"), note, "good");
      } catch (e) {
        if (my !== gen) return;
        modIndex = null;
        for (const id of ["v-mod", "v-create", "v-size", "v-read"]) $(id).textContent = "—";
        $("v-value").value = "";
        $("v-save").disabled = true;
        $("v-delete").disabled = true;
        show($("v-binary"), false);
        message($("v-msg"), e.code === "key_not_found" ? ((note || "") + " This key does not exist.").trim() : "Reading the key failed: " + e.message,
          e.code === "key_not_found" ? "" : "bad");
      }
    };

    $("v-reload").onclick = () => load("");
    $("v-save").onclick = async () => {
      if (modIndex === null || binary) return;
      $("v-save").disabled = true;
      try {
        const resp = await api(keyPath(key) + "?cas=" + modIndex, {
          method: "PUT", body: $("v-value").value, headers: { "Content-Type": "application/octet-stream" },
        });
        const { index } = await resp.json();
        await load("Saved at index " + index + ".");
      } catch (e) {
        $("v-save").disabled = false;
        message($("v-msg"), casMessage(e, "Save"), "bad");
      }
    };
    $("v-delete").onclick = async () => {
      if (modIndex === null) return;
      if (!confirm("Delete " + key + "?")) return;
      try {
        const resp = await api(keyPath(key) + "?cas=" + modIndex, { method: "DELETE" });
        const { index, deleted } = await resp.json();
        await load(deleted ? "Deleted at index " + index + "." : "It was already gone.");
      } catch (e) {
        message($("v-msg"), casMessage(e, "Delete"), "bad");
      }
    };
    load();
    return () => { gen++; };
  }

  function casMessage(e, what) {
    if (e.code !== "cas_mismatch") return what + " failed: " + e.message;
    const now = e.body.current_index;
    return what + " refused: the key changed since it was loaded (" +
      (now ? "now at modify index " + now : "it has been deleted") + "). Reload to see it.";
  }

  // ---- live tail (GET /v1/watch) ------------------------------------------------------------------

  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // parseSSE reads one Server-Sent Events message block ("event:", "id:", "data:" lines).
  function parseSSE(block) {
    const ev = { type: "message", id: null, data: "" };
    for (const line of block.split("\n")) {
      const colon = line.indexOf(":");
      if (colon === 0) continue; // a comment
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") ev.type = value;
      else if (field === "id") ev.id = value;
      else if (field === "data") ev.data += (ev.data ? "\n" : "") + value;
    }
    return ev;
  }

  // The tail reads the stream with fetch rather than EventSource, which cannot send an Authorization
  // header. It resumes the way EventSource would: after the stream ends, again from the last id received
  // (Last-Event-ID), which misses nothing (no_leader, lagging, shutting_down), except after "compacted":
  // the history no longer reaches back, so it stops and says so.
  function enterWatch(prefix) {
    let gen = 0;     // a newer start or a stop makes an older stream's work irrelevant
    let ctl = null;  // aborts the stream running now
    $("w-prefix").value = prefix;
    const body = $("w-list").tBodies[0];
    const state = (t) => { $("w-state").textContent = t; };
    const stop = (why) => {
      gen++;
      if (ctl) { ctl.abort(); ctl = null; }
      $("w-start").disabled = false;
      $("w-stop").disabled = true;
      if (why !== undefined) state(why);
    };
    const addRows = (msg) => {
      for (const c of msg.changes) {
        body.prepend(el("tr", { class: c.type, "data-key": c.key, "data-type": c.type, "data-index": msg.index },
          el("td", { class: "num", text: msg.index }),
          el("td", { text: c.type }),
          el("td", {}, el("a", { href: "#/key/" + encodeURIComponent(c.key), text: c.key })),
          el("td", { class: "value", text: c.type === "put" ? preview(b64bytes(c.value)) : "" }),
          el("td", { text: new Date().toLocaleTimeString() })));
      }
      while (body.rows.length > TAIL_ROWS) body.deleteRow(-1);
    };
    // handle acts on one message; false ends the tail.
    const handle = (ev, sent) => {
      if (ev.type === "message") {
        const msg = JSON.parse(ev.data);
        addRows(msg);
        // Messages come exactly once and in index order, so this one completes the stream up to it.
        state("watching; complete up to index " + msg.index);
      } else if (ev.type === "progress") {
        try { state("watching; complete up to index " + JSON.parse(ev.data).index); } catch (_) { /* ignore */ }
      } else if (ev.type === "error") {
        let e = {};
        try { e = JSON.parse(ev.data); } catch (_) { e = { error: ev.data }; }
        if (e.code === "compacted") { stop("stopped: the node no longer has the changes since the last event; start again"); return false; }
        if (e.code === "unauthenticated") { stop(); askToken(sent, e); return false; }
        if (e.code === "permission_denied") { stop("stopped: refused for this token: " + e.error); return false; }
        state("reconnecting (" + (e.code || e.error) + ")…");
      }
      return true;
    };
    const run = async (p, my) => {
      let lastId = null;
      let delay = 0;
      while (my === gen) {
        if (delay) await sleep(delay);
        if (my !== gen) return;
        delay = 2000;
        ctl = new AbortController();
        const headers = authHeaders({ Accept: "text/event-stream" });
        if (lastId !== null) headers["Last-Event-ID"] = lastId;
        const sent = token;
        let resp;
        try {
          resp = await fetch("/v1/watch?" + new URLSearchParams({ prefix: p }),
            { headers, signal: ctl.signal, cache: "no-store", credentials: "omit" });
        } catch (e) {
          if (my === gen) state("reconnecting (cannot reach the node)…");
          continue;
        }
        if (!resp.ok) {
          let b = null;
          try { b = await resp.json(); } catch (_) { /* not JSON */ }
          if (my !== gen) return;
          const why = (b && b.error) || "HTTP " + resp.status;
          if (resp.status === 401) { stop(); askToken(sent, b); return; }
          if (resp.status === 403) { stop("stopped: refused for this token: " + why); return; }
          if (resp.status === 503) { state("reconnecting (" + ((b && b.code) || why) + ")…"); continue; }
          if (b && b.code === "compacted") { stop("stopped: the node no longer has the changes since the last event; start again"); return; }
          stop("stopped: " + why);
          return;
        }
        state("watching " + (p ? "“" + p + "”" : "every key"));
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done || my !== gen) break;
            buf += value.replace(/\r\n?/g, "\n");
            let cut;
            while ((cut = buf.indexOf("\n\n")) >= 0) {
              const ev = parseSSE(buf.slice(0, cut));
              buf = buf.slice(cut + 2);
              if (ev.id !== null) lastId = ev.id;
              if (!handle(ev, sent)) return;
            }
          }
        } catch (_) {
          // aborted by stop, or the connection dropped: resume below unless stopped
        }
        if (my === gen) state("reconnecting…");
        delay = 500;
      }
    };
    const start = () => {
      stop();
      body.replaceChildren();
      $("w-start").disabled = true;
      $("w-stop").disabled = false;
      state("connecting…");
      run($("w-prefix").value, gen);
    };
    $("w-form").onsubmit = (ev) => { ev.preventDefault(); start(); };
    $("w-stop").onclick = () => stop("stopped");
    start();
    return () => stop();
  }

  // The header says which node the console talks to, on every view; the cluster view refreshes it as
  // it polls, the others every few seconds.
  async function refreshConn() {
    if (current !== "cluster" && current !== "login") {
      try { setConn(await (await api("/v1/cluster")).json()); } catch (e) { setConn(null, e); }
    }
    setTimeout(refreshConn, 3 * POLL_MS);
  }

  // ---- start --------------------------------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("k-watch").onclick = () => go("watch", $("k-prefix").value);
    $("k-goto").onsubmit = (ev) => { ev.preventDefault(); go("keys", $("k-prefix").value); };
    $("k-new").onclick = openCreate;
    $("k-create").onsubmit = submitCreate;
    $("k-create-cancel").onclick = () => show($("k-create"), false);
    $("t-form").onsubmit = submitToken;
    $("who-out").onclick = signOut;
    window.addEventListener("hashchange", route);
    route();
    refreshConn();
    loadWho();
  });
})();
