// taskservice dashboard: keeps the tasks of a page up to date from the events stream.
//
// A page that follows tasks names, on <body>, the stream to open (data-events,
// GET /v1/events) and the API read that brings its tasks up to date
// (data-refresh), done when the stream is ready and after a gap. Every element
// of one task carries data-task-id; its parts carry data-field. Task data is
// written with textContent and attributes only, never as markup.
(function () {
  "use strict";

  var SUCCEEDED = ["done", "fallbackDone"];
  var TERMINAL = ["done", "failed", "fallbackDone", "cancelled"];
  var RERUN = ["failed", "cancelled"];
  var SUBTASK = "task_Task";
  var body = document.body;
  var newIds = new Set();

  // -- the figures, written as formatting.py writes them -----------------------

  function percent(task) {
    if (SUCCEEDED.indexOf(task.state) >= 0) return 100;
    var progress = task.progress || {};
    var current = progress.current || 0;
    var total = progress.total || 0;
    if (total > 0 && Number.isFinite(current)) {
      return Math.max(0, Math.min(100, Math.floor((current / total) * 100)));
    }
    return null;
  }

  function pad(n) {
    return n < 10 ? "0" + n : String(n);
  }

  function duration(ms) {
    if (ms === null || ms === undefined) return "\u2014";
    var seconds = ms / 1000;
    if (seconds < 1) return seconds.toFixed(2) + " s";
    if (seconds < 60) return seconds.toFixed(1) + " s";
    var whole = Math.floor(seconds);
    if (whole < 3600) return Math.floor(whole / 60) + " min " + pad(whole % 60) + " s";
    return Math.floor(whole / 3600) + " h " + pad(Math.floor((whole % 3600) / 60)) + " min";
  }

  function timestamp(ms) {
    if (ms === null || ms === undefined) return "\u2014";
    return new Date(ms).toISOString().slice(0, 19).replace("T", " ");
  }

  function elapsed(started, done, now) {
    if (started === null || started === undefined) return null;
    return Math.max(0, (done === null || done === undefined ? now : done) - started);
  }

  function sortedJson(value) {
    return JSON.stringify(
      value,
      function (key, item) {
        if (item && typeof item === "object" && !Array.isArray(item)) {
          var sorted = {};
          Object.keys(item).sort().forEach(function (name) {
            sorted[name] = item[name];
          });
          return sorted;
        }
        return item;
      },
      2
    );
  }

  function upperFirst(text) {
    return text.slice(0, 1).toUpperCase() + text.slice(1);
  }

  function triggerNames(task) {
    var state = upperFirst(task.state);
    var name = upperFirst(task.name);
    return [
      "task" + state,
      "task" + name + state,
      task.cause_type + "_" + task.cause + "OwnedTask" + name + state,
    ];
  }

  // -- writing one task ---------------------------------------------------------

  function each(root, name, write) {
    root.querySelectorAll('[data-field="' + name + '"]').forEach(write);
  }

  function text(root, name, value) {
    each(root, name, function (el) {
      el.textContent = value;
    });
  }

  function show(root, name, visible) {
    each(root, name, function (el) {
      el.hidden = !visible;
    });
  }

  function dataOf(value) {
    return value === null || value === undefined ? "" : String(value);
  }

  function writeAttempts(root, task) {
    var list = root.querySelector('[data-list="retries"]');
    var template = document.getElementById("attempt-template");
    var retries = task.retries || [];
    if (!list || !template || list.children.length === retries.length) return;
    list.replaceChildren();
    retries.forEach(function (retry, index) {
      var item = template.content.firstElementChild.cloneNode(true);
      text(item, "attempt-title", "Attempt " + (index + 1) + " failed");
      text(item, "attempt-started", timestamp(retry.started_at));
      text(item, "attempt-failed", timestamp(retry.failed_at));
      text(item, "attempt-error", retry.error);
      text(item, "attempt-stack", retry.stack || "(no stack)");
      list.appendChild(item);
    });
    show(root, "no-attempts", retries.length === 0);
  }

  function writeTriggers(root, task) {
    var list = root.querySelector('[data-list="triggers"]');
    if (!list) return;
    list.replaceChildren();
    triggerNames(task).forEach(function (name) {
      var item = document.createElement("li");
      var code = document.createElement("code");
      code.textContent = name;
      item.appendChild(code);
      list.appendChild(item);
    });
  }

  function write(el, task) {
    var known = Number(el.dataset.version || 0);
    if (task.version < known) return; // an older snapshot than the one shown
    el.dataset.version = String(task.version);
    el.dataset.state = task.state;
    el.dataset.started = dataOf(task.started_at);
    el.dataset.done = dataOf(task.done_at);
    each(el, "state", function (span) {
      span.textContent = task.state;
      span.dataset.state = task.state;
    });
    var p = percent(task);
    each(el, "bar", function (bar) {
      if (p === null) bar.removeAttribute("value");
      else bar.value = p;
      bar.textContent = p === null ? "" : p + " %";
    });
    text(el, "percent", p === null ? "\u2014" : p + " %");
    text(el, "action", (task.progress && task.progress.action) || "");
    text(el, "current", String((task.progress && task.progress.current) || 0));
    text(el, "total", String((task.progress && task.progress.total) || 0));
    text(el, "failures", String((task.retries || []).length));
    text(el, "interruptions", String(task.interruptions || 0));
    text(el, "started", timestamp(task.started_at));
    text(el, "ended", timestamp(task.done_at));
    text(el, "duration", duration(elapsed(task.started_at, task.done_at, Date.now())));
    show(el, "cancel", TERMINAL.indexOf(task.state) < 0);
    show(el, "rerun", RERUN.indexOf(task.state) >= 0);
    var succeeded = SUCCEEDED.indexOf(task.state) >= 0;
    show(el, "result-section", succeeded);
    text(el, "result", succeeded ? sortedJson(task.result) : "");
    show(el, "error-section", Boolean(task.error));
    text(el, "error", task.error || "");
    writeAttempts(el, task);
    writeTriggers(el, task);
  }

  // -- rows that appear while the page is open ----------------------------------

  function depthOf(row) {
    return Number(row.dataset.depth || 0);
  }

  function newRow(task, depth) {
    var template = document.getElementById("row-template");
    if (!template) return null;
    var row = template.content.firstElementChild.cloneNode(true);
    var base = body.dataset.taskBase;
    row.dataset.taskId = task.id;
    row.dataset.depth = String(depth);
    row.dataset.parent = task.cause_type === SUBTASK ? task.cause : "";
    each(row, "link", function (a) {
      a.href = base + encodeURIComponent(task.id);
    });
    each(row, "cancel", function (form) {
      form.action = base + encodeURIComponent(task.id) + "/cancel";
    });
    text(row, "name", task.name);
    text(row, "short-id", task.id.slice(-8));
    text(row, "level", depth ? "subtask, level " + depth + ": " : "");
    each(row, "created", function (time) {
      time.textContent = timestamp(task.created_at);
      time.setAttribute("dateTime", new Date(task.created_at).toISOString());
    });
    return row;
  }

  function insert(task) {
    var tbody = document.querySelector("#tasks tbody[data-rows]");
    if (!tbody || body.dataset.insert !== "yes") return false;
    if (task.root_type !== body.dataset.rootType || task.root !== body.dataset.root) return false;
    var parent = task.cause_type === SUBTASK ? rowsOf(task.cause)[0] : null;
    if (task.cause_type === SUBTASK && !parent && body.dataset.rootType !== SUBTASK) return false;
    var depth = parent ? depthOf(parent) + 1 : 0;
    var row = newRow(task, depth);
    if (!row) return false;
    if (parent) {
      var after = parent;
      var next = parent.nextElementSibling;
      while (next && depthOf(next) > depthOf(parent)) {
        after = next;
        next = next.nextElementSibling;
      }
      after.after(row);
    } else {
      tbody.appendChild(row);
    }
    show(document, "empty", false);
    write(row, task);
    return true;
  }

  function rowsOf(id) {
    return Array.prototype.filter.call(document.querySelectorAll("[data-task-id]"), function (el) {
      return el.dataset.taskId === id;
    });
  }

  function onTask(task) {
    if (!task || typeof task.id !== "string") return;
    var shown = rowsOf(task.id);
    if (shown.length) {
      shown.forEach(function (el) {
        write(el, task);
      });
    } else if (!insert(task) && body.dataset.root !== undefined) {
      newIds.add(task.id);
      var notice = document.getElementById("new-tasks");
      if (notice) {
        text(notice, "count", String(newIds.size));
        notice.hidden = false;
      }
    }
  }

  // -- the stream -------------------------------------------------------------------

  var status = document.getElementById("live-status");

  function say(message, live) {
    if (!status) return;
    status.textContent = message;
    status.dataset.live = live ? "yes" : "no";
  }

  function refresh() {
    var url = body.dataset.refresh;
    if (!url) return;
    fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        return response.ok ? response.json() : null;
      })
      .then(function (data) {
        if (!data) return;
        (Array.isArray(data.tasks) ? data.tasks : [data]).forEach(onTask);
      })
      .catch(function () {
        say("Could not read the tasks again; they may be out of date.", false);
      });
  }

  function follow(url) {
    if (!window.EventSource) {
      say("This browser cannot follow the events stream: reload to see changes.", false);
      return;
    }
    var source = new EventSource(url);
    source.addEventListener("ready", function () {
      say("Live: changes show as they happen.", true);
      refresh(); // what changed between the page's read and the stream's start
    });
    source.addEventListener("state", function (event) {
      onTask(JSON.parse(event.data).task);
    });
    source.addEventListener("task", function (event) {
      onTask(JSON.parse(event.data));
    });
    source.addEventListener("gap", function () {
      say("Some changes were missed: reading the tasks again.", true);
      refresh();
    });
    source.addEventListener("stopped", function () {
      say("The service has stopped: what is shown is final.", false);
      source.close();
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        say("Not live: the events stream is not available. Reload to try again.", false);
      } else {
        say("Reconnecting to the events stream\u2026", false);
      }
    });
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll('[data-task-id][data-state="running"]').forEach(function (el) {
      var started = el.dataset.started ? Number(el.dataset.started) : null;
      text(el, "duration", duration(elapsed(started, null, now)));
    });
  }

  if (body.dataset.events) {
    follow(body.dataset.events);
    window.setInterval(tick, 1000);
  }
})();
