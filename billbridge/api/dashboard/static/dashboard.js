/* Charts of the dashboard's tables: each report's rows (the JSON beside its table) drawn with
   Chart.js, one chart per entity and currency (figures never mix currencies). */
"use strict";

const PALETTE = ["#2563eb", "#16a34a", "#f59e0b", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d", "#78716c"];

function number(value) {
  const parsed = parseFloat(value);
  return Number.isFinite(parsed) ? parsed : 0;
}

function segments(rows) {
  const out = new Map();
  for (const row of rows) {
    const key = [row.entity_ref, row.currency].filter(Boolean).join(" ");
    if (!out.has(key)) out.set(key, []);
    out.get(key).push(row);
  }
  return out;
}

function datasets(spec, rows, labels) {
  const index = new Map(labels.map((label, i) => [label, i]));
  const sums = new Map();
  const names = spec.series_from ? [...new Set(rows.map((r) => r[spec.series_from]))] : spec.series;
  for (const name of names) sums.set(name, new Array(labels.length).fill(0));
  for (const row of rows) {
    const at = index.get(row[spec.label]);
    if (spec.series_from) {
      sums.get(row[spec.series_from])[at] += number(row[spec.value]);
    } else {
      for (const name of names) sums.get(name)[at] += number(row[name]);
    }
  }
  const type = spec.type === "line" ? "line" : "bar";
  const out = names.map((name, i) => ({
    type,
    label: name,
    data: sums.get(name),
    backgroundColor: PALETTE[i % PALETTE.length],
    borderColor: PALETTE[i % PALETTE.length],
    stepped: spec.type === "line" ? "before" : false,
  }));
  if (spec.line) {
    const line = new Array(labels.length).fill(0);
    for (const row of rows) line[index.get(row[spec.label])] += number(row[spec.line]);
    out.push({ type: "line", label: spec.line, data: line, borderColor: "#111827", backgroundColor: "#111827" });
  }
  return out;
}

function draw(holder) {
  const spec = JSON.parse(holder.dataset.chart);
  const rows = JSON.parse(holder.parentElement.querySelector("script.rows").textContent);
  for (const [segment, own] of segments(rows)) {
    const labels = [...new Set(own.map((r) => r[spec.label]))];
    const figure = document.createElement("figure");
    const caption = document.createElement("figcaption");
    caption.textContent = segment;
    const canvas = document.createElement("canvas");
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", `${holder.closest("section").dataset.report} ${segment}`);
    figure.append(caption, canvas);
    holder.append(figure);
    const stacked = spec.type === "stacked";
    canvas.chart = new Chart(canvas, {
      data: { labels, datasets: datasets(spec, own, labels) },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        scales: { x: { stacked }, y: { stacked, beginAtZero: true } },
        plugins: { legend: { position: "bottom" } },
      },
    });
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const holder of document.querySelectorAll("[data-chart]")) draw(holder);
  document.body.dataset.chartsReady = "true";
});
