// flashsale: the proof of work a waiting room's join may ask for (a sale's joinDifficulty > 0).
// `flashsaleJoinChallenge.solveJoinChallenge(saleId, token)` fetches the buyer's challenge
// (GET /api/v1/flashsales/<id>/queue/challenge), solves it in Web Workers (join_challenge_worker.js,
// beside this file: crypto.subtle, off the page's thread) and resolves to the fields the join's JSON
// body carries: {} when the sale asks for no proof, else {challenge, solution: {counter, derivedKey}}.
// It rejects with an Error whose `code` is the API's error code when the challenge cannot be had.
// A plain script (no module): the live page loads it with a <script> tag before live.js.
"use strict";

(function () {
  var script = document.currentScript;
  var WORKER_URL = new URL("join_challenge_worker.js", script ? script.src : location.href).href;

  function workerCount() {
    // One worker per core the browser admits to, a few at most: the page stays responsive.
    return Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 4));
  }

  // Resolves to {counter, derivedKey, tries} for ALTCHA's challenge {parameters, signature}.
  function solve(challenge, options) {
    var count = (options && options.workers) || workerCount();
    return new Promise(function (resolve, reject) {
      var workers = [];
      var failures = 0;
      function stopAll() { workers.forEach(function (worker) { worker.terminate(); }); }
      for (var i = 0; i < count; i++) {
        var worker = new Worker(WORKER_URL);
        worker.onmessage = function (event) {
          if (event.data.error) {
            failures++;
            if (failures === count) { stopAll(); reject(new Error(event.data.error)); }
            return;
          }
          stopAll();
          resolve(event.data);
        };
        worker.onerror = function (event) {
          stopAll();
          reject(new Error(event.message || "the challenge worker failed"));
        };
        workers.push(worker);
        worker.postMessage({ parameters: challenge.parameters, start: i, step: count });
      }
    });
  }

  async function fetchChallenge(saleId, token) {
    var response = await fetch("/api/v1/flashsales/" + encodeURIComponent(saleId) + "/queue/challenge", {
      headers: { "Accept": "application/json", "Authorization": "Token " + token }
    });
    var body = await response.json().catch(function () { return null; });
    if (!response.ok || !body || !body.success) {
      var error = new Error((body && body.error && body.error.message) || "The challenge could not be fetched.");
      error.code = body && body.error && body.error.code;
      error.status = response.status;
      throw error;
    }
    return body.data;
  }

  async function solveJoinChallenge(saleId, token, options) {
    var issued = await fetchChallenge(saleId, token);
    if (!issued.challenge) { return {}; }
    var found = await solve(issued.challenge, options);
    return { challenge: issued.challenge, solution: { counter: found.counter, derivedKey: found.derivedKey } };
  }

  window.flashsaleJoinChallenge = { solveJoinChallenge: solveJoinChallenge, solve: solve };
})();
