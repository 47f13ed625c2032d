// The newsroom's one line: <script src="https://DONATE/embed/appeals.js" data-appeal="support" async></script>
// Writes the appeal's iframe after this tag, passes this page's address as the
// article (a framed request's Referer carries only the origin) and its
// language, and sizes the frame to the height the appeal reports. No cookies,
// no other requests, no dependencies.
(function () {
  "use strict";
  var me = document.currentScript;
  if (!me || !me.src) return;
  var origin = new URL(me.src).origin;
  var slug = me.getAttribute("data-appeal") || "support";
  var layout = me.getAttribute("data-layout") || "";
  var article = me.getAttribute("data-article") || (location.origin + location.pathname);
  var lang = me.getAttribute("data-lang") || document.documentElement.lang || "";
  var query = "article=" + encodeURIComponent(article);
  if (lang) query += "&lang=" + encodeURIComponent(lang.split("-")[0].toLowerCase());
  if (layout) query += "&layout=" + encodeURIComponent(layout);
  var frame = document.createElement("iframe");
  frame.src = origin + "/embed/appeals/" + encodeURIComponent(slug) + "?" + query;
  frame.title = me.getAttribute("data-title") || "Support us";
  frame.setAttribute("scrolling", "no");
  frame.setAttribute("loading", "lazy");
  frame.width = "100%";
  frame.height = layout === "banner" ? "56" : "320";
  frame.style.border = "0";
  frame.style.width = "100%";
  frame.style.display = "block";
  me.parentNode.insertBefore(frame, me.nextSibling);
  window.addEventListener("message", function (event) {
    if (event.origin !== origin || event.source !== frame.contentWindow) return;
    var data = event.data;
    if (!data || data.type !== "donations:appeal-height" || typeof data.height !== "number") return;
    frame.style.height = Math.max(0, Math.min(2000, Math.ceil(data.height))) + "px";
  });
})();
