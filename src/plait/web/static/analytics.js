// Analytics pages: a select marked data-autosubmit applies the filters as soon as it is
// changed with a mouse or touch. Changed from the keyboard (arrow keys walk the options)
// it waits for Enter or the Apply button, so keyboard users are not sent to a new page
// on every key press.
(function () {
  "use strict";

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
      var typing = false;
      select.addEventListener("keydown", function (event) {
        typing = event.key !== "Enter";
        if (event.key === "Enter" && select.form) select.form.requestSubmit();
      });
      select.addEventListener("pointerdown", function () { typing = false; });
      select.addEventListener("change", function () {
        if (!typing && select.form) select.form.requestSubmit();
      });
    });
  });
})();
