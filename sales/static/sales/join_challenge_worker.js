// flashsale: the proof of work of a waiting room's join, off the page's thread. Solves one ALTCHA v2
// challenge (PBKDF2/SHA-256, sales/join_challenge.py): finds the counter whose derived key starts with
// keyPrefix, trying counters start, start + step, ... (several workers split the counters).
// Message in: {parameters, start, step}. Message out: {counter, derivedKey, tries} or {error}.
"use strict";

function hexToBytes(hex) {
  if (typeof hex !== "string" || hex.length % 2 !== 0 || /[^0-9a-f]/i.test(hex)) {
    throw new Error("not hex: " + hex);
  }
  var bytes = new Uint8Array(hex.length / 2);
  for (var i = 0; i < bytes.length; i++) { bytes[i] = parseInt(hex.substr(i * 2, 2), 16); }
  return bytes;
}

function bytesToHex(bytes) {
  var hex = "";
  for (var i = 0; i < bytes.length; i++) { hex += (bytes[i] < 16 ? "0" : "") + bytes[i].toString(16); }
  return hex;
}

async function solve(parameters, start, step) {
  if (parameters.algorithm !== "PBKDF2/SHA-256") {
    throw new Error("unsupported algorithm: " + parameters.algorithm);
  }
  var nonce = hexToBytes(parameters.nonce);
  var salt = hexToBytes(parameters.salt);
  var prefix = String(parameters.keyPrefix).toLowerCase();
  var bits = parameters.keyLength * 8;
  // The password of a try: the nonce, then the counter as a big-endian uint32 (ALTCHA's "uint32" mode).
  var password = new Uint8Array(nonce.length + 4);
  password.set(nonce);
  var counterView = new DataView(password.buffer, nonce.length, 4);
  var tries = 0;
  for (var counter = start; counter <= 0xffffffff; counter += step) {
    counterView.setUint32(0, counter);
    var key = await crypto.subtle.importKey("raw", password, "PBKDF2", false, ["deriveBits"]);
    var derived = await crypto.subtle.deriveBits(
      { name: "PBKDF2", hash: "SHA-256", salt: salt, iterations: parameters.cost }, key, bits
    );
    tries++;
    var derivedKey = bytesToHex(new Uint8Array(derived));
    if (derivedKey.startsWith(prefix)) {
      return { counter: counter, derivedKey: derivedKey, tries: tries };
    }
  }
  throw new Error("no counter solves this challenge");
}

self.onmessage = function (event) {
  var data = event.data;
  solve(data.parameters, data.start || 0, data.step || 1).then(
    function (found) { self.postMessage(found); },
    function (error) { self.postMessage({ error: String(error && error.message || error) }); }
  );
};
