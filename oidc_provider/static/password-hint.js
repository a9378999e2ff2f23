// Live length feedback under a new-password field (#password), next to the
// static strength hint. The server checks the whole policy; this only helps.
(function () {
  "use strict";
  var input = document.getElementById("password");
  var hint = document.getElementById("password-hint");
  if (!input || !hint) { return; }
  var MIN = 12;
  var live = document.createElement("p");
  live.className = "hint";
  live.id = "password-live";
  live.setAttribute("aria-live", "polite");
  hint.insertAdjacentElement("afterend", live);
  input.setAttribute("aria-describedby", (input.getAttribute("aria-describedby") || "") + " password-live");
  function update() {
    var n = Array.from(input.value).length;
    if (n === 0) { live.textContent = ""; }
    else if (n < MIN) { live.textContent = n + " of at least " + MIN + " characters."; }
    else if (n < 16) { live.textContent = "Long enough. Longer is stronger."; }
    else { live.textContent = "Good length."; }
  }
  input.addEventListener("input", update);
  update();
})();
