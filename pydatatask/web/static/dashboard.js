// Live counts: the server pushes every task's counts by state whenever they change,
// and every element carrying data-task and data-state shows its count. The page
// includes this script at the end of its body.
(function () {
  "use strict";
  var live = document.getElementById("live");

  function show(text, state) {
    if (live) {
      live.textContent = text;
      live.className = "live " + state;
    }
  }

  function update(status) {
    var cells = document.querySelectorAll("[data-task][data-state]");
    for (var i = 0; i < cells.length; i += 1) {
      var counts = status[cells[i].getAttribute("data-task")];
      var state = cells[i].getAttribute("data-state");
      if (counts) {
        var known = Object.prototype.hasOwnProperty.call(counts, state);
        cells[i].textContent = known ? String(counts[state]) : "\u2013";
      }
    }
    document.body.setAttribute("data-updated", new Date().toISOString());
  }

  if (!window.EventSource) {
    show("reload for new counts", "off");
    return;
  }
  var source = new EventSource("/events");
  source.onopen = function () {
    show("live", "on");
  };
  source.onmessage = function (event) {
    update(JSON.parse(event.data));
    show("live", "on");
  };
  source.onerror = function () {
    show("reconnecting", "off");
  };
})();
