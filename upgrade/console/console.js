// The operator's console: plain DOM code over the app's JSON API, polled every few seconds.
// Data is only ever written with textContent (never as HTML). No library, no build step.
"use strict";

const params = new URLSearchParams(location.search);
const POLL_MS = 1000 * Math.max(1, Number(params.get("poll")) || 3);
const FINAL = new Set(["succeeded", "failed", "rolled-back", "aborted"]);
const STATUSES = ["running", "awaiting-decision", "paused", "stuck", "succeeded", "failed", "rolled-back", "aborted"];
const NODE_STATES = ["blue", "green", "cordoned", "quarantined", "draining", "upgraded"];
// Decisions that cannot be undone ask first: approve deletes the blue pool, rollback the green one.
const DECISIONS = [
  {name: "approve", when: s => s === "awaiting-decision", confirm: "Approve: traffic stays on green and the blue pool is deleted."},
  {name: "rollback", when: s => s === "awaiting-decision", confirm: "Roll back: workloads go back to blue and the green pool is deleted."},
  {name: "pause", when: s => s === "running"},
  {name: "resume", when: s => s === "paused" || s === "stuck"},
  {name: "abort", when: s => !FINAL.has(s), confirm: "Abort: the run stops where it is and does not continue."},
];

let me = {roles: [], actions: {}};
const filters = {cluster: "", pool: "", status: ""};

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "style") Object.assign(el.style, v); // CSSOM, which the page's CSP allows
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

// replaceChildren with h's rules: arrays flattened, null and false left out.
function fill(el, ...children) { el.replaceChildren(...h("div", {}, ...children).childNodes); }

async function api(path, options = {}) {
  const headers = {"Accept": "application/json", ...(options.body ? {"Content-Type": "application/json"} : {})};
  const response = await fetch(path, {...options, headers, credentials: "same-origin"});
  const text = await response.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch { body = {message: text}; }
  if (!response.ok) throw new Error(`${response.status}: ${(body && body.message) || response.statusText}`);
  return body;
}

function notice(text, isError = false) {
  const el = document.getElementById("notice");
  el.textContent = text || "";
  el.classList.toggle("error", isError);
}

function clusterName(armId) { return String(armId || "").split("/").pop(); }

function duration(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  const d = Math.floor(seconds / 86400), hr = Math.floor(seconds % 86400 / 3600);
  const m = Math.floor(seconds % 3600 / 60), s = seconds % 60;
  return d ? `${d}d ${hr}h` : hr ? `${hr}h ${m}m` : m ? `${m}m ${s}s` : `${s}s`;
}

function time(iso) {
  return h("time", {datetime: iso}, iso ? new Date(iso).toLocaleString() : "—");
}

function statusBadge(status) { return h("span", {class: `status ${status}`}, status); }

function confirmFirst(text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = text;
  return new Promise(resolve => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), {once: true});
    dialog.returnValue = "cancel";
    dialog.showModal();
  });
}

// ---- views -------------------------------------------------------------------------------

async function runsView(view) {
  const {runs} = await api("/api/upgrades?limit=200");
  const clusters = [...new Set(runs.map(r => clusterName(r.cluster)))].sort();
  const shown = runs.filter(r => (!filters.cluster || clusterName(r.cluster) === filters.cluster)
    && (!filters.pool || (r.pool || "").includes(filters.pool))
    && (!filters.status || r.status === filters.status));
  const select = (name, label, values) => h("label", {}, label,
    h("select", {name, onchange: e => { filters[name] = e.target.value; refresh(); }},
      h("option", {value: ""}, "any"),
      values.map(v => h("option", {value: v, selected: filters[name] === v}, v))));
  fill(view,
    h("h2", {}, "Runs"),
    h("form", {class: "filters", role: "search", "aria-label": "Filter runs", onsubmit: e => e.preventDefault()},
      select("cluster", "Cluster", clusters),
      h("label", {}, "Pool", h("input", {name: "pool", type: "search", value: filters.pool,
        onchange: e => { filters.pool = e.target.value.trim(); refresh(); }})),
      select("status", "Status", STATUSES)),
    h("p", {class: "muted"}, `${shown.length} of ${runs.length} runs`),
    h("div", {class: "table-wrap"}, h("table", {},
      h("caption", {class: "muted"}, "Newest first"),
      h("thead", {}, h("tr", {}, ["Run", "Cluster", "Pool", "Kind", "Target", "Status", "Updated"].map(t => h("th", {scope: "col"}, t)))),
      h("tbody", {}, shown.map(r => h("tr", {},
        h("td", {}, h("a", {href: `#/run/${encodeURIComponent(r.id)}`}, r.id)),
        h("td", {}, clusterName(r.cluster)), h("td", {}, r.pool || "—"), h("td", {}, r.kind),
        h("td", {}, r.targetVersion || "—"), h("td", {}, statusBadge(r.status)), h("td", {}, time(r.updatedAt))))))));
}

async function runView(view, id) {
  const [run, nodes] = await Promise.all([
    api(`/api/upgrades/${encodeURIComponent(id)}`),
    api(`/api/upgrades/${encodeURIComponent(id)}/nodes`).catch(e => ({error: e.message, pools: []})),
  ]);
  fill(view,
    h("p", {}, h("a", {href: "#/runs"}, "← All runs")),
    h("h2", {}, `Run ${run.id}`),
    h("dl", {class: "facts"},
      h("dt", {}, "Status"), h("dd", {"data-testid": "run-status"}, statusBadge(run.status)),
      h("dt", {}, "Step"), h("dd", {}, run.state),
      h("dt", {}, "Cluster"), h("dd", {}, clusterName(run.cluster)),
      h("dt", {}, "Pool"), h("dd", {}, run.pool || "—", run.facts.greenPool ? ` → ${run.facts.greenPool}` : ""),
      h("dt", {}, "Kind"), h("dd", {}, run.kind),
      h("dt", {}, "Target"), h("dd", {}, run.targetVersion || "—"),
      h("dt", {}, "Reason"), h("dd", {}, run.reason || "—")),
    countdowns(run),
    actions("run", "/api/upgrades", run, DECISIONS),
    timeline(run),
    nodeGrid(nodes));
}

function countdowns(run) {
  const f = run.facts || {};
  const items = [["Soak ends", f.soakUntil], ["Decision due", f.decisionDeadline],
    ["Window opens", f.windowWait && f.windowWait.opensAt]].filter(([, at]) => at && Date.parse(at) > Date.now() && !FINAL.has(run.status));
  if (!items.length) return null;
  return h("section", {"aria-labelledby": "countdowns-h"}, h("h3", {id: "countdowns-h"}, "Countdowns"),
    h("ul", {class: "countdowns"}, items.map(([label, at]) =>
      h("li", {}, `${label} in `, h("strong", {"data-until": at}, duration((Date.parse(at) - Date.now()) / 1000)), " (", time(at), ")"))));
}

// The decisions the caller's roles allow, as buttons enabled in the statuses where they apply;
// ``what`` is "run" or "rollout", ``base`` the API path of the thing decided on.
function actions(what, base, subject, decisions) {
  const allowed = decisions.filter(d => me.actions[d.may || d.name]);
  const section = h("section", {"aria-labelledby": "actions-h"}, h("h3", {id: "actions-h"}, "Actions"));
  if (!allowed.length) {
    section.append(h("p", {class: "muted"}, `Your roles (${me.roles.join(", ") || "none"}) allow no actions on a ${what}.`));
    return section;
  }
  section.append(h("div", {class: "actions"}, allowed.map(d => h("button", {
    type: "button", class: d.confirm ? "danger" : null, disabled: !d.when(subject.status),
    onclick: async () => {
      if (d.confirm && !await confirmFirst(`${d.confirm} ${what} ${subject.id}.`)) return;
      try {
        const after = await api(`${base}/${encodeURIComponent(subject.id)}/${d.name}`, {method: "POST", body: "{}"});
        notice(`${d.name}: ${what} ${subject.id} is now ${after.status}.`);
      } catch (e) { notice(`${d.name} refused: ${e.message}`, true); }
      refresh();
    }}, d.name[0].toUpperCase() + d.name.slice(1)))));
  return section;
}

function outcomeClass(outcome) {
  const o = String(outcome || "").toLowerCase();
  if (/fail|refus|poison|error/.test(o)) return "failed";
  if (/wait|retry|block|defer/.test(o)) return "waiting";
  return "ok";
}

function timeline(run) {
  const rows = run.timeline || [];
  const section = h("section", {"aria-labelledby": "timeline-h"}, h("h3", {id: "timeline-h"}, `Timeline (${rows.length} step attempts)`));
  if (!rows.length) { section.append(h("p", {class: "muted"}, "No step has run yet.")); return section; }
  const start = Date.parse(rows[0].at);
  const end = FINAL.has(run.status) ? Math.max(Date.parse(run.updatedAt), Date.parse(rows[rows.length - 1].at)) : Date.now();
  const span = Math.max(1, end - start);
  section.append(h("div", {class: "table-wrap"}, h("table", {class: "gantt"},
    h("thead", {}, h("tr", {}, ["Step", "Attempt", "Outcome", "Bar", "Reason", "Actor", "At"].map(t => h("th", {scope: "col"}, t)))),
    h("tbody", {}, rows.map((row, i) => {
      const from = Date.parse(row.at), to = i + 1 < rows.length ? Date.parse(rows[i + 1].at) : end;
      const left = 100 * (from - start) / span, width = Math.max(0.5, 100 * (to - from) / span);
      return h("tr", {"data-step": row.step},
        h("th", {scope: "row"}, row.step), h("td", {}, row.attempt), h("td", {}, row.outcome),
        h("td", {class: "bar"}, h("div", {class: "track", role: "img",
          "aria-label": `${row.step} from ${duration((from - start) / 1000)} for ${duration((to - from) / 1000)}`},
          h("span", {class: outcomeClass(row.outcome), style: {left: `${left.toFixed(2)}%`, width: `${Math.min(width, 100 - left).toFixed(2)}%`}}))),
        h("td", {}, row.reason || ""), h("td", {}, row.actor), h("td", {}, time(row.at)));
    })))));
  return section;
}

function nodeGrid(nodes) {
  const section = h("section", {"aria-labelledby": "nodes-h"}, h("h3", {id: "nodes-h"}, "Nodes"),
    h("ul", {class: "legend", "aria-label": "Node states"}, NODE_STATES.map(s => h("li", {}, h("span", {class: `swatch state-${s}`, "aria-hidden": "true"}), s))));
  if (nodes.error) section.append(h("p", {class: "muted"}, `Nodes unavailable: ${nodes.error}`));
  for (const pool of nodes.pools) {
    const moving = pool.nodes.reduce((n, node) => n + node.podsToMove.length, 0);
    section.append(h("h4", {}, `Pool ${pool.name} (${pool.role}): ${pool.nodes.length} nodes, ${moving} pods to move`),
      pool.nodes.length ? h("ul", {class: "grid", "aria-label": `Nodes of pool ${pool.name}`}, pool.nodes.map(n =>
        h("li", {class: `state-${n.state}`, "data-node": n.name, "data-state": n.state},
          h("span", {class: "name"}, n.name), `${n.state} · ${n.version}`,
          n.cordonedSeconds !== null ? h("div", {}, `cordoned ${duration(n.cordonedSeconds)}`) : null,
          n.podsToMove.length ? h("div", {title: n.podsToMove.join(", ")}, `${n.podsToMove.length} pods to move`) : null)))
        : h("p", {class: "muted"}, "No nodes (the pool is gone or empty)."));
  }
  return section;
}

async function quarantineView(view) {
  const {findings} = await api("/api/quarantine");
  const byCluster = new Map();
  for (const f of findings) byCluster.set(f.cluster, [...(byCluster.get(f.cluster) || []), f]);
  fill(view, h("h2", {}, "Quarantine"),
    findings.length ? null : h("p", {}, "No cordoned or quarantined node in any allowed cluster."),
    [...byCluster].map(([cluster, list]) => h("section", {"aria-label": `Cluster ${clusterName(cluster)}`},
      h("h3", {}, `Cluster ${clusterName(cluster)} (${list.length})`), list.map(finding))));
}

function finding(f) {
  const ago = f.cordonedAt ? (Date.now() - Date.parse(f.cordonedAt)) / 1000 : null;
  // A cluster clock ahead of the browser's gives no honest duration: the time alone is shown.
  const since = ago === null ? "unknown" : [ago >= 0 ? `${duration(ago)}, since ` : "since ", time(f.cordonedAt)];
  return h("article", {class: "finding", "data-node": f.node, "aria-label": `Node ${f.node}`},
    h("h3", {}, `Node ${f.node}`),
    h("dl", {class: "facts"},
      h("dt", {}, "Condition"), h("dd", {}, f.condition),
      h("dt", {}, "Pool"), h("dd", {}, `${f.pool} (${f.kubernetesVersion})`),
      h("dt", {}, "Cordoned for"), h("dd", {}, since),
      h("dt", {}, "Pods on it"), h("dd", {}, f.pods.join(", ") || "none")),
    h("h4", {}, "Blocking"),
    f.blockers.length ? h("ul", {}, f.blockers.map(b => h("li", {},
      `Pod ${b.pod} under PDB ${b.pdb}: `,
      b.minAvailable !== null ? `minAvailable ${b.minAvailable}` : `maxUnavailable ${b.maxUnavailable}`,
      `, ${b.currentHealthy} healthy of ${b.expectedPods} expected, ${b.disruptionsAllowed} disruptions allowed`)))
      : h("p", {class: "muted"}, "No PDB blocks this node."),
    h("h4", {}, "Ways out"),
    f.options.map(o => h("div", {class: "option", "data-kind": o.kind},
      h("p", {}, h("strong", {}, o.kind), `: ${o.description}`, o.caveat ? h("em", {}, ` Caveat: ${o.caveat}.`) : ""),
      o.request && me.actions.remediate ? h("button", {type: "button", class: "danger", onclick: () => remediate(f, o)},
        `Request ${o.kind}`) : h("p", {class: "muted"}, o.request ? "Your roles do not allow remediation." : (o.enable || "")),
      h("figure", {}, h("figcaption", {}, `Commands for ${o.kind}`), h("pre", {tabindex: "0"}, h("code", {}, o.command))),
      h("button", {type: "button", onclick: () => navigator.clipboard.writeText(o.command)
        .then(() => notice(`Copied the ${o.kind} commands.`), () => notice("Copy failed: select the text instead.", true))},
        `Copy ${o.kind} commands`))));
}

async function remediate(f, option) {
  if (!await confirmFirst(`Request ${option.kind} for node ${f.node}: ${option.description}`)) return;
  try {
    const run = await api(option.request.path, {method: option.request.method, body: JSON.stringify(option.request.body || {})});
    notice(`${option.kind} requested: run ${run.id}.`);
    location.hash = `#/run/${encodeURIComponent(run.id)}`;
  } catch (e) { notice(`${option.kind} refused: ${e.message}`, true); }
}

// ---- rollouts: stages as columns, clusters as cards, the gates with their verdicts -------------

const ROLLOUT_FINAL = new Set(["done", "aborted"]);
const ROLLOUT_DECISIONS = [
  {name: "approve", may: "rolloutApprove", when: s => s === "awaiting-approval", confirm: "Approve: the next stage starts upgrading its clusters."},
  {name: "pause", may: "pause", when: s => ["running", "soaking", "gate-blocked"].includes(s)},
  {name: "resume", may: "resume", when: s => ["paused", "halted", "gate-blocked"].includes(s)},
  {name: "abort", may: "abort", when: s => !ROLLOUT_FINAL.has(s), confirm: "Abort: no further cluster of this rollout is started."},
];

// The one target: a version, or "nodeImage" with the image pinned per image family.
const rolloutTarget = r => [r.targetVersion || "—", ...Object.values(r.nodeImages || {}).sort()].join(" ");

async function rolloutsView(view) {
  const {rollouts} = await api("/api/rollouts?limit=100");
  fill(view, h("h2", {}, "Rollouts"),
    rollouts.length ? h("div", {class: "table-wrap"}, h("table", {},
      h("thead", {}, h("tr", {}, ["Rollout", "Name", "Target", "Stage", "Status", "Updated"].map(t => h("th", {scope: "col"}, t)))),
      h("tbody", {}, rollouts.map(r => h("tr", {},
        h("td", {}, h("a", {href: `#/rollout/${encodeURIComponent(r.id)}`}, r.id)), h("td", {}, r.name || "—"),
        h("td", {}, rolloutTarget(r)), h("td", {}, `${r.stage + 1} of ${r.stages.length}`),
        h("td", {}, statusBadge(r.status)), h("td", {}, time(r.updatedAt)))))))
      : h("p", {}, "No rollout yet."));
}

function gateVerdict(r, stage) {
  const passed = (r.gates || []).find(g => g.stage === stage.index);
  if (passed) return h("p", {class: "gate passed"}, "Gate passed ", time(passed.passedAt));
  if (stage.index === r.stage && r.status === "gate-blocked") return h("p", {class: "gate blocked"}, `Gate blocked: ${r.reason}`);
  if (stage.index === r.stage && r.status === "halted") return h("p", {class: "gate blocked"}, `Halted: ${r.reason}`);
  return h("p", {class: "gate muted"}, `Gate: alerts below ${stage.gate.alertSeverity}` +
    (stage.gate.requireValidation ? ", validation passed" : "") + (stage.approval ? ", then approval" : ""));
}

async function rolloutView(view, id) {
  const r = await api(`/api/rollouts/${encodeURIComponent(id)}`);
  fill(view,
    h("p", {}, h("a", {href: "#/rollouts"}, "← All rollouts")),
    h("h2", {}, `Rollout ${r.name || r.id}`),
    h("dl", {class: "facts"},
      h("dt", {}, "Status"), h("dd", {"data-testid": "rollout-status"}, statusBadge(r.status)),
      h("dt", {}, "Stage"), h("dd", {}, `${r.stage + 1} of ${r.stages.length}`),
      h("dt", {}, "Target"), h("dd", {}, rolloutTarget(r)),
      h("dt", {}, "Reason"), h("dd", {}, r.reason || "—")),
    actions("rollout", "/api/rollouts", r, ROLLOUT_DECISIONS),
    h("section", {"aria-labelledby": "stages-h"}, h("h3", {id: "stages-h"}, "Stages"),
      h("ol", {class: "stages"}, r.stages.map(stage => h("li", {class: stage.index === r.stage ? "stage current" : "stage",
        "data-stage": stage.name, "aria-current": stage.index === r.stage ? "step" : null},
        h("h4", {}, `${stage.index + 1}. ${stage.name}`),
        stage.groups.map(g => h("section", {class: "group", "aria-label": `Group ${g.name}`}, h("h5", {}, g.name),
          h("ul", {class: "cards"}, g.clusters.map(c => h("li", {class: `card ${c.status}`, "data-cluster": clusterName(c.cluster)},
            h("strong", {}, clusterName(c.cluster)), " ", statusBadge(c.status || "pending"),
            Object.keys(c.runs || {}).length ? h("ul", {class: "runs"}, Object.entries(c.runs).map(([pool, runId]) =>
              h("li", {}, h("a", {href: `#/run/${encodeURIComponent(runId)}`}, `${pool}: ${runId}`)))) : null,
            c.reason ? h("p", {}, c.reason) : null))))),
        gateVerdict(r, stage))))));
}

// ---- routing and polling -----------------------------------------------------------------

async function refresh() {
  const hash = location.hash || "#/runs";
  for (const a of document.querySelectorAll(".top nav a")) {
    if (hash.startsWith(a.getAttribute("href"))) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
  }
  const view = document.getElementById("view");
  try {
    if (hash.startsWith("#/run/")) await runView(view, decodeURIComponent(hash.slice(6)));
    else if (hash.startsWith("#/quarantine")) await quarantineView(view);
    else if (hash.startsWith("#/rollout/")) await rolloutView(view, decodeURIComponent(hash.slice(10)));
    else if (hash.startsWith("#/rollouts")) await rolloutsView(view);
    else await runsView(view);
    view.dataset.updated = new Date().toISOString();
  } catch (e) { notice(`Could not load: ${e.message}`, true); }
}

function tick() {
  for (const el of document.querySelectorAll("[data-until]")) el.textContent = duration((Date.parse(el.dataset.until) - Date.now()) / 1000);
}

async function start() {
  try {
    me = await api("/api/me");
    document.getElementById("who").textContent = `${me.name} · ${me.roles.join(", ") || "no roles"}`;
  } catch (e) { notice(`Not signed in: ${e.message}`, true); }
  window.addEventListener("hashchange", () => { notice(""); refresh(); });
  await refresh();
  // A poll never redraws under an open dialog or a filter being typed.
  setInterval(() => {
    if (!document.getElementById("confirm").open && !document.activeElement.matches("form.filters input")) refresh();
  }, POLL_MS);
  setInterval(tick, 1000);
}

start();
