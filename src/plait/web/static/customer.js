// Customer 360: ask before a form marked data-confirm is sent (the split of a merge).
// Without JavaScript the button's own label says what it does, and the form still works.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  });
})();
