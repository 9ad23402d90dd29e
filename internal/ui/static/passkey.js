// Passkeys and security keys: the one script Latchkey's pages use. A form
// with id "passkey-form" names its challenge endpoint (data-begin) and the
// ceremony (data-mode: "get" to sign in, "create" to register). The
// button asks for a challenge (sending the form's fields, CSRF token
// included), lets the browser talk to the authenticator, and submits the
// form with the answer: the server does every check.
(function () {
  "use strict";
  var form = document.getElementById("passkey-form");
  var button = document.getElementById("passkey-button");
  var status = document.getElementById("passkey-status");
  if (!form || !button) { return; }
  if (!window.PublicKeyCredential) {
    button.disabled = true;
    if (status) { status.textContent = "This browser cannot use security keys or passkeys."; }
    return;
  }
  function say(text) { if (status) { status.textContent = text; } }
  button.addEventListener("click", function () {
    button.disabled = true;
    say("Follow your browser's prompt.");
    var fields = new URLSearchParams(new FormData(form));
    fetch(form.dataset.begin, { method: "POST", body: fields, credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok) { throw new Error("The server did not start the check (" + r.status + ")."); }
        return r.json();
      })
      .then(function (begin) {
        form.elements.ceremony.value = begin.ceremony;
        if (form.dataset.mode === "create") {
          return navigator.credentials.create({ publicKey: PublicKeyCredential.parseCreationOptionsFromJSON(begin.options.publicKey) });
        }
        return navigator.credentials.get({ publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(begin.options.publicKey) });
      })
      .then(function (credential) {
        if (!credential) { throw new Error("No key was used."); }
        form.elements.credential.value = JSON.stringify(credential.toJSON());
        form.submit();
      })
      .catch(function (err) {
        button.disabled = false;
        say((err && err.message) ? err.message : "The key was not used. Try again.");
      });
  });
})();
