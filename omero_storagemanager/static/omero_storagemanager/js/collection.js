/* The collection page: figures with their age (GET collections/<key>/), actions with
   the reason a button is off, copies, requests with their fate, jobs, the history of
   its states (GET collections/<key>/history/) and its files a page at a time
   (GET collections/<key>/files/). Refreshes while a job runs on it. */
(function () {
    "use strict";
    var el = SM.el;
    var root = document.getElementById("sm-collection-page");
    var key = root.dataset.key;
    var base = "collections/" + encodeURIComponent(key) + "/";
    var ACTIONS = [["scan", "Scan", ""], ["archive", "Archive", "sm-btn-primary"],
                   ["request_archive", "Request archive", ""], ["purge", "Purge", "sm-btn-danger"],
                   ["restore", "Restore", "sm-btn-primary"], ["request_restore", "Request restore", "sm-btn-primary"]];
    var ACTIVE = ["queued", "running", "waiting"];
    var filesPage = 1, timer = null;

    /* "3 days ago": how old a figure is, next to it. */
    function age(iso) {
        if (!iso) { return "never"; }
        var seconds = (Date.now() - new Date(iso).getTime()) / 1000;
        var steps = [[86400 * 365, "year"], [86400 * 30, "month"], [86400, "day"], [3600, "hour"], [60, "minute"]];
        for (var i = 0; i < steps.length; i++) {
            var n = Math.floor(seconds / steps[i][0]);
            if (n >= 1) { return n + " " + steps[i][1] + (n > 1 ? "s" : "") + " ago"; }
        }
        return "just now";
    }
    SM.age = age;

    function fact(dt, dd, when) {
        return [el("dt", {}, dt), el("dd", {}, [dd, when !== undefined ? el("span", {className: "sm-age"}, "(" + when + ")") : null])];
    }
    function table(head, rows, cls) {
        return el("div", {className: "sm-table-wrap"}, el("table", {className: "sm-table " + (cls || "")}, [
            el("thead", {}, el("tr", {}, head.map(function (h) { return el("th", {}, h); }))),
            el("tbody", {}, rows)]));
    }

    function renderDetail(c, measured) {
        SM.clear(document.getElementById("sm-collection-state")).appendChild(SM.badge(c.state));
        var help = SM.clear(document.getElementById("sm-collection-help"));
        if (c.restore_help) { help.appendChild(el("div", {className: "sm-message sm-message-error"}, c.restore_help)); }
        var scanned = c.last_scan ? "measured " + age(c.last_scan) + (measured.mode ? " by a " + measured.mode + " scan" : "") : "never scanned";
        SM.clear(document.getElementById("sm-figures-body")).className = "";
        document.getElementById("sm-figures-body").appendChild(el("dl", {className: "sm-facts"}, [
            fact("Owner", c.owner.name + " (" + c.group.name + ")"),
            fact("Size", [SM.bytes(c.bytes), " in " + SM.number(c.files) + " files, " + SM.number(c.images) + " images"], scanned),
            fact("Shared with others", SM.bytes(c.shared_bytes), scanned),
            fact("Archived", c.archived_bytes ? SM.bytes(c.archived_bytes) : "nothing yet"),
            fact("Newest file", SM.datetime(c.newest_file), c.newest_file ? age(c.newest_file) : undefined),
            fact("Last access", c.last_access_measured ? SM.datetime(c.last_access) : "not measured yet",
                 c.last_access_measured ? (c.last_access ? age(c.last_access) + ", " : "") +
                     "read from the disk " + age(c.last_access_measured)
                 : "a stat or verify scan reads it from the disk"),
            fact("Created", SM.datetime(c.created), c.created ? age(c.created) : undefined)
        ]));
        var disabled = c.disabled || {};
        var buttons = ACTIONS.filter(function (a) { return c.actions.indexOf(a[0]) >= 0; }).map(function (a) {
            return el("button", {className: "sm-btn " + a[2], type: "button", dataset: {action: a[0]},
                                 disabled: !!disabled[a[0]], title: disabled[a[0]],
                                 onclick: function () { act(a); }}, a[1]);
        });
        SM.clear(document.getElementById("sm-actions-body")).className = "sm-toolbar";
        document.getElementById("sm-actions-body").appendChild(buttons.length ? el("span", {}, buttons) :
            el("span", {className: "sm-hint"}, "No action you may take on this collection."));
        document.getElementById("sm-action-reasons").textContent = ACTIONS
            .filter(function (a) { return disabled[a[0]] && c.actions.indexOf(a[0]) >= 0; })
            .map(function (a) { return a[1] + " is off: " + disabled[a[0]]; }).join(" · ");
        var copies = SM.clear(document.getElementById("sm-copies-body"));
        copies.className = "";
        copies.appendChild(c.copies.length ? table(["Location", "Type", "Made", "State", "Files", "Size", "Last audit"],
            c.copies.map(function (copy) {
                return el("tr", {dataset: {copy: copy.id}}, [
                    el("td", {}, copy.location.name), el("td", {}, copy.location.type),
                    el("td", {}, [SM.datetime(copy.created), el("span", {className: "sm-age"}, age(copy.created))]),
                    el("td", {}, SM.badge(copy.verified ? "verified" : copy.state)),
                    el("td", {className: "sm-num"}, SM.number(copy.files)), el("td", {className: "sm-num"}, SM.bytes(copy.bytes)),
                    el("td", {}, copy.last_audit ? [SM.date(copy.last_audit), copy.last_audit_ok ? " whole" : " FAILED",
                                                   el("span", {className: "sm-age"}, age(copy.last_audit))] : "never audited")]);
            }), "sm-copies") : el("p", {className: "sm-hint"}, "No copy in the archive."));
        var requests = document.getElementById("sm-requests-body");
        requests.className = "";
        SM.renderRequests(requests, c.requests.map(function (r) {
            r.may_withdraw = r.fate === "pending" && r.requested_by.id === Number(document.body.dataset.userId);
            return r;
        }), load, false);
    }

    function renderHistory(h) {
        var jobs = SM.clear(document.getElementById("sm-jobs-body"));
        jobs.className = "";
        jobs.appendChild(h.jobs.length ? table(["Job", "Asked by", "Queued", "Progress", "Took"], h.jobs.map(function (j) {
            return el("tr", {dataset: {job: j.id}}, [el("td", {}, j.kind + " #" + j.id), el("td", {}, j.requested_by.name || "–"),
                el("td", {}, SM.datetime(j.created)), el("td", {}, [SM.progress(j), j.wait_reason ? el("div", {className: "sm-hint"}, j.wait_reason) : null,
                                                                  j.error ? el("div", {className: "sm-bad"}, j.error) : null]),
                el("td", {}, SM.duration(j.seconds))]);
        })) : el("p", {className: "sm-hint"}, "No job yet."));
        var history = SM.clear(document.getElementById("sm-history-body"));
        history.className = "";
        history.appendChild(h.events.length ? table(["When", "What", "State after"], h.events.map(function (e) {
            return el("tr", {}, [el("td", {}, SM.datetime(e.at)), el("td", {}, e.what), el("td", {}, e.state ? SM.badge(e.state) : "")]);
        }), "sm-history") : el("p", {className: "sm-hint"}, "Nothing recorded yet."));
        return h.jobs.some(function (j) { return ACTIVE.indexOf(j.state) >= 0; });
    }

    function loadFiles() {
        var box = document.getElementById("sm-files-body");
        SM.api(base + "files/", {params: {page: filesPage, per_page: 50}}).then(function (f) {
            SM.clear(box).className = "";
            document.getElementById("sm-files-info").textContent = "Page " + f.page + " of " + f.pages + " · " +
                SM.number(f.total) + " files, " + SM.bytes(f.bytes) + " as OMERO records them";
            document.getElementById("sm-files-prev").disabled = f.page <= 1;
            document.getElementById("sm-files-next").disabled = f.page >= f.pages;
            box.appendChild(table(["Path", "Kind", "Size", "Shared with"], f.items.map(function (x) {
                return el("tr", {}, [el("td", {className: "sm-path"}, x.path), el("td", {}, SM.label(x.kind)),
                                     el("td", {className: "sm-num"}, SM.bytes(x.size)), el("td", {}, x.shared_with.join(", "))]);
            }), "sm-files"));
        }).catch(function (error) { SM.clear(box).appendChild(el("p", {className: "sm-bad"}, error.message)); });
    }

    function load() {
        return Promise.all([SM.api(base), SM.api(base + "history/")]).then(function (answers) {
            renderDetail(answers[0], {mode: answers[1].figures_mode});
            var busy = renderHistory(answers[1]) || answers[0].state === "running" || answers[0].state === "waiting";
            clearTimeout(timer);
            if (busy) { timer = setTimeout(load, 2000); }
        }).catch(function (error) { SM.message(error.message, "error"); });
    }

    function act(action) {
        var go = function () {
            SM.api("actions/", {method: "POST", body: {action: action[0], collections: [key]}}).then(function (answer) {
                SM.message(answer.job ? "Job " + answer.job.id + " (" + SM.label(answer.job.kind) + ") queued; its progress shows below."
                           : "Request sent: its fate shows below under Requests" + (answer.emails ? ", and you get an e-mail when it is decided." : "."), "ok");
                load();
            }).catch(function (error) { SM.message(error.message, "error"); });
        };
        if (action[0] !== "purge") { go(); return; }
        var bar = SM.clear(document.getElementById("sm-messages"));
        bar.appendChild(el("div", {className: "sm-confirm", id: "sm-confirm-bar"}, [
            el("span", {}, "Purge " + key + "? Its files leave OMERO's storage; the verified copies stay."),
            el("button", {className: "sm-btn sm-btn-danger", type: "button", id: "sm-confirm-yes",
                          onclick: function () { SM.clear(bar); go(); }}, "Purge"),
            el("button", {className: "sm-btn", type: "button", onclick: function () { SM.clear(bar); }}, "Cancel")]));
    }

    document.getElementById("sm-files-prev").addEventListener("click", function () { filesPage -= 1; loadFiles(); });
    document.getElementById("sm-files-next").addEventListener("click", function () { filesPage += 1; loadFiles(); });
    load();
    loadFiles();
})();
