// The node's live page: counters, peers and objects polled from the node, and a sequence
// diagram of calls drawn from the /events stream. No framework and no build step.
"use strict";

const MAX_ROWS = 800; // diagram rows kept; older ones scroll away for good
const MAX_HELD = 5000; // trace entries kept while the diagram is paused
const POLL_MS = 2000;
const GROUP_MS = 120; // entries arriving this close together are drawn as one batch
const ROW = 26, COL = 180, PAD = 20, TOP = 8;
const token = new URLSearchParams(location.hash.slice(1)).get("token");
const headers = token ? { Authorization: "Bearer " + token } : {};
const $ = (id) => document.getElementById(id);

let lastId = 0; // the last stream event id drawn (a reconnect replays recent ones)
let lastUptime = 0;
let rows = [];
let lanes = new Map(); // lifeline key → {label, sub, cls}
let incoming = [];
let held = [];
let paused = false;
let groupTimer = null;
let previousState = new Map();

// ------------------------------------------------------------------ fetching

// Object ids use 64 bits, past what a JavaScript number holds exactly: parse long integers
// (outside strings) as strings.
function parse(text) {
  let out = "", start = 0, inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === "\\") i++;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c >= "0" && c <= "9") {
      let j = i;
      while (j < text.length && text[j] >= "0" && text[j] <= "9") j++;
      if (j - i >= 16 && text[i - 1] !== "." && text[j] !== ".") {
        out += text.slice(start, i) + '"' + text.slice(i, j) + '"';
        start = j;
      }
      i = j - 1;
    }
  }
  return JSON.parse(out + text.slice(start));
}

async function get(path) {
  const response = await fetch(path, { headers, cache: "no-store" });
  if (!response.ok) throw new Error(path + ": " + response.status);
  return response.text();
}

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

function setLive(state, text) {
  $("live").dataset.state = state;
  $("live-text").textContent = text;
}

async function stream() {
  for (;;) {
    try {
      const response = await fetch("/events", { headers, cache: "no-store" });
      if (!response.ok) throw new Error("/events: " + response.status);
      setLive("live", "live");
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          onBlock(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
        }
      }
    } catch (error) {
      console.warn(error);
    }
    setLive("down", "reconnecting");
    await sleep(2000);
  }
}

function onBlock(block) {
  let id = null, data = "";
  for (const line of block.split("\n")) {
    if (line.startsWith("id: ")) id = Number(line.slice(4));
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (!data) return;
  if (id !== null) {
    if (id <= lastId) return;
    lastId = id;
  }
  incoming.push(parse(data));
  if (groupTimer === null) groupTimer = setTimeout(takeIncoming, GROUP_MS);
}

function takeIncoming() {
  groupTimer = null;
  const entries = incoming;
  incoming = [];
  if (paused) {
    held.push(...entries);
    if (held.length > MAX_HELD) held.splice(0, held.length - MAX_HELD);
    $("pending").textContent = held.length;
    return;
  }
  addGroup(entries);
  render(true);
}

// ------------------------------------------------------------------ values and names

function show(v) {
  if (v === null || v === undefined) return "–";
  if (v === "Nothing") return "nothing";
  const kind = Object.keys(v)[0], x = v[kind];
  switch (kind) {
    case "Nat": case "Bool": return String(x);
    case "Str": return JSON.stringify(x);
    case "List": return "[" + x.map(show).join(", ") + "]";
    case "Pair": return "(" + show(x[0]) + ", " + show(x[1]) + ")";
    case "Just": return "just " + show(x);
    case "ObjectRef": return shortId(x);
    case "TxRef": return "tx:" + x;
    default: return JSON.stringify(v);
  }
}

function shortId(id) {
  const big = BigInt(id);
  return "#" + (big & 0xffffffffffffn) + "@" + (big >> 48n);
}

function clip(text, chars) {
  return text.length > chars ? text.slice(0, Math.max(chars - 1, 1)) + "…" : text;
}

function esc(text) {
  return String(text).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]);
}

// A lifeline for a duct link [object id, behavior or "@machine", call id].
function lane(link) {
  const key = String(link[0]);
  const remote = link[1].startsWith("@");
  const known = lanes.get(key);
  if (!known) {
    const label = remote ? "object on " + link[1].slice(1) : link[1];
    lanes.set(key, { label, sub: shortId(key), cls: remote ? "remote" : "" });
  } else if (!remote && known.cls === "remote") {
    known.label = link[1];
  }
  return key;
}

function clientLane() {
  if (!lanes.has("client")) lanes.set("client", { label: "clients", sub: "avm call / create", cls: "client" });
  return "client";
}

// ------------------------------------------------------------------ entries → rows

// The entries of one flush come in the order they were recorded: a call's entry after
// everything it caused. Rebuild the call tree from the ducts (a call's id is its duct's last
// link), then lay it out in order: call, what happened inside, answer.
function addGroup(entries) {
  const calls = new Map();
  const root = { children: [] };
  const node = (cid) => {
    if (!calls.has(cid)) calls.set(cid, { cid, call: null, duct: null, children: [], first: Infinity });
    return calls.get(cid);
  };
  const others = [];
  for (const entry of entries) {
    const kind = Object.keys(entry.event_type)[0];
    const duct = entry.duct;
    if (kind === "ObjectCalled" && duct.length) {
      const n = node(String(duct[duct.length - 1][2]));
      Object.assign(n, { call: entry.event_type[kind], duct, at: entry.timestamp });
    } else {
      others.push({ type: "event", kind, body: entry.event_type[kind], duct, at: entry.timestamp });
    }
  }
  for (const n of calls.values()) {
    if (!n.call) continue;
    const parent = n.duct.length >= 2 ? calls.get(String(n.duct[n.duct.length - 2][2])) : null;
    (parent && parent.call ? parent.children : root.children).push({ type: "call", node: n });
  }
  for (const item of others) {
    let home = root;
    for (let i = item.duct.length - 1; i >= 0; i--) {
      const n = calls.get(String(item.duct[i][2]));
      if (n && n.call) { home = n; break; }
    }
    home.children.push(item);
  }
  const first = (item) => {
    if (item.type === "event") return item.at;
    const n = item.node;
    n.first = Math.min(n.at, ...n.children.map(first));
    return n.first;
  };
  const order = (holder) => {
    holder.children.sort((a, b) => first(a) - first(b));
    for (const child of holder.children) if (child.type === "call") order(child.node);
  };
  order(root);
  if (!root.children.length) return;
  rows.push({ kind: "sep", text: new Date().toLocaleTimeString() });
  for (const item of root.children) {
    const duct = item.type === "call" ? item.node.duct : item.duct;
    const caller = item.type === "call" && duct.length >= 2 ? lane(duct[duct.length - 2]) : clientLane();
    emit(item, caller);
  }
  if (rows.length > MAX_ROWS) rows.splice(0, rows.length - MAX_ROWS);
}

function emit(item, caller) {
  if (item.type === "call") {
    const n = item.node;
    const callee = lane(n.duct[n.duct.length - 1]);
    rows.push({ kind: "call", from: caller, to: callee, text: show(n.call.input) });
    for (const child of n.children) emit(child, callee);
    const failure = n.call.failure;
    if (failure) {
      const where = failure.location ? " · " + failure.location : "";
      rows.push({ kind: "failure", from: callee, to: caller, text: "✗ " + failure.kind + ": " + failure.message + where });
    } else if (n.call.output === null) {
      rows.push({ kind: "failure", from: callee, to: caller, text: "✗ failed" });
    } else {
      rows.push({ kind: "ret", from: callee, to: caller, text: show(n.call.output) });
    }
    return;
  }
  const here = item.duct.length ? lane(item.duct[item.duct.length - 1]) : caller;
  const b = item.body;
  switch (item.kind) {
    case "TransactionStarted": rows.push({ kind: "txopen", tx: String(b), at: here }); break;
    case "TransactionCommitted": rows.push({ kind: "txclose", tx: String(b), ok: true }); break;
    case "TransactionAborted": rows.push({ kind: "txclose", tx: String(b), ok: false }); break;
    case "ObjectCreated": {
      const made = lane([b.id, b.behavior_name, 0]);
      rows.push({ kind: "call", from: here, to: made, text: "create " + b.behavior_name });
      break;
    }
    case "StateUpdated": {
      const key = String(b.id);
      rows.push({ kind: "note", at: lanes.has(key) ? key : here, text: "state ← " + show(b.state) });
      break;
    }
    case "LogRecorded": rows.push({ kind: "note", at: here, text: "log " + show(b) }); break;
    default: rows.push({ kind: "note", at: here, text: item.kind + " " + clip(JSON.stringify(b), 60) });
  }
}

// ------------------------------------------------------------------ drawing

function render(follow) {
  const used = new Set();
  for (const row of rows) for (const key of [row.from, row.to, row.at]) if (key) used.add(key);
  const keys = [...lanes.keys()].filter((key) => used.has(key));
  for (const key of [...lanes.keys()]) if (!used.has(key)) lanes.delete(key);
  const x = new Map(keys.map((key, i) => [key, PAD + i * COL + COL / 2]));
  const width = PAD * 2 + keys.length * COL + 280; // room for a failure's reason
  const height = TOP + rows.length * ROW + 16;
  const y = (i) => TOP + i * ROW + ROW / 2;
  const out = [];
  out.push('<defs>' + ["call", "ret", "failure"].map((k) =>
    `<marker id="m-${k}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="${k === "call" ? "#58a6ff" : k === "ret" ? "#7d8a99" : "#f85149"}"/></marker>`).join("") + "</defs>");
  // Transactions: a band over the rows between start and end.
  const open = [];
  rows.forEach((row, i) => {
    if (row.kind === "txopen") open.push({ row, i });
    if (row.kind === "txclose") {
      const at = open.findIndex((o) => o.row.tx === row.tx);
      if (at < 0) return;
      const [start] = open.splice(at, 1);
      out.push(band(start.i, i, row.ok ? "committed" : "aborted", start.row.tx, open.length));
    }
  });
  for (const o of open) out.push(band(o.i, rows.length - 1, "open", o.row.tx, 0));
  for (const key of keys) out.push(`<line class="lifeline" x1="${x.get(key)}" y1="0" x2="${x.get(key)}" y2="${height}"/>`);
  rows.forEach((row, i) => {
    const cy = y(i);
    if (row.kind === "sep") {
      out.push(`<g class="note"><line class="sep" x1="0" y1="${cy}" x2="${width}" y2="${cy}"/><text x="4" y="${cy - 4}">${esc(row.text)}</text></g>`);
    } else if (row.kind === "note") {
      out.push(`<g class="note"><text x="${x.get(row.at) + 8}" y="${cy + 4}">${esc(clip(row.text, 40))}</text></g>`);
    } else if (row.kind === "call" || row.kind === "ret" || row.kind === "failure") {
      out.push(arrow(row, x.get(row.from), x.get(row.to), cy));
    }
  });
  function band(from, to, state, tx, depth) {
    const top = y(from) - ROW / 2 + 3 + depth * 3, bottom = y(to) + ROW / 2 - 3 - depth * 3;
    const cls = state === "aborted" ? "tx aborted" : "tx";
    return `<g class="${cls}" data-tx="${esc(tx)}"><rect x="${2 + depth * 4}" y="${top}" width="${width - 4 - depth * 8}" height="${bottom - top}" rx="6"/>` +
      `<text x="${width - 8 - depth * 4}" y="${top + 13}" text-anchor="end">tx:${esc(String(BigInt(tx) & 0xffffffffffffn))} · ${state}</text></g>`;
  }
  function arrow(row, x1, x2, cy) {
    const cls = row.kind;
    const marker = `marker-end="url(#m-${cls})"`;
    const title = `<title>${esc(row.text)}</title>`;
    if (x1 === x2) {
      const d = `M${x1},${cy - 7} h26 v14 h-24`;
      return `<g class="${cls}">${title}<path d="${d}" fill="none" stroke="${cls === "call" ? "#58a6ff" : cls === "failure" ? "#f85149" : "#7d8a99"}" ${marker}/>` +
        `<text x="${x1 + 32}" y="${cy + 4}">${esc(clip(row.text, 40))}</text></g>`;
    }
    const left = Math.min(x1, x2), span = Math.abs(x2 - x1);
    const chars = cls === "failure" ? 90 : Math.max(Math.floor(span / 7.2) - 1, 10);
    return `<g class="${cls}">${title}<line x1="${x1}" y1="${cy}" x2="${x2 + (x2 > x1 ? -2 : 2)}" y2="${cy}" ${marker}/>` +
      `<text x="${left + 6}" y="${cy - 5}">${esc(clip(row.text, chars))}</text></g>`;
  }
  const svg = $("seq");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.innerHTML = out.join("");
  $("seq-empty").hidden = rows.length > 0;
  $("lanes").innerHTML = '<div id="lanes-inner" style="position:absolute;left:0;top:0;height:100%">' + keys.map((key) => {
    const l = lanes.get(key);
    return `<div class="lane ${l.cls}" style="left:${x.get(key)}px" title="${esc(key)}"><div class="b">${esc(l.label)}</div><div class="m">${esc(l.sub)}</div></div>`;
  }).join("") + "</div>";
  syncLanes();
  if (follow) {
    const scroller = $("scroller");
    scroller.scrollTop = scroller.scrollHeight;
  }
}

function syncLanes() {
  const inner = $("lanes-inner");
  if (inner) inner.style.transform = `translateX(${-$("scroller").scrollLeft}px)`;
}

function resume() {
  paused = false;
  $("resume").hidden = true;
  const entries = held;
  held = [];
  if (entries.length) addGroup(entries);
  render(true);
}

function onScroll() {
  syncLanes();
  const s = $("scroller");
  const atBottom = s.scrollTop + s.clientHeight >= s.scrollHeight - 30;
  if (!atBottom && !paused && rows.length) {
    paused = true;
    $("pending").textContent = "0";
    $("resume").hidden = false;
  } else if (atBottom && paused) {
    resume();
  }
}

// ------------------------------------------------------------------ side panel

function metricsOf(text) {
  const out = new Map();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const space = line.lastIndexOf(" ");
    out.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return out;
}

function duration(seconds) {
  const s = Math.floor(seconds);
  if (s < 60) return s + " s";
  if (s < 3600) return Math.floor(s / 60) + " min " + (s % 60) + " s";
  return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
}

function count(n) {
  if (n >= 1e9) return (n / 1e9).toFixed(1) + "G";
  if (n >= 1e6) return (n / 1e6).toFixed(1) + "M";
  if (n >= 1e4) return (n / 1e3).toFixed(1) + "k";
  return String(n);
}

async function poll() {
  try {
    const [health, metrics] = await Promise.all([get("/health").then(parse), get("/metrics").then(metricsOf)]);
    if (health.uptime_seconds < lastUptime) lastId = 0; // the node restarted: new numbering
    lastUptime = health.uptime_seconds;
    $("node-name").textContent = health.name;
    document.title = "avm node " + health.name;
    $("uptime").textContent = duration(health.uptime_seconds);
    const names = Object.keys(health.peers).sort();
    $("peers").innerHTML = names.length ? names.map((name) =>
      `<li data-peer="${esc(name)}" data-status="${esc(health.peers[name])}">${esc(name)} <small>${esc(health.peers[name])}</small></li>`).join("")
      : '<li class="empty">no peers</li>';
    const m = (name) => metrics.get(name) || 0;
    $("calls-ok").textContent = count(m('avm_calls_total{outcome="ok"}'));
    $("calls-failed").textContent = count(m('avm_calls_total{outcome="failed"}'));
    $("calls-error").textContent = count(m('avm_calls_total{outcome="error"}'));
    $("remote-calls").textContent = count(m("avm_remote_calls_total"));
    $("events-applied").textContent = count(m("avm_events_applied_total"));
    $("parked-runs").textContent = count(m("avm_parked_runs"));
    $("bytes-in").textContent = count(m("avm_bytes_in_total"));
    const n = m("avm_call_latency_seconds_count");
    $("latency").textContent = n ? (1000 * m("avm_call_latency_seconds_sum") / n).toFixed(1) + " ms" : "–";
    if (health.status !== "ok") setLive("down", "halting: " + (health.reason || ""));
    await pollObjects();
  } catch (error) {
    setLive("down", "node unreachable");
  }
}

async function pollObjects() {
  let shown;
  try {
    shown = parse(await get("/objects"));
  } catch (error) {
    return; // busy (a long run): next time
  }
  $("object-count").textContent = shown.object_count ? "· " + shown.object_count : "";
  const state = new Map();
  const cards = shown.objects.map((o) => {
    const fields = Object.entries(o.state);
    const text = fields.map(([k, v]) => k + "=" + v).join(";");
    state.set(String(o.id), text);
    const changed = previousState.has(String(o.id)) && previousState.get(String(o.id)) !== text;
    return `<div class="object${changed ? " flash" : ""}" data-id="${esc(o.id)}" data-behavior="${esc(o.behavior)}">` +
      `<div class="title"><span class="behavior">${esc(o.behavior)}</span><span class="id mono" title="obj:${esc(o.id)}">${esc(shortId(o.id))}</span></div>` +
      (fields.length ? fields.map(([k, v]) => `<div class="field mono"><span class="k">${esc(k)}</span> ${esc(v)}</div>`).join("")
        : '<div class="field mono"><span class="k">no fields</span></div>') + "</div>";
  });
  previousState = state;
  $("objects").innerHTML = cards.length ? cards.join("") : '<div class="empty">no objects yet</div>';
}

$("scroller").addEventListener("scroll", onScroll);
$("resume").addEventListener("click", resume);
render(false);
poll();
setInterval(poll, POLL_MS);
stream();
