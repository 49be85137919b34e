// flashsale live page, holds: the units held in the sale as a part of the stock bar of its own, and
// the signed-in buyer's hold of this sale, its countdown and its Confirm and Release buttons.
// Separate from live.js, which tells it of a purchase ("flashsale:purchased") and of every socket
// message ("flashsale:message"); the buyer's hold itself is read from GET /api/v1/purchases.
"use strict";

(function () {
  var TOKEN_KEY = "flashsale.token";
  var app = document.getElementById("app");
  var card = document.getElementById("hold");
  if (!app || !card) { return; }
  var el = {
    countdown: document.getElementById("hold-countdown"),
    confirm: document.getElementById("hold-confirm"),
    release: document.getElementById("hold-release"),
    message: document.getElementById("hold-message")
  };
  var hold = null;  // {purchaseId, quantity, expiresAt (ms)}
  var barHeld = document.getElementById("bar-held");
  // The sale's stock as last told: the held part sits after the remaining part of the bar.
  var stock = { original: 0, current: 0, held: 0, version: 0 };

  function renderHeld() {
    if (!barHeld) { return; }
    var share = stock.original > 0 ? stock.held / stock.original : 0;
    barHeld.style.width = (Math.max(0, Math.min(1, share)) * 100).toFixed(1) + "%";
    barHeld.dataset.held = String(stock.held);
    barHeld.title = stock.held + " held, waiting for the buyers to confirm";
  }

  function onMessage(message) {
    if (!message || (message.saleId !== undefined && message.saleId !== Number(app.dataset.saleId))) { return; }
    if (message.type === "snapshot") {
      stock = { original: message.originalStock, current: message.currentStock, held: message.heldStock || 0,
                version: message.stockVersion };
      renderHeld();
    } else if (message.type === "held") {
      stock.held = message.heldStock;
      renderHeld();
    } else if (message.type === "offer") {
      // The clock gave a waiting buyer a hold: if it is this buyer's, show it.
      load();
    }
  }

  function call(method, path) {
    var token = localStorage.getItem(TOKEN_KEY);
    if (!token) { return Promise.reject(null); }
    return fetch(path, { method: method, headers: { "Authorization": "Token " + token, "Accept": "application/json" } })
      .then(function (response) {
        return response.json().then(function (payload) {
          if (!response.ok) { throw payload && payload.error; }
          return payload;
        });
      });
  }

  function two(n) { return (n < 10 ? "0" : "") + n; }

  function render() {
    if (!hold) { return; }
    var left = Math.max(0, Math.ceil((hold.expiresAt - Date.now()) / 1000));
    if (left > 0) {
      el.countdown.textContent = "Held for you: " + hold.quantity + " × for " + Math.floor(left / 60) + ":" + two(left % 60) +
        ". Confirm once you have paid.";
      return;
    }
    finish("Your hold expired: its units went back to the sale.");
  }

  function finish(text) {
    hold = null;
    el.countdown.textContent = "";
    el.confirm.hidden = el.release.hidden = true;
    el.message.textContent = text;
    el.message.hidden = false;
  }

  function show(purchase) {
    hold = { purchaseId: purchase.purchaseId, quantity: purchase.quantity, expiresAt: Date.parse(purchase.expiresAt) };
    card.hidden = false;
    el.confirm.hidden = el.release.hidden = false;
    el.confirm.disabled = el.release.disabled = false;
    el.message.hidden = true;
    render();
  }

  // The newest held purchase of this page's sale, if the buyer has one.
  function load() {
    var saleId = Number(app.dataset.saleId);
    return call("GET", "/api/v1/purchases?limit=20").then(function (payload) {
      var held = payload.data.purchases.filter(function (purchase) {
        return purchase.status === "held" && purchase.saleId === saleId && Date.parse(purchase.expiresAt) > Date.now();
      });
      if (held.length) { show(held[0]); }
    }, function () { /* signed out, or the list is unavailable: nothing to show */ });
  }

  function act(action, done) {
    if (!hold) { return; }
    el.confirm.disabled = el.release.disabled = true;
    call("POST", "/api/v1/purchases/" + hold.purchaseId + "/" + action).then(function () {
      finish(done);
    }, function (error) {
      finish(error && error.message ? error.message : "That did not work. Reload the page to see your purchase.");
    });
  }

  el.confirm.addEventListener("click", function () { act("confirm", "Confirmed: the units are yours."); });
  el.release.addEventListener("click", function () { act("release", "Released: the units went back to the sale."); });
  document.addEventListener("flashsale:message", function (event) { onMessage(event.detail); });
  var rendered = document.getElementById("sale-snapshot");
  if (rendered) { onMessage(JSON.parse(rendered.textContent)); }
  document.addEventListener("flashsale:purchased", function (event) {
    if (event.detail && event.detail.status === "held") { show(event.detail); }
  });
  load();
  setInterval(render, 250);
})();
