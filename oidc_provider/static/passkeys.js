// Passkeys on the portal's pages. A form marked data-passkey="get" or "create"
// asks the browser for a passkey when it is submitted, puts the answer (JSON)
// in its hidden "credential" field and sends it on; the server checks it all.
// Another element so marked (the sign-in page keeps a single form) does the
// same when its button is pressed, posting to its data-action with its
// data-csrf. The options come from the page's own JSON data block
// (#passkey-options), so no script is inline and nothing is fetched. An
// element marked data-passkey-conditional also offers the passkeys in the
// browser's autofill.
(function () {
  "use strict";
  var data = document.getElementById("passkey-options");
  var forms = document.querySelectorAll("[data-passkey]");
  if (!data || !forms.length) { return; }
  var supported = !!(window.PublicKeyCredential && navigator.credentials);

  function toBytes(text) {
    var base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    var binary = atob(base64 + "===".slice((base64.length + 3) % 4));
    return Uint8Array.from(binary, function (c) { return c.charCodeAt(0); }).buffer;
  }
  function toText(buffer) {
    var binary = String.fromCharCode.apply(null, new Uint8Array(buffer));
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function withBytes(list) {
    return (list || []).map(function (c) { return Object.assign({}, c, { id: toBytes(c.id) }); });
  }
  function publicKey() {
    var options = JSON.parse(data.textContent);
    options.challenge = toBytes(options.challenge);
    if (options.user) { options.user.id = toBytes(options.user.id); }
    options.excludeCredentials = withBytes(options.excludeCredentials);
    options.allowCredentials = withBytes(options.allowCredentials);
    return options;
  }
  function asJSON(credential) {
    if (credential.toJSON) { return credential.toJSON(); }
    var r = credential.response, response = { clientDataJSON: toText(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toText(r.attestationObject);
      response.transports = r.getTransports ? r.getTransports() : [];
    } else {
      response.authenticatorData = toText(r.authenticatorData);
      response.signature = toText(r.signature);
      if (r.userHandle) { response.userHandle = toText(r.userHandle); }
    }
    return {
      id: credential.id, rawId: toText(credential.rawId), type: credential.type, response: response,
      authenticatorAttachment: credential.authenticatorAttachment,
      clientExtensionResults: credential.getClientExtensionResults()
    };
  }
  function say(form, text) {
    var status = form.querySelector("[data-passkey-status]");
    if (status) { status.textContent = text; status.hidden = !text; }
  }
  function field(form, name, value) {
    var input = document.createElement("input");
    input.type = "hidden"; input.name = name; input.value = value;
    form.appendChild(input);
  }
  function send(place, credential) {
    var answer = JSON.stringify(asJSON(credential));
    if (place.tagName === "FORM") {
      place.querySelector("input[name=credential]").value = answer;
      place.submit();
      return;
    }
    var form = document.createElement("form");
    form.method = "post"; form.action = place.getAttribute("data-action");
    field(form, "csrf_token", place.getAttribute("data-csrf"));
    field(form, "credential", answer);
    document.body.appendChild(form);
    form.submit();
  }

  var waiting = null;  // the autofill request, given up when a button asks instead

  Array.prototype.forEach.call(forms, function (form) {
    if (!supported) {
      say(form, form.getAttribute("data-unsupported") || "This browser can't use passkeys.");
      Array.prototype.forEach.call(form.querySelectorAll("button"), function (b) { b.disabled = true; });
      return;
    }
    var start = function (event) {
      event.preventDefault();
      var name = form.querySelector("input[name=name]");
      if (name && !name.value.trim()) { name.focus(); say(form, form.getAttribute("data-unnamed") || "Give the passkey a name first."); return; }
      if (waiting) { waiting.abort(); waiting = null; }
      say(form, "");
      var ask = form.getAttribute("data-passkey") === "create"
        ? navigator.credentials.create({ publicKey: publicKey() })
        : navigator.credentials.get({ publicKey: publicKey() });
      ask.then(function (credential) { send(form, credential); }, function () {
        say(form, form.getAttribute("data-cancelled") || "No passkey was used. Try again, or choose another way.");
      });
    };
    if (form.tagName === "FORM") { form.addEventListener("submit", start); }
    else { form.querySelector("button").addEventListener("click", start); }
    if (form.hasAttribute("data-passkey-conditional") && PublicKeyCredential.isConditionalMediationAvailable) {
      PublicKeyCredential.isConditionalMediationAvailable().then(function (available) {
        if (!available) { return; }
        waiting = new AbortController();
        navigator.credentials.get({ mediation: "conditional", publicKey: publicKey(), signal: waiting.signal })
          .then(function (credential) { send(form, credential); }, function () { /* given up or dismissed */ });
      });
    }
  });
})();
