// The Logs view: the last application log lines from GET /api/logs, polled
// every 2 s while the view is open, filtered by level and text on the server.

import { api, ApiError, text } from "./api.js";

const POLL_MS = 2000;
const LIMIT = 500;

/** The Logs view. */
export function createLogs() {
  const list = document.getElementById("log-lines");
  const level = document.getElementById("log-level");
  const search = document.getElementById("log-q");
  const pause = document.getElementById("log-pause");
  const count = document.getElementById("log-count");
  let timer = null;
  let shown = "";
  let running = false;

  const poll = async () => {
    if (running || pause.checked) return;
    running = true;
    try {
      const query = new URLSearchParams({ level: level.value, limit: String(LIMIT) });
      if (search.value.trim()) query.set("q", search.value.trim());
      const records = JSON.parse(await text(await api(`/api/logs?${query}`)));
      render(records);
    } catch (e) {
      count.textContent = e instanceof ApiError ? e.message : `Failed: ${e.message}`;
    } finally {
      running = false;
    }
  };

  const render = (records) => {
    const last = records.at(-1);
    const key =
      `${level.value}\n${search.value}\n${records.length}\n${last?.time}\n${last?.message}`;
    count.textContent = `${records.length} ${records.length === 1 ? "line" : "lines"}${
      records.length === LIMIT ? " (the newest)" : ""
    }`;
    if (key === shown) return;
    shown = key;
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 24;
    if (records.length === 0) {
      const empty = document.createElement("li");
      empty.className = "empty";
      empty.textContent = "No log lines match.";
      list.replaceChildren(empty);
    } else list.replaceChildren(...records.map(line));
    if (atBottom) list.scrollTop = list.scrollHeight;
  };

  let typing;
  search.addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(poll, 300);
  });
  level.addEventListener("change", poll);
  pause.addEventListener("change", poll);

  return {
    show() {
      poll();
      timer ??= setInterval(poll, POLL_MS);
    },
    hide() {
      clearInterval(timer);
      timer = null;
    },
  };
}

function line(record) {
  const item = document.createElement("li");
  item.dataset.level = record.level;
  const time = document.createElement("time");
  const date = new Date(record.time);
  time.dateTime = record.time;
  time.title = record.time;
  time.textContent = date.toLocaleTimeString([], { hour12: false }) +
    `.${String(date.getMilliseconds()).padStart(3, "0")}`;
  const lvl = document.createElement("span");
  lvl.className = `lvl lvl-${record.level}`;
  lvl.textContent = record.level;
  const message = document.createElement("span");
  message.className = "msg";
  message.textContent = record.message;
  item.append(time, lvl, message);
  return item;
}
