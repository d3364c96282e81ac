// The Backends view: every pool and backend as /api/pools (and each "sample"
// event) reports them. Cards are kept and updated in place while the pools
// and their backends stay the same, and rebuilt after a reload changes them.

/** The Backends view; `update(pools)` with the API's pools. */
export function createBackends() {
  const root = document.getElementById("pools");
  const summary = document.getElementById("b-summary");
  let shape = "";
  let cards = [];

  return {
    update(pools) {
      const next = JSON.stringify(pools.map((p) => [p.name, p.backends.map((b) => b.address)]));
      if (next !== shape) {
        shape = next;
        cards = [];
        root.replaceChildren(...pools.map((pool) => poolSection(pool, cards)));
      }
      let index = 0;
      for (const pool of pools) {
        for (const backend of pool.backends) fillCard(cards[index++], backend);
      }
      const all = pools.flatMap((p) => p.backends);
      const serving = all.filter((b) => b.available).length;
      summary.textContent =
        `${serving} of ${all.length} backends take traffic, in ${pools.length} ${
          pools.length === 1 ? "pool" : "pools"
        }.`;
    },
  };
}

function poolSection(pool, cards) {
  const section = el("section", { className: "pool" });
  section.dataset.pool = pool.name;
  const facts = el("p", { className: "facts" });
  facts.append(
    "matcher ",
    el("code", { textContent: pool.matcher }),
    ` · ${pool.strategy} · ${pool.schemes.join(", ")} · transport ${pool.transport}`,
  );
  const grid = el("div", { className: "cards" });
  for (const backend of pool.backends) {
    const card = backendCard(backend);
    cards.push(card);
    grid.append(card.root);
  }
  section.append(el("h2", { textContent: pool.name }), facts, grid);
  return section;
}

const FIELDS = [
  ["traffic", "gets traffic"],
  ["check", "last check"],
  ["latency", "check latency"],
  ["requests", "requests"],
  ["failures", "failures"],
  ["inFlight", "in flight"],
  ["ejected", "ejected"],
];

function backendCard(backend) {
  const root = el("article", { className: "card" });
  root.dataset.backend = backend.address;
  const badge = el("span", { className: "badge" });
  const list = el("dl");
  const values = {};
  for (const [key, label] of FIELDS) {
    values[key] = el("dd");
    list.append(el("dt", { textContent: label }), values[key]);
  }
  root.append(el("h3", { textContent: backend.address }), badge, list);
  return { root, badge, values };
}

function fillCard(card, b) {
  const [tone, label] = stateOf(b);
  card.root.dataset.tone = tone;
  card.root.dataset.state = b.health;
  set(card.badge, label);
  const v = card.values;
  set(
    v.traffic,
    b.available
      ? "yes"
      : b.keepSticky
      ? "sticky clients only (drained)"
      : b.drained
      ? "no (drained)"
      : "no",
  );
  set(v.check, b.lastCheck ? b.lastCheck.reason : "none yet");
  set(v.latency, b.lastCheck ? `${Number(b.lastCheck.latencyMs.toPrecision(3))} ms` : "–");
  set(v.requests, String(b.requests));
  set(v.failures, String(b.failures));
  set(v.inFlight, String(b.inFlight));
  set(
    v.ejected,
    b.ejected
      ? `yes (${b.ejections} in a row)`
      : b.ejectedInWorkers > 0
      ? `in ${workers(b.ejectedInWorkers)}`
      : "no",
  );
}

/**
 * Tone and label: red for a backend out of rotation, amber for Slow, drained by
 * an operator or ejected by some workers only, grey before any probe.
 */
function stateOf(b) {
  if (b.health === "Unresponsive") return ["bad", "Unresponsive"];
  if (b.ejected) return ["bad", `${b.health}, ejected`];
  if (b.drained) return ["warn", `${b.health}, drained`];
  // With `workers`, each worker ejects on its own traffic: the others still use it.
  if (b.ejectedInWorkers > 0) {
    return ["warn", `${b.health}, ejected in ${workers(b.ejectedInWorkers)}`];
  }
  if (b.health === "Slow") return ["warn", "Slow"];
  if (!b.verified) return ["unknown", "Healthy, not checked yet"];
  return ["ok", b.health];
}

function workers(n) {
  return n === 1 ? "1 worker" : `${n} workers`;
}

function set(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

function el(tag, props = {}) {
  return Object.assign(document.createElement(tag), props);
}
