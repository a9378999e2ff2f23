// Live length feedback under a new-password field (#password), next to the
// static strength hint. The server checks the whole policy; this only helps.
// Its sentences come from its script tag (templates/_password_hint.html), in
// the page's language.
(function () {
  "use strict";
  var texts = (document.currentScript || {}).dataset || {};
  var input = document.getElementById("password");
  var hint = document.getElementById("password-hint");
  if (!input || !hint) { return; }
  var MIN = parseInt(texts.min, 10) || 12;
  var live = document.createElement("p");
  live.className = "hint";
  live.id = "password-live";
  live.setAttribute("aria-live", "polite");
  hint.insertAdjacentElement("afterend", live);
  input.setAttribute("aria-describedby", (input.getAttribute("aria-describedby") || "") + " password-live");
  function update() {
    var n = Array.from(input.value).length;
    if (n === 0) { live.textContent = ""; }
    else if (n < MIN) {
      live.textContent = (texts.short || "{typed} of at least {min} characters.")
        .replace("{typed}", n).replace("{min}", MIN);
    }
    else if (n < 16) { live.textContent = texts.enough || "Long enough. Longer is stronger."; }
    else { live.textContent = texts.good || "Good length."; }
  }
  input.addEventListener("input", update);
  update();
})();
