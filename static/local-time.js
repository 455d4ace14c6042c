// Shows every <time datetime="…"> in the browser's own time zone (the server writes UTC, which
// stays in the tooltip), on load and whenever htmx or a live stream adds rows. It also marks a
// live (SSE) container as open or broken, so the page can show whether it is live.
(function () {
  "use strict";
  var format = { year: "numeric", month: "2-digit", day: "2-digit",
                 hour: "2-digit", minute: "2-digit", second: "2-digit" };

  function localise() {
    var times = document.querySelectorAll("time[datetime]:not([data-local])");
    for (var i = 0; i < times.length; i++) {
      var el = times[i];
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date.getTime())) continue;
      el.title = el.textContent.trim();
      el.textContent = date.toLocaleString(undefined, format);
      el.setAttribute("data-local", "");
    }
  }

  function mark(state) {
    return function (event) {
      if (event.target && event.target.setAttribute) {
        event.target.setAttribute("data-live-state", state);
      }
    };
  }

  document.addEventListener("DOMContentLoaded", localise);
  document.addEventListener("htmx:afterSettle", localise);
  document.addEventListener("htmx:sseMessage", localise);
  document.addEventListener("htmx:sseOpen", mark("open"));
  document.addEventListener("htmx:sseError", mark("error"));
  if (document.readyState !== "loading") localise();
})();
