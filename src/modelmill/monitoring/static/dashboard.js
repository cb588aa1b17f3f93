// modelmill dashboard: fetch /api/summary and /api/versions, draw, and do it again every
// refresh interval. Data is written with textContent only: names come from the log.
"use strict";

const REFRESH_S = Number(document.body.dataset.refreshS) || 60;
const COLOURS = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#9f1239"];
const BAD = "#c62828";
const LEGEND = { position: "bottom", labels: { usePointStyle: true, boxWidth: 8 } };
const charts = {};

Chart.defaults.animation = false; // a page that redraws every minute should not wobble
Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
Chart.defaults.color = "#66727f";

async function api(path) {
  // Same origin: the token's cookie (when the dashboard has one) goes with the request.
  const response = await fetch(path, { credentials: "same-origin" });
  const body = await response.json().catch(() => ({ detail: `HTTP ${response.status}` }));
  return response.ok ? { data: body } : { error: body.detail || `HTTP ${response.status}` };
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = text;
  return node;
}

function fmt(value, digits = 3) {
  if (value === null || value === undefined) return "–";
  const number = Number(value);
  if (!Number.isFinite(number)) return "∞";
  if (Math.abs(number) >= 1000 && Math.abs(number) < 1e6) return String(Math.round(number));
  if (Number.isInteger(number)) return String(number);
  const text = number.toPrecision(digits);
  if (text.includes("e")) return text.replace(/\.?0+e/, "e");
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text; // trailing zeros of decimals only
}

function when(iso) { return iso ? iso.replace("T", " ").slice(0, 16) : "–"; }

function drawChart(id, config) {
  // Charts are updated in place: a redraw keeps the legend's hidden series hidden.
  const existing = charts[id];
  if (existing) {
    existing.data.labels = config.data.labels;
    config.data.datasets.forEach((set, i) => {
      if (existing.data.datasets[i] && existing.data.datasets[i].label === set.label) {
        Object.assign(existing.data.datasets[i], set);
      } else {
        existing.data.datasets[i] = set;
      }
    });
    existing.data.datasets.length = config.data.datasets.length;
    existing.update("none");
    return;
  }
  const options = config.options || {};
  options.plugins = Object.assign({ legend: LEGEND }, options.plugins);
  config.options = Object.assign({ responsive: true, maintainAspectRatio: false,
    interaction: { mode: "index", intersect: false } }, options);
  charts[id] = new Chart(document.getElementById(id), config);
}

function renderHeader(summary) {
  const model = summary.model, log = summary.log;
  document.getElementById("model-name").textContent = model.name;
  const version = document.getElementById("model-version");
  version.textContent = `version ${model.version}`;
  version.hidden = false;
  const task = document.getElementById("model-task");
  task.textContent = model.task;
  task.hidden = false;
  document.getElementById("log-info").textContent =
    `log ${log.url} · ${log.rows} records (${log.labelled} labelled) · ${when(log.first)} → ${when(log.last)} UTC · ` +
    `window ${summary.settings.window}`;
  document.getElementById("updated").textContent =
    `computed ${when(summary.created_at)} UTC · refreshes every ${REFRESH_S} s`;
  document.title = `${model.name} · modelmill dashboard`;
}

function renderBanner(summary) {
  const banner = document.getElementById("alarm-banner");
  const last = summary.windows[summary.windows.length - 1];
  const latest = last ? last.alarms : [];
  banner.hidden = !summary.alarm;
  if (!summary.alarm) return;
  const shown = latest.length ? latest : summary.alarms.slice(-3);
  const head = latest.length ? `${latest.length} alarm${latest.length > 1 ? "s" : ""} in the latest window`
    : "No alarm in the latest window";
  banner.textContent = `⚠ ${head} (${summary.alarms.length} in all): ` +
    shown.slice(0, 3).map((a) => a.message).join(" · ") + (shown.length > 3 ? " …" : "");
}

function renderDrift(summary, labels) {
  const columns = [];
  summary.windows.forEach((w) => w.drift.forEach((d) => { if (!columns.includes(d.column)) columns.push(d.column); }));
  const datasets = columns.map((column, i) => {
    const found = summary.windows.map((w) => w.drift.find((c) => c.column === column) || null);
    const colour = COLOURS[i % COLOURS.length];
    // A window where the column drifted gets a large red point: the verdict, not only the size.
    return { label: column, data: found.map((d) => (d ? d.score : null)), borderColor: colour, backgroundColor: colour,
      borderDash: column === "prediction" ? [6, 4] : [], tension: 0.2,
      pointRadius: found.map((d) => (d && d.drifted ? 6 : 3)),
      pointBackgroundColor: found.map((d) => (d && d.drifted ? BAD : colour)) };
  });
  drawChart("drift-chart", { type: "line", data: { labels, datasets }, options: {
    scales: { y: { beginAtZero: true, title: { display: true, text: "score" } } },
    plugins: { legend: { ...LEGEND, labels: { ...LEGEND.labels, generateLabels: plainLegend } },
      tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${fmt(c.raw)}` } } } } });
}

function plainLegend(chart) {
  // The legend shows each column's own colour, not its first point's (red when it drifted).
  return Chart.defaults.plugins.legend.labels.generateLabels(chart).map((item) =>
    ({ ...item, fillStyle: chart.data.datasets[item.datasetIndex].borderColor }));
}

function renderPerformance(summary, labels) {
  const perf = summary.windows.map((w) => w.performance);
  const metric = perf.length ? perf[0].metric : summary.settings.metric;
  document.getElementById("metric-name").textContent = `${metric}, ${Math.round(summary.settings.confidence * 100)}% interval`;
  const realised = perf.map((p) => (p.realised ? p.realised.value : null));
  const datasets = [
    { label: "interval low", data: perf.map((p) => (p.realised ? p.realised.low : null)), borderWidth: 0, pointRadius: 0 },
    { label: "interval", data: perf.map((p) => (p.realised ? p.realised.high : null)), borderWidth: 0, pointRadius: 0,
      fill: "-1", backgroundColor: "rgba(37, 99, 235, 0.15)" },
    { label: "realised", data: realised, borderColor: COLOURS[0], backgroundColor: COLOURS[0], pointRadius: 3 },
    { label: "estimated (no labels)", data: perf.map((p) => p.estimated), borderColor: COLOURS[1],
      backgroundColor: COLOURS[1], borderDash: [6, 4], pointRadius: 3 },
  ];
  const reference = perf.length ? perf[0].reference : null;
  if (reference !== null) {
    datasets.push({ label: "test split", data: labels.map(() => reference), borderColor: "#66727f",
      borderDash: [2, 3], borderWidth: 1.5, pointRadius: 0 });
  }
  // what the estimate is judged against: the same estimate on the held-out rows at training
  const expected = perf.length ? perf[0].reference_estimated : null;
  if (expected !== null && expected !== undefined && perf.some((p) => p.estimated !== null)) {
    datasets.push({ label: "estimated at training", data: labels.map(() => expected), borderColor: COLOURS[1],
      borderDash: [2, 3], borderWidth: 1.5, pointRadius: 0 });
  }
  drawChart("performance-chart", { type: "line", data: { labels, datasets }, options: {
    plugins: { legend: { position: "bottom", labels: { ...LEGEND.labels, filter: (item) => item.text !== "interval low" } },
      tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${fmt(c.raw)}` } } } } });
}

function renderTraffic(summary, labels) {
  const versions = [];
  summary.windows.forEach((w) => Object.keys(w.versions).forEach((v) => { if (!versions.includes(v)) versions.push(v); }));
  versions.sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const datasets = versions.map((v, i) => ({ label: `version ${v}`, data: summary.windows.map((w) => w.versions[v] || 0),
    backgroundColor: COLOURS[i % COLOURS.length] }));
  drawChart("traffic-chart", { type: "bar", data: { labels, datasets }, options: {
    scales: { x: { stacked: true }, y: { stacked: true, beginAtZero: true, title: { display: true, text: "rows" } } } } });
}

function renderTable(summary) {
  const body = document.querySelector("#drift-table tbody");
  const last = summary.windows[summary.windows.length - 1];
  body.replaceChildren();
  if (!last) return;
  document.getElementById("latest-window").textContent =
    `#${last.index} · ${when(last.start)} → ${when(last.end)} · ${last.rows} rows` + (last.judged ? "" : " · too few rows to alarm");
  for (const d of last.drift) {
    const row = el("tr", d.drifted || d.alarms.length ? "drifted" : "");
    row.append(el("td", "", d.column), el("td", "", d.statistic), el("td", "num", fmt(d.value)),
      el("td", "num", fmt(d.threshold)), el("td", "num", fmt(d.score)), el("td", "num", fmt(d.p_value, 2)));
    const alarms = el("td");
    d.alarms.forEach((a) => alarms.append(el("span", "tag", a.replace(/_/g, " "))));
    row.append(alarms);
    body.append(row);
  }
  for (const s of last.skipped) {
    const row = el("tr");
    const reason = el("td", "empty", `skipped: ${s.reason}`);
    reason.colSpan = 6;
    row.append(el("td", "", s.column), reason);
    body.append(row);
  }
}

function renderAlarms(summary) {
  const list = document.getElementById("alarms");
  list.replaceChildren();
  if (!summary.alarms.length) { list.append(el("li", "empty", "No alarm in any window.")); return; }
  const ends = Object.fromEntries(summary.windows.map((w) => [w.index, w.end]));
  for (const alarm of [...summary.alarms].reverse()) {
    const item = el("li");
    item.append(el("span", "kind", alarm.kind.replace(/_/g, " ")), el("span", "", alarm.message), el("br"),
      el("span", "when", `window #${alarm.window} · ${when(ends[alarm.window])} UTC`));
    list.append(item);
  }
}

function renderVersions(versions, summary) {
  const table = document.getElementById("versions-table");
  const served = {};
  if (summary) summary.windows.forEach((w) => Object.entries(w.versions).forEach(([v, n]) => { served[v] = (served[v] || 0) + n; }));
  const metrics = summary ? [summary.settings.metric] : []; // the followed metric first
  versions.forEach((v) => Object.entries(v.metrics).forEach(([k, x]) => {
    if (typeof x === "number" && !metrics.includes(k) && metrics.length < 4) metrics.push(k);
  }));
  const head = el("tr");
  ["version", "created", ...metrics, "rows served"].forEach((h, i) => head.append(el("th", i > 1 ? "num" : "", h)));
  table.tHead.replaceChildren(head);
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const v of [...versions].reverse()) {
    const row = el("tr", v.error ? "broken" : "");
    const name = el("td", "", v.version);
    if (summary && v.version === summary.model.version) name.append(" ", el("span", "chip", "monitored"));
    if (v.error) name.append(" ", el("span", "tag", "broken")); // fails verification, loading or warm-up
    row.append(name, el("td", "", v.error ? v.error : when(v.created_at)));
    metrics.forEach((k) => row.append(el("td", "num", fmt(v.metrics[k]))));
    row.append(el("td", "num", served[v.version] || 0));
    body.append(row);
  }
}

function gainText(figures) {
  if (!figures || figures.gain === undefined) return "–";
  const interval = figures.low === null || figures.low === undefined ? "" : ` [${fmt(figures.low, 4)}, ${fmt(figures.high, 4)}]`;
  return `${figures.metric} ${figures.gain >= 0 ? "+" : ""}${fmt(figures.gain, 4)}${interval} on ${figures.rows}`;
}

function renderDecisions(decisions) {
  const body = document.querySelector("#decisions-table tbody");
  body.replaceChildren();
  document.getElementById("decisions-empty").hidden = decisions.length > 0;
  for (const d of decisions) { // newest first
    const row = el("tr", `decision ${d.outcome}`);
    const f = d.figures || {};
    const test = f.original_test ? `${fmt(f.original_test.challenger, 4)} vs ${fmt(f.original_test.champion, 4)}` : "–";
    const versions = d.challenger ? `${d.champion} → ${d.challenger}` : `${d.champion || "–"}`;
    row.append(el("td", "", when(new Date(d.decided_at * 1000).toISOString())), el("td", "", d.trigger),
      el("td", "", d.outcome), el("td", "", versions), el("td", "num", gainText(f.recent || f.live)),
      el("td", "num", test), el("td", "why", d.reason));
    body.append(row);
  }
}

async function refresh() {
  const [summary, versions, decisions] = await Promise.all([api("/api/summary"), api("/api/versions"),
    api("/api/decisions")]);
  const error = document.getElementById("error");
  error.hidden = !summary.error;
  error.textContent = summary.error || "";
  if (summary.data) {
    const s = summary.data;
    const labels = s.windows.map((w) => `#${w.index} ${when(w.end).slice(5)}`);
    renderHeader(s);
    renderBanner(s);
    renderDrift(s, labels);
    renderPerformance(s, labels);
    renderTraffic(s, labels);
    renderTable(s);
    renderAlarms(s);
  } else {
    document.getElementById("alarm-banner").hidden = true;
  }
  if (versions.data) renderVersions(versions.data, summary.data);
  if (decisions.data) renderDecisions(decisions.data);
  document.body.dataset.state = summary.data ? "ready" : "error";
}

async function loop() {
  try {
    await refresh();
  } catch (exc) { // the dashboard is down or restarting: say so, and keep trying
    const error = document.getElementById("error");
    error.hidden = false;
    error.textContent = `The dashboard cannot be reached (${exc.message}); retrying every ${REFRESH_S} s.`;
  }
  setTimeout(loop, REFRESH_S * 1000);
}

loop();
