/*
 * The portal page: themed from the portal's /branding, then sign-in, new
 * requests (forms from /request-types), the user's requests, approvals and
 * status, all through the portal API of the same origin.  No framework and
 * no build step.  Data only ever reaches the page as text (textContent,
 * attribute values), never as markup, and the page's Content-Security-Policy
 * forbids inline code, so nothing here writes any.
 */
"use strict";

(function () {
	// /portal/c/{slug}/ speaks /portal/v1/c/{slug}; /portal/ (found by Host) /portal/v1
	var m = /^\/portal\/c\/([^/]+)\//.exec(location.pathname);
	var API = m ? "/portal/v1/c/" + m[1] : "/portal/v1";
	var TOKEN_KEY = "portal.token:" + API;
	var POLL_MS = 5000;

	var state = {
		view: null,
		types: [],		// from /request-types; [] = the free form
		typesLoaded: false,
		idemKey: null,		// one per submission, kept across its retries
		pollTimer: null
	};

	function $(id) { return document.getElementById(id); }

	function el(tag, attrs, text) {
		var e = document.createElement(tag);
		if (attrs)
			Object.keys(attrs).forEach(function (k) {
				if (attrs[k] !== undefined && attrs[k] !== null)
					e.setAttribute(k, attrs[k]);
			});
		if (text !== undefined && text !== null)
			e.textContent = String(text);
		return e;
	}

	function clear(node) {
		while (node.firstChild)
			node.removeChild(node.firstChild);
	}

	function show(node, on) { node.hidden = !on; }

	// crypto.randomUUID exists only in secure contexts; a portal on its own
	// domain may be served over plain HTTP behind a proxy, so build a v4 UUID
	function uuid() {
		var b = new Uint8Array(16);
		crypto.getRandomValues(b);
		b[6] = (b[6] & 0x0f) | 0x40;
		b[8] = (b[8] & 0x3f) | 0x80;
		var h = Array.prototype.map.call(b, function (x) { return (x + 0x100).toString(16).slice(1); }).join("");
		return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
	}

	function token() {
		try { return sessionStorage.getItem(TOKEN_KEY); } catch (e) { return null; }
	}

	function setToken(t) {
		try {
			if (t)
				sessionStorage.setItem(TOKEN_KEY, t);
			else
				sessionStorage.removeItem(TOKEN_KEY);
		} catch (e) { /* storage refused: the session lasts as long as the page */ }
		state.memToken = t;
	}

	function currentToken() { return token() || state.memToken || null; }

	// Calls the API; resolves to {status, body, headers}, never rejects on
	// an HTTP error.  A 401 on a signed-in call ends the session.
	function call(method, path, body, extra) {
		var headers = { "Accept": "application/json" };
		var t = currentToken();
		if (t)
			headers["Authorization"] = "Bearer " + t;
		if (body !== undefined)
			headers["Content-Type"] = "application/json";
		Object.keys(extra || {}).forEach(function (k) { headers[k] = extra[k]; });
		return fetch(API + path, {
			method: method, headers: headers, credentials: "omit", cache: "no-store",
			body: body === undefined ? undefined : JSON.stringify(body)
		}).then(function (r) {
			return r.text().then(function (text) {
				var data = null;
				try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
				if (r.status === 401 && t && path !== "/login") {
					setToken(null);
					signedOut("Your session has ended. Please sign in again.");
				}
				return { status: r.status, body: data, headers: r.headers };
			});
		});
	}

	function problemText(res, fallback) {
		var b = res.body || {};
		return (typeof b.detail === "string" && b.detail) || (typeof b.title === "string" && b.title) || fallback;
	}

	function notice(text) {
		var n = $("notice");
		n.textContent = text || "";
		show(n, !!text);
	}

	function fmtTime(s) {
		if (!s)
			return "";
		var d = new Date(s);
		return isNaN(d.getTime()) ? String(s) : d.toLocaleString();
	}

	function label(s) {
		return String(s || "").replace(/_/g, " ");
	}

	// ---- branding ----

	function applyBranding(b) {
		var name = typeof b.display_name === "string" && b.display_name ? b.display_name : "Portal";
		document.title = name;
		$("brand-name").textContent = name;
		if (typeof b.logo_url === "string" && /^(https:|data:image\/)/i.test(b.logo_url)) {
			var img = $("brand-logo");
			img.src = b.logo_url;
			img.alt = name;
			show(img, true);
		}
		if (typeof b.primary_color === "string" && /^#[0-9a-fA-F]{3,8}$/.test(b.primary_color))
			document.documentElement.style.setProperty("--brand", b.primary_color);
		if (typeof b.support_email === "string" && b.support_email.indexOf("@") > 0) {
			var a = $("support-email");
			a.textContent = b.support_email;
			a.href = "mailto:" + encodeURIComponent(b.support_email).replace(/%40/g, "@");
			show($("support"), true);
		}
	}

	// ---- views ----

	var VIEWS = ["unavailable", "login", "submit", "requests", "approvals", "status"];

	function go(view) {
		state.view = view;
		VIEWS.forEach(function (v) { show($("view-" + v), v === view); });
		Array.prototype.forEach.call(document.querySelectorAll("#nav .tab"), function (b) {
			if (b.getAttribute("data-view") === view)
				b.setAttribute("aria-current", "page");
			else
				b.removeAttribute("aria-current");
		});
		refresh();
	}

	function refresh() {
		if (!currentToken())
			return;
		if (state.view === "submit")
			loadTypes();
		else if (state.view === "requests")
			loadRequests();
		else if (state.view === "approvals")
			loadTasks();
		else if (state.view === "status")
			loadStatus();
	}

	function signedIn() {
		show($("nav"), true);
		notice("");
		go("submit");
	}

	function signedOut(msg) {
		show($("nav"), false);
		state.typesLoaded = false;
		go("login");
		notice(msg || "");
	}

	// ---- sign-in ----

	function onLogin(ev) {
		ev.preventDefault();
		var err = $("login-error"), btn = $("login-submit");
		var email = $("login-email").value.trim(), pw = $("login-password").value;
		show(err, false);
		if (!email || !pw) {
			err.textContent = "Enter your email and password.";
			show(err, true);
			return;
		}
		btn.disabled = true;
		call("POST", "/login", { email: email, password: pw }).then(function (res) {
			btn.disabled = false;
			if (res.status === 200 && res.body && typeof res.body.access_token === "string") {
				setToken(res.body.access_token);
				$("login-password").value = "";
				signedIn();
				return;
			}
			if (res.status === 429) {
				var after = parseInt(res.headers.get("Retry-After") || "", 10);
				err.textContent = "Too many attempts. Try again" + (after > 0 ? " in " + after + " seconds." : " later.");
			} else if (res.status === 401 || res.status === 400) {
				err.textContent = "The email or password is not correct.";
			} else {
				err.textContent = problemText(res, "Signing in failed. Try again.");
			}
			show(err, true);
		}, function () {
			btn.disabled = false;
			err.textContent = "The portal cannot be reached. Check your connection.";
			show(err, true);
		});
	}

	// ---- new request ----

	var FREE_FORM = {
		type: "change", title: "Request", description: "",
		fields: [
			{ name: "summary", type: "string", title: "Summary", required: true },
			{ name: "details", type: "string", title: "Details" }
		],
		free: true
	};

	function loadTypes() {
		if (state.typesLoaded)
			return;
		call("GET", "/request-types").then(function (res) {
			var items = res.status === 200 && res.body && Array.isArray(res.body.items) ? res.body.items : [];
			state.types = items.filter(function (t) { return t && typeof t.type === "string"; });
			state.typesLoaded = res.status === 200 || res.status === 404;
			renderTypes();
		}, function () { renderTypes(); });
	}

	function currentType() {
		var sel = $("request-type");
		if (!state.types.length)
			return FREE_FORM;
		var t = state.types[sel.selectedIndex] || state.types[0];
		if (!Array.isArray(t.fields) || !t.fields.length)
			return { type: t.type, title: t.title, description: t.description, fields: FREE_FORM.fields, free: true };
		return t;
	}

	function renderTypes() {
		var sel = $("request-type");
		clear(sel);
		if (!state.types.length) {
			// no list of types: the free form files a change request
			sel.appendChild(el("option", { value: "change" }, "Change request"));
		} else {
			state.types.forEach(function (t) {
				sel.appendChild(el("option", { value: t.type }, t.title || label(t.type)));
			});
		}
		renderFields();
	}

	function fieldId(name) { return "field-" + name.replace(/[^A-Za-z0-9_-]/g, "_"); }

	function renderFields() {
		var t = currentType(), box = $("request-fields");
		$("type-description").textContent = t.description || "";
		clear(box);
		state.idemKey = uuid();
		show($("request-error"), false);
		t.fields.forEach(function (f) {
			if (!f || typeof f.name !== "string")
				return;
			var id = fieldId(f.name), wrap = el("div", { "class": "field" }), input;
			var title = (f.title || label(f.name)) + (f.required ? " *" : "");
			var kind = f.type || "string";
			if (Array.isArray(f["enum"])) {
				input = el("select", { id: id, "data-testid": id });
				// a blank choice only where leaving the field out means something
				if (!f.required && f["default"] === undefined)
					input.appendChild(el("option", { value: "" }, ""));
				f["enum"].forEach(function (v, i) {
					var o = el("option", { value: String(i) }, String(v));
					if (f["default"] !== undefined && f["default"] === v)
						o.selected = true;
					input.appendChild(o);
				});
			} else if (kind === "boolean") {
				input = el("input", { id: id, "data-testid": id, type: "checkbox" });
				input.checked = f["default"] === true;
			} else if (kind === "integer" || kind === "number") {
				input = el("input", { id: id, "data-testid": id, type: "number", inputmode: kind === "integer" ? "numeric" : "decimal",
					step: kind === "integer" ? "1" : "any", min: f.minimum, max: f.maximum });
				if (typeof f["default"] === "number")
					input.value = String(f["default"]);
			} else if (kind === "array" || kind === "object") {
				input = el("textarea", { id: id, "data-testid": id, rows: "4", spellcheck: "false",
					placeholder: kind === "array" ? "[ ]  (JSON)" : "{ }  (JSON)" });
				if (f["default"] !== undefined)
					input.value = JSON.stringify(f["default"], null, 2);
			} else if (f.name === "description" || f.name === "details") {
				input = el("textarea", { id: id, "data-testid": id, rows: "4" });
				if (typeof f["default"] === "string")
					input.value = f["default"];
			} else {
				input = el("input", { id: id, "data-testid": id, type: "text", pattern: f.pattern });
				if (typeof f["default"] === "string")
					input.value = f["default"];
			}
			input.name = f.name;
			if (f.required)
				input.setAttribute("aria-required", "true");
			var lab = el("label", { "for": id }, title);
			var err = el("p", { id: "error-" + id.slice(6), "data-testid": "error-" + id.slice(6), "class": "error", role: "alert" });
			err.hidden = true;
			var hintId = null;
			if (typeof f.description === "string" && f.description) {
				hintId = id + "-hint";
				input.setAttribute("aria-describedby", hintId);
			}
			if (kind === "boolean") {
				wrap.className = "field check";
				wrap.appendChild(input);
				wrap.appendChild(lab);
			} else {
				wrap.appendChild(lab);
				wrap.appendChild(input);
			}
			if (hintId)
				wrap.appendChild(el("p", { id: hintId, "class": "hint" }, f.description));
			wrap.appendChild(err);
			box.appendChild(wrap);
		});
	}

	function fieldError(name, msg) {
		var e = $("error-" + fieldId(name).slice(6));
		if (!e)
			return false;
		e.textContent = msg;
		show(e, true);
		var input = $(fieldId(name));
		if (input)
			input.setAttribute("aria-invalid", "true");
		return true;
	}

	function clearErrors() {
		Array.prototype.forEach.call(document.querySelectorAll("#request-fields .error"), function (e) {
			e.textContent = "";
			show(e, false);
		});
		Array.prototype.forEach.call(document.querySelectorAll("#request-fields [aria-invalid]"), function (e) {
			e.removeAttribute("aria-invalid");
		});
		show($("request-error"), false);
	}

	// The form's values as the type's fields; null (errors shown) when
	// something cannot even be sent.  Empty optional fields are left out.
	function collect(t) {
		var out = {}, ok = true;
		t.fields.forEach(function (f) {
			var input = $(fieldId(f.name));
			if (!input)
				return;
			var kind = f.type || "string", v = input.value;
			if (Array.isArray(f["enum"])) {
				if (v !== "")
					out[f.name] = f["enum"][parseInt(v, 10)];
			} else if (kind === "boolean") {
				out[f.name] = input.checked;
			} else if (kind === "integer" || kind === "number") {
				if (v.trim() !== "") {
					var n = Number(v);
					if (!isFinite(n) || (kind === "integer" && Math.floor(n) !== n)) {
						ok = fieldError(f.name, kind === "integer" ? "Enter a whole number." : "Enter a number.") && false;
						return;
					}
					out[f.name] = n;
				}
			} else if (kind === "array" || kind === "object") {
				if (v.trim() !== "") {
					try {
						out[f.name] = JSON.parse(v);
					} catch (e) {
						ok = fieldError(f.name, "Enter valid JSON.") && false;
						return;
					}
				}
			} else if (v.trim() !== "") {
				out[f.name] = v;
			}
			if (f.required && out[f.name] === undefined) {
				fieldError(f.name, "Required.");
				ok = false;
			}
		});
		return ok ? out : null;
	}

	function onSubmit(ev) {
		ev.preventDefault();
		var t = currentType(), btn = $("request-submit"), gen = $("request-error");
		clearErrors();
		show($("request-created"), false);
		var fields = collect(t);
		if (!fields)
			return;
		btn.disabled = true;
		call("POST", "/requests", { type: t.type, fields: fields }, { "Idempotency-Key": state.idemKey }).then(function (res) {
			btn.disabled = false;
			if (res.status === 201 || res.status === 200) {
				var done = $("request-created");
				done.textContent = "Request sent. Reference: " + (res.body && res.body.id ? res.body.id : "");
				if (res.body && res.body.id)
					done.setAttribute("data-request-id", res.body.id);
				show(done, true);
				renderFields();		// a new form, a new key
				return;
			}
			if (res.status === 401)
				return;
			var shown = false, rest = [];
			var errors = res.body && Array.isArray(res.body.errors) ? res.body.errors : [];
			errors.forEach(function (e) {
				var path = typeof e.path === "string" ? e.path : "";
				var msg = typeof e.message === "string" ? e.message : "is not valid";
				var name = path.replace(/^\/?fields[/.]/, "").split(/[/.]/)[0];
				if (name && fieldError(name, msg))
					shown = true;
				else
					rest.push((path ? path + ": " : "") + msg);
			});
			if (!shown || rest.length) {
				gen.textContent = rest.length ? rest.join("; ") : problemText(res, "The request could not be sent.");
				show(gen, true);
			}
		}, function () {
			// the same key again on retry: the portal files it once
			btn.disabled = false;
			gen.textContent = "The portal cannot be reached. Your request was kept; send it again.";
			show(gen, true);
		});
	}

	// ---- lists ----

	function badge(stateName) {
		return el("span", { "class": "badge state-" + String(stateName).replace(/[^a-z_]/g, ""), "data-testid": "state" }, label(stateName));
	}

	function milestones(list) {
		if (!Array.isArray(list) || !list.length)
			return null;
		var ol = el("ol", { "class": "milestones", "aria-label": "Milestones" });
		list.forEach(function (ms) {
			var li = el("li", { "class": "ms-" + String(ms.state || "pending").replace(/[^a-z]/g, "") });
			li.appendChild(el("span", { "class": "ms-title" }, ms.title || ""));
			li.appendChild(el("span", { "class": "ms-state" }, label(ms.state) + (ms.reached_at ? " " + fmtTime(ms.reached_at) : "")));
			ol.appendChild(li);
		});
		return ol;
	}

	function summaryOf(r) {
		var f = r.fields || {};
		return typeof f.summary === "string" && f.summary ? f.summary :
			typeof f.title === "string" && f.title ? f.title : label(r.type) + " request";
	}

	function requestItem(r) {
		var li = el("li", { "class": "item", id: "request-" + r.id, "data-testid": "request-item", "data-request-id": r.id, "data-state": r.state });
		var head = el("div", { "class": "item-head" });
		head.appendChild(el("span", { "class": "item-title" }, summaryOf(r)));
		head.appendChild(badge(r.state));
		li.appendChild(head);
		li.appendChild(el("p", { "class": "meta" }, label(r.type) + " \u00b7 " + fmtTime(r.created_at)));
		var ms = milestones(r.milestones);
		if (ms)
			li.appendChild(ms);
		if (Array.isArray(r.approvals) && r.approvals.length) {
			var ul = el("ul", { "class": "approvals", "aria-label": "Approvals" });
			r.approvals.forEach(function (a) {
				ul.appendChild(el("li", null, (a.title || "Approval") + ": " + label(a.state)));
			});
			li.appendChild(ul);
		}
		return li;
	}

	function loadRequests() {
		call("GET", "/requests").then(function (res) {
			if (res.status !== 200 || !res.body)
				return;
			var list = $("requests-list"), items = Array.isArray(res.body.items) ? res.body.items : [];
			clear(list);
			items.forEach(function (r) { list.appendChild(requestItem(r)); });
			show($("requests-empty"), !items.length);
		}, function () {});
	}

	function decide(task, decision, li) {
		var comment = li.querySelector("textarea").value.trim();
		var body = { decision: decision };
		if (comment)
			body.comment = comment;
		Array.prototype.forEach.call(li.querySelectorAll("button"), function (b) { b.disabled = true; });
		call("POST", "/tasks/" + encodeURIComponent(task.id) + "/decision", body).then(function (res) {
			if (res.status === 200) {
				notice(decision === "approve" ? "Approved." : "Rejected.");
				loadTasks();
				return;
			}
			Array.prototype.forEach.call(li.querySelectorAll("button"), function (b) { b.disabled = false; });
			var err = li.querySelector(".error");
			err.textContent = res.status === 409 ? "This approval was already decided." :
				res.status === 403 ? "You may not decide this approval." : problemText(res, "The decision could not be sent.");
			show(err, true);
			if (res.status === 409)
				loadTasks();
		}, function () {
			Array.prototype.forEach.call(li.querySelectorAll("button"), function (b) { b.disabled = false; });
		});
	}

	function taskItem(t) {
		var li = el("li", { "class": "item", id: "task-" + t.id, "data-testid": "task-item", "data-task-id": t.id, "data-request-id": t.request_id });
		var head = el("div", { "class": "item-head" });
		head.appendChild(el("span", { "class": "item-title" }, t.title || "Approval"));
		head.appendChild(badge(t.overdue ? "overdue" : t.state));
		li.appendChild(head);
		if (t.due_at)
			li.appendChild(el("p", { "class": "meta" }, "Due " + fmtTime(t.due_at)));
		if (t.state === "open") {
			var cid = "comment-" + t.id;
			li.appendChild(el("label", { "for": cid }, "Comment (optional)"));
			li.appendChild(el("textarea", { id: cid, rows: "2", "data-testid": "task-comment" }));
			var row = el("div", { "class": "actions" });
			var yes = el("button", { type: "button", "class": "primary", "data-testid": "task-approve" }, "Approve");
			var no = el("button", { type: "button", "class": "secondary", "data-testid": "task-reject" }, "Reject");
			yes.addEventListener("click", function () { decide(t, "approve", li); });
			no.addEventListener("click", function () { decide(t, "reject", li); });
			row.appendChild(yes);
			row.appendChild(no);
			li.appendChild(row);
			var err = el("p", { "class": "error", role: "alert" });
			err.hidden = true;
			li.appendChild(err);
		}
		return li;
	}

	function loadTasks() {
		call("GET", "/tasks?state=open").then(function (res) {
			if (res.status !== 200 || !res.body)
				return;
			var list = $("tasks-list"), items = Array.isArray(res.body.items) ? res.body.items : [];
			// keep a comment being typed: redraw only when the set changed
			var ids = items.map(function (t) { return t.id; }).join(",");
			if (list.getAttribute("data-ids") === ids && ids)
				return;
			list.setAttribute("data-ids", ids);
			clear(list);
			items.forEach(function (t) { list.appendChild(taskItem(t)); });
			show($("approvals-empty"), !items.length);
		}, function () {});
	}

	function loadStatus() {
		call("GET", "/status").then(function (res) {
			if (res.status !== 200 || !res.body)
				return;
			var s = res.body, ap = s.approvals || {};
			$("status-sla").textContent = label(s.sla || "-");
			$("status-sla").setAttribute("data-sla", s.sla || "");
			$("status-approvals-open").textContent = String(ap.open !== undefined ? ap.open : "-");
			$("status-approvals-overdue").textContent = String(ap.overdue !== undefined ? ap.overdue : "-");
			var dl = $("status-counts");
			clear(dl);
			Object.keys(s.requests || {}).forEach(function (k) {
				dl.appendChild(el("dt", null, label(k)));
				dl.appendChild(el("dd", { "data-testid": "count-" + k }, String(s.requests[k])));
			});
			var list = $("status-open"), open = Array.isArray(s.open_requests) ? s.open_requests : [];
			clear(list);
			open.forEach(function (r) { list.appendChild(requestItem(r)); });
			show($("status-open-empty"), !open.length);
			var recent = $("status-milestones"), ms = Array.isArray(s.recent_milestones) ? s.recent_milestones : [];
			clear(recent);
			ms.forEach(function (m) {
				var li = el("li", { "data-request-id": m.request_id });
				li.appendChild(el("span", { "class": "ms-title" }, m.title || ""));
				li.appendChild(el("span", { "class": "meta" }, " " + label(m.request_type) + " \u00b7 " + fmtTime(m.reached_at)));
				recent.appendChild(li);
			});
			show($("status-milestones-empty"), !ms.length);
		}, function () {});
	}

	// ---- start ----

	function start() {
		$("login-form").addEventListener("submit", onLogin);
		$("request-form").addEventListener("submit", onSubmit);
		$("request-type").addEventListener("change", renderFields);
		$("sign-out").addEventListener("click", function () {
			setToken(null);
			signedOut("You are signed out.");
		});
		Array.prototype.forEach.call(document.querySelectorAll("#nav .tab"), function (b) {
			b.addEventListener("click", function () {
				notice("");
				go(b.getAttribute("data-view"));
			});
		});
		// lists change while the page is open: poll what is visible
		state.pollTimer = setInterval(function () {
			if (document.visibilityState === "visible" && state.view !== "submit")
				refresh();
		}, POLL_MS);
		document.addEventListener("visibilitychange", function () {
			if (document.visibilityState === "visible")
				refresh();
		});
		call("GET", "/branding").then(function (res) {
			if (res.status !== 200 || !res.body) {
				document.title = "Not available";
				$("brand-name").textContent = "";
				go("unavailable");
				return;
			}
			applyBranding(res.body);
			document.body.setAttribute("data-ready", "true");
			if (currentToken())
				signedIn();
			else
				signedOut();
		}, function () {
			notice("The portal cannot be reached. Check your connection and reload.");
		});
	}

	if (document.readyState === "loading")
		document.addEventListener("DOMContentLoaded", start);
	else
		start();
})();
