// bootvault console: the copy buttons and the dashboard's chart. No inline script anywhere
// (the Content-Security-Policy forbids it); the chart's data comes from a JSON script block.
"use strict";

document.addEventListener("click", function (event) {
  var button = event.target.closest("[data-copy-from]");
  if (!button) return;
  var input = document.getElementById(button.getAttribute("data-copy-from"));
  input.select();
  if (navigator.clipboard) {
    navigator.clipboard.writeText(input.value).then(function () { button.textContent = "Copied"; });
  } else {
    document.execCommand("copy");
    button.textContent = "Copied";
  }
});

function drawChart() {
  var holder = document.getElementById("stored-chart");
  var source = document.getElementById("series-data");
  if (!holder || !source || holder.dataset.drawn) return;
  var rows = JSON.parse(source.textContent);
  if (!rows.length) return;
  holder.dataset.drawn = "1";
  var day = 86400;
  var xs = rows.map(function (r) { return Date.parse(r[0] + "T00:00:00Z") / 1000; });
  // The totals were zero the day before the first backup: a line from there, even for one day.
  xs.unshift(xs[0] - day);
  rows.unshift([null, 0, 0]);
  var counts = rows.map(function (r) { return r[1]; });
  var gib = rows.map(function (r) { return r[2] / 1073741824; });
  var width = Math.max(320, Math.min(holder.clientWidth || 800, 1100));
  new uPlot({
    width: width, height: 240,
    series: [
      {},
      { label: "Stored (GiB)", stroke: "#0b57a4", width: 2, scale: "gib" },
      { label: "Backups", stroke: "#1a6b2f", width: 2, scale: "n" },
    ],
    axes: [{}, { scale: "gib", label: "GiB" }, { scale: "n", side: 1, label: "backups", grid: { show: false } }],
  }, [xs, gib, counts], holder);
}

document.addEventListener("DOMContentLoaded", drawChart);
document.addEventListener("htmx:afterSettle", drawChart);
