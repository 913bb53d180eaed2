/* Collections: the list from GET collections/ (sorted, filtered and paged by the
   server), multi-select across pages, and the actions every selected row allows
   (POST actions/). The query lives in the address bar, so a filtered list can be
   bookmarked or shared. */
(function () {
    "use strict";
    var el = SM.el;
    var table = document.getElementById("sm-collections");
    var body = table.querySelector("tbody");
    var state = readQuery();
    var selected = {};           // key -> row (with its allowed actions)
    var lastPage = null, timer = null, loading = 0;

    function readQuery() {
        var q = new URLSearchParams(window.location.search);
        return {q: q.get("q") || "", kind: q.get("kind") || "", rule: q.getAll("rule"),
                sort: q.get("sort") || "name", page: Number(q.get("page")) || 1,
                per_page: Number(q.get("per_page")) || 50};
    }

    function writeQuery() {
        var q = new URLSearchParams();
        if (state.q) { q.set("q", state.q); }
        if (state.kind) { q.set("kind", state.kind); }
        state.rule.forEach(function (r) { q.append("rule", r); });
        if (state.sort !== "name") { q.set("sort", state.sort); }
        if (state.page > 1) { q.set("page", state.page); }
        if (state.per_page !== 50) { q.set("per_page", state.per_page); }
        var text = q.toString();
        window.history.replaceState(null, "", window.location.pathname + (text ? "?" + text : ""));
    }

    function load() {
        writeQuery();
        var ticket = ++loading;
        return SM.api("collections/", {params: state}).then(function (page) {
            if (ticket !== loading) { return; }  // an older answer arriving late
            lastPage = page;
            render(page);
        }).catch(function (error) {
            if (ticket !== loading) { return; }
            SM.message(error.message, "error");
            SM.clear(body).appendChild(el("tr", {}, el("td", {colSpan: 14, className: "sm-empty"}, error.message)));
        });
    }

    function cell(text, cls, title) { return el("td", {className: cls, title: title}, text); }

    function render(page) {
        SM.clear(body);
        document.getElementById("sm-count").textContent = SM.number(page.total) + " collections";
        document.getElementById("sm-page-info").textContent = "Page " + page.page + " of " + page.pages;
        document.getElementById("sm-prev").disabled = page.page <= 1;
        document.getElementById("sm-next").disabled = page.page >= page.pages;
        table.querySelectorAll("th[data-sort]").forEach(function (th) {
            var arrow = th.querySelector(".sm-arrow");
            if (arrow) { th.removeChild(arrow); }
            var key = th.dataset.sort;
            if (page.sort === key || page.sort === "-" + key) {
                th.appendChild(el("span", {className: "sm-arrow"}, page.sort.charAt(0) === "-" ? "▼" : "▲"));
                th.setAttribute("aria-sort", page.sort.charAt(0) === "-" ? "descending" : "ascending");
            } else {
                th.removeAttribute("aria-sort");
            }
        });
        if (!page.items.length) {
            body.appendChild(el("tr", {}, el("td", {colSpan: 14, className: "sm-empty"}, "No collection matches.")));
        }
        var active = false;
        page.items.forEach(function (row) {
            if (selected[row.key]) { selected[row.key] = row; }  // fresher allowed actions
            var box = el("input", {type: "checkbox", "aria-label": "Select " + row.key,
                                   dataset: {key: row.key}});
            box.checked = !!selected[row.key];
            box.addEventListener("change", function () {
                if (box.checked) { selected[row.key] = row; } else { delete selected[row.key]; }
                tr.classList.toggle("sm-selected", box.checked);
                updateActions();
            });
            var job = row.job && ["queued", "running", "waiting"].indexOf(row.job.state) >= 0;
            active = active || job || row.state === "waiting" || row.state === "running";
            var tr = el("tr", {className: box.checked ? "sm-selected" : "", dataset: {key: row.key}}, [
                el("td", {}, box),
                el("td", {className: "sm-name", title: row.key},
                   el("a", {href: "../collection/" + row.key + "/"}, row.name || "(no name)")),
                cell(row.kind === "project" ? "Project" : "Screen"),
                cell(String(row.id), "sm-num"),
                cell(row.owner.name), cell(row.group.name),
                el("td", {dataset: {col: "state"}}, [SM.badge(row.state, row.stored_state !== row.state ? "stored state: " + SM.label(row.stored_state) : null),
                    (row.pending_requests || []).map(function (r) {
                        return el("span", {className: "sm-badge sm-badge-requested", dataset: {request: r.id},
                                           title: "request " + r.id + " by " + r.requested_by + ", waiting for approval"},
                                  r.kind + " requested");
                    })]),
                cell(SM.number(row.files), "sm-num"),
                cell(SM.bytes(row.bytes), "sm-num", SM.number(row.bytes) + " bytes"),
                cell(row.archived_bytes ? SM.bytes(row.archived_bytes) : "–", "sm-num"),
                cell(SM.date(row.newest_file)), cell(SM.date(row.last_access)), cell(SM.date(row.last_scan)),
                el("td", {dataset: {col: "job"}}, row.job ? [SM.progress(row.job), " ",
                    el("small", {}, row.job.kind + " #" + row.job.id)] : "")
            ]);
            body.appendChild(tr);
        });
        var pageBox = document.getElementById("sm-select-page");
        pageBox.checked = page.items.length > 0 && page.items.every(function (r) { return selected[r.key]; });
        updateActions();
        clearTimeout(timer);
        if (active) { timer = setTimeout(load, 2000); }  // follow running jobs
    }

    function selectedRows() { return Object.keys(selected).map(function (k) { return selected[k]; }); }

    function updateActions() {
        var rows = selectedRows();
        document.getElementById("sm-selected-count").textContent = rows.length;
        var why = [];
        document.querySelectorAll("#sm-actions button[data-action]").forEach(function (button) {
            var action = button.dataset.action;
            var mayAll = rows.length > 0 && rows.every(function (r) { return r.actions.indexOf(action) >= 0; });
            // The server says why an action it allows cannot run now (no verified copy,
            // a request waiting, a job running): the tooltip and the line below say it.
            var reasons = rows.filter(function (r) { return r.disabled && r.disabled[action]; })
                .map(function (r) { return r.key + ": " + r.disabled[action]; });
            var notAllowed = rows.filter(function (r) { return r.actions.indexOf(action) < 0; })
                .map(function (r) { return r.key; });
            button.disabled = !mayAll || reasons.length > 0;
            var title = rows.length === 0 ? "Select collections first" :
                reasons.length ? reasons.join("; ") :
                notAllowed.length ? "Not possible for " + notAllowed.join(", ") : "";
            if (title) { button.title = title; } else { button.removeAttribute("title"); }
            // Only show what this user could ever do with what is selected.
            button.hidden = rows.length > 0 && !rows.some(function (r) { return r.actions.indexOf(action) >= 0; });
            if (!button.hidden && rows.length && reasons.length) { why.push(button.textContent + " is off: " + reasons.join("; ")); }
        });
        var line = document.getElementById("sm-action-reasons");
        if (line) { line.textContent = why.join(" · "); }
    }

    function capital(text) { return text.charAt(0).toUpperCase() + text.slice(1); }

    var verbs = {scan: "Scan", archive: "Archive", purge: "Purge", restore: "Restore",
                 request_archive: "Ask for the archive of", request_restore: "Ask for the restore of"};

    function run(action) {
        var keys = Object.keys(selected);
        return SM.api("actions/", {method: "POST", body: {action: action, collections: keys}})
            .then(function (answer) {
                if (answer.job) {
                    SM.message(capital(SM.label(answer.job.kind)) + " job " + answer.job.id + " queued for " +
                               keys.join(", ") + ". Its progress shows below and under Jobs.", "ok");
                } else {
                    SM.message("Request sent for " + keys.join(", ") +
                               ": an administrator will approve or decline it; " +
                               (answer.emails ? "you will get an e-mail, and " : "") +
                               "you can follow it on the Overview under My requests.", "ok");
                }
                load();
            }).catch(function (error) { SM.message(error.message, "error"); });
    }

    function confirmThen(action) {
        var box = SM.clear(document.getElementById("sm-confirm"));
        var keys = Object.keys(selected);
        var text = verbs[action] + " " + keys.length + " collection" + (keys.length > 1 ? "s" : "") +
            " (" + keys.join(", ") + ")?" +
            (action === "purge" ? " Their files are deleted from OMERO's storage; verified copies stay in the archive." : "");
        box.appendChild(el("div", {className: "sm-confirm", id: "sm-confirm-bar"}, [
            el("span", {}, text),
            el("button", {className: "sm-btn " + (action === "purge" ? "sm-btn-danger" : "sm-btn-primary"), type: "button",
                          id: "sm-confirm-yes", onclick: function () { SM.clear(box); run(action); }}, verbs[action]),
            el("button", {className: "sm-btn", type: "button", onclick: function () { SM.clear(box); }}, "Cancel")
        ]));
    }

    document.querySelectorAll("#sm-actions button[data-action]").forEach(function (button) {
        button.addEventListener("click", function () { confirmThen(button.dataset.action); });
    });
    document.getElementById("sm-clear-selection").addEventListener("click", function () {
        selected = {};
        if (lastPage) { render(lastPage); }
    });
    document.getElementById("sm-select-page").addEventListener("change", function (event) {
        (lastPage ? lastPage.items : []).forEach(function (row) {
            if (event.target.checked) { selected[row.key] = row; } else { delete selected[row.key]; }
        });
        if (lastPage) { render(lastPage); }
    });
    table.querySelectorAll("th[data-sort]").forEach(function (th) {
        // Sorting by keyboard too: each header is a tab stop that Enter or Space sorts.
        th.tabIndex = 0;
        th.title = "Sort by " + th.textContent.trim().toLowerCase();
        th.addEventListener("keydown", function (event) {
            if (event.key === "Enter" || event.key === " ") { event.preventDefault(); th.click(); }
        });
        th.addEventListener("click", function () {
            var key = th.dataset.sort;
            state.sort = state.sort === key ? "-" + key : key;
            state.page = 1;
            load();
        });
    });

    var q = document.getElementById("sm-q"), typing = null;
    q.value = state.q;
    q.addEventListener("input", function () {
        clearTimeout(typing);
        typing = setTimeout(function () { state.q = q.value; state.page = 1; load(); }, 250);
    });
    var kind = document.getElementById("sm-kind");
    kind.value = state.kind;
    kind.addEventListener("change", function () { state.kind = kind.value; state.page = 1; load(); });

    function renderRules() {
        var box = SM.clear(document.getElementById("sm-rules"));
        state.rule.forEach(function (rule, index) {
            box.appendChild(el("span", {className: "sm-chip", dataset: {rule: rule}}, [rule,
                el("button", {type: "button", title: "Remove this rule", "aria-label": "Remove rule " + rule,
                              onclick: function () { state.rule.splice(index, 1); state.page = 1; renderRules(); load(); }}, "×")]));
        });
    }
    var ruleInput = document.getElementById("sm-rule");
    function addRule() {
        var text = ruleInput.value.trim();
        if (!text) { return; }
        var before = state.rule.slice();
        state.rule.push(text);
        state.page = 1;
        // The server parses rules; a refused one is taken back, with its message.
        SM.api("collections/", {params: Object.assign({}, state, {per_page: 1})}).then(function () {
            ruleInput.value = "";
            SM.clear(document.getElementById("sm-messages"));
            renderRules();
            load();
        }).catch(function (error) {
            state.rule = before;
            SM.message(error.message, "error");
        });
    }
    document.getElementById("sm-add-rule").addEventListener("click", addRule);
    ruleInput.addEventListener("keydown", function (event) { if (event.key === "Enter") { addRule(); } });

    document.getElementById("sm-prev").addEventListener("click", function () { state.page -= 1; load(); });
    document.getElementById("sm-next").addEventListener("click", function () { state.page += 1; load(); });
    var perPage = document.getElementById("sm-per-page");
    perPage.value = String(state.per_page);
    perPage.addEventListener("change", function () { state.per_page = Number(perPage.value); state.page = 1; load(); });

    renderRules();
    load();
})();
