// Formatting and DOM building for the page: text only ever goes in as text, never as markup.

const inr = new Intl.NumberFormat("en-IN", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const hms = new Intl.DateTimeFormat("en-GB", {
  timeZone: "Asia/Kolkata", hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false,
});

export const money = (x) => (x == null ? "—" : (x < 0 ? "−₹" : "₹") + inr.format(Math.abs(x)));
export const price = (x) => (x == null || Number.isNaN(x) ? "—" : x.toFixed(2));
export const clock = (t) => (t ? hms.format(new Date(t * 1000)) : "");
export const tone = (x) => (x > 0 ? "up" : x < 0 ? "down" : "");

export function el(tag, props = {}, ...kids) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value == null) continue;
    if (key === "class") node.className = value;
    else if (key === "data") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  node.append(...kids.filter((k) => k != null && k !== false).map((k) => (k instanceof Node ? k : String(k))));
  return node;
}
