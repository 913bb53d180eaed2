/* A requester's view of requests: each one's fate (pending, declined with the reason,
   withdrawn, or once approved its job: queued, running, done...) and a Withdraw button
   while pending. Used by the overview's "My requests" and the collection page. */
(function (global) {
    "use strict";
    var el = SM.el;

    var FATE_TEXT = {
        pending: "waiting for approval", approved: "approved", declined: "declined",
        withdrawn: "withdrawn by you", queued: "approved, job queued", running: "approved, job running",
        waiting: "approved, job waiting", done: "done", failed: "approved, job failed",
        cancelled: "approved, job cancelled"
    };
    var FATE_BADGE = {pending: "waiting", declined: "failed", withdrawn: "cancelled", done: "online",
                      queued: "waiting", running: "running", waiting: "waiting", failed: "failed"};

    function fateCell(r) {
        var parts = [SM.el("span", {className: "sm-badge sm-badge-" + (FATE_BADGE[r.fate] || "archived"),
                                    dataset: {fate: r.fate}}, FATE_TEXT[r.fate] || r.fate)];
        if (r.decided_by && r.fate !== "withdrawn") {
            parts.push(" by " + r.decided_by.name + " " + SM.date(r.decided));
        }
        if (r.decision_comment) { parts.push(el("div", {className: "sm-reason"}, "“" + r.decision_comment + "”")); }
        if (r.job) { parts.push(" ", el("a", {href: SM.pageRoot + "jobs/#job-" + r.job}, "job " + r.job)); }
        return parts;
    }

    /* Renders requests into `box`; reload() is called after a withdrawal. */
    SM.renderRequests = function (box, items, reload, withCollection) {
        SM.clear(box);
        if (!items.length) { box.appendChild(el("p", {className: "sm-muted"}, "No request.")); return; }
        var head = ["Request", "Asked", "Fate", ""];
        if (withCollection) { head.splice(1, 0, "Collection"); }
        var rows = items.map(function (r) {
            var cells = [el("td", {}, r.kind + " #" + r.id),
                         el("td", {}, [SM.date(r.created), r.comment ? el("div", {className: "sm-muted"}, r.comment) : null]),
                         el("td", {className: "sm-fate"}, fateCell(r)),
                         el("td", {}, r.may_withdraw ? el("button", {
                             className: "sm-btn", type: "button", dataset: {withdraw: r.id},
                             onclick: function () {
                                 SM.api("requests/" + r.id + "/withdraw/", {method: "POST"}).then(function () {
                                     SM.message("Request " + r.id + " withdrawn.", "ok");
                                     reload();
                                 }).catch(function (error) { SM.message(error.message, "error"); });
                             }}, "Withdraw") : "")];
            if (withCollection) {
                cells.splice(1, 0, el("td", {}, el("a", {href: SM.pageRoot + "collection/" + r.collection.key + "/"},
                                                    r.collection.name + " (" + r.collection.key + ")")));
            }
            return el("tr", {dataset: {request: r.id, fate: r.fate}}, cells);
        });
        box.appendChild(el("div", {className: "sm-table-wrap"}, el("table", {className: "sm-table sm-requests"}, [
            el("thead", {}, el("tr", {}, head.map(function (h) { return el("th", {}, h); }))),
            el("tbody", {}, rows)])));
    };
})(window);
