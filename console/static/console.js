// Progressive enhancement only: every page works without this file.
// The audience builder counts as you type: after a pause, the form's own GET is sent to
// the preview endpoint and the returned fragment replaces the result.
(function () {
  "use strict";
  var form = document.getElementById("audience-form");
  if (!form || !window.fetch) { return; }
  var input = document.getElementById("expr");
  var asOf = document.getElementById("as_of");
  var target = document.getElementById("audience-result");
  var url = form.getAttribute("data-preview");
  var timer = null;
  var sent = 0;
  function refresh() {
    var mine = ++sent;
    var params = new URLSearchParams({ expr: input.value, as_of: asOf ? asOf.value : "" });
    target.setAttribute("aria-busy", "true");
    fetch(url + "?" + params.toString(), { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        if (mine !== sent) { return; }  // a newer request is on its way
        target.innerHTML = html;
        target.removeAttribute("aria-busy");
      })
      .catch(function () { target.removeAttribute("aria-busy"); });
  }
  function later() {
    if (timer) { clearTimeout(timer); }
    timer = setTimeout(refresh, 300);
  }
  input.addEventListener("input", later);
  if (asOf) { asOf.addEventListener("change", refresh); }
  form.setAttribute("data-live", "on");
})();
