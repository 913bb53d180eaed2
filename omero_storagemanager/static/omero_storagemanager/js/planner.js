/* The what-if planner (admins): GET admin/planner/?rule=... shows what the rules match,
   the bytes a purge would free, the copies there are and still needed, and the date the
   projection moves to; POST admin/planner/queue/ queues it in one step (purge what has
   its copies; archive the rest, then purge once verified). */
(function () {
    "use strict";
    var el = SM.el;
    var rulesBox = document.getElementById("sm-plan-rules");
    var queueButton = document.getElementById("sm-plan-queue");
    var shown = null;

    function rules() {
        return rulesBox.value.split("\n").map(function (r) { return r.trim(); }).filter(Boolean);
    }
    function when(p) {
        if (!p.enough) { return "unknown (" + p.note + ")"; }
        return p.full_on ? p.full_on : "never at this rate (" + p.note + ")";
    }

    function preview() {
        var asked = rules();
        SM.api("admin/planner/", {params: {rule: asked, window: document.getElementById("sm-plan-window").value}}).then(function (plan) {
            shown = asked;
            var t = plan.totals, now = plan.projection_now, after = plan.projection_after;
            var parts = [];
            if (t.freed_fraction_of_online !== null) { parts.push((100 * t.freed_fraction_of_online).toFixed(1) + "% of OMERO's online data"); }
            if (t.freed_fraction_of_used !== null) { parts.push((100 * t.freed_fraction_of_used).toFixed(1) + "% of the primary storage used"); }
            var pct = parts.length ? " (" + parts.join(", ") + ")" : "";
            SM.clear(document.getElementById("sm-plan-summary")).appendChild(el("dl", {className: "sm-facts", id: "sm-plan-facts"}, [
                el("dt", {}, "Collections matched"), el("dd", {id: "sm-plan-count"}, SM.number(t.collections)),
                el("dt", {}, "Freed by a purge"), el("dd", {id: "sm-plan-freed", dataset: {fraction: t.freed_fraction_of_online}}, [SM.bytes(t.freed_at_least_bytes) + " at least" + pct,
                    t.shared_bytes ? el("div", {className: "sm-hint"}, "up to " + SM.bytes(t.freed_up_to_bytes) + ": " + SM.bytes(t.shared_bytes) +
                                        " are files shared with other collections, freed only when those are purged too") : null]),
                el("dt", {}, "Copies"), el("dd", {id: "sm-plan-copies"}, SM.number(t.copies_existing) + " verified copies exist; " +
                    SM.number(t.copies_needed) + " still needed (" + plan.copies_required + " required per collection), " +
                    SM.bytes(t.to_archive_bytes) + " to archive first"),
                el("dt", {}, "Primary storage full on"), el("dd", {id: "sm-plan-dates"}, [
                    "today's projection: " + when(now), el("br"), "after this plan: " + when(after),
                    el("div", {className: "sm-hint"}, now.enough ? "Linear fit over " + now.window_days + " days (" + now.points + " recorded days)." : "")])
            ]));
            SM.clear(document.getElementById("sm-plan-items")).appendChild(plan.items.length ? el("div", {className: "sm-table-wrap"},
                el("table", {className: "sm-table", id: "sm-plan-table"}, [
                    el("thead", {}, el("tr", {}, ["Collection", "Owner", "Group", "State", "Size", "Last access", "Copies", "Needed"]
                        .map(function (h) { return el("th", {}, h); }))),
                    el("tbody", {}, plan.items.map(function (c) {
                        return el("tr", {dataset: {key: c.key}}, [
                            el("td", {}, el("a", {href: SM.pageRoot + "collection/" + c.key + "/"}, c.name + " (" + c.key + ")")),
                            el("td", {}, c.owner), el("td", {}, c.group), el("td", {}, SM.badge(c.state)),
                            el("td", {className: "sm-num"}, SM.bytes(c.bytes)), el("td", {}, SM.date(c.last_access)),
                            el("td", {className: "sm-num"}, String(c.copies)), el("td", {className: "sm-num"}, String(c.copies_needed))]);
                    }))])) : el("p", {className: "sm-hint"}, "The rules match no online collection."));
            queueButton.disabled = t.collections === 0;
            queueButton.title = t.collections === 0 ? "The rules match nothing" : "Queue the jobs for the " + t.collections + " collections shown";
        }).catch(function (error) {
            queueButton.disabled = true;
            queueButton.title = "Show what the rules free first";
            SM.message(error.message, "error");
        });
    }

    document.getElementById("sm-plan-preview").addEventListener("click", preview);
    rulesBox.addEventListener("input", function () {
        queueButton.disabled = true;
        queueButton.title = "The rules changed: show what they free first";
    });
    queueButton.addEventListener("click", function () {
        if (!shown) { return; }
        SM.api("admin/planner/queue/", {method: "POST", body: {rules: shown}}).then(function (answer) {
            SM.message("Queued: " + answer.jobs.map(function (j) { return j.kind + " job " + j.id + " (" + j.collections.length + " collections)"; }).join(", ") +
                       (answer.archive_then_purge.length ? "; their purge follows once their copies are verified" : "") + ". Follow them under Jobs.", "ok");
            queueButton.disabled = true;
        }).catch(function (error) { SM.message(error.message, "error"); });
    });
})();
