// Plait dashboard: light progressive enhancement. Pages work without it; it draws charts
// from <script type="application/json"> specs, copies snippets and polls live views.
(function () {
  "use strict";

  function drawCharts(root) {
    if (!window.Plotly) return;
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var source = document.getElementById(el.dataset.chart);
      if (!source) return;
      var spec = JSON.parse(source.textContent);
      var layout = Object.assign(
        { margin: { t: 30, r: 10, b: 40, l: 50 }, font: { family: "system-ui, sans-serif", size: 12 },
          paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)" },
        spec.layout || {}
      );
      var config = Object.assign({ displaylogo: false, responsive: true }, spec.config || {});
      if (layout.height) el.style.height = layout.height + "px";  // keeps its size on resize
      window.Plotly.react(el, spec.data, layout, config);
    });
  }

  function copyButtons(root) {
    root.querySelectorAll("[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var target = document.getElementById(button.dataset.copy);
        if (!target || !navigator.clipboard) return;
        navigator.clipboard.writeText(target.textContent).then(function () {
          var label = button.textContent;
          button.textContent = "Copied";
          setTimeout(function () { button.textContent = label; }, 1500);
        });
      });
    });
  }

  window.Plait = { drawCharts: drawCharts };
  document.addEventListener("DOMContentLoaded", function () {
    drawCharts(document);
    copyButtons(document);
  });
})();
