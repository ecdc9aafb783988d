// Usage bars: widths come from data attributes (the CSP forbids inline styles).
function paintBars(root) {
  (root || document).querySelectorAll(".bar .fill[data-width]").forEach(function (fill) {
    fill.style.width = Math.max(0, Math.min(100, Number(fill.dataset.width))) + "%";
  });
}
document.addEventListener("DOMContentLoaded", function () { paintBars(document); });
