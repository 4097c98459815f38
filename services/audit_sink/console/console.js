// The security console: a read-only page over the audit API (docs/audit-trail.md,
// "Security console"). The token lives in sessionStorage (this tab only) and goes out as
// "Authorization: Bearer" on every call; no cookie exists, so no other site can make the
// browser act as the reviewer. The DOM is built with createElement and textContent only
// (the page's CSP requires Trusted Types: no HTML string is ever parsed). Account ids go in
// request bodies, never in a URL. Proofs are checked here, with WebCrypto (verify.js).

import { VerifyError, parseVkey, verifyProof } from "./verify.js";

const TOKEN_KEY = "audit-console.token";
const PIN_KEY = "audit-console.vkey";
const SEARCH_LIMIT = 500;

const $ = (id) => document.getElementById(id);
let lastStatus = null;
let lastOpener = null;

// -- DOM helpers ---------------------------------------------------------------------------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "className") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

function clear(node) {
  node.replaceChildren();
  return node;
}

function fact(list, term, ...value) {
  list.append(el("dt", { text: term }), el("dd", {}, ...value));
}

function announce(message) {
  $("announce").textContent = message;
}

function when(text) {
  if (!text) return "—";
  return String(text).replace("T", " ").replace(/Z$/, " UTC");
}

// "… (3 min ago)": how old the newest record a checkpoint covers is; the trail's freshness.
function age(text) {
  if (!text) return "—";
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(text)) / 1000));
  const spoken =
    seconds < 120 ? `${seconds} s` : seconds < 7200 ? `${Math.round(seconds / 60)} min` :
    seconds < 172800 ? `${Math.round(seconds / 3600)} h` : `${Math.round(seconds / 86400)} days`;
  return `${when(text)} (${spoken} ago)`;
}

function table(node, headers, rows, caption) {
  clear(node);
  if (caption) node.append(el("caption", { text: caption }));
  const head = el("tr");
  for (const h of headers) head.append(el("th", { scope: "col", text: h }));
  node.append(el("thead", {}, head));
  const body = el("tbody");
  for (const cells of rows) {
    const tr = el("tr");
    for (const cell of cells) {
      tr.append(el("td", {}, cell instanceof Node ? cell : String(cell ?? "—")));
    }
    body.append(tr);
  }
  node.append(body);
}

// -- the token and the API -----------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function pin() {
  return localStorage.getItem(PIN_KEY);
}

class ApiError extends Error {}

async function api(path, { method = "GET", body } = {}) {
  const headers = { Authorization: `Bearer ${token()}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(new URL(`../${path}`, document.baseURI), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
    redirect: "error",
  });
  if (response.status === 401) {
    signOut("The server refused the token: sign in again.");
    throw new ApiError("the token was refused");
  }
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    try {
      const problem = await response.json();
      if (typeof problem.detail === "string") detail = problem.detail;
      else if (Array.isArray(problem.detail)) {
        detail = problem.detail.map((p) => `${(p.loc || []).join(".")}: ${p.msg}`).join("; ");
      }
    } catch {
      // not JSON: keep the status line
    }
    throw new ApiError(detail);
  }
  return response;
}

function failed(where, error) {
  announce(`${where}: ${error instanceof Error ? error.message : String(error)}`);
}

// -- signing in and out ---------------------------------------------------------------------

function showSignIn(message = "") {
  $("console").hidden = true;
  $("who").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = message;
  $("vkey").value = pin() ?? "";
  $("token").value = "";
  $("token").focus();
}

function signOut(message = "Signed out.") {
  sessionStorage.removeItem(TOKEN_KEY);
  lastStatus = null;
  for (const id of ["results", "members", "status-facts", "detail-facts", "detail-reasons", "report-out"]) {
    clear($(id));
  }
  $("detail").hidden = true;
  $("results-summary").textContent = "";
  showSignIn(message);
  announce(message);
}

async function signIn(event) {
  event.preventDefault();
  const tokenText = $("token").value.trim();
  const vkeyText = $("vkey").value.trim();
  $("signin-error").textContent = "";
  if (vkeyText) {
    try {
      await parseVkey(vkeyText);
    } catch (error) {
      $("signin-error").textContent = `That vkey is not valid: ${error.message}`;
      $("vkey").focus();
      return;
    }
    localStorage.setItem(PIN_KEY, vkeyText);
  } else {
    localStorage.removeItem(PIN_KEY);
  }
  sessionStorage.setItem(TOKEN_KEY, tokenText);
  try {
    await showConsole();
  } catch (error) {
    if (!(error instanceof ApiError) || token() !== null) {
      $("signin-error").textContent = `Could not reach the audit service: ${error.message}`;
      sessionStorage.removeItem(TOKEN_KEY);
    }
  }
}

async function showConsole() {
  await loadStatus();
  $("signin").hidden = true;
  $("console").hidden = false;
  $("who").hidden = false;
  $("q-account").focus();
  announce("Signed in.");
}

// -- the key proofs are checked with ----------------------------------------------------

function keyInUse() {
  const pinned = pin();
  if (pinned) return { vkey: pinned, pinned: true };
  return { vkey: lastStatus?.vkey ?? null, pinned: false };
}

function describeKey() {
  const key = keyInUse();
  const note = $("key-note");
  if (key.pinned) {
    note.textContent = `Proofs checked against your pinned key ${key.vkey.split("+").slice(0, 2).join("+")}.`;
    note.className = "ok";
    if (lastStatus && lastStatus.vkey !== key.vkey) {
      note.textContent += " The server announces a different key!";
      note.className = "bad";
    }
  } else {
    note.textContent =
      "No key pinned: proofs are checked against the key this server announces, which is the server's claim, not an independent pin.";
    note.className = "warn";
  }
}

// -- status and verification ----------------------------------------------------------------

function problemText(problem) {
  if (!problem) return "";
  const where = [problem.member, problem.index === null ? null : `entry ${problem.index}`]
    .filter((part) => part !== null && part !== undefined)
    .join(" ");
  return `${where ? `${where}: ` : ""}${problem.message} [${problem.code}]`;
}

function showVerification(last) {
  const box = clear($("verification"));
  box.className = "verification";
  if (!last) {
    box.append(el("p", { text: "This server has not verified the trail since it started. Use “Verify now”." }));
    return;
  }
  if (last.ok) {
    box.classList.add("good");
    box.append(el("p", { text: `Verified intact at ${when(last.at)}: ${last.size} entries, no problem.` }));
  } else {
    box.classList.add("bad");
    box.append(
      el("p", {}, el("strong", { text: "Verification FAILED" }), ` at ${when(last.at)}: ${last.problem_count} problem(s).`),
      el("p", { text: `First problem: ${problemText(last.first_problem)}` }),
    );
  }
}

async function loadStatus() {
  const status = await (await api("status")).json();
  lastStatus = status;
  const facts = clear($("status-facts"));
  fact(facts, "Log", status.origin + (status.sharded ? " (sharded)" : ""));
  fact(facts, "Entries", String(status.size));
  fact(facts, "Newest record covered by a checkpoint", age(status.newest_entry_at));
  const latest = status.members.map((m) => m.checkpoint_size);
  fact(
    facts,
    status.sharded ? "Latest heads note" : "Latest checkpoint",
    status.latest_note_problem
      ? el("span", { className: "bad", text: status.latest_note_problem })
      : status.latest_note
        ? status.sharded
          ? `covers ${status.members.length} member logs`
          : `size ${latest[0]}`
        : "none yet",
  );
  fact(facts, "Key the server pins", el("code", { text: status.vkey }));
  $("latest-note").textContent = status.latest_note ?? "(none)";
  table(
    $("members"),
    ["Member", "Entries", "Latest checkpoint", "Unsigned", "Newest record covered"],
    status.members.map((m) => [m.member, m.size, m.checkpoint_size ?? "none", m.unsigned, when(m.newest_entry_at)]),
  );
  showVerification(status.last_verification);
  describeKey();
  return status;
}

async function verifyNow() {
  const button = $("verify-now");
  button.disabled = true;
  announce("Verifying the whole trail…");
  try {
    const report = await (await api("verify")).json();
    await loadStatus();
    announce(report.ok ? "Verification passed." : `Verification FAILED: ${problemText(report.first_problem)}`);
  } catch (error) {
    failed("Verification", error);
  } finally {
    button.disabled = false;
  }
}

// -- search ---------------------------------------------------------------------------------

function instant(value) {
  if (!value) return undefined;
  const date = new Date(value); // a datetime-local value: the reviewer's local time
  return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
}

function personalCell(entry) {
  switch (entry.personal) {
    case "erased":
      return el("span", { className: "erased", text: "erased" });
    case "unavailable":
      return el("span", { className: "bad", text: "unavailable" });
    case "opened":
      return entry.account_id;
    default:
      return "none";
  }
}

function outcomeCell(outcome) {
  return el("span", { className: outcome === "BLOCK" ? "block" : "allow", text: outcome ?? "—" });
}

async function search(event) {
  event.preventDefault();
  const form = new FormData($("search-form"));
  const body = { limit: SEARCH_LIMIT };
  for (const name of ["account", "recipient", "reason", "clause", "outcome", "order_ref"]) {
    const value = String(form.get(name) ?? "").trim();
    if (value) body[name] = value;
  }
  for (const name of ["from", "to"]) {
    const value = instant(String(form.get(name) ?? ""));
    if (value) body[name] = value;
  }
  announce("Searching…");
  try {
    const response = await api("entries/search", { method: "POST", body });
    const entries = await response.json();
    const truncated = response.headers.get("Audit-Sink-Truncated") === "true";
    showResults(entries, truncated);
  } catch (error) {
    failed("Search", error);
  }
}

function showResults(entries, truncated) {
  const summary = `${entries.length} entr${entries.length === 1 ? "y" : "ies"} found${
    truncated ? ` (only the first ${SEARCH_LIMIT}: narrow the period to see the rest)` : ""
  }.`;
  $("results-summary").textContent = summary;
  announce(summary);
  table(
    $("results"),
    ["Time", "Shard", "Outcome", "Recipient", "Reasons", "Order", "Account", "Event"],
    entries.map((entry) => [
      when(entry.occurred_at),
      entry.shard ?? "—",
      outcomeCell(entry.outcome),
      entry.recipient_id ?? "—",
      entry.reasons.join(", ") || "—",
      entry.order_ref ?? "—",
      personalCell(entry),
      el(
        "button",
        { type: "button", className: "open", "data-event": entry.event_id, "aria-label": `Open ${entry.event_id}` },
        entry.event_id,
      ),
    ]),
  );
}

// -- one decision, and its proof checked here ---------------------------------------------------

async function openEntry(eventId, opener) {
  lastOpener = opener ?? null;
  announce(`Opening ${eventId}…`);
  let detail;
  try {
    detail = await (await api(`entries/${encodeURIComponent(eventId)}`)).json();
  } catch (error) {
    failed("Opening the entry", error);
    return;
  }
  const entry = detail.entry;
  $("detail").hidden = false;
  $("detail-title").textContent = `${entry.kind === "DECISION" ? "Decision" : "Governance change"} ${entry.event_id}`;
  const facts = clear($("detail-facts"));
  fact(facts, "Time", when(entry.occurred_at));
  fact(facts, "Outcome", outcomeCell(entry.outcome));
  fact(facts, "Event type", entry.event_type || "—");
  fact(facts, "Recipient", entry.recipient_id ?? "—");
  fact(facts, "Account", personalCell(entry));
  fact(facts, "Order reference", detail.order_ref ?? "none");
  fact(facts, "Actor", entry.actor ?? "—");
  fact(facts, "Policy version", entry.policy_version ?? "—");
  fact(facts, "Where", `${detail.member}, entry ${detail.index}`);
  fact(facts, "Trace id", detail.trace_id ?? "not recorded (its record carried no trace context)");
  if (entry.personal === "erased") {
    fact(facts, "Personal data", el("span", { className: "erased", text: "erased: the subject's key was destroyed" }));
  } else if (entry.event_json && entry.personal !== "clear") {
    fact(facts, "Event as sent", el("details", {}, el("summary", { text: "show" }), el("pre", { text: entry.event_json })));
  }
  const reasons = clear($("detail-reasons"));
  if (detail.reasons.length === 0) reasons.append(el("li", { text: "No reason recorded." }));
  for (const reason of detail.reasons) {
    reasons.append(
      el(
        "li",
        {},
        el("strong", { text: reason.code }),
        " under ",
        el("strong", { text: reason.clause }),
        el("p", { text: reason.text }),
        el("p", { className: "clause", text: `${reason.clause}: ${reason.clause_text}` }),
      ),
    );
  }
  $("detail-title").focus();
  announce(`Opened ${entry.event_id}.`);
  await checkProof(detail);
}

function proofMessage(kind, ...parts) {
  const box = clear($("proof"));
  box.className = `proof ${kind}`;
  box.append(...parts);
}

async function checkProof(detail) {
  const entry = detail.entry;
  if (!detail.provable) {
    proofMessage(
      "warn",
      el("p", {
        text: `Not yet covered by a signed checkpoint (latest size ${detail.checkpoint_size ?? "none"}): no proof yet; look again after the next checkpoint.`,
      }),
    );
    return;
  }
  const key = keyInUse();
  if (!key.vkey) {
    proofMessage("bad", el("p", { text: "No key to check the proof with." }));
    return;
  }
  proofMessage("", el("p", { text: "Checking the inclusion proof in this browser…" }));
  let bundle;
  try {
    bundle = await (await api(`proof/${encodeURIComponent(entry.event_id)}`)).text();
  } catch (error) {
    proofMessage("bad", el("p", { text: `Proof NOT verified: the server gave no proof: ${error.message}` }));
    return;
  }
  try {
    const proven = await verifyProof({
      bundle,
      vkey: key.vkey,
      shard: detail.shard,
      eventId: entry.event_id,
      index: detail.index,
    });
    const body = proven.body;
    const codes = (body.reasons || []).map((r) => `${r.code}/${r.clause}`).join(",");
    const shown = detail.reasons.map((r) => `${r.code}/${r.clause}`).join(",");
    if (body.outcome !== entry.outcome || codes !== shown) {
      throw new VerifyError("leaf", "the proven leaf's outcome or reasons differ from what the server shows");
    }
    proofMessage(
      "good",
      el("p", {
        text: `Proof verified in this browser against checkpoint ${proven.checkpointSize} signed by ${proven.keyName}.`,
      }),
      el("p", {
        className: "small",
        text: key.pinned
          ? "Checked with your pinned key: the entry, its outcome and reasons are in the signed log."
          : "Checked with the key this server announces (the server's claim, not an independent pin): pin the published vkey at sign-in for an independent check.",
      }),
    );
  } catch (error) {
    const step = error instanceof VerifyError ? `${error.step}: ` : "";
    proofMessage("bad", el("p", {}, el("strong", { text: "Proof NOT verified" }), `: ${step}${error.message}`));
  }
}

function closeDetail() {
  $("detail").hidden = true;
  if (lastOpener && document.contains(lastOpener)) lastOpener.focus();
}

// -- transparency report and export ---------------------------------------------------------

async function report(event) {
  event.preventDefault();
  const from = instant($("r-from").value);
  const to = instant($("r-to").value);
  const out = clear($("report-out"));
  if (!from || !to) {
    announce("Give both ends of the period.");
    return;
  }
  try {
    const query = new URLSearchParams({ from, to });
    const data = await (await api(`transparency-report?${query}`)).json();
    const totals = el("dl", { className: "facts" });
    fact(totals, "Period", `${when(data.from)} to ${when(data.to)}`);
    fact(totals, "Orders", String(data.totals.orders));
    fact(totals, "Disclosures", String(data.totals.disclosures));
    fact(totals, "Refused requests", String(data.totals.refused));
    const orders = el("table");
    table(
      orders,
      ["Authority", "Jurisdiction", "Order type", "Status", "Count"],
      data.orders.map((g) => [g.authority, g.jurisdiction, g.order_type, g.status, g.count]),
      "Orders",
    );
    const requests = el("table");
    table(
      requests,
      ["Authority", "Jurisdiction", "Order type", "Outcome", "Count"],
      data.requests.map((g) => [g.authority, g.jurisdiction, g.order_type, g.outcome, g.count]),
      "Requests under orders",
    );
    out.append(
      totals,
      el("div", { className: "scroll", tabindex: "0", role: "region", "aria-label": "Orders" }, orders),
      el("div", { className: "scroll", tabindex: "0", role: "region", "aria-label": "Requests" }, requests),
    );
    announce("Report ready.");
  } catch (error) {
    failed("Report", error);
  }
}

async function download() {
  const button = $("export");
  button.disabled = true;
  announce("Preparing the export…");
  try {
    const response = await api("export");
    const disposition = response.headers.get("Content-Disposition") ?? "";
    const name = /filename="?([^";]+)"?/.exec(disposition)?.[1] ?? "audit-export.tar.gz";
    const url = URL.createObjectURL(await response.blob());
    const link = el("a", { href: url, download: name });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
    announce(`Export downloaded as ${name}.`);
  } catch (error) {
    failed("Export", error);
  } finally {
    button.disabled = false;
  }
}

// -- start ----------------------------------------------------------------------------------

async function loadWords() {
  const response = await fetch("words.json", { credentials: "omit", cache: "no-store" });
  const words = await response.json();
  const reason = $("q-reason");
  for (const r of words.reasons) {
    reason.append(el("option", { value: r.code, title: r.text, text: `${r.code} (${r.allows ? "allows" : "blocks"})` }));
  }
  const clause = $("q-clause");
  for (const c of words.clauses) {
    clause.append(el("option", { value: c.clause, title: c.text, text: c.clause }));
  }
}

function start() {
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut());
  $("verify-now").addEventListener("click", verifyNow);
  $("refresh-status").addEventListener("click", () => loadStatus().then(() => announce("Status refreshed.")).catch((e) => failed("Status", e)));
  $("export").addEventListener("click", download);
  $("search-form").addEventListener("submit", search);
  $("report-form").addEventListener("submit", report);
  $("close-detail").addEventListener("click", closeDetail);
  $("detail").addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeDetail();
  });
  $("results").addEventListener("click", (event) => {
    const button = event.target.closest("button.open");
    if (button) openEntry(button.dataset.event, button);
  });
  loadWords().catch((error) => failed("Loading the code lists", error));
  if (token()) {
    showConsole().catch((error) => {
      if (!(error instanceof ApiError)) showSignIn(`Could not reach the audit service: ${error.message}`);
    });
  } else {
    showSignIn();
  }
}

start();
