// The page's charts on uPlot (vendored, loaded before this module as the global `uPlot`): an
// instrument's prices for the day with its entries, exits, stop and target, and the day's net P&L.

const COLORS = { line: "#2a3542", muted: "#8b98a5", price: "#58a6ff", up: "#3fb950", down: "#f85149",
  target: "#3fb950", stop: "#f85149", exit: "#e6edf3" };
const ist = (ts) => uPlot.tzDate(new Date(ts * 1e3), "Asia/Kolkata");
const hhmm = new Intl.DateTimeFormat("en-GB", { timeZone: "Asia/Kolkata", hour: "2-digit", minute: "2-digit",
  hour12: false });
const timeAxis = { values: (u, splits) => splits.map((t) => hhmm.format(new Date(t * 1e3))) };
// Whole numbers once the axis steps by a rupee or more: the labels then fit a phone's width.
const priceAxis = (size) => ({ size, values: (u, splits, axis, space, incr) => splits.map((v) => v.toFixed(incr >= 1 ? 0 : 2)) });

function axis(extra = {}) {
  return { stroke: COLORS.muted, grid: { stroke: COLORS.line, width: 1 }, ticks: { stroke: COLORS.line, width: 1 },
    font: "11px system-ui, sans-serif", ...extra };
}

// The y range covering the data and every value in `also` (levels drawn across the chart), padded.
function covering(also) {
  return (u, min, max) => {
    for (const y of also()) { min = Math.min(min, y); max = Math.max(max, y); }
    if (min == null || max == null || !Number.isFinite(min)) return [0, 1];
    const pad = Math.max((max - min) * 0.08, Math.abs(max) * 0.0005, 0.05);
    return [min - pad, max + pad];
  };
}

class Points {
  constructor() { this.t = []; this.v = []; }

  take(part) {
    if (!part) return;
    if (part.reset) { this.t = part.t.slice(); this.v = part.v.slice(); return; }
    for (let i = 0; i < part.t.length; i++) { this.t.push(part.t[i]); this.v.push(part.v[i]); }
  }
}

class Chart {
  constructor(box, height) {
    this.box = box;
    this.height = height;
    this.points = new Points();
    this.u = null;
    new ResizeObserver(() => this.u && this.u.setSize({ width: this.width(), height: this.height })).observe(box);
  }

  width() { return Math.max(200, this.box.clientWidth); }

  draw() {
    const data = [this.points.t, this.points.v];
    if (!this.u) {
      if (!data[0].length) return;
      this.box.replaceChildren();
      this.u = new uPlot(this.options(), data, this.box);
    } else {
      this.u.setData(data);
    }
  }
}

export class PriceChart extends Chart {
  constructor(box) {
    super(box, 200);
    this.marks = [];   // {t, p, kind: "buy" | "sell" | "exit"}: the trades list says why each exit was
    this.levels = [];  // {y, from, kind: "stop" | "target", label}
  }

  options() {
    return {
      width: this.width(), height: this.height, tzDate: ist, legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      scales: { x: { time: true }, y: { range: covering(() => this.levels.map((l) => l.y)) } },
      axes: [axis(timeAxis), axis(priceAxis(56))],
      series: [{}, { stroke: COLORS.price, width: 1.5, points: { show: false } }],
      hooks: { draw: [(u) => this.overlay(u)] },
    };
  }

  overlay(u) {
    const ctx = u.ctx, { left, top, width, height } = u.bbox, dpr = devicePixelRatio || 1;
    ctx.save();
    ctx.beginPath();
    ctx.rect(left, top, width, height);
    ctx.clip();
    ctx.font = `${11 * dpr}px system-ui, sans-serif`;
    for (const level of this.levels) {
      const y = u.valToPos(level.y, "y", true);
      const x0 = Math.max(left, level.from ? u.valToPos(level.from, "x", true) : left);
      ctx.strokeStyle = ctx.fillStyle = COLORS[level.kind];
      ctx.setLineDash([6 * dpr, 4 * dpr]);
      ctx.lineWidth = dpr;
      ctx.beginPath();
      ctx.moveTo(x0, y);
      ctx.lineTo(left + width, y);
      ctx.stroke();
      ctx.setLineDash([]);
      ctx.textAlign = "right";
      ctx.fillText(level.label, left + width - 4 * dpr, y - 3 * dpr);
    }
    const r = 5 * dpr;
    for (const mark of this.marks) {
      const x = u.valToPos(mark.t, "x", true), y = u.valToPos(mark.p, "y", true);
      ctx.beginPath();
      if (mark.kind === "exit") {
        ctx.strokeStyle = COLORS.exit;
        ctx.lineWidth = 2 * dpr;
        ctx.moveTo(x - r, y - r); ctx.lineTo(x + r, y + r); ctx.moveTo(x + r, y - r); ctx.lineTo(x - r, y + r);
        ctx.stroke();
      } else {
        const up = mark.kind === "buy";
        ctx.fillStyle = up ? COLORS.up : COLORS.down;
        ctx.moveTo(x, up ? y - r : y + r);
        ctx.lineTo(x - r, up ? y + r : y - r);
        ctx.lineTo(x + r, up ? y + r : y - r);
        ctx.closePath();
        ctx.fill();
      }
    }
    ctx.restore();
  }
}

export class EquityChart extends Chart {
  constructor(box) { super(box, 160); }

  options() {
    const v = () => this.points.v[this.points.v.length - 1] || 0;
    return {
      width: this.width(), height: this.height, tzDate: ist, legend: { show: false },
      cursor: { drag: { x: false, y: false }, points: { show: false } },
      scales: { x: { time: true }, y: { range: covering(() => [0]) } },
      axes: [axis(timeAxis), axis(priceAxis(56))],
      series: [{}, { stroke: () => (v() < 0 ? COLORS.down : COLORS.up), width: 1.5, points: { show: false },
        paths: uPlot.paths.stepped({ align: 1 }) }],
      hooks: { draw: [(u) => {
        const y = u.valToPos(0, "y", true), { left, width } = u.bbox;
        u.ctx.save();
        u.ctx.strokeStyle = COLORS.muted;
        u.ctx.setLineDash([2, 4]);
        u.ctx.beginPath();
        u.ctx.moveTo(left, y);
        u.ctx.lineTo(left + width, y);
        u.ctx.stroke();
        u.ctx.restore();
      }] },
    };
  }
}
