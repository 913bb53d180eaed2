/* Charts of the Storage tab, drawn by uPlot (vendor/uplot, MIT; docs/architecture.md says
   why): time axes to scale (x in seconds since the epoch), sizes on the y axis in IEC
   units (SM.bytes), a legend that names each series. SM.chart.time(box, title, days,
   series) and SM.chart.bars(box, title, names, series). */
(function (global) {
    "use strict";
    var COLORS = ["#2a6fb5", "#b35900", "#1e7e34", "#7b3294", "#a50f15", "#00727a", "#5b5b00", "#444"];

    function width(box) { return Math.max(320, Math.min(box.clientWidth || 560, 900) - 10); }
    function byteAxis() {
        return {values: function (u, splits) { return splits.map(function (v) { return SM.bytes(v); }); },
                size: 84, stroke: "#333", grid: {stroke: "#e6e6e6"}};
    }

    function draw(box, title, opts, data) {
        SM.clear(box).className = "sm-chart-box";
        var figure = SM.el("figure", {className: "sm-figure", role: "group", "aria-label": title});
        box.appendChild(figure);
        opts.title = undefined;
        opts.width = width(box);
        opts.height = opts.height || 220;
        opts.legend = {show: true};
        var plot = new global.uPlot(opts, data, figure);
        figure.appendChild(SM.el("figcaption", {className: "sm-hint"}, title));
        return plot;
    }

    SM.chart = {
        colors: COLORS,
        /* series: [{label, values (bytes, null for no value), dash}] over days: [Date|ISO]. */
        time: function (box, title, days, series, options) {
            var xs = days.map(function (d) { return Math.floor(new Date(d).getTime() / 1000); });
            var opts = Object.assign({
                scales: {x: {time: true}},
                axes: [{stroke: "#333", grid: {stroke: "#eee"}}, byteAxis()],
                series: [{label: "date", value: function (u, v) { return v === null ? "–" : new Date(v * 1000).toISOString().slice(0, 10); }}]
                    .concat(series.map(function (s, i) {
                        return {label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: 2,
                                dash: s.dash, fill: s.fill, spanGaps: true,
                                value: function (u, v) { return v === null ? "–" : SM.bytes(v); }};
                    }))
            }, options || {});
            return draw(box, title, opts, [xs].concat(series.map(function (s) { return s.values; })));
        },
        /* Horizontal categories as vertical bars: names on the x axis. */
        bars: function (box, title, names, series) {
            var xs = names.map(function (_, i) { return i; });
            var bars = global.uPlot.paths.bars({size: [0.7 / series.length, 60], align: 0});
            var opts = {
                scales: {x: {time: false, range: [-0.5, names.length - 0.5]}},
                axes: [{stroke: "#333", grid: {show: false}, splits: function () { return xs; },
                        values: function (u, splits) { return splits.map(function (i) { return names[i] || ""; }); }},
                       byteAxis()],
                series: [{label: "group", value: function (u, v) { return v === null ? "–" : names[v]; }}]
                    .concat(series.map(function (s, i) {
                        return {label: s.label, stroke: s.color || COLORS[i], fill: (s.color || COLORS[i]) + "cc",
                                paths: bars, points: {show: false},
                                value: function (u, v) { return v === null ? "–" : SM.bytes(v); }};
                    }))
            };
            return draw(box, title, opts, [xs].concat(series.map(function (s) { return s.values; })));
        }
    };
})(window);
