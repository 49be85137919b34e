// flashsale live page: one WebSocket for live stock (live/socket.js), the REST API for login and purchases.
// No build step, no framework. User-provided text (sale and buyer names) only ever goes through
// textContent, never innerHTML.
(function () {
  "use strict";

  var app = document.getElementById("app");
  // The shop's limits; a sale's own (maxPerPurchase, maxPerBuyer in its snapshot) win when it has them.
  var defaultMaxQuantity = parseInt(app.dataset.maxQuantity, 10) || 1;
  var defaultMaxUnits = parseInt(app.dataset.maxUnits, 10) || defaultMaxQuantity;
  // A pending sale's badge says "Starts soon" only within this of its start (sales/pages.py: STARTS_SOON).
  var STARTS_SOON_MS = 3600 * 1000;
  var TOKEN_KEY = "flashsale.token";
  var EMAIL_KEY = "flashsale.email";
  var RECENT = 10;

  var $ = function (id) { return document.getElementById(id); };
  var el = {
    connection: $("connection"), name: $("sale-name"), status: $("status"), countdown: $("countdown"),
    stock: $("stock"), stockOf: $("stock-of"), bar: $("bar"), barFill: $("bar-fill"),
    times: $("times"), startTime: $("start-time"), endTime: $("end-time"), account: $("account"),
    loginForm: $("login-form"), email: $("email"), password: $("password"), loginButton: $("login-button"),
    registerForm: $("register-form"), registerName: $("register-name"), registerEmail: $("register-email"),
    registerPassword: $("register-password"), registerButton: $("register-button"),
    showRegister: $("show-register"), showLoginForm: $("show-login"),
    signedIn: $("signed-in"), signedInEmail: $("signed-in-email"), logout: $("logout-button"),
    buyForm: $("buy-form"), quantity: $("quantity"), buyButton: $("buy-button"),
    message: $("message"), purchases: $("purchases"), noPurchases: $("no-purchases"),
    switchNotice: $("switch-notice"), zone: $("zone"), next: $("next"), nextLink: $("next-link"),
    alsoLive: $("also-live"), alsoLiveLink: $("also-live-link"),
    others: $("others"), othersCard: $("others-card"),
    queueNote: $("queue-note"), queue: $("queue"), queueStatus: $("queue-status"), queueDetail: $("queue-detail"),
    joinButton: $("join-button")
  };

  // The sale as last told by the server. `stockVersion` only moves forward within one sale.
  var sale = null;
  // Whether the account card shows the register form instead of the sign-in form.
  var registering = false;
  // Units of the shown sale this buyer is known to hold at least (their purchases on this page, or
  // the server's count from a refusal); null: not known. Forgotten when the page shows another sale.
  var held = null;
  // The units of the buyer's last purchase while its "You bought" message is shown, kept current.
  var bought = null;
  // Whether that purchase is a hold waiting for its confirm (a sale with holdSeconds).
  var boughtHeld = false;

  function maxQuantity() { return (sale && sale.maxPerPurchase) || defaultMaxQuantity; }
  function maxUnits() { return (sale && sale.maxPerBuyer) || defaultMaxUnits; }
  function atCap() { return held !== null && held >= maxUnits(); }

  // --- error codes (README "Error codes") -> what a buyer should read ------------------------
  var MESSAGES = {
    validation_error: "Please check the form.",
    not_authenticated: "Please sign in first.",
    authentication_failed: "Your session has expired. Please sign in again.",
    invalid_credentials: "Wrong email or password.",
    permission_denied: "You are not allowed to do that.",
    not_found: "That page of the API does not exist.",
    sale_not_found: "This sale does not exist (any more).",
    no_active_sale: "No sale is running right now.",
    method_not_allowed: "That action is not allowed.",
    email_taken: "An account with this email already exists.",
    sale_not_active: "This sale is not open right now.",
    sold_out: "Sold out — every unit is gone.",
    sale_paused: "This sale is paused. Try again when it resumes.",
    insufficient_stock: "Not enough units left for that quantity.",
    user_limit_reached: "You have reached the maximum number of units per buyer for this sale.",
    sale_paused: "This sale is paused. Buying resumes when the shop resumes it.",
    version_conflict: "The sale changed meanwhile. Please reload and try again.",
    payload_too_large: "That request is too large.",
    unsupported_media_type: "The request was not sent as JSON.",
    rate_limited: "Too many attempts. Please wait a moment.",
    internal_error: "Something went wrong on our side. Please try again.",
    service_unavailable: "The shop is overloaded right now. Please try again in a moment.",
    no_waiting_room: "This sale has no waiting room: buy directly.",
    queue_not_open: "The line of this sale is not open yet.",
    not_in_queue: "You have no place in this sale's line yet.",
    not_admitted: "It is not your turn yet: join the line and buy when you are let in.",
    admission_expired: "Your turn to buy ran out.",
    challenge_failed: "Joining the line failed its check. Please try again."
  };

  function describeError(error) {
    var details = error.details || {};
    var text = MESSAGES[error.code] || error.message || "Something went wrong.";
    if (error.code === "insufficient_stock" && details.currentStock !== undefined) {
      text = "Only " + details.currentStock + " left — lower the quantity.";
    } else if (error.code === "rate_limited" && details.retryAfter !== undefined) {
      text += " Try again in " + details.retryAfter + " s.";
    } else if (error.code === "sale_not_active" && details.startTime) {
      var start = new Date(details.startTime);
      text = start > new Date() ? "The sale has not started yet. It opens at " + localMinute(details.startTime) + "."
                                : "This sale has ended.";
    } else if (error.code === "not_admitted" && typeof details.aheadOfYou === "number") {
      text = "It is not your turn yet: " + aheadText(details.aheadOfYou) + ".";
    } else if (error.code === "queue_not_open" && details.queueOpensAt) {
      text = "The line opens at " + localMinute(details.queueOpensAt) + ".";
    } else if (error.code === "user_limit_reached") {
      var limit = details.maxUnitsPerUser !== undefined ? details.maxUnitsPerUser : details.maxPerBuyer;
      if (typeof details.held === "number" && typeof limit === "number") {
        text = limit > details.held ? "You have " + details.held + "; you can buy " + (limit - details.held) + " more."
                                    : "You have " + details.held + ", the most one buyer may hold of this sale.";
      } else if (typeof limit === "number") {
        text = "Each buyer may hold at most " + limit + (limit === 1 ? " unit" : " units") + " of this sale.";
      }
    } else if (error.code === "validation_error") {
      var fields = Object.keys(details).map(function (field) {
        var problems = details[field];
        return field + ": " + (Array.isArray(problems) ? problems.join(" ") : String(problems));
      });
      if (fields.length) { text = "Please check the form — " + fields.join("; "); }
    }
    return text;
  }

  function say(text, kind) {
    bought = null;
    el.message.textContent = text;
    el.message.dataset.kind = kind || "info";
    el.message.hidden = !text;
  }

  // --- REST ---------------------------------------------------------------------------------
  function api(method, path, body) {
    var headers = { "Accept": "application/json" };
    var token = localStorage.getItem(TOKEN_KEY);
    if (token) { headers["Authorization"] = "Token " + token; }
    if (body !== undefined) { headers["Content-Type"] = "application/json"; }
    return fetch(path, { method: method, headers: headers, body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (response) {
        return response.json().catch(function () { return null; }).then(function (payload) {
          if (payload && payload.success) { return payload; }
          var error = (payload && payload.error) || { code: response.status >= 500 ? "internal_error" : "", message: "HTTP " + response.status };
          if (error.code === "authentication_failed") { forgetLogin(); }
          throw error;
        });
      }, function () {
        throw { code: "", message: "Could not reach the server. Check your connection and try again." };
      });
  }

  // --- rendering ----------------------------------------------------------------------------
  function derivedStatus(now) {
    if (!sale || sale.saleId === null) { return null; }
    if (now < sale.start) { return "pending"; }
    if (now >= sale.end || sale.currentStock <= 0) { return "completed"; }
    if (sale.paused) { return "paused"; }
    // The server's word wins over a local clock that may be a little off.
    return sale.status === "completed" ? "completed" : "active";
  }

  function two(n) { return (n < 10 ? "0" : "") + n; }

  // One zone per page: the server renders UTC (and says so); from here on every time on the page is
  // the buyer's own, in the server's shape ("2026-11-25 14:15"), and #zone names the zone.
  function localMinute(iso) {
    var d = new Date(iso);
    return d.getFullYear() + "-" + two(d.getMonth() + 1) + "-" + two(d.getDate()) + " " + two(d.getHours()) + ":" + two(d.getMinutes());
  }

  function localSecond(iso) {
    var d = new Date(iso);
    return two(d.getHours()) + ":" + two(d.getMinutes()) + ":" + two(d.getSeconds());
  }

  function zoneName() {
    try { return Intl.DateTimeFormat().resolvedOptions().timeZone || ""; } catch (e) { return ""; }
  }

  function renderZone() {
    var name = zoneName();
    el.zone.textContent = "Times are in your time zone" + (name ? " (" + name + ")." : ".");
    Array.prototype.forEach.call(el.purchases.querySelectorAll("time"), function (time) {
      time.textContent = localSecond(time.dateTime);
    });
  }

  function renderTimes(snapshot) {
    el.times.hidden = snapshot.saleId === null;
    if (snapshot.saleId === null) { return; }
    el.startTime.dateTime = snapshot.startTime;
    el.startTime.textContent = localMinute(snapshot.startTime);
    el.endTime.dateTime = snapshot.endTime;
    el.endTime.textContent = localMinute(snapshot.endTime);
  }

  function duration(ms) {
    var s = Math.max(0, Math.ceil(ms / 1000));
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    return (d ? d + "d " : "") + (d || h ? two(h) + ":" : "") + two(m) + ":" + two(s % 60);
  }

  function pendingLabel(start, now) { return start - now <= STARTS_SOON_MS ? "Starts soon" : "Upcoming"; }

  function renderClock() {
    var now = Date.now();
    var status = derivedStatus(now);
    var labels = {
      pending: sale && sale.start ? pendingLabel(sale.start, now) : "Starts soon", active: "Live", paused: "Paused",
      completed: sale && sale.currentStock <= 0 ? "Sold out" : "Ended"
    };
    el.status.textContent = status ? labels[status] : "No sale";
    el.status.dataset.status = status || "";
    if (!status) {
      el.countdown.textContent = "No sale is scheduled yet. This page updates by itself.";
    } else if (status === "pending") {
      el.countdown.textContent = "Starts in " + duration(sale.start - now);
    } else if (status === "active") {
      el.countdown.textContent = "Ends in " + duration(sale.end - now);
    } else if (status === "paused") {
      el.countdown.textContent = "Paused by the shop. Buying resumes when it resumes; ends in " + duration(sale.end - now) + ".";
    } else {
      el.countdown.textContent = sale.currentStock <= 0 ? "Every unit has been sold." : "This sale has ended.";
    }
    el.buyButton.disabled = status !== "active" || atCap() || (line.waitingRoom === true && lineState(now, status) !== "admitted");
    el.quantity.max = String(maxQuantity());
    renderOthers(now, status);
    renderLine(now, status);
  }

  // --- other sales: live and upcoming, each with its countdown; the first is "next" --------------
  function renderOthers(now, status) {
    var first = null, live = 0;
    Array.prototype.forEach.call(el.others.children, function (item) {
      var id = parseInt(item.dataset.saleId, 10);
      var start = Date.parse(item.dataset.start), end = Date.parse(item.dataset.end);
      // The sale shown above is not "another" sale; one whose window has passed is not on offer.
      item.hidden = (sale && sale.saleId === id) || now >= end;
      if (item.hidden) { return; }
      if (!first) { first = item; }
      var badge = item.querySelector(".badge"), when = item.querySelector(".other-when");
      var started = now >= start;
      if (started) { live += 1; }
      badge.dataset.status = started ? "active" : "pending";
      badge.textContent = started ? "Live" : pendingLabel(start, now);
      when.textContent = started ? "Ends in " + duration(end - now) : "Starts in " + duration(start - now) + " (" + localMinute(item.dataset.start) + ")";
    });
    el.othersCard.hidden = !first;
    el.alsoLive.hidden = live === 0;
    el.alsoLiveLink.textContent = live === 1 ? "1 other sale is live" : live + " other sales are live";
    el.next.hidden = !(first && status === "completed");
    if (first) {
      var link = first.querySelector("a");
      el.nextLink.href = link.getAttribute("href");
      el.nextLink.textContent = link.textContent;
    }
  }

  function renderStock() {
    if (!sale || sale.saleId === null) {
      el.stock.textContent = "–"; el.stockOf.textContent = ""; el.barFill.style.width = "0";
      return;
    }
    el.stock.textContent = String(sale.currentStock);
    el.stockOf.textContent = "of " + sale.originalStock;
    var share = sale.originalStock > 0 ? sale.currentStock / sale.originalStock : 0;
    el.barFill.style.width = (Math.max(0, Math.min(1, share)) * 100).toFixed(1) + "%";
    el.barFill.dataset.low = share <= 0.1 ? "true" : "false";
    el.bar.setAttribute("aria-valuemax", String(sale.originalStock));
    el.bar.setAttribute("aria-valuenow", String(sale.currentStock));
    if (bought !== null) { renderBought(); }
    renderClock();
  }

  function addPurchase(purchase, atTop) {
    var item = document.createElement("li");
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = purchase.userName;
    var what = document.createElement("span");
    what.className = "what";
    what.textContent = "× " + purchase.quantity;
    var when = document.createElement("time");
    when.dateTime = purchase.timestamp;
    when.textContent = localSecond(purchase.timestamp);
    item.appendChild(who); item.appendChild(what); item.appendChild(when);
    if (atTop) { el.purchases.insertBefore(item, el.purchases.firstChild); } else { el.purchases.appendChild(item); }
    while (el.purchases.children.length > RECENT) { el.purchases.removeChild(el.purchases.lastChild); }
    el.noPurchases.hidden = el.purchases.children.length > 0;
  }

  // The leaderboard lists oldest first: read its last page(s) for the latest purchases.
  function loadRecentPurchases(saleId) {
    var base = "/api/v1/leaderboard?saleId=" + encodeURIComponent(saleId) + "&limit=" + RECENT;
    return api("GET", base + "&page=1").then(function (first) {
      var last = Math.max(1, Math.ceil(first.count / RECENT));
      var pages = last === 1 ? [Promise.resolve(first)] : [api("GET", base + "&page=" + (last - 1)), api("GET", base + "&page=" + last)];
      return Promise.all(pages);
    }).then(function (pages) {
      if (!sale || sale.saleId !== saleId) { return; }
      var rows = [];
      pages.forEach(function (page) { rows = rows.concat(page.data.purchases); });
      el.purchases.textContent = "";
      rows.slice(-RECENT).forEach(function (purchase) { addPurchase(purchase, true); });
      el.noPurchases.hidden = rows.length > 0;
    }).catch(function () { /* the live feed still fills the list */ });
  }

  // --- socket messages ----------------------------------------------------------------------
  // `rendered`: the snapshot the server rendered into the page, purchases included; a socket's
  // snapshot (on every connect, after a reconnect too) reloads the purchases it may have missed.
  function onSnapshot(snapshot, rendered) {
    renderTimes(snapshot);
    var shown = sale;
    if (!rendered && shown && shown.saleId !== null && shown.saleId !== snapshot.saleId) {
      switchedFrom(shown, snapshot);
    }
    if (snapshot.saleId === null) {
      sale = { saleId: null };
      line = newLine(null);
      forgetPlace();
      el.name.textContent = "No sale yet";
      document.title = "flashsale";
      el.purchases.textContent = "";
      el.noPurchases.hidden = false;
      renderStock(); renderClock();
      return;
    }
    var sameSale = sale && sale.saleId === snapshot.saleId;
    if (sameSale && snapshot.stockVersion < sale.stockVersion) { return; }
    sale = {
      saleId: snapshot.saleId, name: snapshot.name, status: snapshot.status,
      start: Date.parse(snapshot.startTime), end: Date.parse(snapshot.endTime),
      originalStock: snapshot.originalStock, currentStock: snapshot.currentStock, version: snapshot.version,
      stockVersion: snapshot.stockVersion,
      // Absent means not paused, the shop's limits.
      paused: snapshot.paused === true, maxPerBuyer: snapshot.maxPerBuyer, maxPerPurchase: snapshot.maxPerPurchase
    };
    el.name.textContent = snapshot.name;
    document.title = snapshot.name + " · flashsale";
    lineFromSnapshot(snapshot, sameSale);
    renderStock();
    if (!rendered) { loadRecentPurchases(snapshot.saleId); }
  }

  // `/` follows whichever sale is live: when that is another sale now, the buy form must not carry
  // what the buyer typed for the old one over to it. It resets, and the page says what changed.
  function switchedFrom(old, snapshot) {
    held = null;
    el.quantity.value = "";
    say("");
    var ended = Date.now() >= old.end || old.currentStock <= 0 || old.status === "completed";
    var what = "“" + old.name + "” " + (ended ? "has ended" : "is no longer the sale shown here") + ". ";
    el.switchNotice.textContent = what + (snapshot.saleId === null
      ? "No other sale is on right now."
      : "This page now shows “" + snapshot.name + "”: check it before you buy.");
    el.switchNotice.hidden = false;
  }

  function onStock(message) {
    // Late messages carry older stock versions: never let the number go back in time.
    if (!sale || sale.saleId !== message.saleId || message.stockVersion <= sale.stockVersion) { return; }
    sale.currentStock = message.currentStock;
    sale.stockVersion = message.stockVersion;
    renderStock();
  }

  function onStatus(message) {
    if (!sale || sale.saleId !== message.saleId) { return; }
    sale.status = message.status;
    if (typeof message.paused === "boolean") { sale.paused = message.paused; }
    renderClock();
  }

  function onPurchase(message) {
    if (!sale || sale.saleId !== message.saleId) { return; }
    addPurchase(message, true);
  }

  // --- the socket (live/socket.js reconnects it) ----------------------------------------------
  var FATAL = { 4404: "This sale does not exist.", 4400: "This page address is not valid." };
  var CONNECTION = { connecting: "Connecting…", live: "Connected", reconnecting: "Reconnecting…", closed: "Offline" };

  function onConnection(state, code) {
    el.connection.dataset.state = state;
    el.connection.textContent = CONNECTION[state];
    if (state === "closed") { say(FATAL[code], "error"); }
    var wasLive = socketLive;
    socketLive = state === "live";
    // The socket went away: the fallback reads take over, spread over their interval so the pages of
    // a Daphne process that died do not all read at once.
    if (wasLive && !socketLive && place && place.state === "waiting") { nextReadAt = Date.now() + Math.random() * READ_MS; }
  }

  function onMessage(message) {
    // Other scripts of the page (holds.js) hear every message too.
    document.dispatchEvent(new CustomEvent("flashsale:message", { detail: message }));
    if (message.type === "snapshot") { onSnapshot(message); }
    else if (message.type === "stock") { onStock(message); }
    else if (message.type === "status") { onStatus(message); }
    else if (message.type === "purchase") { onPurchase(message); }
    else if (message.type === "queue_advanced") { onQueueAdvanced(message); }
    else if (message.type === "queue_closed") { onQueueClosed(message); }
  }

  // --- account and buying -------------------------------------------------------------------
  function showLogin() {
    var token = localStorage.getItem(TOKEN_KEY);
    el.loginForm.hidden = !!token || registering;
    el.registerForm.hidden = !!token || !registering;
    el.signedIn.hidden = !token;
    el.buyForm.hidden = !token;
    el.signedInEmail.textContent = token && localStorage.getItem(EMAIL_KEY) ? " as " + localStorage.getItem(EMAIL_KEY) : "";
    // Another account, or none: the place read before is not theirs.
    forgetPlace();
    renderLine();
  }

  function forgetLogin() {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(EMAIL_KEY);
    showLogin();
  }

  function signIn(email, password) {
    return api("POST", "/api/v1/auth/login", { email: email, password: password }).then(function (payload) {
      localStorage.setItem(TOKEN_KEY, payload.data.token);
      localStorage.setItem(EMAIL_KEY, email);
      registering = false;
      showLogin();
    });
  }

  el.loginForm.addEventListener("submit", function (event) {
    event.preventDefault();
    el.loginButton.disabled = true;
    say("");
    signIn(el.email.value.trim(), el.password.value)
      .then(function () {
        el.password.value = "";
        say("Signed in. Good luck!", "success");
      }, function (error) { say(describeError(error), "error"); })
      .then(function () { el.loginButton.disabled = false; });
  });

  function switchForm(toRegister) {
    registering = toRegister;
    say("");
    showLogin();
    (toRegister ? el.registerName : el.email).focus();
  }
  el.showRegister.addEventListener("click", function () { switchForm(true); });
  el.showLoginForm.addEventListener("click", function () { switchForm(false); });

  // Register, then sign in with the same password: one step for the shopper.
  el.registerForm.addEventListener("submit", function (event) {
    event.preventDefault();
    el.registerButton.disabled = true;
    say("");
    var email = el.registerEmail.value.trim(), password = el.registerPassword.value;
    api("POST", "/api/v1/auth/register", { name: el.registerName.value.trim(), email: email, password: password })
      .then(function () { return signIn(email, password); })
      .then(function () {
        el.registerPassword.value = "";
        say("Account created. You are signed in. Good luck!", "success");
      }, function (error) { say(describeError(error), "error"); })
      .then(function () { el.registerButton.disabled = false; });
  });

  el.logout.addEventListener("click", function () {
    api("POST", "/api/v1/auth/logout").catch(function () {}).then(function () {
      forgetLogin();
      say("Signed out.", "info");
    });
  });

  el.buyForm.addEventListener("submit", function (event) {
    event.preventDefault();
    // The last answer is about the last attempt, not this one.
    say("");
    if (!sale || !sale.saleId) { say(MESSAGES.no_active_sale, "error"); return; }
    var quantity = Number(el.quantity.value);
    if (!(Number.isInteger(quantity) && quantity >= 1 && quantity <= maxQuantity())) {
      say("You can buy 1 to " + maxQuantity() + " units at a time. Please choose a quantity in that range.", "error");
      return;
    }
    // The sale the buyer was looking at when they clicked, not whatever the page shows when the answer comes.
    var saleId = sale.saleId;
    el.buyButton.disabled = true;
    el.switchNotice.hidden = true;
    api("POST", "/api/v1/flashsales/purchase", { saleId: saleId, quantity: quantity })
      .then(function (payload) {
        if (!sale || sale.saleId !== saleId) { return; }
        held = (held || 0) + payload.data.quantity;
        if (payload.data.remainingStock < sale.currentStock) { sale.currentStock = payload.data.remainingStock; }
        say("");
        bought = payload.data.quantity;
        boughtHeld = payload.data.status === "held";
        renderStock();
        // A held purchase is shown with its countdown by holds.js.
        document.dispatchEvent(new CustomEvent("flashsale:purchased", { detail: payload.data }));
      }, function (error) {
        if (error.code === "not_authenticated" || error.code === "authentication_failed") { forgetLogin(); }
        if (error.code === "user_limit_reached" && error.details && typeof error.details.held === "number" && sale && sale.saleId === saleId) {
          held = error.details.held;
        }
        if ((error.code === "not_admitted" || error.code === "admission_expired") && sale && sale.saleId === saleId) {
          // The page thought this buyer's turn had come (or did not know the sale has a line): re-read the place.
          line.waitingRoom = true;
          if (error.code === "admission_expired") { place.state = "expired"; }
          nextReadAt = 0;
          // The line's card says where the buyer stands now; a second message would only repeat it.
          return;
        }
        say(describeError(error), "error");
      })
      .then(renderClock);
  });

  // "You bought 3. 10 left.", kept true as the stock moves: never "10 left" beside a sold-out sale.
  function renderBought() {
    var units = bought;
    var text = (boughtHeld ? "Held for you: " : "You bought ") + units + ". " +
      (sale.currentStock > 0 ? sale.currentStock + " left." : "The sale is now sold out.");
    if (atCap()) { text += " That is the most one buyer may hold of this sale."; }
    say(text, "success");
    bought = units;
  }

  // --- the waiting room -----------------------------------------------------------------------
  // A sale with a waiting room sells only to buyers whose turn it is: "Join the line" takes a place
  // (POST .../queue), the page follows the line (queue_advanced on the socket; GET .../queue on a
  // timer, as a fallback and for what only the server knows: the place's position and admittedUntil),
  // and shows the buy form while the place is admitted.

  // The line of the shown sale. waitingRoom: true, false, or null while not known (a sale `/` moved
  // on to; GET .../queue tells). admittedThrough only moves forward.
  var line = newLine(null);
  // The signed-in buyer's place in it: state "unknown" (not read yet), "none" (no place), or the API's
  // status (waiting, admitted, expired, closed); position is null while the pre-queue waits for its draw.
  var place = null;
  forgetPlace();
  var joining = false, reading = false;
  // When the page next re-reads the place (ms; Infinity: nothing changes by itself).
  var nextReadAt = 0;
  // The fallback re-reads a waiting place this often without the socket; with it connected the socket
  // tells every move of the line, and a read every few minutes only guards against a silent socket:
  // a line of 100,000 pages costs the API hundreds of reads a second, not thousands.
  var READ_MS = 5000, READ_CONNECTED_MS = 300000;
  var socketLive = false;

  function newLine(saleId) {
    var data = app.dataset;
    var rendered = saleId !== null && String(saleId) === data.saleId;
    return {
      saleId: saleId,
      waitingRoom: saleId === null ? false : (rendered ? data.waitingRoom === "true" : null),
      opensAt: rendered && data.queueOpensAt ? Date.parse(data.queueOpensAt) : 0,
      admitPerSecond: rendered ? parseInt(data.admitPerSecond, 10) || 1 : 1,
      admittedThrough: rendered ? parseInt(data.admittedThrough, 10) || 0 : 0,
      admissionPaused: rendered && data.admissionPaused === "true",
      // null: not known (a sale the page moved on to), so the join asks for a challenge to learn it.
      joinDifficulty: rendered && data.joinDifficulty !== undefined ? parseInt(data.joinDifficulty, 10) || 0 : null,
      queueLength: null, closed: false
    };
  }

  function forgetPlace() {
    place = { state: "unknown", position: null, admittedUntil: null };
    nextReadAt = 0;
  }

  // The socket's snapshot carries the line's figures (on every connect): a new sale starts a new line.
  function lineFromSnapshot(snapshot, sameSale) {
    if (!sameSale) {
      line = newLine(snapshot.saleId);
      forgetPlace();
    }
    if (typeof snapshot.waitingRoom === "boolean") { line.waitingRoom = snapshot.waitingRoom; }
    if (snapshot.queueOpensAt) { line.opensAt = Date.parse(snapshot.queueOpensAt); }
    if (typeof snapshot.admissionPaused === "boolean") { line.admissionPaused = snapshot.admissionPaused; }
    // A moved start (staff's "start now") moves the draw; a reconnect may have missed moves of the line.
    if (sameSale && place.state === "waiting") { scheduleRead(); }
    advanceLine(snapshot);
  }

  function queuePath(saleId) { return "/api/v1/flashsales/" + encodeURIComponent(saleId) + "/queue"; }

  // The one place where a join's body is made: a sale with a proof of work (joinDifficulty > 0) has its
  // challenge fetched and solved in Web Workers (join_challenge.js) first. Returns a Promise of the
  // body; a rejection is shown to the buyer as an error ({code, message}).
  function joinBody(joiningSale) {
    if (line.joinDifficulty === 0 || !window.flashsaleJoinChallenge) { return Promise.resolve({}); }
    say("Proving you are not a bot: this takes a few seconds…");
    return window.flashsaleJoinChallenge.solveJoinChallenge(joiningSale.saleId, localStorage.getItem(TOKEN_KEY));
  }

  function takePlace(data) {
    place = {
      state: data.status, position: data.position,
      admittedUntil: data.admittedUntil ? Date.parse(data.admittedUntil) : null
    };
    // The answer tells how far admission got: aheadOfYou = position - admittedThrough - 1.
    if (data.status === "waiting" && data.position !== null && typeof data.aheadOfYou === "number") {
      line.admittedThrough = Math.max(line.admittedThrough, data.position - 1 - data.aheadOfYou);
    } else if ((data.status === "admitted" || data.status === "expired") && data.position !== null) {
      line.admittedThrough = Math.max(line.admittedThrough, data.position);
    } else if (data.status === "closed") {
      line.closed = true;
    }
    scheduleRead();
  }

  function scheduleRead() {
    var now = Date.now();
    if (place.state === "unknown") {
      nextReadAt = now + READ_MS;  // the last read failed: try again
    } else if (place.state === "waiting" && place.position === null) {
      // The draw is at the start: nothing to read before it; spread the whole pre-queue's reads after it.
      nextReadAt = sale && now < sale.start ? sale.start + 500 + Math.random() * 3000 : now + 1000;
    } else if (place.state === "waiting") {
      nextReadAt = now + (socketLive ? READ_CONNECTED_MS : READ_MS);
    } else if (place.state === "admitted" && place.admittedUntil) {
      nextReadAt = place.admittedUntil + 500;  // to hear that the turn ran out
    } else {
      nextReadAt = Infinity;  // no place, expired or closed: nothing changes by itself
    }
  }

  function readPlace() {
    if (reading || !line.saleId || line.waitingRoom === false || !localStorage.getItem(TOKEN_KEY)) { return; }
    var saleId = line.saleId;
    reading = true;
    nextReadAt = Infinity;
    api("GET", queuePath(saleId)).then(function (payload) {
      if (line.saleId !== saleId) { return; }
      line.waitingRoom = true;
      takePlace(payload.data);
    }, function (error) {
      if (line.saleId !== saleId) { return; }
      if (error.code === "not_in_queue") {
        line.waitingRoom = true;
        place = { state: "none", position: null, admittedUntil: null };
      } else if (error.code === "no_waiting_room") {
        line.waitingRoom = false;
      }
      scheduleRead();
    }).then(function () {
      reading = false;
      renderClock();
    });
  }

  // Called every 250 ms: re-read the place when it is due.
  function followLine() {
    if (Date.now() >= nextReadAt) { readPlace(); }
  }

  // The line's figures from a snapshot or a queue_advanced message (absent fields: not told).
  function advanceLine(message) {
    if (typeof message.admittedThrough === "number") {
      line.admittedThrough = Math.max(line.admittedThrough, message.admittedThrough);
    }
    if (typeof message.admitPerSecond === "number" && message.admitPerSecond >= 1) { line.admitPerSecond = message.admitPerSecond; }
    if (typeof message.queueLength === "number") { line.queueLength = message.queueLength; }
    // The buyer's turn came: only the server knows until when (admittedUntil).
    if (place.state === "waiting" && place.position !== null && line.admittedThrough >= place.position) { nextReadAt = 0; }
  }

  function onQueueAdvanced(message) {
    if (!sale || sale.saleId !== message.saleId) { return; }
    line.waitingRoom = true;
    advanceLine(message);
    renderLine();
  }

  function onQueueClosed(message) {
    if (!sale || sale.saleId !== message.saleId) { return; }
    line.waitingRoom = true;
    line.closed = true;
    if (place.state === "waiting" || place.state === "admitted") { place.state = "closed"; }
    nextReadAt = Infinity;
    renderClock();
  }

  // What the buyer's place is now, by the page's clock: an admission ends at admittedUntil even
  // before the server says so, and a sold-out or ended sale closes its line.
  function lineState(now, status) {
    if (status === "completed" || line.closed || place.state === "closed") { return "closed"; }
    if (place.state === "admitted" && place.admittedUntil !== null && place.admittedUntil <= now) { return "expired"; }
    return place.state;
  }

  function count(n) { return Number(n).toLocaleString("en-US"); }

  function aheadText(ahead) { return ahead === 1 ? "1 ahead of you" : count(ahead) + " ahead of you"; }

  function about(seconds) {
    if (seconds < 60) { return "less than a minute"; }
    var minutes = Math.round(seconds / 60);
    if (minutes < 60) { return "about " + minutes + " min"; }
    return "about " + Math.floor(minutes / 60) + " h " + (minutes % 60) + " min";
  }

  // The line's card: its status, a detail line, the join button; the buy form only in the buyer's turn.
  function renderLine(now, status) {
    now = now || Date.now();
    status = status === undefined ? derivedStatus(now) : status;
    var token = !!localStorage.getItem(TOKEN_KEY);
    var inLine = line.waitingRoom === true;
    el.queueNote.hidden = !inLine;
    el.queue.hidden = !(inLine && token);
    if (!inLine || !token) {
      el.buyForm.hidden = !token;
      return;
    }
    var state = lineState(now, status), text = "", detail = "", join = false;
    var soldOut = sale && sale.currentStock <= 0;
    if (state === "unknown") {
      text = "Checking your place in the line…";
    } else if (state === "none" && status === "completed") {
      text = soldOut ? "Sold out — the line is closed." : "This sale has ended — the line is closed.";
    } else if (state === "none") {
      join = true;
      if (now < line.opensAt) {
        text = "The line opens at " + localMinute(new Date(line.opensAt).toISOString()) + ", in " + duration(line.opensAt - now) + ".";
      } else {
        text = "Join the line to buy.";
        detail = now < sale.start
          ? "The line's order is drawn at random at the start: joining early gives no head start."
          : "Buyers who join now are let in in the order they joined.";
      }
    } else if (state === "waiting" && place.position === null) {
      text = "You're in the line.";
      detail = now < sale.start
        ? "The order is drawn at random when the sale starts, in " + duration(sale.start - now) + ". Keep this page open."
        : "Drawing the order… your place shows in a moment.";
    } else if (state === "waiting") {
      var ahead = Math.max(0, place.position - line.admittedThrough - 1);
      if (line.admittedThrough >= place.position) {
        text = "Your turn is coming up…";
      } else if (sale.paused || line.admissionPaused) {
        text = (ahead ? aheadText(ahead) : "You're next") + ". The shop has paused the line for a moment.";
      } else if (ahead === 0) {
        text = "You're next.";
      } else {
        text = aheadText(ahead) + ", " + about(Math.ceil(ahead / line.admitPerSecond));
      }
      detail = "Place " + count(place.position) + (line.queueLength ? " of " + count(line.queueLength) : "") +
        " in the line. Keep this page open: it moves by itself.";
    } else if (state === "admitted") {
      // What was bought is said under the form (renderBought), with the stock left.
      text = atCap() ? "Your turn is done." : "Your turn: " + minutesSeconds(place.admittedUntil - now) + " left to buy" + (held ? " more" : "");
    } else if (state === "expired") {
      text = held ? "Your turn is over." : "Your turn to buy ran out.";
      detail = held ? "" : "Each account has one place in the line.";
    } else if (state === "closed") {
      text = soldOut ? "Sold out — the line is closed." : "This sale has ended — the line is closed.";
    }
    // The outcome's colour: a buyer who bought is done, whatever became of the line since.
    el.queue.dataset.state = held && (state === "expired" || state === "closed" || (state === "admitted" && atCap())) ? "bought" : state;
    el.queueStatus.textContent = text;
    el.queueDetail.textContent = detail;
    el.queueDetail.hidden = !detail;
    el.joinButton.hidden = !join;
    el.joinButton.disabled = joining || now < line.opensAt;
    el.buyForm.hidden = state !== "admitted";
    // A tab in the background shows that the turn came.
    if (sale && sale.name) { document.title = (state === "admitted" && !atCap() ? "Your turn · " : "") + sale.name + " · flashsale"; }
  }

  function minutesSeconds(ms) {
    var s = Math.max(0, Math.ceil(ms / 1000));
    return Math.floor(s / 60) + ":" + two(s % 60);
  }

  el.joinButton.addEventListener("click", function () {
    if (!sale || !sale.saleId || joining) { return; }
    var saleId = sale.saleId;
    joining = true;
    say("");
    renderLine();
    joinBody(sale)
      .then(function (body) { return api("POST", queuePath(saleId), body); })
      .then(function (payload) {
        if (line.saleId !== saleId) { return; }
        say("");
        line.waitingRoom = true;
        takePlace(payload.data);
      }, function (error) {
        if (line.saleId !== saleId) { return; }
        if (error.code === "no_waiting_room") { line.waitingRoom = false; }
        if (error.code === "sold_out" || error.code === "sale_not_active") { line.closed = true; }
        say(describeError(error || {}), "error");
      })
      .then(function () {
        joining = false;
        renderClock();
      });
  });

  // The server rendered the page from this snapshot: start from it, so nothing changes on first paint.
  onSnapshot(JSON.parse($("sale-snapshot").textContent), true);
  renderZone();
  el.account.hidden = false;
  showLogin();
  renderClock();
  setInterval(renderClock, 1000);
  setInterval(followLine, 250);
  window.flashsaleSocket.open({
    path: app.dataset.socketPath, port: app.dataset.socketPort, onMessage: onMessage, onState: onConnection
  });
})();
