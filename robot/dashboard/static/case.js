// The case page: reveal the number in place (a recorded POST), and reload when the case changes
// (the robot, the provider or a colleague did something) unless a form is being filled in.
(function () {
  "use strict";
  var root = document.getElementById("case");
  if (!root) { return; }
  var csrf = document.querySelector('meta[name="csrf-token"]').getAttribute("content");
  var stampUrl = root.getAttribute("data-stamp-url");
  var caseUrl = root.getAttribute("data-case-url");
  var stamp = root.getAttribute("data-stamp");
  var pollMs = parseInt(root.getAttribute("data-poll-ms"), 10) || 6000;
  var dirty = false;

  document.querySelectorAll("#actions input, #actions textarea, #actions select, .reassign select").forEach(function (field) {
    field.addEventListener("input", function () { dirty = true; });
    field.addEventListener("change", function () { dirty = true; });
  });

  var reveal = document.getElementById("reveal-form");
  if (reveal) {
    reveal.addEventListener("submit", function (event) {
      event.preventDefault();
      fetch(reveal.action, {
        method: "POST",
        credentials: "same-origin",
        headers: { "X-CSRF-Token": csrf, "X-Requested-With": "fetch", "Accept": "application/json" }
      }).then(function (response) {
        if (!response.ok) { throw new Error("http " + response.status); }
        return response.json();
      }).then(function (data) {
        var phone = document.getElementById("phone");
        phone.textContent = data.phone;
        phone.classList.add("revealed");
        root.setAttribute("data-revealed", "yes");  // a reload would mask it again
        reveal.remove();
      }).catch(function () { reveal.submit(); });
    });
  }

  function check() {
    fetch(stampUrl, { headers: { "Accept": "application/json", "X-Requested-With": "fetch" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (data && data.stamp !== stamp) {
          var banner = document.getElementById("case-updated");
          banner.hidden = false;
          var busy = dirty || document.activeElement && /INPUT|TEXTAREA|SELECT/.test(document.activeElement.tagName);
          if (!busy && !root.getAttribute("data-revealed")) {
            window.location.assign(caseUrl + "?auto=1");
            return;
          }
        }
        window.setTimeout(check, pollMs);
      })
      .catch(function () { window.setTimeout(check, pollMs * 2); });
  }
  window.setTimeout(check, pollMs);
})();
