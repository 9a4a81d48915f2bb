// Passkeys (WebAuthn) on the login, second-step and account pages: a progressive enhancement.
// Without JavaScript or WebAuthn the forms stay hidden and the password / code forms work alone.
// The server sends the options (base64url fields, as webauthn-rs writes them) and a reference;
// the browser's answer goes back in the hidden fields of the same form.
(function () {
  "use strict";
  if (!window.PublicKeyCredential || !navigator.credentials) { return; }
  function toBytes(text) {
    var b64 = text.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) { b64 += "="; }
    var raw = atob(b64), out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) { out[i] = raw.charCodeAt(i); }
    return out.buffer;
  }
  function toText(buffer) {
    if (!buffer) { return null; }
    var bytes = new Uint8Array(buffer), raw = "";
    for (var i = 0; i < bytes.length; i++) { raw += String.fromCharCode(bytes[i]); }
    return btoa(raw).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function ids(list) {
    return (list || []).map(function (c) { c.id = toBytes(c.id); return c; });
  }
  function answer(credential) {
    var r = credential.response, out = {
      id: credential.id, rawId: toText(credential.rawId), type: credential.type,
      extensions: credential.getClientExtensionResults ? credential.getClientExtensionResults() : {},
      response: { clientDataJSON: toText(r.clientDataJSON) }
    };
    if (r.attestationObject) {
      out.response.attestationObject = toText(r.attestationObject);
      if (r.getTransports) { out.response.transports = r.getTransports(); }
    } else {
      out.response.authenticatorData = toText(r.authenticatorData);
      out.response.signature = toText(r.signature);
      out.response.userHandle = toText(r.userHandle);
    }
    return JSON.stringify(out);
  }
  document.querySelectorAll("form.passkey").forEach(function (form) {
    var button = form.querySelector("[data-passkey]");
    var failure = form.querySelector("[data-passkey-error]");
    if (!button) { return; }
    form.hidden = false;
    button.addEventListener("click", function () {
      var body = new URLSearchParams();
      body.set("csrf", form.elements.csrf.value);
      if (form.elements.flow) { body.set("flow", form.elements.flow.value); }
      if (form.elements.name) { body.set("name", form.elements.name.value); }
      button.disabled = true;
      if (failure) { failure.hidden = true; }
      fetch(button.getAttribute("data-options"), {
        method: "POST", body: body, credentials: "same-origin",
        headers: { "Content-Type": "application/x-www-form-urlencoded" }
      }).then(function (response) {
        if (!response.ok) { throw new Error("options: " + response.status); }
        return response.json();
      }).then(function (ceremony) {
        var pk = ceremony.options.publicKey;
        pk.challenge = toBytes(pk.challenge);
        form.elements.passkey_ref.value = ceremony.reference;
        if (button.getAttribute("data-passkey") === "register") {
          pk.user.id = toBytes(pk.user.id);
          pk.excludeCredentials = ids(pk.excludeCredentials);
          return navigator.credentials.create({ publicKey: pk });
        }
        pk.allowCredentials = ids(pk.allowCredentials);
        return navigator.credentials.get({ publicKey: pk });
      }).then(function (credential) {
        form.elements.passkey.value = answer(credential);
        form.submit();
      }).catch(function () {
        button.disabled = false;
        if (failure) { failure.hidden = false; }
      });
    });
  });
})();
