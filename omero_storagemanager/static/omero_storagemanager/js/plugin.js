/* The webclient plugins. right(): the storage state of the selected object's
   collection(s) (GET objects/<type>/<id>/), its copies and the actions the user may
   take (POST actions/), refreshed while a job runs; the timer stops as soon as the
   webclient empties the panel (every selection change does). center(): per Dataset or
   Plate sizes of the selected containers' collections (GET breakdown/). */
(function () {
    "use strict";
    var el = SM.el;
    var ACTIONS = [["scan", "Scan", ""], ["archive", "Archive", "sm-btn-primary"],
                   ["request_archive", "Request archive", ""], ["purge", "Purge", "sm-btn-danger"],
                   ["restore", "Restore", "sm-btn-primary"], ["request_restore", "Request restore", "sm-btn-primary"]];
    var ACTIVE = ["queued", "running", "waiting"];

    function fact(dt, dd) { return [el("dt", {}, dt), el("dd", {}, dd)]; }

    function collectionBox(c, root, refresh) {
        var box = el("div", {className: "sm-card sm-plugin-collection", dataset: {key: c.key, state: c.state}});
        box.appendChild(el("h2", {}, [c.kind === "project" ? "Project " : "Screen ", el("b", {}, c.name), " ",
                                      SM.badge(c.state, c.stored_state !== c.state ? "stored state: " + SM.label(c.stored_state) : null)]));
        if (c.restore_help) {
            box.appendChild(el("div", {className: "sm-message sm-message-error sm-purged-help"}, c.restore_help));
        }
        var shared = c.shared_with && c.shared_with.length;
        if (shared || c.shared_bytes) {
            box.appendChild(el("div", {className: "sm-message sm-confirm sm-shared"},
                ["Shared files: " + SM.bytes(c.shared_bytes) + " of its data " +
                 (shared ? "is also held by " + c.shared_with.map(function (o) {
                     return o.name ? o.key + " (" + o.name + ")" : o.key; }).join(", ") : "is held by other collections too") +
                 ". Those files stay online while any holder is online."]));
        }
        box.appendChild(el("dl", {className: "sm-facts"}, [
            fact("Owner", c.owner.name + " (" + c.group.name + ")"),
            fact("Files", SM.number(c.files) + " (" + SM.number(c.images) + " images)"),
            fact("Size", SM.bytes(c.bytes)),
            fact("Archived", c.archived_bytes ? SM.bytes(c.archived_bytes) : "nothing yet"),
            fact("Newest file", SM.datetime(c.newest_file)),
            fact("Last access", SM.datetime(c.last_access)),
            fact("Last scan", SM.datetime(c.last_scan))
        ]));
        if (c.job) {
            box.appendChild(el("div", {className: "sm-plugin-job", style: "margin:6px 0"},
                               [el("b", {}, "Job " + c.job.id + " (" + SM.label(c.job.kind) + "): "), SM.progress(c.job),
                                c.job.wait_reason ? el("div", {className: "sm-hint"}, c.job.wait_reason) : null,
                                c.job.error ? el("div", {className: "sm-bad"}, c.job.error) : null]));
        }
        box.appendChild(el("h2", {style: "margin-top:8px"}, "Copies"));
        if (c.copies.length) {
            box.appendChild(el("table", {className: "sm-table sm-copies"}, [
                el("thead", {}, el("tr", {}, ["Location", "Date", "Verified", "Last audit"].map(function (h) { return el("th", {}, h); }))),
                el("tbody", {}, c.copies.map(function (copy) {
                    return el("tr", {}, [el("td", {}, copy.location.name),
                                         el("td", {}, SM.date(copy.created)),
                                         el("td", {}, copy.verified ? SM.badge("verified") : SM.badge(copy.state)),
                                         el("td", {}, copy.last_audit ? SM.date(copy.last_audit) + (copy.last_audit_ok ? " ok" : " FAILED") : "never")]);
                }))]));
        } else {
            box.appendChild(el("div", {className: "sm-hint"}, "No copy in the archive."));
        }
        // The latest requests and their fate: pending, declined with the reason, the
        // approved job's state, done.
        c.requests.slice(0, 3).forEach(function (r) {
            var text = "Request to " + r.kind + " by " + r.requested_by.name + " on " + SM.date(r.created) + ": " +
                (r.fate === "pending" ? "waiting for approval" : SM.label(r.fate)) +
                (r.decision_comment ? " (“" + r.decision_comment + "”)" : "") + ".";
            box.appendChild(el("div", {className: "sm-hint sm-request", dataset: {fate: r.fate}}, text));
        });
        var disabled = c.disabled || {};
        var buttons = ACTIONS.filter(function (a) { return c.actions.indexOf(a[0]) >= 0; }).map(function (a) {
            return el("button", {className: "sm-btn " + a[2], type: "button", dataset: {action: a[0]},
                                 disabled: !!disabled[a[0]], title: disabled[a[0]],
                                 onclick: function () { ask(c, a, root, box, refresh); }}, a[1]);
        });
        var reasons = ACTIONS.filter(function (a) { return disabled[a[0]] && c.actions.indexOf(a[0]) >= 0; })
            .map(function (a) { return a[1] + ": " + disabled[a[0]]; });
        box.appendChild(el("div", {className: "sm-toolbar sm-plugin-actions", style: "margin-top:8px"},
                           buttons.length ? buttons : el("span", {className: "sm-hint"}, "No action you may take here.")));
        if (reasons.length) { box.appendChild(el("div", {className: "sm-hint sm-action-reasons"}, reasons.join(" · "))); }
        box.appendChild(el("a", {href: SM.pageRoot + "collection/" + c.key + "/", target: "_blank",
                                 className: "sm-collection-link"}, "Open the collection page in the Storage tab"));
        return box;
    }

    function ask(c, action, root, box, refresh) {
        var bar = el("div", {className: "sm-confirm"});
        var go = function () {
            SM.api("actions/", {method: "POST", body: {action: action[0], collections: [c.key]}}).then(function (answer) {
                SM.message(answer.job ? "Job " + answer.job.id + " (" + SM.label(answer.job.kind) + ") queued."
                                      : "Request sent" + (answer.emails ? ": you will get an e-mail when it is decided." : ": its fate shows here and under Storage > Overview > My requests."), "ok",
                           root.querySelector(".sm-plugin-messages"));
                refresh();
            }).catch(function (error) {
                SM.message(error.message, "error", root.querySelector(".sm-plugin-messages"));
            });
        };
        if (action[0] !== "purge") { go(); return; }
        bar.appendChild(el("span", {}, "Purge " + c.key + "? Its files leave OMERO's storage; the verified copies stay."));
        bar.appendChild(el("button", {className: "sm-btn sm-btn-danger", type: "button", dataset: {confirm: "yes"},
                                      onclick: function () { bar.remove(); go(); }}, "Purge"));
        bar.appendChild(el("button", {className: "sm-btn", type: "button", onclick: function () { bar.remove(); }}, "Cancel"));
        box.insertBefore(bar, box.querySelector(".sm-plugin-actions"));
    }

    function right(container, dtype, oid) {
        var root = el("div", {className: "sm-plugin sm-plugin-right", dataset: {object: dtype + "-" + oid}},
                      [el("div", {className: "sm-plugin-messages"}), el("div", {className: "sm-plugin-body sm-muted"}, "Loading…")]);
        container.appendChild(root);
        var timer = null, learned = false;
        var path = "objects/" + encodeURIComponent(dtype) + "/" + encodeURIComponent(oid) + "/";
        function fetchObject() {
            /* A GET changes nothing: Projects or Screens created in OMERO since the last
               sync come back in "unknown", and one POST lets the app learn them. */
            return SM.api(path).then(function (data) {
                if (learned || !data.unknown || !data.unknown.length) { return data; }
                learned = true;
                return SM.api(path, {method: "POST"});
            });
        }
        function load() {
            return fetchObject().then(function (data) {
                if (!document.body.contains(root)) { return; }  // panel emptied meanwhile
                var body = SM.clear(root.querySelector(".sm-plugin-body"));
                body.className = "sm-plugin-body";
                if (data.note) { body.appendChild(el("p", {className: "sm-hint sm-note"}, data.note)); }
                data.collections.forEach(function (c) { body.appendChild(collectionBox(c, root, load)); });
                var busy = data.collections.some(function (c) {
                    return (c.job && ACTIVE.indexOf(c.job.state) >= 0) || c.state === "waiting" || c.state === "running";
                });
                root.dataset.polling = busy ? "yes" : "no";
                if (busy && timer === null) {
                    timer = SM.poll(load, 2000, root);
                } else if (!busy && timer !== null) {
                    clearInterval(timer);
                    timer = null;
                }
            }).catch(function (error) {
                if (!document.body.contains(root)) { return; }
                var body = SM.clear(root.querySelector(".sm-plugin-body"));
                body.appendChild(el("p", {className: "sm-hint"}, error.message));
            });
        }
        load();
        return root;
    }

    function center(container, selected) {
        var ids = selected.map(function (s) { return s.id; });
        var root = el("div", {className: "sm-plugin sm-plugin-center", dataset: {objects: ids.join(",")}},
                      el("p", {className: "sm-muted"}, "Loading…"));
        SM.clear(container).appendChild(root);
        var chosen = {};
        ids.forEach(function (id) { chosen[id] = true; });
        SM.api("breakdown/", {params: {objects: ids.join(",")}}).then(function (data) {
            if (!document.body.contains(root)) { return; }
            SM.clear(root);
            if (!data.collections.length) {
                root.appendChild(el("p", {className: "sm-hint"}, "The selection is in no Project or Screen."));
            }
            data.collections.forEach(function (c) {
                var total = c.children.reduce(function (sum, r) { return Math.max(sum, r.bytes); }, 0) || 1;
                root.appendChild(el("div", {className: "sm-card", dataset: {key: c.key}}, [
                    el("h2", {}, [c.key + " ", el("b", {}, c.name), " ", SM.badge(c.state), " ",
                                  el("small", {}, SM.bytes(c.bytes) + " in " + SM.number(c.files) + " files")]),
                    el("table", {className: "sm-table sm-breakdown"}, [
                        el("thead", {}, el("tr", {}, [el("th", {}, c.key.indexOf("Project") === 0 ? "Dataset" : "Plate"),
                                                      el("th", {className: "sm-num"}, "Images"), el("th", {className: "sm-num"}, "Files"),
                                                      el("th", {className: "sm-num"}, "Size"), el("th", {}, "")])),
                        el("tbody", {}, c.children.map(function (r) {
                            var mine = chosen[r.type + "-" + r.id];
                            return el("tr", {className: mine ? "sm-selected" : "", dataset: {child: r.type + "-" + r.id}}, [
                                el("td", {}, r.name), el("td", {className: "sm-num"}, SM.number(r.images)),
                                el("td", {className: "sm-num"}, SM.number(r.files)),
                                el("td", {className: "sm-num"}, SM.bytes(r.bytes)),
                                el("td", {}, el("span", {className: "sm-progress"}, el("span", {style: "width:" + Math.round(100 * r.bytes / total) + "%"})))]);
                        }))]),
                    el("p", {className: "sm-hint"}, "Sizes as OMERO records them; a file used by images of several " +
                       (c.key.indexOf("Project") === 0 ? "datasets" : "plates") + " counts in each.")]));
            });
        }).catch(function (error) {
            if (document.body.contains(root)) { SM.clear(root).appendChild(el("p", {className: "sm-hint"}, error.message)); }
        });
        return root;
    }

    SM.plugins = {right: right, center: center};
})();
