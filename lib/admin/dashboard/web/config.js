// The Config view: the config file in a textarea with line numbers. Save sends
// it to PUT /api/config, which validates it on the server: every problem is
// marked at its line, or the new generation is shown. Reload re-reads the file.
// A save names the text it was edited from (If-Match): one made on a config
// that changed meanwhile is refused rather than undoing that change. An
// unedited view follows new generations; an edited one says it is stale.

import { api, ApiError, text } from "./api.js";

/** Calls the user asked for: they prompt for the token even after a cancelled prompt. */
const INTERACTIVE = { interactive: true };

/** The Config view; `onGeneration(n)` is told about a newly applied generation. */
export function createConfig(onGeneration) {
  const area = document.getElementById("cfg-text");
  const gutter = document.getElementById("cfg-gutter");
  const marks = document.getElementById("cfg-marks");
  const list = document.getElementById("cfg-problems");
  const state = document.getElementById("cfg-state");
  const buttons = ["cfg-save", "cfg-reload", "cfg-revert"].map((id) => document.getElementById(id));
  const [save, reload, revert] = buttons;
  /** The running config as loaded (line ends as LF, as a textarea keeps them). */
  let saved = null;
  /** ETag of the text loaded or saved last; whether that text had CRLF line ends. */
  let etag = null;
  let crlf = false;
  let generation = null;
  let problemLines = new Map();
  let lineCount = 0;

  const status = (message, tone = "") => {
    state.textContent = message;
    state.className = `state ${tone}`;
  };

  const renderLines = (force = false) => {
    const count = area.value.split("\n").length;
    if (count === lineCount && !force) return;
    lineCount = count;
    const numbers = [];
    const bands = [];
    for (let n = 1; n <= count; n++) {
      const number = document.createElement("div");
      const band = document.createElement("div");
      number.textContent = String(n);
      const problems = problemLines.get(n);
      if (problems) {
        number.className = band.className = "problem";
        number.title = problems.map(describe).join("\n");
        const note = document.createElement("span");
        note.textContent = problems.map((p) => p.message).join("; ");
        band.append(note);
      }
      number.dataset.line = band.dataset.line = String(n);
      numbers.push(number);
      bands.push(band);
    }
    // Room for the textarea's horizontal scrollbar, so the last lines stay aligned.
    numbers.push(spacer());
    bands.push(spacer());
    gutter.replaceChildren(...numbers);
    marks.replaceChildren(...bands);
    syncScroll();
  };

  const syncScroll = () => {
    gutter.scrollTop = marks.scrollTop = area.scrollTop;
  };

  const showProblems = (problems) => {
    problemLines = new Map();
    for (const p of problems) {
      if (p.line === undefined) continue;
      problemLines.set(p.line, [...problemLines.get(p.line) ?? [], p]);
    }
    list.replaceChildren(
      ...[...problems].sort((a, b) => (a.line ?? 0) - (b.line ?? 0)).map((p) => {
        const item = document.createElement("li");
        if (p.line !== undefined) {
          const jump = document.createElement("button");
          jump.type = "button";
          jump.textContent = `line ${p.line}`;
          jump.addEventListener("click", () => goToLine(area, p.line));
          item.append(jump, " ");
          item.dataset.line = String(p.line);
        }
        item.append(describe(p));
        return item;
      }),
    );
    list.hidden = problems.length === 0;
    renderLines(true);
  };

  let working = false;
  const busy = async (work) => {
    for (const b of buttons) b.disabled = true;
    working = true;
    try {
      await work();
    } catch (e) {
      status(e instanceof ApiError ? e.message : `Failed: ${e.message}`, "bad");
    } finally {
      working = false;
      for (const b of buttons) b.disabled = saved === null;
    }
  };

  /** An answer of PUT /api/config or POST /api/reload: the result, after showing it. */
  const outcome = async (response, applied) => {
    if (![200, 412, 422].includes(response.status)) await text(response);
    const result = await response.json();
    if (result.ok) {
      // What loads but will not work as meant, and what was not applied (a listener that could
      // not move, what needs a restart): listed like problems, without failing the save.
      const warnings = result.warnings ?? [];
      const kept = result.kept ?? [];
      showProblems([...kept, ...warnings.map((message) => ({ path: "", message }))]);
      list.classList.add("warnings");
      const count = warnings.length;
      status(
        `${applied}: generation ${result.generation}` +
          (kept.length === 0 ? "" : `, except ${kept.map((p) => p.path).join(", ")}`) +
          (count === 0 ? "" : `, with ${count} ${count === 1 ? "warning" : "warnings"}`),
        count + kept.length === 0 ? "ok" : "warn",
      );
      onGeneration(result.generation);
      return result;
    }
    showProblems(result.problems);
    list.classList.remove("warnings");
    const count = result.problems.length;
    status(
      response.status === 412
        ? "Not applied: the config changed since it was loaded (Revert loads it)"
        : `Not applied: ${count} ${count === 1 ? "problem" : "problems"}`,
      "bad",
    );
    return result;
  };

  /** Shows `raw` as the running config. */
  const adopt = (raw, tag) => {
    crlf = raw.includes("\r\n");
    saved = raw.replaceAll("\r\n", "\n");
    etag = tag;
    area.value = saved;
    area.readOnly = false;
    renderLines(true);
  };

  const fetchConfig = async () => {
    const response = await api("/api/config", {}, INTERACTIVE);
    if (response.status === 404) {
      saved = etag = null;
      area.value = "";
      area.readOnly = true;
      status(await response.text(), "bad");
      return false;
    }
    adopt(await text(response), response.headers.get("etag"));
    return true;
  };

  const load = () =>
    busy(async () => {
      if (await fetchConfig()) {
        // What an earlier save listed belongs to that generation, not to this one.
        showProblems([]);
        status("");
      }
    });

  save.addEventListener("click", () =>
    busy(async () => {
      const body = area.value;
      status("Saving…");
      const headers = etag === null ? {} : { "if-match": etag };
      const sent = crlf ? body.replaceAll("\n", "\r\n") : body;
      const response = await api(
        "/api/config",
        { method: "PUT", body: sent, headers },
        INTERACTIVE,
      );
      if ((await outcome(response, "Saved and applied")).ok) {
        saved = body;
        etag = response.headers.get("etag");
      }
    }));

  reload.addEventListener("click", () =>
    busy(async () => {
      status("Reloading…");
      const edited = area.value !== saved;
      const response = await api("/api/reload", { method: "POST" }, INTERACTIVE);
      const result = await outcome(response, "Reloaded from the file");
      if (result.ok && !edited) {
        const again = await api("/api/config");
        adopt(await text(again), again.headers.get("etag"));
      } else if (!result.ok && typeof result.text === "string") {
        if (edited) {
          // Unsaved edits are never replaced: the problems' lines are the file's, not these.
          status(`${state.textContent} in the file (not shown: your edits are kept)`, "bad");
        } else {
          // The problems' lines are the file's: show the file, to fix and save.
          area.value = result.text.replaceAll("\r\n", "\n");
          renderLines(true);
          status(`${state.textContent}: the file is shown, not the running config`, "bad");
        }
      }
    }));

  revert.addEventListener("click", () =>
    busy(async () => {
      if (await fetchConfig()) {
        showProblems([]);
        status("Showing the running config");
      }
    }));

  area.addEventListener("input", () => {
    renderLines();
    if (saved !== null) status(area.value === saved ? "" : "Edited, not saved");
  });
  area.addEventListener("scroll", syncScroll);

  let loaded = false;
  return {
    show() {
      if (!loaded) {
        loaded = true;
        load();
      }
    },
    /** The running config's generation, as the status and the event stream tell it. */
    generationChanged(next) {
      const before = generation;
      generation = next;
      // A save or reload of this view's own says what it did itself.
      if (!loaded || working || saved === null || before === null || before === next) return;
      if (area.value === saved) load(); // unedited: follow what runs now
      else status(`The running config changed (generation ${next}): Revert loads it`, "bad");
    },
  };
}

function describe(p) {
  return p.path ? `${p.path}: ${p.message}` : p.message;
}

function spacer() {
  const div = document.createElement("div");
  div.className = "spacer";
  return div;
}

function goToLine(area, line) {
  const lines = area.value.split("\n");
  const start = lines.slice(0, line - 1).reduce((n, l) => n + l.length + 1, 0);
  area.focus();
  area.setSelectionRange(start, start + (lines[line - 1]?.length ?? 0));
  const height = parseFloat(getComputedStyle(area).lineHeight);
  area.scrollTop = Math.max(0, (line - 1) * height - area.clientHeight / 2);
}
