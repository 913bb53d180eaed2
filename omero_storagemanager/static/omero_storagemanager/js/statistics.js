/* Statistics: usage per user and per group against quotas (GET statistics/), usage by
   group, the data by creation month, the recorded history and (admins) the primary
   storage with its projection (GET capacity/), drawn by uPlot through SM.chart. */
(function () {
    "use strict";
    var el = SM.el;

    function rows(tbody, entries) {
        SM.clear(tbody);
        if (!entries.length) {
            tbody.appendChild(el("tr", {}, el("td", {colSpan: 8, className: "sm-empty"}, "Nothing to show.")));
        }
        entries.forEach(function (e) {
            var pct = e.quota_bytes ? Math.round(100 * e.online_bytes / e.quota_bytes) : null;
            tbody.appendChild(el("tr", {className: e.over_quota ? "sm-over-row" : "", dataset: {id: e.id}}, [
                el("td", {}, e.name),
                el("td", {className: "sm-num"}, SM.number(e.collections)),
                el("td", {className: "sm-num"}, SM.number(e.online_files)),
                el("td", {className: "sm-num" + (e.over_quota ? " sm-over" : ""),
                          title: e.over_quota ? "over quota" : null}, SM.bytes(e.online_bytes)),
                el("td", {className: "sm-num"}, e.quota_bytes ? SM.bytes(e.quota_bytes) : "–"),
                el("td", {}, pct === null ? "" : [el("span", {className: "sm-progress" + (e.over_quota ? " sm-failed" : "")},
                                                      el("span", {style: "width:" + Math.min(100, pct) + "%"})),
                                                   el("span", {className: "sm-progress-label" + (e.over_quota ? " sm-over" : "")}, pct + "%")]),
                el("td", {className: "sm-num"}, SM.bytes(e.archived_bytes)),
                el("td", {className: "sm-num"}, SM.bytes(e.purged_bytes))
            ]));
        });
    }

    function groupChart(box, groups) {
        if (!groups.length) { SM.clear(box).textContent = "No group to show."; return; }
        SM.chart.bars(box, "Online bytes per group now (quotas and archived bytes in the table below)",
                      groups.map(function (g) { return g.name; }),
                      [{label: "online", values: groups.map(function (g) { return g.online_bytes; })}]);
    }

    function timeChart(box, timeline) {
        if (!timeline.length) { SM.clear(box).textContent = "Nothing to show yet."; return; }
        SM.chart.time(box, "Cumulative size of the Projects and Screens you may see, by the month they were created in OMERO",
                      timeline.map(function (t) { return t.month + "-01T00:00:00Z"; }),
                      [{label: "created up to then", values: timeline.map(function (t) { return t.cumulative_bytes; }), fill: "#2a6fb522"}]);
    }

    /* Recorded history (GET capacity/): one line per group; for admins the primary
       storage with its limit and the fitted line to the day it is full. */
    function history(window) {
        return SM.api("capacity/", {params: {window: window}}).then(function (cap) {
            var box = document.getElementById("sm-chart-history");
            var days = [], seen = {}, names = {}, by = {};
            cap.groups.forEach(function (r) {
                if (!seen[r.day]) { seen[r.day] = true; days.push(r.day); }
                names[r.subject] = r.name;
                (by[r.subject] = by[r.subject] || {})[r.day] = r.bytes;
            });
            if (!days.length) {
                SM.clear(box).textContent = "No usage recorded yet: it is recorded every day, the history grows from there.";
            } else {
                SM.chart.time(box, "Online bytes per group, as recorded each day (last " + cap.window_days + " days)", days,
                              Object.keys(by).map(function (id) {
                                  return {label: names[id], values: days.map(function (d) { return by[id][d] === undefined ? null : by[id][d]; })};
                              }));
            }
            var primaryBox = document.getElementById("sm-chart-primary");
            if (!primaryBox || !cap.primary) { return; }
            var p = cap.projection, note = document.getElementById("sm-projection");
            if (!cap.primary.length) { SM.clear(primaryBox).textContent = "No usage recorded yet."; note.textContent = p.note || ""; return; }
            var xs = cap.primary.map(function (r) { return r.day; });
            var used = cap.primary.map(function (r) { return r.bytes; });
            var limit = cap.primary.map(function (r) { return r.limit_bytes; });
            var fit = xs.map(function () { return null; });
            if (p.enough && p.full_on) {
                var first = new Date(p.first_day + "T00:00:00Z").getTime();
                var line = function (day) { return p.intercept_bytes + p.bytes_per_day * (new Date(day + "T00:00:00Z").getTime() - first) / 86400000; };
                fit = xs.map(line);
                xs = xs.concat([p.full_on]);
                used.push(null);
                limit.push(p.limit_bytes);
                fit.push(line(p.full_on));
            }
            SM.chart.time(primaryBox, "Primary storage used, its size, and the fitted line to the day it is full", xs, [
                {label: "used", values: used, fill: "#2a6fb522"},
                {label: "size of the file system", values: limit, color: "#a50f15", dash: [6, 4]},
                {label: "linear fit", values: fit, color: "#b35900", dash: [3, 3]}]);
            note.textContent = p.enough ? (p.full_on ? "Full on " + p.full_on + " at this rate (" + p.note + "; " +
                                                       p.points + " recorded days in the window)." : p.note + ".")
                                        : p.note + ".";
        }).catch(function (error) { SM.message(error.message, "error"); });
    }

    SM.api("statistics/").then(function (stats) {
        rows(document.querySelector("#sm-users tbody"), stats.users);
        rows(document.querySelector("#sm-groups tbody"), stats.groups);
        groupChart(document.getElementById("sm-chart-groups"), stats.groups);
        timeChart(document.getElementById("sm-chart-time"), stats.timeline);
    }).catch(function (error) { SM.message(error.message, "error"); });
    var windowSelect = document.getElementById("sm-window");
    history(windowSelect ? windowSelect.value : 90);
    if (windowSelect) { windowSelect.addEventListener("change", function () { history(windowSelect.value); }); }
})();
