// Draws every <figure class="chart"> from the JSON in its <script type="application/json">,
// with uPlot (vendored beside this file). The same numbers are in the table next to it.
"use strict";
(function () {
  var COLOURS = ["#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#57606a"];

  function draw(figure) {
    var source = figure.querySelector("script[type='application/json']");
    var area = figure.querySelector(".plot");
    if (!source || !area || typeof uPlot === "undefined") return;
    var data = JSON.parse(source.textContent);
    if (!data.x.length) return;
    var series = [{}];
    var columns = [data.x];
    data.series.forEach(function (line, index) {
      series.push({
        label: line.label,
        stroke: COLOURS[index % COLOURS.length],
        width: 2,
        points: { show: data.x.length < 60 },
      });
      columns.push(line.values);
    });
    var width = Math.max(280, area.clientWidth);
    var options = {
      width: width,
      height: width < 500 ? 200 : 260,
      series: series,
      // One point alone gets a day either side, or uPlot spans years around it.
      scales: {
        x: data.x.length > 1 ? { time: true } : {
          time: true,
          range: [data.x[0] - 86400, data.x[0] + 86400],
        },
      },
      axes: [{}, { size: 60 }],
      legend: { live: false },
    };
    area.textContent = "";
    var plot = new uPlot(options, columns, area);
    figure.setAttribute("data-drawn", "true");
    var resizing = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizing);
      resizing = setTimeout(function () {
        var next = Math.max(280, area.clientWidth);
        plot.setSize({ width: next, height: next < 500 ? 200 : 260 });
      }, 100);
    });
  }

  function start() {
    document.querySelectorAll("figure.chart").forEach(draw);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
