// The server knows nothing of the browser's time zone and speaks UTC. This shows every
// <time datetime="…"> in the browser's own zone (UTC stays in the tooltip), and lets
// datetime-local fields marked data-utc show and take local time while UTC goes on the wire:
// their values are turned to local on load, and back to UTC in every htmx request.
(function () {
  "use strict";
  // Today's times need no date, this year's no year; the tooltip has it all.
  var clock = { hour: "2-digit", minute: "2-digit", second: "2-digit" };
  var thisYear = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" };
  var full = { year: "numeric", month: "short", day: "numeric",
               hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" };

  function shortText(date, now) {
    if (date.toDateString() === now.toDateString()) return date.toLocaleTimeString(undefined, clock);
    if (date.getFullYear() === now.getFullYear()) return date.toLocaleString(undefined, thisYear);
    return date.toLocaleString(undefined, full);
  }

  function pad(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function inputValue(date) {
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) +
      "T" + pad(date.getHours()) + ":" + pad(date.getMinutes()) + ":" + pad(date.getSeconds());
  }

  function localiseTimes() {
    var times = document.querySelectorAll("time[datetime]:not([data-local])");
    var now = new Date();
    for (var i = 0; i < times.length; i++) {
      var el = times[i];
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date.getTime())) continue;
      el.title = date.toLocaleString(undefined, full) + " · " + el.textContent.trim();
      el.textContent = shortText(date, now);
      el.setAttribute("data-local", "");
    }
  }

  function localiseInputs() {
    var inputs = document.querySelectorAll("input[type=datetime-local][data-utc]:not([data-local])");
    for (var i = 0; i < inputs.length; i++) {
      var input = inputs[i];
      if (input.value) {
        var date = new Date(input.value + "Z");
        if (!isNaN(date.getTime())) input.value = inputValue(date);
      }
      input.setAttribute("data-local", "");
    }
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
    var hints = document.querySelectorAll("[data-zone-hint]");
    for (var j = 0; j < hints.length; j++) {
      hints[j].textContent = hints[j].getAttribute("data-zone-hint").replace("{zone}", zone);
    }
  }

  function localise() {
    localiseTimes();
    localiseInputs();
  }

  // Local field values leave as UTC instants (RFC 3339), which the server takes as they are.
  function sendUtc(event) {
    var parameters = event.detail.parameters;
    var inputs = document.querySelectorAll("input[type=datetime-local][data-local]");
    for (var i = 0; i < inputs.length; i++) {
      var name = inputs[i].name;
      var value = parameters[name];
      if (typeof value !== "string" || !value || value !== inputs[i].value) continue;
      var date = new Date(value);
      if (!isNaN(date.getTime())) parameters[name] = date.toISOString();
    }
  }

  document.addEventListener("DOMContentLoaded", localise);
  document.addEventListener("htmx:afterSettle", localise);
  document.addEventListener("htmx:sseMessage", localiseTimes);
  document.addEventListener("htmx:configRequest", sendUtc);
  if (document.readyState !== "loading") localise();
})();
