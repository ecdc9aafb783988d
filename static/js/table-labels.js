// allauth's tables (sessions, security keys) come from its templates, whose cells cannot say which
// column they are in. On a phone a table of cards shows each value under its column's heading
// (data-label, as Tollgate's own templates write it): give each unlabelled cell its heading.
(function () {
  "use strict";
  document.querySelectorAll("table.cards").forEach(function (table) {
    var headings = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
      return th.textContent.trim();
    });
    Array.prototype.forEach.call(table.tBodies, function (body) {
      Array.prototype.forEach.call(body.rows, function (row) {
        Array.prototype.forEach.call(row.cells, function (cell, i) {
          if (!cell.hasAttribute("data-label") && headings[i]) cell.dataset.label = headings[i];
        });
      });
    });
  });
})();
