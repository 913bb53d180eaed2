/* Overview: the user's own usage against their quota, and the locations' fill bars. */
(function () {
    "use strict";
    var el = SM.el;

    document.querySelectorAll("#sm-locations .sm-progress[data-max]").forEach(function (bar) {
        var used = Number(bar.dataset.used), max = Number(bar.dataset.max);
        var pct = max > 0 ? Math.min(100, Math.round(100 * used / max)) : 0;
        bar.firstElementChild.style.width = pct + "%";
        bar.title = pct + "% full";
    });

    var box = document.getElementById("sm-usage-body");
    SM.api("usage/").then(function (data) {
        var u = data.user, quota = u.quota_bytes;
        SM.clear(box).className = "";
        var pct = quota ? Math.min(100, Math.round(100 * u.online_bytes / quota)) : null;
        box.appendChild(el("dl", {className: "sm-facts"}, [
            el("dt", {}, "Online"),
            el("dd", {className: u.over_quota ? "sm-over" : "", id: "sm-usage-online"},
               [SM.bytes(u.online_bytes) + " in " + SM.number(u.online_files) + " files",
                u.over_quota ? " (over quota)" : ""]),
            el("dt", {}, "Quota"),
            el("dd", {}, quota ? [el("span", {className: "sm-progress" + (u.over_quota ? " sm-failed" : "")},
                                     [el("span", {style: "width:" + pct + "%"})]),
                                  " " + pct + "% of " + SM.bytes(quota)] : "no quota"),
            el("dt", {}, "Archived"), el("dd", {}, SM.bytes(u.archived_bytes)),
            el("dt", {}, "Purged (in the archive only)"), el("dd", {}, SM.bytes(u.purged_bytes)),
            el("dt", {}, "Your collections"),
            el("dd", {}, [String(u.collections) + " ",
                          el("a", {href: "../storagemanager/collections/?q=" + encodeURIComponent(u.name)}, "show")])
        ]));
    }).catch(function (error) {
        SM.clear(box).appendChild(el("span", {className: "sm-bad"}, error.message));
    });

    var mine = document.getElementById("sm-my-requests-body"), again = null;
    var MOVING = ["approved", "queued", "running", "waiting"];
    function loadMine() {
        SM.api("requests/", {params: {state: "all", mine: 1}}).then(function (data) {
            SM.renderRequests(mine, data.items, loadMine, true);
            // Follow an approved request's job to its end (done, failed).
            clearTimeout(again);
            if (data.items.some(function (r) { return MOVING.indexOf(r.fate) >= 0; })) {
                again = setTimeout(loadMine, 2000);
            }
        }).catch(function (error) {
            SM.clear(mine).appendChild(el("span", {className: "sm-bad"}, error.message));
        });
    }
    if (mine) { loadMine(); }
})();
