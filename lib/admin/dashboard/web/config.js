// The Config view: the config file in a textarea with line numbers. Save sends
// it to PUT /api/config, which validates it on the server: every problem is
// marked at its line, or the new generation is shown. Reload re-reads the file.

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
  let saved = null;
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

  const busy = async (work) => {
    for (const b of buttons) b.disabled = true;
    try {
      await work();
    } catch (e) {
      status(e instanceof ApiError ? e.message : `Failed: ${e.message}`, "bad");
    } finally {
      for (const b of buttons) b.disabled = saved === null;
    }
  };

  /** An answer of PUT /api/config or POST /api/reload. */
  const outcome = async (response, applied) => {
    if (response.status !== 200 && response.status !== 422) await text(response);
    const result = await response.json();
    if (result.ok) {
      showProblems([]);
      status(`${applied}: generation ${result.generation}`, "ok");
      onGeneration(result.generation);
      return true;
    }
    showProblems(result.problems);
    const count = result.problems.length;
    status(`Not applied: ${count} ${count === 1 ? "problem" : "problems"}`, "bad");
    return false;
  };

  const load = () =>
    busy(async () => {
      const response = await api("/api/config", {}, INTERACTIVE);
      if (response.status === 404) {
        saved = null;
        area.value = "";
        area.readOnly = true;
        status(await response.text(), "bad");
        return;
      }
      saved = await text(response);
      area.value = saved;
      area.readOnly = false;
      renderLines(true);
      status("");
    });

  save.addEventListener("click", () =>
    busy(async () => {
      const body = area.value;
      status("Saving…");
      const response = await api("/api/config", { method: "PUT", body }, INTERACTIVE);
      if (await outcome(response, "Saved and applied")) saved = body;
    }));

  reload.addEventListener("click", () =>
    busy(async () => {
      status("Reloading…");
      const response = await api("/api/reload", { method: "POST" }, INTERACTIVE);
      if (await outcome(response, "Reloaded from the file") && area.value === saved) {
        saved = await text(await api("/api/config"));
        area.value = saved;
        renderLines(true);
      }
    }));

  revert.addEventListener("click", () => {
    if (saved === null) return;
    area.value = saved;
    showProblems([]);
    status("Edits discarded");
  });

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
