// The drop dashboard (admin/dashboard/, sales/dashboard_views.py): a timeline of live and upcoming
// sales with countdowns, and per sale a chart of units sold per minute (uPlot, served from
// sales/static/sales/vendor/) with its figures. It starts from the page's JSON block and polls the
// data URL; it only reads. The charts are kept in window.flashsaleDashboard.charts by sale id.
(function () {
  "use strict";

  var STATUS_WORDS = { pending: "Upcoming", active: "Live", completed: "Ended" };
  var root, panelsBox, timelineBox, stateNote;
  var latest = null;       // the last payload drawn
  var clockOffset = 0;     // server clock minus this browser's, in ms
  var panels = {};         // sale id -> {box, chart, fields}
  var charts = {};

  window.flashsaleDashboard = { charts: charts };

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = text; }
    return node;
  }

  function serverNow() { return Date.now() + clockOffset; }

  function duration(ms) {
    var seconds = Math.max(0, Math.round(ms / 1000));
    var days = Math.floor(seconds / 86400);
    var hours = Math.floor((seconds % 86400) / 3600);
    var minutes = Math.floor((seconds % 3600) / 60);
    var rest = seconds % 60;
    function two(n) { return (n < 10 ? "0" : "") + n; }
    if (days) { return days + "d " + hours + "h " + two(minutes) + "m"; }
    if (hours) { return hours + "h " + two(minutes) + "m " + two(rest) + "s"; }
    if (minutes) { return minutes + "m " + two(rest) + "s"; }
    return rest + "s";
  }

  function utcTime(iso) {
    // "2026-12-05 23:41:07": the page says once that every time is UTC.
    return iso ? new Date(iso).toISOString().slice(0, 19).replace("T", " ") : "";
  }

  function statusOf(sale) {
    if (sale.status === "completed" && sale.currentStock === 0) { return "Sold out"; }
    return STATUS_WORDS[sale.status] || sale.status;
  }

  function countdown(sale) {
    var now = serverNow();
    var start = Date.parse(sale.startTime), end = Date.parse(sale.endTime);
    if (now < start) { return "starts in " + duration(start - now); }
    if (now < end && sale.currentStock > 0) { return "ends in " + duration(end - now); }
    if (now < end) { return "sold out; closes in " + duration(end - now); }
    return "ended " + duration(now - end) + " ago";
  }

  function saleLink(id) { return root.dataset.dashboardUrl + "?sale=" + id; }

  // --- the timeline ----------------------------------------------------------------------

  function drawTimeline(sales) {
    timelineBox.textContent = "";
    if (!sales.length) {
      timelineBox.appendChild(el("p", "drop-empty", "No sale is live or upcoming, and none ended in the last 24 hours."));
      return;
    }
    var now = serverNow();
    var from = now, to = now;
    sales.forEach(function (sale) {
      from = Math.min(from, Date.parse(sale.startTime));
      to = Math.max(to, Date.parse(sale.endTime));
    });
    var span = Math.max(to - from, 1);
    function at(ms) { return (100 * (ms - from) / span).toFixed(3) + "%"; }

    var axis = el("div", "drop-axis");
    axis.appendChild(el("span", "drop-axis-from", utcTime(new Date(from).toISOString())));
    axis.appendChild(el("span", "drop-axis-to", utcTime(new Date(to).toISOString())));
    timelineBox.appendChild(axis);

    sales.forEach(function (sale) {
      var row = el("div", "drop-row");
      row.dataset.saleId = sale.id;
      row.dataset.status = sale.status;
      var label = el("div", "drop-row-label");
      var link = el("a", "drop-row-name", sale.name);
      link.href = saleLink(sale.id);
      label.appendChild(link);
      label.appendChild(el("span", "drop-badge drop-badge-" + sale.status, statusOf(sale)));
      row.appendChild(label);

      var track = el("div", "drop-track");
      var bar = el("div", "drop-bar drop-bar-" + sale.status);
      var start = Date.parse(sale.startTime), end = Date.parse(sale.endTime);
      bar.style.left = at(start);
      bar.style.width = "max(3px, calc(" + at(end) + " - " + at(start) + "))";
      bar.title = utcTime(sale.startTime) + " to " + utcTime(sale.endTime);
      track.appendChild(bar);
      var marker = el("div", "drop-now");
      marker.style.left = at(now);
      track.appendChild(marker);
      row.appendChild(track);

      var clock = el("div", "drop-countdown", countdown(sale));
      clock.dataset.start = sale.startTime;
      row.appendChild(clock);
      row.appendChild(el("div", "drop-row-stock", sale.currentStock + " / " + sale.originalStock + " left"));
      timelineBox.appendChild(row);
    });
  }

  function tickCountdowns() {
    if (!latest) { return; }
    var byId = {};
    latest.timeline.forEach(function (sale) { byId[sale.id] = sale; });
    Array.prototype.forEach.call(timelineBox.querySelectorAll(".drop-row"), function (row) {
      var sale = byId[row.dataset.saleId];
      if (sale) { row.querySelector(".drop-countdown").textContent = countdown(sale); }
    });
    Object.keys(panels).forEach(function (id) {
      var panel = panels[id];
      panel.fields.countdown.textContent = countdown(panel.sale);
    });
  }

  // --- a sale's panel --------------------------------------------------------------------

  var FIGURES = [
    ["sold", "Units sold"],
    ["peak", "Peak rate"],
    ["recent", "Recent rate"],
    ["sellOut", "Sell-out estimate"],
    ["conversion", "Conversion"],
    ["timeToSellOut", "Time to sell out"]
  ];

  var MINUTE_STEPS = [60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400];
  var UNIT_STEPS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 1000000];

  function minuteLabels(u, splits) {
    var previousDay = null;
    return splits.map(function (ts) {
      var iso = new Date(ts * 1000).toISOString();
      var day = iso.slice(0, 10), time = iso.slice(11, 16);
      var label = day !== previousDay ? time + "\n" + day : time;
      previousDay = day;
      return label;
    });
  }

  function makePanel(sale) {
    var box = el("section", "module drop-panel");
    box.dataset.saleId = sale.id;
    var heading = el("h2", "drop-panel-title");
    var name = el("span", "drop-panel-name");
    var change = el("a", "drop-panel-admin", "edit sale");
    change.href = root.dataset.changeUrl.replace("/0/", "/" + sale.id + "/");
    heading.appendChild(name);
    heading.appendChild(change);
    box.appendChild(heading);

    var fields = { name: name };
    var head = el("p", "drop-panel-head");
    fields.status = el("span", "drop-badge");
    fields.countdown = el("span", "drop-panel-countdown");
    fields.window = el("span", "drop-panel-window");
    head.appendChild(fields.status);
    head.appendChild(fields.countdown);
    head.appendChild(fields.window);
    box.appendChild(head);

    var body = el("div", "drop-panel-body");
    var figures = el("dl", "drop-figures");
    FIGURES.forEach(function (pair) {
      var item = el("div", "drop-figure drop-figure-" + pair[0]);
      item.appendChild(el("dt", null, pair[1]));
      fields[pair[0]] = el("dd");
      item.appendChild(fields[pair[0]]);
      figures.appendChild(item);
    });
    body.appendChild(figures);

    var chartBox = el("div", "drop-chart");
    chartBox.appendChild(el("h3", null, "Units sold per minute"));
    var canvas = el("div", "drop-chart-canvas");
    chartBox.appendChild(canvas);
    body.appendChild(chartBox);

    var refusals = el("div", "drop-refusals");
    refusals.appendChild(el("h3", null, "Refusals by code"));
    fields.refusals = el("table", "drop-refusals-table");
    refusals.appendChild(fields.refusals);
    body.appendChild(refusals);
    box.appendChild(body);
    panelsBox.appendChild(box);

    var chart = new window.uPlot({
      width: Math.max(300, canvas.clientWidth || 600),
      height: 220,
      // The x axis in UTC, as every other time on the page.
      tzDate: function (ts) { return window.uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); },
      legend: { show: true },
      scales: {
        // To the end of the last minute, so its bar (it starts at the minute) is inside the plot.
        x: { time: true, range: function (u, min, max) { return [min, max + 60]; } },
        y: { range: function (u, min, max) { return [0, Math.max(1, max)]; } }
      },
      axes: [
        // Whole minutes only (a bar is a minute), as HH:MM in UTC, the date under the first and at midnight.
        { incrs: MINUTE_STEPS, values: minuteLabels },
        { label: "units / minute", size: 50, incrs: UNIT_STEPS }
      ],
      series: [
        { label: "minute (UTC)", value: function (u, ts) { return ts === null ? "–" : utcTime(new Date(ts * 1000).toISOString()).slice(0, 16); } },
        {
          label: "units",
          stroke: "#264b5d",
          fill: "rgba(65, 118, 144, 0.75)",
          // The bar of a minute starts at that minute, as the JSON's minuteStarts do.
          paths: window.uPlot.paths.bars({ size: [0.9, 100], align: 1 }),
          points: { show: false }
        }
      ]
    }, [[], []], canvas);
    charts[sale.id] = chart;
    panels[sale.id] = { box: box, chart: chart, canvas: canvas, fields: fields, sale: sale };
    return panels[sale.id];
  }

  function percent(share) { return share === null ? "–" : (100 * share).toFixed(1) + "%"; }

  function fillPanel(panel, sale) {
    var f = panel.fields;
    panel.sale = sale;
    panel.box.dataset.status = sale.status;
    f.name.textContent = sale.name;
    f.status.className = "drop-badge drop-badge-" + sale.status;
    f.status.textContent = statusOf(sale);
    f.countdown.textContent = countdown(sale);
    f.window.textContent = utcTime(sale.startTime) + " to " + utcTime(sale.endTime);
    f.sold.textContent = sale.unitsSold + " of " + sale.originalStock + " (" + sale.currentStock + " left)";
    f.peak.textContent = sale.peakPerMinute + " / min";
    f.recent.textContent = sale.status === "active" ? sale.recentPerMinute + " / min (last 5 min)" : "–";
    if (sale.sellOutEstimate) {
      f.sellOut.textContent = utcTime(sale.sellOutEstimate) + " (in " + duration(Date.parse(sale.sellOutEstimate) - serverNow()) + ")";
    } else if (sale.status === "active") {
      f.sellOut.textContent = sale.recentPerMinute > 0 ? "not before the end" : "no recent sales";
    } else {
      f.sellOut.textContent = "–";
    }
    f.conversion.textContent = percent(sale.conversion) + " (" + sale.buyers + " of " + sale.buyersTried + " buyers)";
    f.timeToSellOut.textContent = sale.timeToSellOutSeconds === null ? (sale.currentStock === 0 ? "–" : "not sold out")
      : duration(sale.timeToSellOutSeconds * 1000) + " (at " + utcTime(sale.soldOutAt) + ")";

    var table = f.refusals;
    table.textContent = "";
    var codes = Object.keys(sale.refusals);
    if (!codes.length) {
      var none = el("tr");
      none.appendChild(el("td", "drop-empty", "none yet"));
      table.appendChild(none);
    }
    codes.forEach(function (code) {
      var row = el("tr");
      row.dataset.code = code;
      row.appendChild(el("th", null, code));
      row.appendChild(el("td", "drop-number", String(sale.refusals[code])));
      table.appendChild(row);
    });
    panel.chart.setData([sale.perMinute.minuteStarts, sale.perMinute.units]);
  }

  function drawPanels(sales) {
    var shown = {};
    sales.forEach(function (sale) {
      shown[sale.id] = true;
      fillPanel(panels[sale.id] || makePanel(sale), sale);
    });
    Object.keys(panels).forEach(function (id) {
      if (!shown[id]) {
        panels[id].chart.destroy();
        panels[id].box.remove();
        delete panels[id];
        delete charts[id];
      }
    });
    var empty = panelsBox.querySelector(".drop-no-live");
    if (!sales.length && !empty) {
      panelsBox.appendChild(el("p", "module drop-empty drop-no-live", "No sale is live now. Pick a sale in the timeline to see its figures."));
    } else if (sales.length && empty) {
      empty.remove();
    }
  }

  function draw(payload) {
    clockOffset = Date.parse(payload.now) - Date.now();
    latest = payload;
    drawTimeline(payload.timeline);
    drawPanels(payload.sales);
  }

  // --- polling ---------------------------------------------------------------------------

  function setState(state, text) {
    stateNote.dataset.state = state;
    stateNote.textContent = text;
  }

  function poll() {
    fetch(root.dataset.dataUrl, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        var type = response.headers.get("Content-Type") || "";
        if (!response.ok || type.indexOf("application/json") !== 0) {
          // admin_view sends a signed-out or non-staff session to the login page.
          throw new Error(response.redirected ? "signed out: reload the page" : "HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (payload) {
        draw(payload);
        setState("live", "updated " + utcTime(payload.now));
      })
      .catch(function (error) { setState("stale", "not updating (" + error.message + ")"); })
      .then(function () { window.setTimeout(poll, parseInt(root.dataset.pollMs, 10)); });
  }

  function resize() {
    Object.keys(panels).forEach(function (id) {
      var panel = panels[id];
      panel.chart.setSize({ width: Math.max(300, panel.canvas.clientWidth), height: 220 });
    });
  }

  function start() {
    root = document.getElementById("drop-dashboard");
    if (!root || !window.uPlot) { return; }
    panelsBox = document.getElementById("drop-panels");
    timelineBox = document.getElementById("drop-timeline");
    stateNote = document.getElementById("drop-state");
    draw(JSON.parse(document.getElementById("drop-dashboard-payload").textContent));
    window.setInterval(tickCountdowns, 1000);
    window.addEventListener("resize", resize);
    window.setTimeout(poll, parseInt(root.dataset.pollMs, 10));
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
})();
