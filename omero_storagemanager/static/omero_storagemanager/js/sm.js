/* The Storage pages' small toolkit: calls to the JSON API (with Django's CSRF token),
   building DOM safely (text only, never HTML from data), formatting sizes and dates,
   badges, progress bars, messages and polling that stops with its element.
   Plain JS, no build step; also loaded by the webclient plugins. */
(function (global) {
    "use strict";
    var SM = global.SM || {};

    SM.apiRoot = SM.apiRoot || (document.body && document.body.getAttribute("data-api")) ||
        "/storagemanager/api/v1/";
    /* The Storage tab's pages (/storagemanager/), the API's parent. */
    SM.pageRoot = SM.pageRoot || SM.apiRoot.replace(/api\/v1\/$/, "");

    function cookie(name) {
        var parts = document.cookie ? document.cookie.split(";") : [];
        for (var i = 0; i < parts.length; i++) {
            var p = parts[i].trim();
            if (p.substring(0, name.length + 1) === name + "=") {
                return decodeURIComponent(p.substring(name.length + 1));
            }
        }
        return null;
    }

    /* fetch() on the API: JSON in and out; rejects with an Error whose message is the
       server's {"error": ...} (or OMERO.web's {"message": ...} for a CSRF failure). */
    SM.api = function (path, options) {
        options = options || {};
        var init = {method: options.method || "GET", credentials: "same-origin",
                    headers: {"Accept": "application/json"}};
        if (init.method !== "GET") {
            init.headers["X-CSRFToken"] = cookie("csrftoken") || "";
            init.headers["Content-Type"] = "application/json";
            init.body = JSON.stringify(options.body || {});
        }
        var url = path.charAt(0) === "/" ? path : SM.apiRoot + path;
        if (options.params) {
            var query = new URLSearchParams();
            Object.keys(options.params).forEach(function (key) {
                var value = options.params[key];
                (Array.isArray(value) ? value : [value]).forEach(function (v) {
                    if (v !== undefined && v !== null && v !== "") { query.append(key, v); }
                });
            });
            var text = query.toString();
            if (text) { url += (url.indexOf("?") < 0 ? "?" : "&") + text; }
        }
        return fetch(url, init).then(function (response) {
            return response.text().then(function (text) {
                var data;
                try { data = text ? JSON.parse(text) : {}; } catch (e) { data = {error: text.slice(0, 200)}; }
                if (!response.ok) {
                    var error = new Error(data.error || data.message || ("HTTP " + response.status));
                    error.status = response.status;
                    throw error;
                }
                return data;
            });
        });
    };

    /* el("td", {className: "sm-num", title: "x"}, ["text", child]) - text is never HTML. */
    SM.el = function (tag, attrs, children) {
        var node = document.createElement(tag);
        Object.keys(attrs || {}).forEach(function (key) {
            var value = attrs[key];
            if (value === undefined || value === null || value === false) { return; }
            if (key === "className") { node.className = value; }
            else if (key === "text") { node.textContent = value; }
            else if (key.indexOf("on") === 0) { node.addEventListener(key.slice(2), value); }
            else if (key === "dataset") { Object.keys(value).forEach(function (d) { node.dataset[d] = value[d]; }); }
            else { node.setAttribute(key, value === true ? "" : value); }
        });
        (function add(child) {
            if (child === null || child === undefined || child === false) { return; }
            if (Array.isArray(child)) { child.forEach(add); return; }
            node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
        })(children);
        return node;
    };

    SM.clear = function (node) { while (node.firstChild) { node.removeChild(node.firstChild); } return node; };

    /* Sizes in powers of 1024 with IEC names (KiB, MiB, GiB), as `du -h` and OMERO.web
       count them; the rule filters read the same units. */
    SM.bytes = function (n) {
        if (n === null || n === undefined) { return "–"; }
        var units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"], i = 0, v = Number(n);
        while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
        return (i === 0 ? v.toFixed(0) : v.toFixed(v < 10 ? 2 : 1)) + " " + units[i];
    };
    SM.number = function (n) { return n === null || n === undefined ? "–" : Number(n).toLocaleString("en"); };
    /* Dates in UTC, as the rule filters read them. */
    SM.date = function (iso) { return iso ? String(iso).slice(0, 10) : "–"; };
    SM.datetime = function (iso) {
        if (!iso) { return "–"; }
        var d = new Date(iso);
        return isNaN(d) ? String(iso) : d.toISOString().slice(0, 16).replace("T", " ") + " UTC";
    };
    SM.duration = function (seconds) {
        if (seconds === null || seconds === undefined) { return "–"; }
        var s = Math.round(seconds);
        if (s < 60) { return s + " s"; }
        if (s < 3600) { return Math.floor(s / 60) + " min " + (s % 60) + " s"; }
        return Math.floor(s / 3600) + " h " + Math.floor((s % 3600) / 60) + " min";
    };
    SM.label = function (state) { return String(state || "").replace(/_/g, " "); };
    SM.badge = function (state, title) {
        return SM.el("span", {className: "sm-badge sm-badge-" + state, title: title,
                              dataset: {state: state}}, SM.label(state));
    };

    /* A progress bar for a job: {state, progress (0..1 or null)}. */
    SM.progress = function (job) {
        var fraction = job.progress, cls = "sm-progress";
        if (job.state === "done") { cls += " sm-done"; fraction = 1; }
        else if (job.state === "failed") { cls += " sm-failed"; }
        else if (fraction === null || fraction === undefined) { cls += job.state === "running" ? " sm-unknown" : ""; }
        var pct = Math.round(100 * (fraction || 0));
        var bar = SM.el("span", {className: cls, role: "progressbar", "aria-valuenow": pct,
                                 "aria-label": (job.kind ? SM.label(job.kind) + " " : "") + "job " + (job.id || "") + " progress",
                                 "aria-valuemin": 0, "aria-valuemax": 100,
                                 dataset: {state: job.state}},
                        [SM.el("span", {style: "width:" + pct + "%"})]);
        var text = job.state === "running" || job.state === "done" ? pct + "% " + SM.label(job.state) : SM.label(job.state);
        return SM.el("span", {className: "sm-job", dataset: {job: job.id, state: job.state}},
                     [bar, SM.el("span", {className: "sm-progress-label"}, text)]);
    };

    SM.message = function (text, kind, where) {
        var box = where || document.getElementById("sm-messages");
        if (!box) { global.alert(text); return; }
        SM.clear(box).appendChild(SM.el("div", {className: "sm-message sm-message-" + (kind || "ok"),
                                               role: kind === "error" ? "alert" : "status"}, text));
    };

    /* Call fn every ms while `alive` (an element) is in the page: the webclient empties
       its panels on every selection change, and a timer must not outlive its panel. */
    SM.poll = function (fn, ms, alive) {
        var timer = global.setInterval(function () {
            if (alive && !document.body.contains(alive)) { global.clearInterval(timer); return; }
            fn();
        }, ms);
        return timer;
    };

    global.SM = SM;
})(window);
