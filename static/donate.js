// Progressive enhancement for the donation form: presets follow the chosen
// currency and frequency, the exact total with the covered fee and the button
// label update as the reader types. The form works the same without it.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  var form = document.getElementById("donate-form");
  if (!form) return;
  var presets = JSON.parse(form.dataset.presets);
  var feeCover = JSON.parse(form.dataset.feeCover);
  var places = JSON.parse(form.dataset.places);
  var labels = JSON.parse(form.dataset.labels);
  var locale = form.dataset.locale || "en";
  var presetBox = document.getElementById("presets");
  var amountInput = document.getElementById("amount");
  var currencySelect = document.getElementById("currency");
  var coverBox = document.getElementById("cover_fees");
  var feeTotal = document.getElementById("fee-total");
  var button = document.getElementById("give");

  function currency() { return currencySelect.value; }
  function frequency() {
    var checked = form.querySelector("input[name=frequency]:checked");
    return checked ? checked.value : "once";
  }
  // Minor units from typed text, in integers (never floats); null if unusable.
  function toMinor(text, code) {
    var match = /^\s*(\d{1,12})(?:[.,](\d{1,12}))?\s*$/.exec(text || "");
    if (!match) return null;
    var digits = places[code];
    var fraction = (match[2] || "").replace(/0+$/, "");
    if (fraction.length > digits) return null;
    while (fraction.length < digits) fraction += "0";
    return parseInt(match[1] + fraction, 10);
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
    if (typed) return toMinor(typed, currency());
    var preset = form.querySelector("input[name=preset]:checked");
    return preset ? toMinor(preset.value, currency()) : null;
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
    var minor = chosenMinor();
    var code = currency();
    if (minor === null || minor <= 0) { feeTotal.textContent = ""; return; }
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
