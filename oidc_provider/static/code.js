// The code pages: a pasted code is kept as its six digits ("123 456", "Your code: 123-456");
// on Android, a code texted in the origin-bound format ("@host #123456") fills the field
// itself (WebOTP); "Send a new code" stays disabled while the countdown runs.
(function () {
  "use strict";
  var input = document.querySelector("input[autocomplete='one-time-code']");
  if (input) {
    input.addEventListener("paste", function (event) {
      var text = (event.clipboardData || window.clipboardData).getData("text");
      var digits = (text || "").replace(/\D/g, "");
      if (digits.length === 6) {
        event.preventDefault();
        input.value = digits;
        input.dispatchEvent(new Event("input", { bubbles: true }));
      }
    });
    if ("OTPCredential" in window && input.dataset.webotp !== undefined) {
      var stop = new AbortController();
      input.form.addEventListener("submit", function () { stop.abort(); });
      navigator.credentials.get({ otp: { transport: ["sms"] }, signal: stop.signal }).then(function (otp) {
        if (otp && otp.code && !input.value) {
          input.value = otp.code;
          input.form.requestSubmit();
        }
      }).catch(function () { /* the person types it */ });
    }
  }

  var wait = document.getElementById("resend-wait");
  var button = document.querySelector("[data-resend]");
  if (!wait || !button) { return; }
  var left = parseInt(wait.dataset.wait, 10) || 0;
  var shown = wait.querySelector("[data-countdown]");
  function tick() {
    if (left <= 0) {
      button.disabled = false;
      wait.hidden = true;
      return;
    }
    button.disabled = true;
    shown.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
    left -= 1;
    window.setTimeout(tick, 1000);
  }
  tick();
})();
