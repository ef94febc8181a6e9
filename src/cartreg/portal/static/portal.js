// cartreg portal: follow a background job (an upload being processed, a merge) without reloading.
// Served from /static under a CSP that forbids inline script; no framework, no build step.
(function () {
  "use strict";
  var box = document.getElementById("progress");
  if (!box) { return; }
  var url = box.getAttribute("data-progress-url");
  var stages = { queued: 0, ingesting: 1, validating: 2, storing: 3, merging: 1, analysing: 2, done: 4, failed: 4 };
  var stage = document.getElementById("stage");
  var steps = document.getElementById("steps");
  var bar = document.getElementById("bar");
  var outcome = document.getElementById("outcome");
  var polls = 0;

  function render(state) {
    stage.textContent = state.stage;
    if (bar && stages.hasOwnProperty(state.stage)) { bar.value = stages[state.stage]; }
    steps.replaceChildren.apply(steps, (state.steps || []).map(function (text) {
      var item = document.createElement("li");
      item.textContent = text;
      return item;
    }));
    if (!state.finished) { return false; }
    if (box.getAttribute("data-reload")) { window.location.reload(); return true; }
    outcome.textContent = state.message || "";
    outcome.className = state.failed ? "error" : "";
    if (state.submission_id) {
      var link = document.getElementById("result-link");
      link.href = "/submissions/" + state.submission_id;
      document.getElementById("result").hidden = false;
    }
    return true;
  }

  function poll() {
    polls += 1;
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) { throw new Error("status " + response.status); }
        return response.json();
      })
      .then(function (state) {
        if (!render(state) && polls < 3600) { window.setTimeout(poll, 1000); }
      })
      .catch(function () {
        if (polls < 3600) { window.setTimeout(poll, 3000); }
      });
  }
  poll();
})();
