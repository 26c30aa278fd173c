// The monitoring page: one server-sent event stream (api/stream) brings the state on connect and
// then only what changed; the page draws it. Read-only: nothing here sends anything back.

import { EquityChart, PriceChart } from "./charts.js";
import { clock, el, money, price, tone } from "./format.js";

const $ = (id) => document.getElementById(id);
const view = {};
const charts = new Map(); // symbol -> {card, chart}
const equity = new EquityChart($("equity"));

function header() {
  const engine = view.engine || {};
  const state = $("state");
  state.textContent = engine.state || "…";
  state.className = `badge ${engine.state || ""}`;
  $("reason").textContent = engine.reason || "";
  const net = view.pnl ? view.pnl.net : null;
  $("net").textContent = net == null ? "—" : `${money(net)} net`;
  $("net").className = `money ${tone(net)}`;
}

function health() {
  const h = view.health || {}, engine = view.engine || {};
  const age = h.last_tick_age_s == null ? "none yet" : `${h.last_tick_age_s.toFixed(1)} s ago`;
  const chips = [["broker", engine.broker + (engine.live ? " (live)" : "")], ["feed", h.feed],
    ["last tick", age], ["telegram", h.telegram], ["recording", h.recording], ["next", h.next]];
  if (engine.foreign && engine.foreign.length) chips.push(["not OTrade's", engine.foreign.join("; ")]);
  const bad = (v) => /disconnected|stale|behind|fail|error/i.test(String(v));
  $("health").replaceChildren(...chips.filter(([, v]) => v != null).map(([k, v]) =>
    el("span", { class: bad(v) ? "chip bad" : "chip" }, el("b", {}, k), v)));
}

function positions() {
  const rows = view.positions || [];
  const live = view.engine && view.engine.live;
  $("positions").replaceChildren(...(rows.length ? rows.map((p) => el("div", { class: "position", data: { symbol: p.symbol } },
    el("span", { class: "sym" }, `${p.symbol} ${p.qty > 0 ? "+" : ""}${p.qty} @ ${price(p.entry_price)}`),
    el("span", { class: `money ${tone(p.unrealised)}` }, money(p.unrealised)),
    el("span", { class: "muted" }, `since ${clock(p.entry_t)} · LTP ${price(p.ltp)}`),
    el("span", {}, `target ${price(p.target)}`),
    p.stop == null
      ? el("span", { class: "nostop" }, "NO WORKING STOP")
      : el("span", {}, `stop ${price(p.stop)}${p.trailing ? " (trailing)" : ""}${live ? " · Kite confirmed" : ""}`),
  )) : [el("div", { class: "empty" }, "No open position.")]));
}

function instrumentCharts() {
  const instruments = view.instruments || [];
  const wanted = new Set(instruments.map((i) => i.symbol));
  for (const [symbol, entry] of charts) if (!wanted.has(symbol)) { entry.card.remove(); charts.delete(symbol); }
  for (const ins of instruments) {
    let entry = charts.get(ins.symbol);
    if (!entry) {
      const box = el("div", { class: "chart" }, el("div", { class: "empty" }, "No tick yet today."));
      const card = el("section", { class: "card", data: { symbol: ins.symbol } },
        el("div", { class: "chart-head" }, el("span", { class: "sym" }, ins.symbol), el("span", { class: "muted" })), box);
      $("charts").append(card);
      entry = { card, chart: new PriceChart(box) };
      charts.set(ins.symbol, entry);
    }
    const frame = ins.timeframe === "tick" ? "ticks" : `${ins.timeframe} min`;
    const warming = ins.bars_needed ? ` · warming up: ${ins.bars_needed} to go` : "";
    entry.card.querySelector(".chart-head .muted").textContent =
      `${price(ins.ltp)} · ${ins.strategy} (${frame})${warming} · ${money(ins.net)} net`;
    const chart = entry.chart;
    chart.marks = [];
    chart.levels = [];
    for (const t of (view.trades || []).filter((t) => t.symbol === ins.symbol)) {
      chart.marks.push({ t: t.entry_t, p: t.entry_price, kind: t.side === "long" ? "buy" : "sell" });
      chart.marks.push({ t: t.exit_t, p: t.exit_price, kind: "exit" });
    }
    for (const p of (view.positions || []).filter((p) => p.symbol === ins.symbol)) {
      chart.marks.push({ t: p.entry_t, p: p.entry_price, kind: p.qty > 0 ? "buy" : "sell" });
      if (p.stop != null) chart.levels.push({ y: p.stop, from: p.entry_t, kind: "stop", label: `stop ${price(p.stop)}` });
      chart.levels.push({ y: p.target, from: p.entry_t, kind: "target", label: `target ${price(p.target)}` });
    }
    chart.draw();
  }
}

function pnl() {
  const p = view.pnl;
  if (!p) return;
  $("pnl").replaceChildren(
    el("span", { class: `money ${tone(p.net)}` }, `${money(p.net)} net`),
    el("span", {}, `${money(p.gross)} gross`), el("span", {}, `${money(p.charges)} charges`),
    el("span", { class: "muted" }, `realised ${money(p.realised)} · unrealised ${money(p.unrealised)}`));
  equity.draw();
}

function orders() {
  const rows = view.orders || [];
  const level = (o) => (o.price ? `@ ${price(o.price)}` : o.trigger_price ? `trigger ${price(o.trigger_price)}` : "at market");
  $("orders").replaceChildren(...(rows.length ? rows.map((o) => el("div", { class: "row2", data: { order: o.order_id, status: o.status } },
    el("span", {}, `${o.side} ${o.quantity} ${o.symbol} ${o.order_type}`),
    el("span", { class: `status ${o.status.replaceAll(" ", "_")}`, title: o.status_message || null }, o.status),
    el("span", { class: "muted" }, `${clock(o.t)} · ${o.purpose || "order"} · ${level(o)}`),
    el("span", { class: "muted" }, o.filled_quantity ? `${o.filled_quantity} @ ${price(o.average_price)}` : ""),
    o.status_message ? el("span", { class: "muted wide" }, o.status_message) : null,
  )) : [el("div", { class: "empty" }, "No order today.")]));
}

function trades() {
  const rows = (view.trades || []).slice().reverse();
  $("trades").replaceChildren(...(rows.length ? rows.map((t) => el("div", { class: "row2 trade" },
    el("span", {}, `${t.side} ${t.qty} ${t.symbol}`),
    el("span", { class: `money ${tone(t.net_pnl)}` }, money(t.net_pnl)),
    el("span", { class: "muted" }, `${clock(t.entry_t)} → ${clock(t.exit_t)} · ${price(t.entry_price)} → ${price(t.exit_price)}`),
    el("span", { class: "muted" }, t.exit_reason),
  )) : [el("div", { class: "empty" }, "No trade closed today.")]));
}

function alerts() {
  const rows = view.alerts || [];
  $("alerts").replaceChildren(...(rows.length ? rows.map((a) => el("li", { class: a.level },
    el("time", {}, clock(a.t)), a.text)) : [el("li", { class: "muted" }, "No alert since OTrade started.")]));
}

function report() {
  const r = view.report;
  $("report").textContent = r ? `${clock(r.t)} · ${r.text}` : "No end-of-day report yet.";
}

function render(msg) {
  for (const [key, value] of Object.entries(msg)) if (key !== "series") view[key] = value;
  if (msg.series) {
    for (const [symbol, part] of Object.entries(msg.series.prices || {})) {
      if (!charts.has(symbol)) instrumentCharts();
      const entry = charts.get(symbol);
      if (entry) entry.chart.points.take(part);
    }
    equity.points.take(msg.series.equity);
  }
  header();
  health();
  positions();
  instrumentCharts();
  pnl();
  orders();
  trades();
  alerts();
  report();
}

function connection(text, cls) {
  $("conn").textContent = text;
  $("conn").className = `conn ${cls}`;
}

function connect() {
  const source = new EventSource("api/stream");
  source.onopen = () => connection("live", "live");
  source.onmessage = (event) => render(JSON.parse(event.data));
  source.onerror = async () => {
    if (source.readyState !== EventSource.CLOSED) { connection("reconnecting", ""); return; }
    const answer = await fetch("api/state", { cache: "no-store" }).catch(() => null);
    if (answer && answer.status === 401) {
      connection("signed out", "gone");
      $("banner").textContent = "This page's session has ended. Send /web in the chat for a new link.";
      $("banner").hidden = false;
    } else {
      connection("reconnecting", "");
      setTimeout(connect, 3000);
    }
  };
}

connect();
