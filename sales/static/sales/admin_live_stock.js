// Live stock on a flash sale's admin change page: the same WebSocket feed as the live page
// (ws/sales/<id>/, see live/consumers.py; the socket itself is live/socket.js), so staff watching a
// sale see purchases land. It only reads: every write still goes through the admin's forms and actions.
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
    var stock = { current: parseInt(parts[0], 10), original: parseInt(parts[1], 10), stockVersion: parseInt(box.dataset.stockVersion, 10) };

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

    function onMessage(message) {
      if (message.saleId !== saleId) { return; }
      // Stock versions only grow: a late message must never move the number back.
      if (message.type === "snapshot" && message.stockVersion >= stock.stockVersion) {
        stock = { current: message.currentStock, original: message.originalStock, stockVersion: message.stockVersion };
        render();
      } else if (message.type === "stock" && message.stockVersion > stock.stockVersion) {
        stock.current = message.currentStock;
        stock.stockVersion = message.stockVersion;
        render();
      }
    }

    var NOTES = { live: "live", reconnecting: "reconnecting…", closed: "as loaded" };
    window.flashsaleSocket.open({
      path: "/ws/sales/" + saleId + "/",
      // Under ./scripts/serve sockets are on Daphne's port, not the page's (data-socket-port).
      port: box.dataset.socketPort,
      onMessage: onMessage,
      onState: function (state) {
        if (NOTES[state]) { setState(state, NOTES[state]); }  // "connecting": still as loaded
      }
    });
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-live-stock]"), watch);
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
