// The nudge line on the donation form: shown only while "once" is chosen and
// an amount is known, with the monthly equivalent of that amount (the
// server's rule: app/appeals/nudge.py). Its button works without this script.
(function () {
  "use strict";
  var box = document.getElementById("nudge");
  var form = document.getElementById("donate-form");
  if (!box || !form) return;
  var text = JSON.parse(box.getAttribute("data-text"));
  var divisor = parseInt(box.getAttribute("data-divisor"), 10) || 3;
  var places = JSON.parse(form.dataset.places);
  var limits = JSON.parse(form.dataset.limits);
  var presets = JSON.parse(form.dataset.presets);
  var decimal = form.dataset.decimal || ".";
  var locale = form.dataset.locale || "en";
  var line = document.getElementById("nudge-line");
  var button = document.getElementById("nudge-switch");
  function currency() { return document.getElementById("currency").value; }
  function checked(name) {
    var input = form.querySelector("input[name=" + name + "]:checked");
    return input ? input.value : "";
  }
  function minorOf(textValue, sign) {
    var cleaned = (textValue || "").replace(/[^0-9.,]/g, "");
    var parts = cleaned.split(sign);
    if (!cleaned || parts.length > 2) return null;
    var whole = parts[0].replace(/[^0-9]/g, "");
    var fraction = (parts[1] || "").replace(/[^0-9]/g, "");
    var digits = places[currency()];
    if (fraction.length > digits) return null;
    while (fraction.length < digits) fraction += "0";
    var minor = parseInt(whole + fraction, 10);
    return minor > 0 ? minor : null;
  }
  function format(minor) {
    var digits = places[currency()];
    var whole = minor % Math.pow(10, digits) === 0;
    return new Intl.NumberFormat(locale, {
      style: "currency", currency: currency().toUpperCase(),
      minimumFractionDigits: whole ? 0 : digits, maximumFractionDigits: digits
    }).format(minor / Math.pow(10, digits));
  }
  function monthly(once) {
    var share = Math.floor((2 * once + divisor) / (2 * divisor));
    var rounded = Math.floor((2 * share + 100) / 200) * 100 || share;
    var monthPresets = ((presets[currency()] || {}).month || []).map(function (p) { return minorOf(p.value, "."); });
    if (monthPresets.indexOf(rounded) >= 0) return rounded;
    var limit = limits[currency()];
    return rounded >= limit.min && rounded <= limit.max ? rounded : null;
  }
  function update() {
    var typed = document.getElementById("amount").value.trim();
    var once = typed ? minorOf(typed, decimal) : minorOf(checked("preset"), ".");
    var month = once ? monthly(once) : null;
    box.hidden = !(checked("frequency") === "once" && month);
    if (box.hidden) return;
    line.textContent = text.line.replace("{once}", format(once)).replace("{monthly}", format(month));
    button.textContent = text.button.replace("{monthly}", format(month));
  }
  form.addEventListener("change", update);
  form.addEventListener("input", update);
  update();
})();
