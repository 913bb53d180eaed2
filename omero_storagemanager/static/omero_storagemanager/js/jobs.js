/* Jobs: the queue and the history (GET jobs/), progress bars refreshed while jobs
   run, cancel and retry, and the log viewer (GET jobs/<id>/log/). */
(function () {
    "use strict";
    var el = SM.el;
    var historyPage = 1, logJob = null, logFile = "job.log", timer = null;

    function targets(job) {
        return job.collections.length ? job.collections.join(", ") : (job.location || "all");
    }

    function buttons(job) {
        var out = [];
        if (job.may_cancel) {
            out.push(el("button", {className: "sm-btn", type: "button", dataset: {do: "cancel"},
                                   onclick: function () { act(job, "cancel"); }}, "Cancel"));
        }
        if (job.may_retry) {
            out.push(el("button", {className: "sm-btn", type: "button", dataset: {do: "retry"},
                                   onclick: function () { act(job, "retry"); }}, "Retry"));
        }
        if (job.may_read_log) {
            out.push(el("button", {className: "sm-btn", type: "button", dataset: {do: "log"},
                                   onclick: function () { openLog(job.id); }}, "Log"));
        }
        return out;
    }

    function row(job, history) {
        var state = SM.badge(job.state, job.wait_reason || job.error || null);
        return el("tr", {dataset: {job: job.id, state: job.state}}, [
            el("td", {className: "sm-num"}, String(job.id)),
            el("td", {}, SM.label(job.kind)),
            el("td", {className: "sm-name"}, targets(job)),
            el("td", {}, job.requested_by.name || "system"),
            el("td", {}, [state, job.wait_reason ? el("small", {}, " " + job.wait_reason) : null,
                          job.wait_since ? el("small", {className: "sm-wait-since"}, " (since " + SM.datetime(job.wait_since) + ")") : null,
                          job.error ? el("small", {className: "sm-bad", title: job.error}, " " + job.error.slice(0, 80)) : null]),
            el("td", {}, SM.progress(job)),
            el("td", {className: "sm-num"}, SM.number(job.files_done) + (job.files_total ? " / " + SM.number(job.files_total) : "")),
            el("td", {className: "sm-num"}, SM.bytes(job.bytes_done) + (job.bytes_total ? " / " + SM.bytes(job.bytes_total) : "")),
            el("td", {}, SM.datetime(history ? job.started : job.created)),
            el("td", {}, SM.datetime(history ? job.finished : job.started)),
            el("td", {className: "sm-num"}, SM.duration(job.seconds)),
            el("td", {}, buttons(job))
        ]);
    }

    function fill(tbody, items, history, empty) {
        SM.clear(tbody);
        if (!items.length) { tbody.appendChild(el("tr", {}, el("td", {colSpan: 12, className: "sm-empty"}, empty))); }
        items.forEach(function (job) { tbody.appendChild(row(job, history)); });
    }

    function load() {
        clearTimeout(timer);
        return Promise.all([
            SM.api("jobs/", {params: {state: "active", per_page: 200}}),
            SM.api("jobs/", {params: {state: "history", page: historyPage, per_page: 25}})
        ]).then(function (answers) {
            var active = answers[0], history = answers[1];
            fill(document.querySelector("#sm-active tbody"), active.items, false, "No job queued or running.");
            fill(document.querySelector("#sm-history tbody"), history.items, true, "No job finished yet.");
            document.getElementById("sm-active-count").textContent = "(" + active.total + ")";
            document.getElementById("sm-history-count").textContent = "(" + history.total + ")";
            document.getElementById("sm-page-info").textContent = "Page " + history.page + " of " + history.pages;
            document.getElementById("sm-prev").disabled = history.page <= 1;
            document.getElementById("sm-next").disabled = history.page >= history.pages;
            if (logJob) { loadLog(); }
            timer = setTimeout(load, active.total ? 2000 : 10000);
        }).catch(function (error) { SM.message(error.message, "error"); timer = setTimeout(load, 10000); });
    }

    function act(job, what) {
        SM.api("jobs/" + job.id + "/" + what + "/", {method: "POST"}).then(function () {
            SM.message("Job " + job.id + (what === "cancel" ? ": cancel asked" : ": queued again"), "ok");
            load();
        }).catch(function (error) { SM.message(error.message, "error"); });
    }

    function openLog(id) {
        logJob = id;
        document.getElementById("sm-log").hidden = false;
        document.getElementById("sm-log-job").textContent = String(id);
        loadLog();
        document.getElementById("sm-log").scrollIntoView();
    }

    function loadLog() {
        var id = logJob;
        SM.api("jobs/" + id + "/log/", {params: {file: logFile}}).then(function (log) {
            if (id !== logJob) { return; }
            var pre = document.getElementById("sm-log-text");
            var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
            pre.textContent = log.text || "(empty)";
            if (atEnd) { pre.scrollTop = pre.scrollHeight; }
            document.getElementById("sm-log-note").textContent = log.truncated ?
                "Showing the last 256 KiB of " + SM.bytes(log.size) + "." : "";
        }).catch(function (error) { document.getElementById("sm-log-text").textContent = error.message; });
    }

    document.querySelectorAll("#sm-log-tabs button").forEach(function (button) {
        button.addEventListener("click", function () {
            logFile = button.dataset.file;
            document.querySelectorAll("#sm-log-tabs button").forEach(function (b) { b.classList.toggle("sm-current", b === button); });
            loadLog();
        });
    });
    document.getElementById("sm-log-close").addEventListener("click", function () {
        logJob = null;
        document.getElementById("sm-log").hidden = true;
    });
    document.getElementById("sm-prev").addEventListener("click", function () { historyPage -= 1; load(); });
    document.getElementById("sm-next").addEventListener("click", function () { historyPage += 1; load(); });
    var wanted = new URLSearchParams(window.location.search).get("log");
    if (wanted) { openLog(Number(wanted)); }
    load();
})();
