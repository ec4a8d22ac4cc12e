// Progressive enhancement only: every page reads and works without this file.
(function () {
  "use strict";

  function relative(target) {
    var seconds = Math.round((target - Date.now()) / 1000);
    var span = Math.abs(seconds), text;
    if (span < 60) text = span + " s";
    else if (span < 3600) text = Math.floor(span / 60) + " min " + (span % 60) + " s";
    else if (span < 86400) text = Math.floor(span / 3600) + " h " + Math.floor(span % 3600 / 60) + " min";
    else text = Math.floor(span / 86400) + " d " + Math.floor(span % 86400 / 3600) + " h";
    return seconds >= 0 ? "in " + text : text + " ago";
  }

  function tick() {
    document.querySelectorAll("time[data-countdown]").forEach(function (el) {
      el.textContent = relative(Date.parse(el.getAttribute("datetime")));
    });
  }

  // Actions ask before they act; the server asks on a page of its own without JS.
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (!question) return;
    if (!window.confirm(question)) { event.preventDefault(); return; }
    var flag = document.createElement("input");
    flag.type = "hidden"; flag.name = "confirmed"; flag.value = "1";
    form.appendChild(flag);
  });

  function chart() {
    var holder = document.getElementById("duration-chart");
    var source = document.getElementById("durations");
    if (!holder || !source || !window.uPlot) return;
    var points = JSON.parse(source.textContent);
    if (points.length < 2) return;
    var xs = points.map(function (p) { return p[0]; });
    var ys = points.map(function (p) { return p[1]; });
    new window.uPlot({
      width: Math.min(holder.parentNode.clientWidth - 20, 1100), height: 180,
      series: [{}, { label: "duration (s)", stroke: "#2563eb", width: 1.5,
                     points: { show: true, size: 4 } }],
      axes: [{}, { label: "seconds" }],
    }, [xs, ys], holder);
    holder.parentNode.classList.add("drawn");
  }

  document.addEventListener("DOMContentLoaded", function () {
    tick();
    setInterval(tick, 1000);
    chart();
  });
  document.addEventListener("htmx:afterSwap", tick);
})();
