// Inside the embedded appeal (our origin): picks one variant at random per
// view (the page itself is the same for everyone and cached), counts the
// impression with a beacon (no cookie, no personal data), and tells the page
// around it how tall the appeal is. No inline script; no third-party request.
(function () {
  "use strict";
  var root = document.getElementById("appeal");
  if (!root) return;
  var variants = root.querySelectorAll(".variant");
  var chosen = variants[0];
  if (variants.length > 1) {
    chosen = variants[Math.floor(Math.random() * variants.length)];
    for (var i = 0; i < variants.length; i++) variants[i].hidden = variants[i] !== chosen;
  }
  var url = root.getAttribute("data-beacon") + "?v=" + encodeURIComponent(chosen.getAttribute("data-variant"));
  if (navigator.sendBeacon) navigator.sendBeacon(url);
  else { var img = new Image(); img.src = url; }
  function tell() {
    if (window.parent === window) return;
    window.parent.postMessage({type: "donations:appeal-height", height: document.documentElement.scrollHeight}, "*");
  }
  tell();
  window.addEventListener("resize", tell);
  document.addEventListener("change", tell);
})();
