// Progressive enhancement for the donation form: presets follow the chosen
// currency and frequency; the button label and the fee note show exactly the
// amount, currency and frequency that will be charged, or no amount at all
// when the text is not one the server would accept. Typed amounts are read by
// the server's rule (app/money.py parse_amount) with the page's number symbols
// from data attributes. No inline script; the form works the same without it.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var form = document.getElementById("donate-form");
  if (!form) return;
  var presets = JSON.parse(form.dataset.presets);
  var feeCover = JSON.parse(form.dataset.feeCover);
  var places = JSON.parse(form.dataset.places);
  var labels = JSON.parse(form.dataset.labels);
  var limits = JSON.parse(form.dataset.limits);
  var locale = form.dataset.locale || "en";
  var presetBox = document.getElementById("presets");
  var amountInput = document.getElementById("amount");
  var currencySelect = document.getElementById("currency");
  var coverBox = document.getElementById("cover_fees");
  var feeNote = document.getElementById("fee-note");
  var feeTotal = document.getElementById("fee-total");
  var button = document.getElementById("give");
  var SYMBOLS = ["$", "\u20ac", "\u00a3", "\u00a5", "\u20bd"];

  function escapeRe(text) { return text.replace(/[.*+?^${}()|[\]\\\-]/g, "\\$&"); }
  // Digits ungrouped, or grouped in threes (first group 1-3 digits, no
  // leading zero); then the decimal sign and digits. As NumberSymbols.pattern.
  function numberRule(decimal, groups) {
    var group = "[" + escapeRe(groups) + "]";
    return {
      chars: "0123456789" + decimal + groups,
      pattern: new RegExp("^(\\d{1,12}|[1-9]\\d{0,2}(?:" + group + "\\d{3}){1,3})(?:" +
        escapeRe(decimal) + "(\\d{1,12}))?$")
    };
  }
  var typedRule = numberRule(form.dataset.decimal || ".", form.dataset.groups || ",");
  var plainRule = numberRule(".", ",");  // preset values: "25.00"

  function currency() { return currencySelect.value; }
  function frequency() {
    var checked = form.querySelector("input[name=frequency]:checked");
    return checked ? checked.value : "once";
  }
  function removePrefix(text, prefix) { return text.indexOf(prefix) === 0 ? text.slice(prefix.length) : text; }
  function removeSuffix(text, suffix) {
    return suffix && text.slice(-suffix.length) === suffix ? text.slice(0, -suffix.length) : text;
  }
  // Minor units (integers, never floats) of an amount the server would
  // charge, or null: parse_amount's rule, then the limits and charge step.
  function toMinor(text, code, rule) {
    var cleaned = (text || "").trim();
    SYMBOLS.forEach(function (symbol) {
      cleaned = removeSuffix(removePrefix(cleaned, symbol), symbol).trim();
    });
    if (!cleaned) return null;
    for (var i = 0; i < cleaned.length; i++) {
      if (rule.chars.indexOf(cleaned.charAt(i)) < 0) return null;
    }
    var match = rule.pattern.exec(cleaned);
    if (!match) return null;
    var whole = match[1].replace(/\D/g, "");
    var fraction = match[2] || "";
    var digits = places[code];
    if (fraction.length > digits) return null;
    while (fraction.length < digits) fraction += "0";
    var minor = parseInt(whole + fraction, 10);
    var limit = limits[code];
    if (!(minor > 0) || minor < limit.min || minor > limit.max || minor % limit.step) return null;
    return minor;
  }
  function format(minor, code) {
    var digits = places[code];
    var whole = minor % Math.pow(10, digits) === 0;
    var major = minor / Math.pow(10, digits);  // display only
    return new Intl.NumberFormat(locale, {
      style: "currency", currency: code.toUpperCase(),
      minimumFractionDigits: whole ? 0 : digits, maximumFractionDigits: digits
    }).format(major);
  }
  function chosenMinor() {
    var typed = amountInput.value.trim();
    if (typed) return toMinor(typed, currency(), typedRule);
    var preset = form.querySelector("input[name=preset]:checked");
    return preset ? toMinor(preset.value, currency(), plainRule) : null;
  }
  function feeFor(minor, code) {
    var cfg = feeCover[code];
    var total = Math.ceil((minor + cfg.fixed) * 10000 / (10000 - cfg.rate_bp));
    return total - minor;
  }
  function renderPresets() {
    var current = form.querySelector("input[name=preset]:checked");
    var keep = current ? current.value : null;
    presetBox.textContent = "";
    presets[currency()][frequency()].forEach(function (p) {
      var label = document.createElement("label");
      var input = document.createElement("input");
      input.type = "radio"; input.name = "preset"; input.value = p.value;
      if (p.value === keep) input.checked = true;
      label.appendChild(input);
      label.appendChild(document.createTextNode(" " + p.label));
      presetBox.appendChild(label);
    });
    var amountLabel = form.querySelector("label[for=amount]");
    amountLabel.textContent = amountLabel.textContent.replace(/\([A-Z]{3}\)/, "(" + currency().toUpperCase() + ")");
  }
  function update() {
    var code = currency();
    var minor = chosenMinor();
    if (feeNote) feeNote.textContent = feeCover[code].note;
    if (minor === null) {
      feeTotal.textContent = "";
      button.textContent = labels["neutral_" + frequency()];
      return;
    }
    var total = coverBox.checked ? minor + feeFor(minor, code) : minor;
    feeTotal.textContent = coverBox.checked ? labels.total.replace("{total}", format(total, code)) : "";
    button.textContent = labels[frequency()].replace("{amount}", format(total, code));
  }
  form.addEventListener("change", function (event) {
    if (event.target === currencySelect || event.target.name === "frequency") renderPresets();
    if (event.target.name === "preset") amountInput.value = "";
    update();
  });
  amountInput.addEventListener("input", update);
  update();
})();
