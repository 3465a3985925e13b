// The DAG of a run or pipeline as SVG: steps in columns by depth (longest path from a
// root), edges from each dependency to its dependent. No layout library: a pipeline has
// tens of steps at most.

const NS = "http://www.w3.org/2000/svg";
const W = 190, H = 64, GAP_X = 60, GAP_Y = 22, PAD = 12;

export function layout(steps) {
  // steps: [{id, deps: [id]}] -> {pos: Map(id -> {x, y}), width, height}
  const byId = new Map(steps.map((s) => [s.id, s]));
  const depth = new Map();
  const depthOf = (id, seen = new Set()) => {
    if (depth.has(id)) return depth.get(id);
    if (seen.has(id)) return 0; // a cycle cannot be registered; be safe anyway
    seen.add(id);
    const deps = (byId.get(id)?.deps || []).filter((d) => byId.has(d));
    const d = deps.length ? 1 + Math.max(...deps.map((x) => depthOf(x, seen))) : 0;
    depth.set(id, d);
    return d;
  };
  steps.forEach((s) => depthOf(s.id));
  const columns = [];
  steps.forEach((s) => {
    const d = depth.get(s.id);
    (columns[d] = columns[d] || []).push(s.id);
  });
  const tallest = Math.max(1, ...columns.map((c) => c.length));
  const height = PAD * 2 + tallest * H + (tallest - 1) * GAP_Y;
  const pos = new Map();
  columns.forEach((ids, c) => {
    const colHeight = ids.length * H + (ids.length - 1) * GAP_Y;
    const top = (height - colHeight) / 2;
    ids.forEach((id, i) => pos.set(id, { x: PAD + c * (W + GAP_X), y: top + i * (H + GAP_Y) }));
  });
  const width = PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GAP_X;
  return { pos, width, height };
}

function el(name, attrs = {}, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

const COLORS = {
  PENDING: "#9ca3af", QUEUED: "#60a5fa", RUNNING: "#f59e0b", COMPLETED: "#16a34a",
  FAILED: "#dc2626", CANCELLED: "#6b7280", TIMED_OUT: "#b45309", SKIPPED: "#a78bfa",
};

export function renderDag(svg, steps, info = () => ({})) {
  // steps: [{id, deps, label}]; info(id) -> {state, line2, line3, progress (0..1 or null)}
  const { pos, width, height } = layout(steps);
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("height", Math.min(height, 520));
  for (const s of steps) {
    for (const d of s.deps || []) {
      const a = pos.get(d), b = pos.get(s.id);
      if (!a || !b) continue;
      const x1 = a.x + W, y1 = a.y + H / 2, x2 = b.x, y2 = b.y + H / 2, mx = (x1 + x2) / 2;
      svg.append(el("path", {
        class: "edge", d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`,
        "data-from": d, "data-to": s.id,
      }));
    }
  }
  for (const s of steps) {
    const p = pos.get(s.id);
    const i = info(s.id) || {};
    const state = i.state || "PENDING";
    const g = el("g", {
      class: "node", transform: `translate(${p.x},${p.y})`, "data-step": s.id, "data-state": state,
    });
    g.append(el("rect", { class: "box", width: W, height: H, rx: 6, stroke: COLORS[state] || "#9ca3af" }));
    g.append(el("rect", { x: 0, y: 0, width: 6, height: H, rx: 3, fill: COLORS[state] || "#9ca3af" }));
    g.append(el("text", { x: 12, y: 17 }, s.id));
    g.append(el("text", { x: 12, y: 32, class: "small" }, i.line2 || s.label || ""));
    g.append(el("text", { x: 12, y: 46, class: "small" }, i.line3 || state));
    if (i.progress !== null && i.progress !== undefined) {
      g.append(el("rect", { class: "bar-bg", x: 12, y: 52, width: W - 24, height: 5, rx: 2 }));
      g.append(el("rect", {
        class: "bar", x: 12, y: 52, fill: COLORS[state] || "#f59e0b", width: Math.max(0, Math.min(1, i.progress)) * (W - 24),
        height: 5, rx: 2, "data-progress": i.progress.toFixed(2),
      }));
    }
    const title = el("title", {}, `${s.id}: ${state}${i.title ? "\n" + i.title : ""}`);
    g.append(title);
    svg.append(g);
  }
}

export const STATE_COLORS = COLORS;
