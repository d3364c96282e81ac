// Strom's dashboard: views switched by the URL's hash, the theme toggle, and
// the event stream that feeds the Overview and Backends views.

import { api, followEvents, requestToken, text } from "./api.js";
import { createOverview } from "./overview.js";
import { createBackends } from "./backends.js";
import { createConfig } from "./config.js";
import { createLogs } from "./logs.js";

const THEMES = ["auto", "light", "dark"];
const THEME_KEY = "strom.theme";

const overview = createOverview();
const backends = createBackends();
const config = createConfig(setGeneration);
const logs = createLogs();
const views = { overview, backends, config, logs };

function setGeneration(generation) {
  const element = document.getElementById("generation");
  element.textContent = `generation ${generation}`;
  element.dataset.value = String(generation);
  config.generationChanged(generation);
}

function route() {
  const name = location.hash.slice(1) in views ? location.hash.slice(1) : "overview";
  for (const [key, view] of Object.entries(views)) {
    const section = document.getElementById(key);
    const active = key === name;
    if (section.hidden === !active) continue;
    section.hidden = !active;
    if (active) view.show?.();
    else view.hide?.();
  }
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.view === name) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function applyTheme(theme) {
  if (theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  document.getElementById("theme").textContent = theme;
  overview.themeChanged();
}

document.getElementById("theme").addEventListener("click", () => {
  const current = localStorage.getItem(THEME_KEY) ?? "auto";
  const next = THEMES[(THEMES.indexOf(current) + 1) % THEMES.length];
  localStorage.setItem(THEME_KEY, next);
  applyTheme(next);
});
matchMedia("(prefers-color-scheme: dark)").addEventListener(
  "change",
  () => overview.themeChanged(),
);

let startedAt = null;

async function loadStatus() {
  try {
    const status = JSON.parse(await text(await api("/api/status")));
    setGeneration(status.generation);
    document.querySelector(".brand").title = `Strom ${status.version} (${status.commit})`;
    document.getElementById("cfg-path").textContent = status.config;
    startedAt = Date.now() - status.uptimeSeconds * 1000;
    showUptime();
  } catch (e) {
    console.warn("status:", e.message);
  }
}

function showUptime() {
  if (startedAt === null) return;
  document.getElementById("t-uptime").textContent = duration((Date.now() - startedAt) / 1000);
}

async function loadPools() {
  try {
    backends.update(JSON.parse(await text(await api("/api/pools"))));
  } catch (e) {
    document.getElementById("b-summary").textContent = `Cannot read the pools: ${e.message}`;
  }
}

function duration(seconds) {
  const s = Math.floor(seconds);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

const LINK_TEXT = {
  live: "live",
  connecting: "connecting",
  down: "reconnecting",
  token: "token needed",
};

applyTheme(localStorage.getItem(THEME_KEY) ?? "auto");
addEventListener("hashchange", route);
route();
loadStatus();
loadPools();
setInterval(showUptime, 1000);
// A token given for any call: read again what may have been refused without one.
addEventListener("strom-token", () => {
  loadStatus();
  loadPools();
});
document.getElementById("link").addEventListener("click", (e) => {
  if (e.currentTarget.dataset.state === "token") requestToken();
});
followEvents((name, data) => {
  if (name === "history") overview.history(data);
  else if (name === "sample") {
    overview.sample(data.sample);
    backends.update(data.pools);
    setGeneration(data.generation);
  }
}, (state) => {
  const link = document.getElementById("link");
  // Back after the stream broke (Strom restarted?): uptime, version and config path anew.
  if (state === "live" && link.dataset.state === "down") {
    loadStatus();
    loadPools();
  }
  link.dataset.state = state;
  link.textContent = LINK_TEXT[state];
});
