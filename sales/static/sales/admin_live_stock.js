// Live stock on a flash sale's admin change page: the same WebSocket feed as the live page
// (ws/sales/<id>/, see live/consumers.py), so staff watching a sale see purchases land.
// It only reads: every write still goes through the admin's forms and actions.
(function () {
  "use strict";

  function colour(share) { return share > 0.25 ? "#1e7e34" : share > 0 ? "#d39e00" : "#bd2130"; }

  function watch(box) {
    var numbers = box.querySelector(".live-stock-numbers");
    var note = box.querySelector(".live-stock-note");
    var fill = box.querySelector(".live-stock-fill");
    var sold = box.querySelector(".live-stock-sold");
    var saleId = parseInt(box.dataset.saleId, 10);
    var parts = numbers.textContent.split("/");
    var stock = { current: parseInt(parts[0], 10), original: parseInt(parts[1], 10), version: parseInt(box.dataset.version, 10) };
    var attempts = 0, pingTimer = null;

    function render() {
      var share = stock.original > 0 ? stock.current / stock.original : 0;
      var unitsSold = stock.original - stock.current;
      numbers.textContent = stock.current + " / " + stock.original;
      fill.style.width = Math.round(100 * Math.max(0, Math.min(1, share))) + "%";
      fill.style.background = colour(share);
      sold.textContent = unitsSold + (unitsSold === 1 ? " unit" : " units") + " sold";
    }

    function setState(state, text) {
      box.dataset.state = state;
      note.textContent = text;
    }

    function connect() {
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      // Under ./scripts/serve sockets are on Daphne's port, not the page's (data-socket-port).
      var host = box.dataset.socketPort ? location.hostname + ":" + box.dataset.socketPort : location.host;
      var socket = new WebSocket(scheme + host + "/ws/sales/" + saleId + "/");
      socket.onopen = function () {
        attempts = 0;
        setState("live", "live");
        clearInterval(pingTimer);
        pingTimer = setInterval(function () {
          if (socket.readyState === WebSocket.OPEN) { socket.send(JSON.stringify({ type: "ping" })); }
        }, 25000);
      };
      socket.onmessage = function (event) {
        var message;
        try { message = JSON.parse(event.data); } catch (e) { return; }
        if (message.saleId !== saleId) { return; }
        // Versions only grow: a late message must never move the number back.
        if (message.type === "snapshot" && message.version >= stock.version) {
          stock = { current: message.currentStock, original: message.originalStock, version: message.version };
          render();
        } else if (message.type === "stock" && message.version > stock.version) {
          stock.current = message.currentStock;
          stock.version = message.version;
          render();
        }
      };
      socket.onclose = function (event) {
        clearInterval(pingTimer);
        if (event.code === 4404 || event.code === 4400) { setState("closed", "as loaded"); return; }
        var delay = Math.min(15000, 500 * Math.pow(2, attempts)) * (0.5 + Math.random() / 2);
        attempts += 1;
        setState("reconnecting", "reconnecting…");
        setTimeout(connect, delay);
      };
    }

    connect();
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-live-stock]"), watch);
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
