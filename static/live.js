// Live (SSE) parts of a page: marks a stream's container as open or broken so the page can show
// whether it is live, and counts the log rows that arrived since the table was loaded.
(function () {
  "use strict";

  function mark(state) {
    return function (event) {
      if (event.target && event.target.setAttribute) {
        event.target.setAttribute("data-live-state", state);
      }
    };
  }

  function countNewRows() {
    var rows = document.getElementById("log-rows");
    var counter = document.getElementById("log-new");
    if (!rows || !counter) return;
    var loaded = parseInt(rows.getAttribute("data-loaded"), 10) || 0;
    var added = rows.querySelectorAll("tr.log-row").length - loaded;
    counter.textContent = added > 0 ? added + " new since loaded" : counter.getAttribute("data-none");
  }

  document.addEventListener("htmx:sseOpen", mark("open"));
  document.addEventListener("htmx:sseError", mark("error"));
  document.addEventListener("htmx:sseMessage", countNewRows);
})();
