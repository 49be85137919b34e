// Live flash sales in the admin, from the same WebSocket feed as the live page (ws/sales/<id>/, see
// live/consumers.py; the socket itself is live/socket.js), so staff watching a drop see purchases land:
// - a sale's change page: its stock, and on every push its purchase count, newest purchases table and
//   version, read from the page's JSON (data-live-url: the socket carries no buyer's email); for a
//   waiting room also its line (in line, admitted through, admitted and not yet bought, purchases per
//   second), read on every push (queue_advanced included) and every LINE_REFRESH_MS, so the rate
//   falls back when purchases stop;
// - the sale list: the stock of each live or upcoming sale listed.
// It only reads: every write still goes through the admin's forms and actions.
(function () {
  "use strict";

  // Rows of the sale list given a socket each, at most: the list shows 50 sales per page.
  var LIST_SOCKETS = 20;
  // A burst of purchases is read back once, not once per purchase.
  var REFRESH_AFTER_MS = 250;
  // A waiting room's purchases per second change with no push when purchases stop.
  var LINE_REFRESH_MS = 3000;

  function colour(share) { return share > 0.25 ? "#1e7e34" : share > 0 ? "#d39e00" : "#bd2130"; }

  function percent(stock) {
    var share = stock.original > 0 ? stock.current / stock.original : 0;
    return Math.round(100 * Math.max(0, Math.min(1, share)));
  }

  function units(count) { return count + (count === 1 ? " unit" : " units"); }

  // One sale's socket: `render(stock)` on every newer stock, `changed()` on every push about the sale.
  function follow(saleId, port, stock, render, changed, onState) {
    function onMessage(message) {
      if (message.saleId !== saleId) { return; }
      // Stock versions only grow: a late message must never move the number back.
      if (message.type === "snapshot" && message.stockVersion >= stock.stockVersion) {
        stock.current = message.currentStock;
        stock.original = message.originalStock;
        stock.stockVersion = message.stockVersion;
        render();
      } else if (message.type === "stock" && message.stockVersion > stock.stockVersion) {
        stock.current = message.currentStock;
        stock.stockVersion = message.stockVersion;
        render();
      }
      if (message.type !== "pong") { changed(message); }
    }
    window.flashsaleSocket.open({
      path: "/ws/sales/" + saleId + "/",
      // Under ./scripts/serve sockets are on Daphne's port, not the page's (data-socket-port).
      port: port,
      onMessage: onMessage,
      onState: onState || function () {}
    });
  }

  // --- a sale's change page -------------------------------------------------------------------
  function watch(box) {
    var numbers = box.querySelector(".live-stock-numbers");
    var note = box.querySelector(".live-stock-note");
    var fill = box.querySelector(".live-stock-fill");
    var sold = box.querySelector(".live-stock-sold");
    var saleId = parseInt(box.dataset.saleId, 10);
    var parts = numbers.textContent.split("/");
    var stock = { current: parseInt(parts[0], 10), original: parseInt(parts[1], 10), stockVersion: parseInt(box.dataset.stockVersion, 10) };

    function render() {
      numbers.textContent = stock.current + " / " + stock.original;
      fill.style.width = percent(stock) + "%";
      fill.style.background = colour(stock.original > 0 ? stock.current / stock.original : 0);
      sold.textContent = units(stock.original - stock.current) + " sold";
    }

    var NOTES = { live: "live", reconnecting: "reconnecting…", closed: "as loaded" };
    function onState(state) {
      if (!NOTES[state]) { return; }  // "connecting": still as loaded
      box.dataset.state = state;
      note.textContent = NOTES[state];
    }

    var refresh = refresher(box.dataset.liveUrl);
    follow(saleId, box.dataset.socketPort, stock, render, refresh, onState);
    if (document.querySelector("[data-waiting-room]")) { setInterval(refresh, LINE_REFRESH_MS); }
  }

  // Reads the page's live JSON after a push; one read at a time, and one more if pushes came meanwhile.
  function refresher(url) {
    var busy = false, again = false, timer = null;
    if (!url) { return function () {}; }

    function read() {
      timer = null;
      busy = true;
      again = false;
      fetch(url, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (response) { if (!response.ok) { throw new Error("HTTP " + response.status); } return response.json(); })
        .then(show, function () { /* the next push tries again */ })
        .then(function () {
          busy = false;
          if (again) { schedule(); }
        });
    }

    function schedule() {
      if (busy) { again = true; return; }
      if (!timer) { timer = setTimeout(read, REFRESH_AFTER_MS); }
    }
    return schedule;
  }

  function showLine(line) {
    var box = document.querySelector("[data-waiting-room]");
    if (!box || !line) { return; }
    [["line-length", line.queueLength], ["line-admitted-through", line.admittedThrough],
      ["line-admitted-not-bought", line.admittedNotBought], ["line-purchase-rate", line.purchasesPerSecond],
      ["line-admission", line.admission]].forEach(function (figure) {
      var span = box.querySelector("." + figure[0]);
      if (span) { span.textContent = String(figure[1]); }
    });
  }

  function show(sale) {
    var version = document.querySelector(".field-version .readonly");
    if (version) { version.textContent = String(sale.version); }
    showLine(sale.waitingRoom);
    Array.prototype.forEach.call(document.querySelectorAll(".live-purchase-count"), function (count) {
      count.textContent = sale.purchaseCountText;
    });
    var body = document.querySelector("[data-live-purchases] tbody");
    if (!body) { return; }
    var columns = body.parentNode.querySelectorAll("thead th").length || 4;
    body.textContent = "";
    if (!sale.purchases.length) {
      var empty = document.createElement("tr"), cell = document.createElement("td");
      empty.className = "none-yet";
      cell.colSpan = columns;
      cell.textContent = "None yet.";
      empty.appendChild(cell);
      body.appendChild(empty);
      return;
    }
    sale.purchases.forEach(function (purchase) {
      var row = document.createElement("tr");
      var link = document.createElement("a");
      link.href = purchase.url;
      link.textContent = "#" + purchase.id;
      var buyer = document.createDocumentFragment(), name = document.createElement("small");
      buyer.appendChild(document.createTextNode(purchase.buyerEmail + " "));
      name.textContent = "(" + purchase.buyerName + ")";
      buyer.appendChild(name);
      [["purchase", link], ["bought_at", purchase.boughtAt], ["buyer", buyer], ["quantity", String(purchase.quantity)], ["status", purchase.status]]
        .forEach(function (column) {
          var td = document.createElement("td");
          td.className = "field-" + column[0];
          if (typeof column[1] === "string") { td.textContent = column[1]; } else { td.appendChild(column[1]); }
          row.appendChild(td);
        });
      body.appendChild(row);
    });
  }

  // --- the sale list --------------------------------------------------------------------------
  function watchList(table) {
    var watched = 0;
    Array.prototype.forEach.call(table.querySelectorAll("tbody tr"), function (row) {
      var bar = row.querySelector(".stock-bar");
      var link = row.querySelector("th.field-name a, td.field-name a");
      var status = row.querySelector(".field-status_badge");
      var match = link && /\/(\d+)\/change\//.exec(link.getAttribute("href"));
      if (!bar || !match || watched >= LIST_SOCKETS) { return; }
      // Ended sales only change on a staff action, which reloads the list anyway.
      if (status && /completed/i.test(status.textContent)) { return; }
      watched += 1;
      var numbers = bar.querySelector(".stock-bar-numbers"), fill = bar.querySelector(".stock-bar-fill");
      var sold = row.querySelector(".field-units_sold");
      var parts = numbers.textContent.split("/");
      var stock = { current: parseInt(parts[0], 10), original: parseInt(parts[1], 10), stockVersion: 0 };
      follow(parseInt(match[1], 10), bar.dataset.socketPort, stock, function () {
        numbers.textContent = stock.current + " / " + stock.original;
        bar.dataset.stockVersion = String(stock.stockVersion);
        bar.title = stock.current + " of " + stock.original + " units left";
        fill.style.width = percent(stock) + "%";
        fill.style.background = colour(stock.original > 0 ? stock.current / stock.original : 0);
        if (sold) { sold.textContent = String(stock.original - stock.current); }
      }, function () {});
    });
    table.dataset.live = String(watched);
  }

  function start() {
    Array.prototype.forEach.call(document.querySelectorAll("[data-live-stock]"), watch);
    var list = document.getElementById("result_list");
    if (list) { watchList(list); }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
