/* Statistics: usage per user and per group against quotas (GET statistics/), a bar
   chart of usage by group and a line of the data over time, both drawn as SVG here
   (no chart library: two small charts do not need one). */
(function () {
    "use strict";
    var el = SM.el, NS = "http://www.w3.org/2000/svg";
    var COLORS = {online: "#2a6fb5", archived: "#27ae60", purged: "#8e44ad", quota: "#c0392b"};

    function svg(tag, attrs, text) {
        var node = document.createElementNS(NS, tag);
        Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
        if (text !== undefined) { node.textContent = text; }
        return node;
    }

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

    function niceMax(v) {
        if (v <= 0) { return 1; }
        var p = Math.pow(1024, Math.floor(Math.log(v) / Math.log(1024)));
        var steps = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1024];
        for (var i = 0; i < steps.length; i++) { if (steps[i] * p >= v) { return steps[i] * p; } }
        return v;
    }

    function legend(items) {
        return el("div", {className: "sm-legend"}, items.map(function (i) {
            return el("span", {}, [el("i", {style: "background:" + i[1]}), i[0]]);
        }));
    }

    function groupChart(box, groups) {
        SM.clear(box).className = "";
        if (!groups.length) { box.textContent = "No group to show."; return; }
        var width = 560, rowH = 22, left = 130, right = 130, top = 6;
        var height = top + groups.length * rowH + 20;
        var max = niceMax(Math.max.apply(null, groups.map(function (g) {
            return Math.max(g.online_bytes + g.archived_bytes, g.quota_bytes || 0);
        })));
        var scale = function (v) { return (width - left - right) * v / max; };
        var chart = svg("svg", {viewBox: "0 0 " + width + " " + height, class: "sm-chart",
                                role: "img", "aria-label": "Usage by group"});
        groups.forEach(function (g, i) {
            var y = top + i * rowH;
            chart.appendChild(svg("text", {x: left - 6, y: y + 14, "text-anchor": "end"}, g.name));
            var online = scale(g.online_bytes), archived = scale(g.archived_bytes);
            chart.appendChild(svg("rect", {x: left, y: y + 3, width: Math.max(online, 0.5), height: 14,
                                           fill: g.over_quota ? COLORS.quota : COLORS.online},
                                  null)).appendChild(svg("title", {}, g.name + ": " + SM.bytes(g.online_bytes) + " online"));
            chart.appendChild(svg("rect", {x: left + online, y: y + 3, width: archived, height: 14,
                                           fill: COLORS.archived, opacity: 0.8}));
            if (g.quota_bytes) {
                var qx = left + scale(g.quota_bytes);
                chart.appendChild(svg("line", {x1: qx, x2: qx, y1: y + 1, y2: y + 19, stroke: "#333",
                                               "stroke-width": 2, "stroke-dasharray": "3,2"}));
            }
            // Values in a column of their own, clear of the bars and quota marks.
            chart.appendChild(svg("text", {x: width - right + 8, y: y + 14},
                                  SM.bytes(g.online_bytes) + (g.quota_bytes ? " / " + SM.bytes(g.quota_bytes) : "")));
        });
        chart.appendChild(svg("text", {x: left, y: height - 4}, "0"));
        chart.appendChild(svg("text", {x: width - right, y: height - 4, "text-anchor": "end"}, SM.bytes(max)));
        box.appendChild(chart);
        box.appendChild(legend([["online", COLORS.online], ["archived", COLORS.archived],
                                ["over quota", COLORS.quota], ["- - quota", "#333"]]));
    }

    function timeChart(box, timeline) {
        SM.clear(box).className = "";
        if (!timeline.length) { box.textContent = "Nothing to show yet."; return; }
        var width = 560, height = 200, left = 60, bottom = 24, top = 8, right = 10;
        var max = niceMax(timeline[timeline.length - 1].cumulative_bytes);
        var n = timeline.length;
        var x = function (i) { return left + (n === 1 ? (width - left - right) / 2 : i * (width - left - right) / (n - 1)); };
        var y = function (v) { return height - bottom - (height - bottom - top) * v / max; };
        var chart = svg("svg", {viewBox: "0 0 " + width + " " + height, class: "sm-chart",
                                role: "img", "aria-label": "Data over time"});
        [0, 0.5, 1].forEach(function (f) {
            chart.appendChild(svg("line", {x1: left, x2: width - right, y1: y(max * f), y2: y(max * f),
                                           stroke: "#e3e3e3"}));
            chart.appendChild(svg("text", {x: left - 4, y: y(max * f) + 3, "text-anchor": "end"}, SM.bytes(max * f)));
        });
        var points = timeline.map(function (t, i) { return x(i) + "," + y(t.cumulative_bytes); });
        chart.appendChild(svg("polygon", {points: x(0) + "," + y(0) + " " + points.join(" ") + " " + x(n - 1) + "," + y(0),
                                          fill: COLORS.online, opacity: 0.15}));
        chart.appendChild(svg("polyline", {points: points.join(" "), fill: "none", stroke: COLORS.online,
                                           "stroke-width": 2}));
        timeline.forEach(function (t, i) {
            var dot = svg("circle", {cx: x(i), cy: y(t.cumulative_bytes), r: 3, fill: COLORS.online});
            dot.appendChild(svg("title", {}, t.month + ": +" + SM.bytes(t.bytes) + ", total " + SM.bytes(t.cumulative_bytes)));
            chart.appendChild(dot);
        });
        var every = Math.max(1, Math.ceil(n / 8));
        timeline.forEach(function (t, i) {
            if (i % every === 0 || i === n - 1) {
                var anchor = n > 1 && i === n - 1 ? "end" : (i === 0 && n > 1 ? "start" : "middle");
                chart.appendChild(svg("text", {x: x(i), y: height - 6, "text-anchor": anchor}, t.month));
            }
        });
        box.appendChild(chart);
    }

    SM.api("statistics/").then(function (stats) {
        rows(document.querySelector("#sm-users tbody"), stats.users);
        rows(document.querySelector("#sm-groups tbody"), stats.groups);
        groupChart(document.getElementById("sm-chart-groups"), stats.groups);
        timeChart(document.getElementById("sm-chart-time"), stats.timeline);
    }).catch(function (error) { SM.message(error.message, "error"); });
})();
