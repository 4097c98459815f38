// The legal officers' console (served by the order service at /console/).
//
// The officer's bearer token lives in sessionStorage only (this tab; removed on "Sign out",
// gone when the tab closes) and goes as "Authorization: Bearer" on every fetch to the JSON
// API; no cookie is ever used (credentials: "omit"). The DOM is built with createElement
// and textContent only: the page's CSP requires Trusted Types, so no HTML string is ever
// parsed. Nothing is logged to the browser console, and no personal data goes into a URL
// (account ids travel in request bodies only).
"use strict";

(() => {
  const TOKEN_KEY = "sharing-guard.orders.token";
  const API = new URL("../", document.baseURI); // the service's root, wherever it is mounted
  const STATES = {
    PENDING: "Pending approval",
    IN_FORCE: "In force",
    EXHAUSTED: "Exhausted",
    EXPIRED: "Expired",
    REVOKED: "Revoked",
  };
  const ROLES = {
    legal_officer: "legal officer",
    security_reviewer: "security reviewer",
    administrator: "administrator",
  };
  const ORDER_TYPES = { COURT_ORDER: "Court order", ADMINISTRATIVE_ORDER: "Administrative order" };
  const CATEGORIES = {
    PERSONAL_INFORMATION: "Personal information",
    VIRTUAL_DRIVE_DATA: "Virtual drive data",
  };
  const FOUR_EYES = "You registered this order; a second officer must approve it";
  const FIELDS = [
    "order_ref", "order_type", "authority", "jurisdiction", "recipient_id", "account_ids",
    "data_categories", "valid_from", "valid_until", "max_disclosures",
  ];
  const $ = (id) => document.getElementById(id);
  let me = null; // {officer_id, role, actions} of the signed-in officer
  let generation = 0; // bumped at sign-out: answers to calls made before are dropped

  // --- small DOM helpers (no HTML strings anywhere) ---------------------------------------

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === false || value === null || value === undefined) continue;
      if (name === "text") node.textContent = value;
      else if (name === "class") node.className = value;
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(typeof child === "string" ? document.createTextNode(child) : child);
      }
    }
    return node;
  }

  function say(message, kind) {
    const status = $("status");
    status.className = "status " + (kind || "info");
    status.textContent = message;
  }

  // --- the API ------------------------------------------------------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY);
  }

  async function api(method, path, body, bearer) {
    const headers = { Accept: "application/json", Authorization: "Bearer " + (bearer || token()) };
    const init = {
      method,
      headers,
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
      referrerPolicy: "no-referrer",
    };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const asked = generation;
    let response;
    try {
      response = await fetch(new URL(path, API), init);
    } catch (error) {
      return { status: 0, data: { detail: "the order service cannot be reached" }, stale: false };
    }
    let data = null;
    try {
      data = await response.json();
    } catch (error) {
      data = { detail: "the service answered " + response.status + " without a readable body" };
    }
    if (response.status === 401 && !bearer && asked === generation) {
      signedOut("Your session ended (" + detailText(data) + "). Sign in again.", "error");
    }
    return { status: response.status, data, stale: asked !== generation };
  }

  function orderPath(ref, action) {
    return "orders/" + encodeURIComponent(ref) + (action ? "/" + action : "");
  }

  function detailText(data) {
    if (!data || data.detail === undefined) return "no detail given";
    if (typeof data.detail === "string") return data.detail;
    if (Array.isArray(data.detail)) {
      return data.detail.map((p) => fieldName(p.loc) + ": " + p.msg).join("; ");
    }
    return "no detail given";
  }

  function fieldName(loc) {
    const parts = (loc || []).filter((part) => part !== "body");
    return parts.length ? parts.join(".") : "the request";
  }

  function refusal(what, result) {
    if (result.status === 0) return what + " failed: " + detailText(result.data) + ".";
    return what + " was refused (" + result.status + "): " + detailText(result.data);
  }

  // --- signing in and out -------------------------------------------------------------------

  async function signIn(candidate) {
    const result = await api("GET", "me", undefined, candidate);
    if (result.status !== 200) {
      showTokenError(detailText(result.data));
      say(refusal("Signing in", result), "error");
      return false;
    }
    sessionStorage.setItem(TOKEN_KEY, candidate);
    signedIn(result.data);
    return true;
  }

  function showTokenError(message) {
    const error = $("token-error");
    error.textContent = message;
    error.hidden = false;
    $("token").setAttribute("aria-invalid", "true");
  }

  function signedIn(officer) {
    me = officer;
    const role = ROLES[officer.role] || officer.role;
    $("signed-in-as").textContent = "Signed in as " + officer.officer_id + " (" + role + ")";
    $("who").hidden = false;
    $("sign-in").hidden = true;
    $("token").value = "";
    $("token-error").hidden = true;
    $("token").removeAttribute("aria-invalid");
    $("workspace").hidden = false;
    $("register").hidden = !may("register");
    say("Signed in as " + officer.officer_id + ".", "success");
    loadOrders();
  }

  function signedOut(message, kind) {
    generation += 1;
    sessionStorage.removeItem(TOKEN_KEY);
    me = null;
    $("orders").replaceChildren();
    $("orders-empty").hidden = true;
    $("workspace").hidden = true;
    $("who").hidden = true;
    $("signed-in-as").textContent = "";
    $("register-form").reset();
    clearFieldErrors();
    $("sign-in").hidden = false;
    say(message, kind);
    $("token").focus();
  }

  function may(action) {
    return Boolean(me && Array.isArray(me.actions) && me.actions.includes(action));
  }

  // --- the orders ---------------------------------------------------------------------------

  async function loadOrders(announce) {
    const state = $("state-filter").value;
    const result = await api("GET", state ? "orders?state=" + encodeURIComponent(state) : "orders");
    if (result.stale || !me) return;
    if (result.status !== 200) {
      say(refusal("Loading the orders", result), "error");
      return;
    }
    const orders = result.data.slice().reverse(); // the newest first
    $("orders").replaceChildren(...orders.map(orderItem));
    $("orders-empty").hidden = orders.length > 0;
    if (announce) {
      say(orders.length === 1 ? "1 order shown." : orders.length + " orders shown.", "info");
    }
  }

  let cardCount = 0;

  function orderItem(order) {
    cardCount += 1;
    const id = "order-" + cardCount;
    const state = order.state;
    const words = stateWords(order);
    const facts = el(
      "dl",
      { class: "facts" },
      ...fact("State", el("span", { class: "state state-" + state.toLowerCase(), text: words })),
      ...fact("Disclosures", disclosureText(order)),
      ...fact("Type", ORDER_TYPES[order.order_type] || order.order_type),
      ...fact("Authority", order.authority),
      ...fact("Jurisdiction", order.jurisdiction),
      ...fact("Receiving agency", order.recipient_id),
      ...fact("Accounts", order.account_ids.join(", ")),
      ...fact("Data categories", order.data_categories.map((c) => CATEGORIES[c] || c).join(", ")),
      ...fact("Valid", when(order.valid_from) + " to " + when(order.valid_until)),
      ...fact("Registered", "by " + order.registered_by + ", " + when(order.registered_at)),
      ...(order.approved_by
        ? fact("Approved", "by " + order.approved_by + ", " + when(order.approved_at))
        : []),
      ...(order.revoked_by
        ? fact("Revoked", "by " + order.revoked_by + ", " + when(order.revoked_at))
        : []),
      ...(order.revoked_by ? fact("Reason", order.revoke_reason || "") : []),
    );
    const article = el(
      "article",
      { class: "order state-" + state.toLowerCase(), "aria-labelledby": id + "-title" },
      el("h3", { id: id + "-title", text: order.order_ref }),
      facts,
      actions(order, id),
    );
    return el("li", {}, article);
  }

  function fact(term, value) {
    return [el("dt", { text: term }), el("dd", {}, value)];
  }

  function stateWords(order) {
    if (order.state === "PENDING" && order.approved_by) return "Approved, not yet in force";
    return STATES[order.state] || order.state;
  }

  function disclosureText(order) {
    const used = order.disclosure_count;
    let text;
    if (order.max_disclosures === null) {
      text = used + (used === 1 ? " disclosure" : " disclosures") + " so far, no limit";
    } else {
      text = used + " of " + order.max_disclosures + " disclosures used";
    }
    if (order.refused_count > 0) {
      text += "; " + order.refused_count + " refused";
    }
    return text;
  }

  function when(iso) {
    if (!iso) return "";
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return iso;
    return date.toLocaleString(undefined, {
      year: "numeric",
      month: "short",
      day: "numeric",
      hour: "2-digit",
      minute: "2-digit",
      timeZoneName: "short",
    });
  }

  function actions(order, id) {
    // One row of buttons; the panels they open (the revocation form, the disclosures) below.
    const row = el("div", { class: "action-row" });
    const panels = [];
    if (order.state === "PENDING" && !order.approved_by && may("approve")) {
      const mine = me && order.registered_by === me.officer_id;
      const button = el(
        "button",
        { type: "button", class: "primary", "aria-describedby": mine ? id + "-why" : null },
        "Approve",
        el("span", { class: "visually-hidden", text: " " + order.order_ref }),
      );
      button.disabled = Boolean(mine);
      button.addEventListener("click", () => approve(order.order_ref, button));
      row.append(button);
      if (mine) row.append(el("p", { id: id + "-why", class: "why", text: FOUR_EYES }));
    }
    if (order.state !== "REVOKED" && may("revoke")) {
      const [button, panel] = revokeControls(order, id);
      row.append(button);
      panels.push(panel);
    }
    const [toggle, list] = disclosureControls(order, id);
    row.append(toggle);
    panels.push(list);
    return el("div", { class: "actions" }, row, ...panels);
  }

  function revokeControls(order, id) {
    const formId = id + "-revoke";
    const open = el(
      "button",
      { type: "button", "aria-expanded": "false", "aria-controls": formId },
      "Revoke…",
      el("span", { class: "visually-hidden", text: " " + order.order_ref }),
    );
    const reason = el("textarea", {
      id: formId + "-reason",
      rows: "2",
      required: true,
      maxlength: "2000",
      "aria-describedby": formId + "-error",
    });
    const error = el("p", { id: formId + "-error", class: "field-error", hidden: true });
    const form = el(
      "form",
      { id: formId, class: "revoke", method: "post", novalidate: true, hidden: true },
      el("label", { for: formId + "-reason", text: "Reason for revoking " + order.order_ref }),
      reason,
      error,
      el(
        "div",
        { class: "action-row" },
        el("button", { type: "submit", class: "danger", text: "Revoke order" }),
        el("button", { type: "button", class: "cancel", text: "Cancel" }),
      ),
    );
    open.addEventListener("click", () => {
      const opening = form.hidden;
      form.hidden = !opening;
      open.setAttribute("aria-expanded", String(opening));
      if (opening) reason.focus();
    });
    form.querySelector(".cancel").addEventListener("click", () => {
      form.hidden = true;
      open.setAttribute("aria-expanded", "false");
      open.focus();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      revoke(order.order_ref, reason, error, form);
    });
    return [open, form];
  }

  function disclosureControls(order, id) {
    const listId = id + "-disclosures";
    const toggle = el(
      "button",
      { type: "button", "aria-expanded": "false", "aria-controls": listId },
      "Show disclosures",
      el("span", { class: "visually-hidden", text: " of " + order.order_ref }),
    );
    const list = el("div", { id: listId, class: "disclosures", hidden: true });
    toggle.addEventListener("click", async () => {
      if (!list.hidden) {
        list.hidden = true;
        toggle.setAttribute("aria-expanded", "false");
        return;
      }
      const result = await api("GET", orderPath(order.order_ref));
      if (result.stale) return;
      if (result.status !== 200) {
        say(refusal("Loading the disclosures of " + order.order_ref, result), "error");
        return;
      }
      const made = result.data.disclosures || [];
      list.replaceChildren(
        made.length
          ? el(
              "ol",
              {},
              ...made.map((d) => el("li", {}, el("code", { text: d.event_id }), ", " + when(d.decided_at))),
            )
          : el("p", { text: "No disclosure has been made under this order." }),
      );
      list.hidden = false;
      toggle.setAttribute("aria-expanded", "true");
    });
    return [toggle, list];
  }

  async function approve(ref, button) {
    button.disabled = true;
    const result = await api("POST", orderPath(ref, "approve"));
    if (result.stale) return;
    if (result.status === 200) {
      say("Order " + ref + " approved; it is now " + stateWords(result.data).toLowerCase() + ".", "success");
      await loadOrders();
    } else {
      say(refusal("Approving order " + ref, result), "error");
      if (result.status !== 401) await loadOrders();
    }
  }

  async function revoke(ref, reason, error, form) {
    error.hidden = true;
    reason.removeAttribute("aria-invalid");
    const result = await api("POST", orderPath(ref, "revoke"), { reason: reason.value });
    if (result.stale) return;
    if (result.status === 200) {
      say("Order " + ref + " revoked.", "success");
      await loadOrders();
      return;
    }
    if (result.status === 422 && Array.isArray(result.data.detail)) {
      error.textContent = result.data.detail.map((p) => p.msg).join("; ");
      error.hidden = false;
      reason.setAttribute("aria-invalid", "true");
      reason.focus();
    }
    say(refusal("Revoking order " + ref, result), "error");
    if (result.status === 409) await loadOrders();
  }

  // --- registering --------------------------------------------------------------------------

  function registration(form) {
    const value = (name) => form.elements[name].value;
    const body = {
      order_type: value("order_type"),
      authority: value("authority"),
      jurisdiction: value("jurisdiction"),
      recipient_id: value("recipient_id"),
      account_ids: value("account_ids")
        .split("\n")
        .map((line) => line.trim())
        .filter((line) => line !== ""),
      data_categories: Array.from(form.querySelectorAll("input[name=data_categories]:checked")).map(
        (box) => box.value,
      ),
    };
    if (value("order_ref").trim() !== "") body.order_ref = value("order_ref");
    for (const name of ["valid_from", "valid_until"]) {
      // datetime-local is the officer's local time; the API takes RFC 3339 with a zone.
      const local = value(name);
      const date = local ? new Date(local) : null;
      body[name] = date && !Number.isNaN(date.getTime()) ? date.toISOString() : local;
    }
    const max = value("max_disclosures").trim();
    body.max_disclosures = max === "" ? null : Number(max);
    return body;
  }

  function clearFieldErrors() {
    for (const name of FIELDS) {
      const error = $("e-" + name);
      error.hidden = true;
      error.textContent = "";
      const input = $("f-" + name);
      if (input) input.removeAttribute("aria-invalid");
    }
    $("register-errors").hidden = true;
    $("register-errors").replaceChildren();
  }

  function showFieldErrors(problems) {
    const general = [];
    let first = null;
    for (const problem of problems) {
      const loc = (problem.loc || []).filter((part) => part !== "body");
      let name = typeof loc[0] === "string" ? loc[0] : null;
      if (!name && /valid_until/.test(problem.msg || "")) name = "valid_until";
      if (name && FIELDS.includes(name)) {
        const error = $("e-" + name);
        const where = loc.length > 1 ? "item " + (Number(loc[1]) + 1) + ": " : "";
        error.textContent = (error.textContent ? error.textContent + "; " : "") + where + problem.msg;
        error.hidden = false;
        const input = $("f-" + name) || document.querySelector("#register-form input[name=" + name + "]");
        if (input) input.setAttribute("aria-invalid", "true");
        first = first || input;
      } else {
        general.push(fieldName(problem.loc) + ": " + problem.msg);
      }
    }
    if (general.length) {
      $("register-errors").replaceChildren(...general.map((text) => el("p", { text })));
      $("register-errors").hidden = false;
    }
    if (first) first.focus();
  }

  async function register(event) {
    event.preventDefault();
    const form = event.target;
    clearFieldErrors();
    const result = await api("POST", "orders", registration(form));
    if (result.stale) return;
    if (result.status === 201) {
      form.reset();
      say(
        "Order " + result.data.order_ref + " registered; it is pending until a second officer approves it.",
        "success",
      );
      $("state-filter").value = "";
      await loadOrders();
      return;
    }
    if (result.status === 422 && Array.isArray(result.data.detail)) {
      const count = result.data.detail.length;
      say(
        "The order was not registered: " + count + (count === 1 ? " problem" : " problems") +
          ", shown next to the fields. " + detailText(result.data),
        "error",
      );
      showFieldErrors(result.data.detail);
      return;
    }
    say(refusal("Registering the order", result), "error");
  }

  // --- start --------------------------------------------------------------------------------

  function start() {
    $("sign-in-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const candidate = $("token").value.trim();
      if (candidate === "") {
        showTokenError("paste your token first");
        say("Signing in needs your bearer token.", "error");
        $("token").focus();
        return;
      }
      signIn(candidate);
    });
    $("sign-out").addEventListener("click", () => signedOut("Signed out. The token is forgotten.", "info"));
    $("refresh").addEventListener("click", () => loadOrders(true));
    $("state-filter").addEventListener("change", () => loadOrders(true));
    $("register-form").addEventListener("submit", register);
    const saved = token();
    if (saved) {
      api("GET", "me").then((result) => {
        if (result.status === 200) signedIn(result.data);
      });
    }
  }

  start();
})();
