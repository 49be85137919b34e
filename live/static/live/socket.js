// One WebSocket on ws/sales/..., kept open: a ping every 25 s for proxies that drop silent sockets,
// reconnects with backoff, and a stop on the close codes that say retrying cannot help (4400, 4404;
// live/consumers.py). Shared by the live page (sales/live.js) and the admin's live stock
// (sales/admin_live_stock.js). No build step: a plain script, loaded before them, that defines
// window.flashsaleSocket.
(function () {
  "use strict";

  var PING_MS = 25000;
  var FINAL = { 4400: true, 4404: true };

  // options.path: "/ws/sales/<id>/" or "/ws/sales/active/"; options.port: the sockets' port when
  // it is not the page's (./scripts/serve: Daphne beside gunicorn), else empty, and the host stays
  // the one the visitor typed; options.onMessage(message): each JSON message; options.onState(state,
  // closeCode): "connecting" (once), "live", "reconnecting", or "closed" (final).
  function open(options) {
    var host = options.port ? location.hostname + ":" + options.port : location.host;
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + host + options.path;
    var attempts = 0, pingTimer = null;

    function connect() {
      var socket = new WebSocket(url);
      socket.onopen = function () {
        attempts = 0;
        options.onState("live");
        clearInterval(pingTimer);
        pingTimer = setInterval(function () {
          if (socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify({ type: "ping" })); }
        }, PING_MS);
      };
      socket.onmessage = function (event) {
        var message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        options.onMessage(message);
      };
      socket.onclose = function (event) {
        clearInterval(pingTimer);
        if (FINAL[event.code]) { options.onState("closed", event.code); return; }
        // Exponential backoff with jitter, so a restarted server is not hit by every page at once.
        var delay = Math.min(15000, 500 * Math.pow(2, attempts)) * (0.5 + Math.random() / 2);
        attempts += 1;
        options.onState("reconnecting", event.code);
        setTimeout(connect, delay);
      };
    }

    options.onState("connecting");
    connect();
  }

  window.flashsaleSocket = { open: open };
})();
