// The canary console's one script: keeps the live parts of a page current and its
// times relative. No dependencies, nothing fetched from elsewhere; without it the
// pages still work (reload to update, times in UTC).
(function () {
  "use strict";

  var status = document.getElementById("live-status");

  function say(text) {
    if (status) status.textContent = text;
  }

  function clock() {
    var now = new Date();
    return now.toLocaleTimeString();
  }

  // 12 s, 3 min 5 s, 2 h 5 min, 3 d 4 h
  function span(seconds) {
    seconds = Math.round(seconds);
    if (seconds < 60) return seconds + " s";
    var minutes = Math.floor(seconds / 60);
    if (minutes < 60) return minutes + " min" + (seconds % 60 ? " " + (seconds % 60) + " s" : "");
    var hours = Math.floor(minutes / 60);
    if (hours < 24) return hours + " h" + (minutes % 60 ? " " + (minutes % 60) + " min" : "");
    var days = Math.floor(hours / 24);
    return days + " d" + (hours % 24 ? " " + (hours % 24) + " h" : "");
  }

  function refreshTimes() {
    var now = Date.now() / 1000;
    var times = document.querySelectorAll("time[data-rel]");
    for (var i = 0; i < times.length; i++) {
      var element = times[i];
      var at = Date.parse(element.getAttribute("datetime")) / 1000;
      if (isNaN(at)) continue;
      var ahead = at - now;
      if (element.getAttribute("data-rel") === "future") {
        element.textContent = ahead > 0.5 ? "in " + span(ahead) : "due now";
      } else {
        element.textContent = span(Math.max(0, -ahead)) + " ago";
      }
    }
  }

  // Replaces a live part, keeping keyboard focus on the same link or control.
  function replace(container, html) {
    var focused = document.activeElement;
    var key = null;
    if (focused && container.contains(focused)) {
      key = focused.getAttribute("href") || focused.id || null;
    }
    container.innerHTML = html;
    if (key) {
      var candidates = container.querySelectorAll("a[href], [id]");
      for (var i = 0; i < candidates.length; i++) {
        if (candidates[i].getAttribute("href") === key || candidates[i].id === key) {
          candidates[i].focus();
          break;
        }
      }
    }
    refreshTimes();
  }

  function live(container) {
    var url = container.getAttribute("data-live");
    var interval = Number(container.getAttribute("data-interval")) || 1000;
    var etag = container.getAttribute("data-etag");
    var failures = 0;
    var stopped = false;

    function next() {
      if (stopped) return;
      var slow = container.getAttribute("data-final") === "true" ? 5 : 1;
      var wait = failures ? Math.min(15000, interval * Math.pow(2, failures)) : interval * slow;
      setTimeout(poll, wait);
    }

    function poll() {
      if (document.hidden) {
        next();
        return;
      }
      var headers = {};
      if (etag) headers["If-None-Match"] = etag;
      fetch(url, { headers: headers, credentials: "same-origin", cache: "no-store" })
        .then(function (response) {
          if (response.status === 304) return null;
          if (response.status === 401 || response.status === 403) {
            stopped = true;
            say("Your session ended: sign in again to keep this page live.");
            return null;
          }
          if (!response.ok) throw new Error("the server answered " + response.status);
          etag = response.headers.get("ETag");
          return response.text();
        })
        .then(function (html) {
          failures = 0;
          if (html === null || html === undefined) return;
          replace(container, html);
          var final = container.querySelector("[data-state-final]");
          if (final) container.setAttribute("data-final", final.getAttribute("data-state-final"));
          say("Updated at " + clock() + ".");
        })
        .catch(function (error) {
          failures += 1;
          say("Not live: " + error.message + "; trying again.");
        })
        .then(next);
    }

    next();
  }

  document.addEventListener("DOMContentLoaded", function () {
    refreshTimes();
    setInterval(refreshTimes, 1000);
    var parts = document.querySelectorAll("[data-live]");
    for (var i = 0; i < parts.length; i++) live(parts[i]);
  });
})();
