// Live updates of a run page: the API's server-sent events say when the checkout changed;
// the page then fetches its own server-rendered fragment, so HTML is made in one place.
(function () {
  "use strict";
  var run = document.getElementById("run");
  if (!run || !window.EventSource) return;
  var id = run.dataset.id;
  var open = {};

  function remember() {
    open = {};
    document.querySelectorAll("#run details[open] .seq").forEach(function (s) { open[s.textContent] = true; });
  }
  function restore() {
    document.querySelectorAll("#run details .seq").forEach(function (s) {
      if (open[s.textContent]) s.closest("details").open = true;
    });
  }
  // typing: someone fills in a form of the page (a re-drive's reason): it is not replaced
  // under them; their post shows the page again anyway.
  function typing() {
    return Array.prototype.some.call(run.querySelectorAll("form input:not([type=hidden])"), function (i) {
      return i.value !== "" || i === document.activeElement;
    });
  }
  function refresh(then) {
    if (typing()) { if (then) then(); return; }
    fetch("/ui/checkouts/" + encodeURIComponent(id) + "/fragment", { headers: { Accept: "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        remember();
        var box = document.createElement("div");
        box.innerHTML = html;
        var next = box.querySelector("#run");
        if (next) { run.replaceWith(next); run = next; restore(); }
        if (then) then();
      })
      .catch(function () {});
  }
  function live(text) {
    var el = document.getElementById("live");
    if (el) el.textContent = text;
  }
  if (run.dataset.terminal === "true") return;

  var es = new EventSource("/checkouts/" + encodeURIComponent(id) + "/stream");
  es.addEventListener("checkout", function (ev) {
    var c = JSON.parse(ev.data);
    var terminal = c.status === "completed" || c.status === "failed";
    if (terminal) es.close();
    refresh(function () {
      live(terminal ? "ended" : "connected");
      // Settlement events (the sale, the failure notice) follow the terminal one.
      if (terminal) setTimeout(function () { refresh(function () { live("ended"); }); }, 1500);
    });
  });
  es.onerror = function () { live("reconnecting…"); };
})();

// The demo store's running total: the cart's subtotal as quantities change, and a word on a
// quantity above what the inventory said it has (the checkout would fail for want of stock).
(function () {
  "use strict";
  var sum = document.getElementById("cart-sum");
  if (!sum) return;
  var usd = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
  var inputs = document.querySelectorAll("form.store input[data-price]");
  function update() {
    var cents = 0, units = 0;
    inputs.forEach(function (input) {
      var n = Math.max(0, parseInt(input.value, 10) || 0);
      cents += n * Math.round(parseFloat(input.dataset.price) * 100);
      units += n;
      var label = input.closest(".product");
      var over = input.dataset.available !== undefined && n > parseInt(input.dataset.available, 10);
      label.classList.toggle("over", over);
    });
    sum.textContent = usd.format(cents / 100);
    document.getElementById("cart-units").textContent = units;
  }
  inputs.forEach(function (input) { input.addEventListener("input", update); });
  update();
})();
