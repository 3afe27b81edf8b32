// salesctl serve: the dashboard's only script (an ES module, no library).
//
// It polls /api/state (the snapshot salesctl's collector builds every
// interval: Postgres windows of the last hour, the workers' open windows and
// metrics history) and redraws four SVG charts and a table. Everything shown
// is set with textContent or SVG attributes, never parsed as HTML: seller ids
// come from the event stream. The DOM carries the numbers it draws
// (data-seller, data-start-ms, data-total, data-count on each point;
// data-polls and data-seq on <body>) so a test can compare them with Postgres.

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const SELLERS_DRAWN = COLORS.length;
const POLL_MIN_MS = 250, FETCH_TIMEOUT_MS = 5000;

let polls = 0;

function el(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

const pad = (n) => String(n).padStart(2, "0");
function hms(ms) {
  const d = new Date(ms);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}
const fmt = (n) => Number(n).toLocaleString("en-US", { maximumFractionDigits: 1 });

// Round numbers for an axis from 0 to max: [step, top].
function niceAxis(max) {
  if (!(max > 0)) return [1, 1];
  const raw = max / 4, mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  return [step, Math.ceil(max / step) * step];
}

// Axes and grid into svg; returns the x and y mappings.
function frame(svg, W, H, m, x0, x1, top, xTicks, label) {
  const sx = (x) => m.l + (x1 > x0 ? ((x - x0) / (x1 - x0)) * (W - m.l - m.r) : (W - m.l - m.r) / 2);
  const sy = (y) => H - m.b - (y / top) * (H - m.t - m.b);
  const [step] = niceAxis(top);
  for (let y = 0; y <= top + step / 2; y += step) {
    svg.append(el("line", { class: "grid", x1: m.l, x2: W - m.r, y1: sy(y), y2: sy(y) }));
    svg.append(el("text", { x: m.l - 4, y: sy(y) + 4, "text-anchor": "end" }, fmt(y)));
  }
  for (let i = 0; i < xTicks && x1 > x0; i++) {
    const x = x0 + ((x1 - x0) * i) / (xTicks - 1);
    const anchor = i === 0 ? "start" : i === xTicks - 1 ? "end" : "middle";
    svg.append(el("text", { x: sx(x), y: H - m.b + 14, "text-anchor": anchor }, label(x)));
  }
  return [sx, sy];
}

// ---- the main chart: total per seller per window ---------------------------------

function drawWindows(s) {
  const svg = document.getElementById("chart"), legend = document.getElementById("legend");
  svg.replaceChildren();
  legend.replaceChildren();
  const W = 960, H = 320, m = { l: 70, r: 16, t: 12, b: 26 };
  const bySeller = new Map();
  for (const w of s.windows) {
    if (!bySeller.has(w.seller)) bySeller.set(w.seller, { sum: 0, ws: [] });
    const e = bySeller.get(w.seller);
    e.sum += w.total;
    e.ws.push(w);
  }
  // the sellers with the largest totals of the hour, then by name
  const sellers = [...bySeller.keys()].sort((a, b) => bySeller.get(b).sum - bySeller.get(a).sum || (a < b ? -1 : 1));
  const shown = sellers.slice(0, SELLERS_DRAWN).sort();
  const note = document.getElementById("chart-note");
  note.textContent = s.postgres.error ? `Postgres: ${s.postgres.error}`
    : `${s.windows.length} windows from Postgres table ${s.postgres.table}` +
      (sellers.length > shown.length ? `, the ${shown.length} largest of ${sellers.length} sellers drawn` : "") +
      (s.windows_truncated ? " (the newest only: more than the server sends)" : "");
  if (!shown.length) {
    svg.append(el("text", { class: "empty", x: W / 2, y: H / 2, "text-anchor": "middle" },
      s.postgres.error ? "no data from Postgres (see above)" : "no committed window in the last hour yet"));
    return;
  }
  const drawn = shown.flatMap((id) => bySeller.get(id).ws);
  const x0 = Math.min(...drawn.map((w) => w.start_ms)), x1 = Math.max(...drawn.map((w) => w.start_ms));
  const [, top] = niceAxis(Math.max(...drawn.map((w) => w.total)) * 1.05);
  const [sx, sy] = frame(svg, W, H, m, x0, x1, top, 7, hms);
  shown.forEach((id, i) => {
    const color = COLORS[i % COLORS.length], ws = bySeller.get(id).ws.sort((a, b) => a.start_ms - b.start_ms);
    const g = el("g", { "data-seller": id });
    g.append(el("polyline", { class: "series", stroke: color,
      points: ws.map((w) => `${sx(w.start_ms).toFixed(1)},${sy(w.total).toFixed(1)}`).join(" ") }));
    for (const w of ws) {
      const c = el("circle", { class: "pt", cx: sx(w.start_ms).toFixed(1), cy: sy(w.total).toFixed(1), r: 3, fill: color,
        "data-seller": id, "data-start-ms": w.start_ms, "data-end-ms": w.end_ms,
        "data-total": w.total, "data-count": w.count });
      c.append(el("title", {}, `${id} ${hms(w.start_ms)}-${hms(w.end_ms)}: ${fmt(w.total)} USD, ${w.count} sales`));
      g.append(c);
    }
    svg.append(g);
    const item = document.createElement("span"), key = document.createElement("span");
    key.className = "key";
    key.style.background = color;
    item.append(key, id);
    legend.append(item);
  });
}

// ---- the per-seller table ------------------------------------------------------------

function drawSellers(s) {
  const body = document.querySelector("#sellers tbody");
  body.replaceChildren();
  const last = new Map(), open = new Map(s.open.map((o) => [o.seller, o]));
  for (const w of s.windows) if (!last.has(w.seller) || w.start_ms > last.get(w.seller).start_ms) last.set(w.seller, w);
  const ids = [...new Set([...last.keys(), ...open.keys()])].sort();
  for (const id of ids) {
    const r = body.insertRow(), w = last.get(id), o = open.get(id);
    r.dataset.seller = id;
    cell(r, id);
    cell(r, w ? `${hms(w.start_ms)}-${hms(w.end_ms)}` : "");
    cell(r, w ? fmt(w.total) : "", "n").dataset.total = w ? w.total : "";
    cell(r, w ? String(w.count) : "", "n");
    cell(r, o ? hms(o.start_ms) : "").dataset.openStart = o ? o.start_ms : "";
    cell(r, o ? fmt(o.total) : "", "n").dataset.openTotal = o ? o.total : "";
    cell(r, o ? String(o.count) : "", "n").dataset.openCount = o ? o.count : "";
    cell(r, o ? o.worker : "");
  }
  if (!ids.length) cell(body.insertRow(), "no seller yet").colSpan = 8;
}

// ---- the small charts: metrics over time -------------------------------------------

function spark(id, t, series) {
  const svg = document.getElementById(id);
  svg.replaceChildren();
  const W = 300, H = 120, m = { l: 44, r: 6, t: 8, b: 20 };
  const pts = series.map((v) => v.map((y, i) => [t[i], y]).filter(([, y]) => y !== null));
  const all = pts.flat();
  if (all.length < 2) {
    svg.append(el("text", { class: "empty", x: W / 2, y: H / 2, "text-anchor": "middle" }, "no worker metrics yet"));
    return;
  }
  const [, top] = niceAxis(Math.max(1, ...all.map(([, y]) => y)) * 1.1);
  const [sx, sy] = frame(svg, W, H, m, t[0], t[t.length - 1], top, 3, hms);
  pts.forEach((p, i) => svg.append(el("polyline", { class: "series", stroke: COLORS[i],
    points: p.map(([x, y]) => `${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join(" ") })));
  const lastv = series.map((v) => v[v.length - 1]);
  svg.setAttribute("data-last", lastv.join(","));
}

function drawMetrics(s) {
  const h = s.history;
  spark("throughput", h.t_ms, [h.processed_per_s, h.results_per_s]);
  spark("lag", h.t_ms, [h.lag]);
  spark("dead", h.t_ms, [h.dead_letters]);
}

// ---- the poll loop -----------------------------------------------------------------

function setStatus(text, bad) {
  const st = document.getElementById("status");
  st.textContent = text;
  st.classList.toggle("bad", !!bad);
}

function render(s) {
  drawWindows(s);
  drawSellers(s);
  drawMetrics(s);
  const wk = s.workers, h = s.history, n = h.t_ms.length;
  const rate = (a) => (n && a[n - 1] !== null ? fmt(a[n - 1]) : "?");
  const parts = [`updated ${hms(s.now_ms)} UTC`];
  if (wk.n) parts.push(`workers ${wk.up}/${wk.n}`, `${rate(h.processed_per_s)} records/s`,
    `${rate(h.results_per_s)} results/s`, `lag ${rate(h.lag)}`, `dead letters ${rate(h.dead_letters)}`);
  else parts.push("no workers (pass --workers HOST:PORT or RILL_WORKERS for open windows and metrics)");
  setStatus(parts.join(" · "), !!s.postgres.error || (wk.n && wk.up < wk.n));
  document.getElementById("footer").textContent =
    `poll ${polls} · snapshot ${s.seq} · every ${s.interval_ms} ms · served by salesctl serve`;
}

async function poll() {
  let next = 1000;
  const ctl = new AbortController(), timer = setTimeout(() => ctl.abort(), FETCH_TIMEOUT_MS);
  try {
    const r = await fetch("/api/state", { cache: "no-store", signal: ctl.signal });
    if (r.status === 503) {
      setStatus("salesctl serve has collected no data yet…");
    } else if (!r.ok) {
      setStatus(`salesctl serve answered ${r.status}`, true);
    } else {
      const s = await r.json();
      polls++;
      document.body.dataset.polls = polls;
      document.body.dataset.seq = s.seq;
      next = Math.max(POLL_MIN_MS, s.interval_ms | 0);
      render(s);
    }
  } catch (e) {
    setStatus(`cannot reach salesctl serve (${e.name}); retrying`, true);
  } finally {
    clearTimeout(timer);
  }
  setTimeout(poll, next);
}

poll();
