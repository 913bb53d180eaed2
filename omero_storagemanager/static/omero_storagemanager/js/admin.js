/* The admin pages: settings (admin/preferences/), locations (admin/locations/), quotas
   (admin/quotas/), schedules and tools (admin/schedules/, admin/test-email/) and the
   approval queue (requests/). Which one runs depends on the page's data-admin-page. */
(function () {
    "use strict";
    var el = SM.el;
    var section = document.querySelector("[data-admin-page]");
    var pageName = section ? section.getAttribute("data-admin-page") : "";

    function fail(error) { SM.message(error.message, "error"); }
    function capital(text) { return text.charAt(0).toUpperCase() + text.slice(1); }
    function ok(text) { SM.message(text, "ok"); }
    function button(text, onclick, cls, data) {
        return el("button", {className: "sm-btn " + (cls || ""), type: "button", onclick: onclick,
                             dataset: data || {}}, text);
    }

    /* -- settings ------------------------------------------------------------------- */
    var NOTIFY = ["question", "error", "warning", "info", "quota"];

    function settingsPage() {
        var form = document.getElementById("sm-settings"), inputs = {}, loaded = {};
        function input(name, pref) {
            var v = pref.value, id = "sm-pref-" + name;
            if (name === "visibility") {
                var s = el("select", {id: id, className: "sm-input"}, ["own", "group", "all"].map(function (o) {
                    return el("option", {value: o}, o);
                }));
                s.value = v;
                return [s, function () { return s.value; }];
            }
            if (typeof v === "boolean") {
                var c = el("input", {id: id, type: "checkbox"});
                c.checked = v;
                return [c, function () { return c.checked; }];
            }
            if (name === "notify") {
                var boxes = NOTIFY.map(function (k) {
                    var b = el("input", {type: "checkbox", value: k, id: id + "-" + k});
                    b.checked = v.indexOf(k) >= 0;
                    return b;
                });
                var span = el("span", {id: id}, boxes.map(function (b) {
                    return el("label", {style: "font-weight:normal;margin-right:10px"}, [b, " " + b.value]);
                }));
                return [span, function () { return boxes.filter(function (b) { return b.checked; }).map(function (b) { return b.value; }); }];
            }
            if (Array.isArray(v)) {
                var t = el("input", {id: id, type: "text", className: "sm-input", value: v.join(", ")});
                var numeric = name === "auto_archive_users";
                return [t, function () {
                    return t.value.split(",").map(function (s) { return s.trim(); }).filter(Boolean)
                        .map(function (s) { return numeric && /^\d+$/.test(s) ? Number(s) : s; });
                }];
            }
            var text = el("input", {id: id, type: "text", className: "sm-input", value: v === null ? "" : String(v)});
            return [text, function () {
                var s = text.value.trim();
                return typeof v === "number" || name === "copies_required" ? (/^\d+$/.test(s) ? Number(s) : s) : s;
            }];
        }
        function render(data) {
            SM.clear(form);
            Object.keys(data.preferences).forEach(function (name) {
                var pref = data.preferences[name], made = input(name, pref);
                inputs[name] = made[1];
                loaded[name] = JSON.stringify(made[1]());
                form.appendChild(el("label", {"for": "sm-pref-" + name}, SM.label(name)));
                form.appendChild(made[0]);
                form.appendChild(el("span", {className: "sm-help"}, pref.label));
            });
            var mail = SM.clear(document.getElementById("sm-mail"));
            mail.appendChild(el("dt", {}, "Server"));
            mail.appendChild(el("dd", {}, data.mail.host ? data.mail.host + ":" + data.mail.port : "not set (omero.mail.host)"));
            mail.appendChild(el("dt", {}, "Sender"));
            mail.appendChild(el("dd", {}, data.mail.from));
            mail.appendChild(el("dt", {}, ""));
            mail.appendChild(el("dd", {className: "sm-hint"}, data.mail.note));
        }
        SM.api("admin/preferences/").then(render).catch(fail);
        document.getElementById("sm-settings-save").addEventListener("click", function () {
            var values = {};
            Object.keys(inputs).forEach(function (name) {
                var v = inputs[name]();
                if (JSON.stringify(v) !== loaded[name]) { values[name] = v; }
            });
            if (!Object.keys(values).length) { ok("Nothing changed."); return; }
            SM.api("admin/preferences/", {method: "POST", body: {values: values}}).then(function (data) {
                render(data);
                ok("Saved: " + Object.keys(values).map(SM.label).join(", ") + ".");
            }).catch(fail);
        });
    }

    /* -- locations ------------------------------------------------------------------ */
    function locationsPage() {
        var tbody = document.querySelector("#sm-locations-table tbody");
        function act(loc, action, text) {
            return SM.api("admin/locations/" + loc.id + "/" + action + "/", {method: "POST"}).then(function (answer) {
                ok(text + (answer.job ? " (job " + answer.job.id + ")" : ""));
                load();
            }).catch(fail);
        }
        function edit(loc) {
            var box = SM.clear(document.getElementById("sm-location-edit"));
            var name = el("input", {type: "text", className: "sm-input", value: loc.name, id: "sm-edit-name"});
            var max = el("input", {type: "text", className: "sm-input", value: SM.bytes(loc.max_bytes), id: "sm-edit-max"});
            var mark = el("input", {type: "number", className: "sm-input", value: loc.purge_watermark, min: 0, max: 100, id: "sm-edit-watermark"});
            var purge = el("input", {type: "checkbox", id: "sm-edit-purge"});
            purge.checked = loc.purge_enabled;
            var mount = el("input", {type: "text", className: "sm-input", value: loc.mount, id: "sm-edit-mount"});
            var s3 = {};
            var s3Fields = [];
            if (loc.type === "s3") {
                ["endpoint_url", "region", "bucket", "prefix", "storage_class", "addressing_style",
                 "credentials"].forEach(function (name) {
                    s3[name] = el("input", {type: "text", className: "sm-input", id: "sm-edit-s3-" + name,
                                            value: (loc.s3 && loc.s3[name]) || ""});
                    s3Fields.push(el("label", {"for": "sm-edit-s3-" + name}, "S3 " + name.replace("_", " ")), s3[name]);
                });
                s3Fields.push(el("span", {className: "sm-help"}, "A new bucket, prefix or endpoint must already hold this location's marker."));
            }
            box.appendChild(el("h2", {style: "margin-top:10px"}, "Edit location " + loc.id));
            box.appendChild(el("form", {className: "sm-form", id: "sm-location-edit-form"}, [
                el("label", {"for": "sm-edit-name"}, "Name"), name,
                el("label", {"for": "sm-edit-max"}, "Maximum size"), max,
                el("label", {"for": "sm-edit-watermark"}, "Purge watermark (%)"), mark,
                el("label", {"for": "sm-edit-purge"}, "Cache purge enabled"), purge,
                el("label", {"for": "sm-edit-mount"}, "Mount point"), mount,
                el("span", {className: "sm-help"}, "Only to where the disk holding folder " + loc.id + "/ is now mounted."),
                s3Fields,
                el("span"), el("span", {}, [
                    button("Save", function () {
                        var body = {name: name.value, max_bytes: max.value, purge_watermark: Number(mark.value),
                                    purge_enabled: purge.checked};
                        if (mount.value !== loc.mount) { body.mount = mount.value; }
                        if (loc.type === "s3") {
                            body.s3 = {};
                            Object.keys(s3).forEach(function (name) {
                                var value = s3[name].value.trim();
                                if (value !== ((loc.s3 && loc.s3[name]) || "")) { body.s3[name] = value; }
                            });
                        }
                        SM.api("admin/locations/" + loc.id + "/", {method: "POST", body: body}).then(function () {
                            SM.clear(box); ok("Location " + loc.id + " saved."); load();
                        }).catch(fail);
                    }, "sm-btn-primary", {do: "save"}),
                    " ", button("Cancel", function () { SM.clear(box); })])
            ]));
        }
        function load() {
            return SM.api("admin/locations/").then(function (data) {
                SM.clear(tbody);
                if (!data.locations.length) {
                    tbody.appendChild(el("tr", {}, el("td", {colSpan: 11, className: "sm-empty"}, "No location yet: add one below.")));
                }
                data.locations.forEach(function (loc) {
                    var actions = [];
                    if (!loc.current) { actions.push(button("Make current", function () { act(loc, "current", loc.name + " is now current."); }, "", {do: "current"})); }
                    actions.push(button("Edit", function () { edit(loc); }, "", {do: "edit"}));
                    actions.push(button("Rescan", function () { act(loc, "rescan", "Rescan of " + loc.name + " queued"); }, "", {do: "rescan"}));
                    if (loc.type === "tape" || loc.type === "automated") {
                        actions.push(button("Purge cache", function () { act(loc, "purge-cache", "Cache purge of " + loc.name + " queued"); }, "", {do: "purge-cache"}));
                    }
                    if (!loc.copies) {
                        actions.push(button("Remove", function () { act(loc, "remove", loc.name + " removed."); }, "sm-btn-danger", {do: "remove"}));
                    }
                    tbody.appendChild(el("tr", {dataset: {location: loc.id}}, [
                        el("td", {className: "sm-num"}, String(loc.id)),
                        el("td", {}, [loc.name, loc.current ? [" ", el("span", {className: "sm-badge sm-badge-archived",
                                                                                  title: "new archives go here"}, "current")] : null]),
                        el("td", {}, loc.type), el("td", {}, el("small", {}, loc.mount)),
                        el("td", {}, loc.online ? SM.badge("online") : SM.badge("failed", "<mount>/" + loc.id + "/ missing")),
                        el("td", {className: "sm-num"}, SM.number(loc.copies)),
                        el("td", {className: "sm-num"}, [SM.bytes(loc.used_bytes), loc.measured_at !== undefined ?
                            el("small", {className: "sm-cache-figures", title: "measured " + (loc.measured_at ? SM.datetime(loc.measured_at) : "never")},
                               [el("br"), "write queue " + SM.bytes(loc.write_bytes) + ", cache " + SM.bytes(loc.read_bytes) +
                                ", on the medium only " + SM.bytes(loc.medium_only_bytes) + " (" + SM.number(loc.medium_only_copies) + " copies)"]) : null]),
                        el("td", {className: "sm-num"}, SM.bytes(loc.max_bytes)),
                        el("td", {className: "sm-num"}, loc.purge_watermark + "%"),
                        el("td", {}, loc.purge_enabled ? "enabled" : "off"),
                        el("td", {}, actions)
                    ]));
                });
            }).catch(fail);
        }
        function s3Settings(field) {
            var out = {};
            ["bucket", "endpoint_url", "region", "prefix", "storage_class", "addressing_style",
             "credentials"].forEach(function (name) {
                var value = field("s3_" + name).value.trim();
                if (value) { out[name] = value; }
            });
            return out;
        }
        var typeField = document.getElementById("sm-loc-type");
        typeField.addEventListener("change", function () {
            document.getElementById("sm-loc-s3").hidden = typeField.value !== "s3";
        });
        document.getElementById("sm-location-add").addEventListener("submit", function (event) {
            event.preventDefault();
            var f = event.target;
            var field = function (name) { return f.elements.namedItem(name); };  // not f.name: the form's own
            var body = {name: field("name").value, type: field("type").value, mount: field("mount").value,
                        max_bytes: field("max_bytes").value,
                        purge_watermark: Number(field("purge_watermark").value || 80),
                        purge_enabled: field("purge_enabled").checked,
                        xml_folder: field("xml_folder").value, current: field("current").checked};
            if (body.type === "s3") { body.s3 = s3Settings(field); }
            SM.api("admin/locations/", {method: "POST", body: body}).then(function (answer) {
                ok("Location " + answer.location.name + " added (id " + answer.location.id + ").");
                f.reset();
                load();
            }).catch(fail);
        });
        load();
    }

    /* -- quotas --------------------------------------------------------------------- */
    function quotasPage() {
        var people = {user: [], group: []};
        function nameOf(scope, id) {
            var found = people[scope].filter(function (p) { return p.id === id; })[0];
            return found ? found.name : "#" + id;
        }
        function post(body, text) {
            return SM.api("admin/quotas/", {method: "POST", body: body}).then(function (data) {
                render(data); ok(text);
            }).catch(fail);
        }
        function render(data) {
            people = {user: data.people.users, group: data.people.groups};
            var defaults = {user: "", group: ""};
            var tbody = SM.clear(document.querySelector("#sm-quota-exceptions tbody"));
            data.quotas.forEach(function (q) {
                if (q.omero_id === null) { defaults[q.scope] = SM.bytes(q.max_bytes); return; }
                tbody.appendChild(el("tr", {dataset: {scope: q.scope, id: q.omero_id}}, [
                    el("td", {}, q.scope), el("td", {}, nameOf(q.scope, q.omero_id) + " (id " + q.omero_id + ")"),
                    el("td", {className: "sm-num"}, SM.bytes(q.max_bytes)),
                    el("td", {}, button("Remove", function () {
                        post({scope: q.scope, omero_id: q.omero_id, max_bytes: null}, "Exception removed.");
                    }, "", {do: "remove"}))]));
            });
            if (!tbody.children.length) { tbody.appendChild(el("tr", {}, el("td", {colSpan: 4, className: "sm-empty"}, "No exception."))); }
            document.getElementById("sm-quota-user").value = defaults.user;
            document.getElementById("sm-quota-group").value = defaults.group;
            fillWho();
        }
        function fillWho() {
            var scope = document.getElementById("sm-quota-scope").value;
            var who = SM.clear(document.getElementById("sm-quota-who"));
            people[scope].forEach(function (p) { who.appendChild(el("option", {value: p.id}, p.name + " (id " + p.id + ")")); });
        }
        document.getElementById("sm-quota-scope").addEventListener("change", fillWho);
        document.getElementById("sm-quota-defaults").addEventListener("submit", function (event) {
            event.preventDefault();
            var user = document.getElementById("sm-quota-user").value.trim();
            var group = document.getElementById("sm-quota-group").value.trim();
            SM.api("admin/quotas/", {method: "POST", body: {scope: "user", omero_id: null, max_bytes: user || null}})
                .then(function () { return post({scope: "group", omero_id: null, max_bytes: group || null}, "Default quotas saved."); })
                .catch(fail);
        });
        document.getElementById("sm-quota-add").addEventListener("submit", function (event) {
            event.preventDefault();
            post({scope: document.getElementById("sm-quota-scope").value,
                  omero_id: Number(document.getElementById("sm-quota-who").value),
                  max_bytes: document.getElementById("sm-quota-size").value.trim() || null}, "Exception saved.");
        });
        SM.api("admin/quotas/").then(render).catch(fail);
    }

    /* -- schedules and tools -------------------------------------------------------- */
    var TASKS = {
        backup: "Back up the app's database (rotating copies)",
        sync: "Bring the list of Projects and Screens in line with OMERO",
        scan: "Scan every Project and Screen",
        cache_purge: "Purge the read caches of tape and automated locations",
        auto_archive: "Archive collections by the automatic archive rules",
        quota_check: "Check quotas and e-mail who is over"
    };

    function tasksPage() {
        var tbody = document.querySelector("#sm-schedules tbody");
        function render(data) {
            SM.clear(tbody);
            Object.keys(data.schedules).forEach(function (kind) {
                var entry = data.schedules[kind];
                var times = el("input", {type: "text", className: "sm-input", value: entry.times.join(", "),
                                         id: "sm-times-" + kind, size: 24, "aria-label": kind + " times"});
                tbody.appendChild(el("tr", {dataset: {kind: kind}}, [
                    el("td", {}, SM.label(kind)), el("td", {}, TASKS[kind] || ""), el("td", {}, times),
                    el("td", {}, entry.next_run ? SM.datetime(entry.next_run) : "not scheduled"),
                    el("td", {}, [
                        button("Save", function () {
                            SM.api("admin/schedules/", {method: "POST", body: {kind: kind, times: times.value}})
                                .then(function (answer) { render(answer); ok(capital(SM.label(kind)) + " schedule saved."); })
                                .catch(fail);
                        }, "sm-btn-primary", {do: "save"}), " ",
                        button("Run now", function () {
                            SM.api("admin/schedules/" + kind + "/run/", {method: "POST"})
                                .then(function (answer) { ok(capital(SM.label(kind)) + " job " + answer.job.id + " queued."); })
                                .catch(fail);
                        }, "", {do: "run"})])
                ]));
            });
        }
        SM.api("admin/schedules/").then(render).catch(fail);
        document.getElementById("sm-test-email").addEventListener("click", function () {
            SM.api("admin/test-email/", {method: "POST"}).then(function (answer) {
                ok("Test e-mail sent to " + answer.sent_to.join(", ") + ".");
            }).catch(fail);
        });
    }

    /* -- requests ------------------------------------------------------------------- */
    function requestsPage() {
        function decide(r, verdict, comment) {
            SM.api("requests/" + r.id + "/" + verdict + "/", {method: "POST", body: {comment: comment}})
                .then(function () { ok("Request " + r.id + " " + (verdict === "approve" ? "approved: job queued" : "declined") + (document.body.dataset.mail === "true" ? "; the requester is told by e-mail." : "; the requester sees it under My requests.")); load(); })
                .catch(fail);
        }
        function load() {
            Promise.all([SM.api("requests/", {params: {state: "pending"}}),
                         SM.api("requests/", {params: {state: "decided"}})]).then(function (answers) {
                var pending = SM.clear(document.querySelector("#sm-pending tbody"));
                answers[0].items.forEach(function (r) {
                    var comment = el("input", {type: "text", className: "sm-input", placeholder: "comment (optional)", size: 18});
                    pending.appendChild(el("tr", {dataset: {request: r.id}}, [
                        el("td", {className: "sm-num"}, String(r.id)), el("td", {}, r.kind),
                        el("td", {className: "sm-name"}, r.collection.key + " " + r.collection.name),
                        el("td", {}, r.collection.owner), el("td", {}, r.collection.group),
                        el("td", {}, r.requested_by.name), el("td", {}, r.comment),
                        el("td", {}, SM.datetime(r.created)),
                        el("td", {}, r.may_decide ? [comment, " ",
                            button("Approve", function () { decide(r, "approve", comment.value); }, "sm-btn-primary", {do: "approve"}), " ",
                            button("Decline", function () { decide(r, "decline", comment.value); }, "sm-btn-danger", {do: "decline"})]
                            : SM.badge("pending"))]));
                });
                if (!answers[0].items.length) { pending.appendChild(el("tr", {}, el("td", {colSpan: 9, className: "sm-empty"}, "No request waiting."))); }
                var decided = SM.clear(document.querySelector("#sm-decided tbody"));
                answers[1].items.forEach(function (r) {
                    decided.appendChild(el("tr", {dataset: {request: r.id}}, [
                        el("td", {className: "sm-num"}, String(r.id)), el("td", {}, r.kind),
                        el("td", {className: "sm-name"}, r.collection.key + " " + r.collection.name),
                        el("td", {}, r.requested_by.name), el("td", {}, SM.badge(r.state)),
                        el("td", {}, r.decided_by ? r.decided_by.name : ""), el("td", {}, r.decision_comment),
                        el("td", {}, SM.datetime(r.decided)), el("td", {className: "sm-num"}, r.job ? String(r.job) : "")]));
                });
                if (!answers[1].items.length) { decided.appendChild(el("tr", {}, el("td", {colSpan: 9, className: "sm-empty"}, "Nothing decided yet."))); }
            }).catch(fail);
        }
        load();
    }

    ({settings: settingsPage, locations: locationsPage, quotas: quotasPage, tasks: tasksPage,
      requests: requestsPage}[pageName] || function () {})();
})();
