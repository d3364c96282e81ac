// The Overview: the latest figures as tiles and the server's last 15 minutes
// of per-second samples as uPlot charts, one point per sample.

/** Samples kept, as on the server: 15 minutes at one per second. */
const KEEP = 900;

const CHARTS = [
  { id: "c-rps", series: [["requests/s", "rps", "#2563eb"]] },
  { id: "c-latency", series: [["p50", "p50", "#0891b2"], ["p99", "p99", "#d97706"]] },
  { id: "c-errors", series: [["5xx", "err", "#dc2626"]] },
  {
    id: "c-status",
    series: [["2xx", "s2", "#16a34a"], ["3xx", "s3", "#6366f1"], ["4xx", "s4", "#d97706"], [
      "5xx",
      "s5",
      "#dc2626",
    ]],
  },
  { id: "c-inflight", series: [["in flight", "inflight", "#7c3aed"]] },
  { id: "c-lag", series: [["lag p99", "lag", "#0d9488"]] },
];

const KEYS = ["rps", "p50", "p99", "err", "s2", "s3", "s4", "s5", "inflight", "lag"];

/** The Overview view; feed it with `history(samples)` and `sample(sample)`. */
export function createOverview() {
  const time = [];
  const columns = Object.fromEntries(KEYS.map((k) => [k, []]));
  let charts = [];
  let visible = false;

  const add = (s) => {
    time.push(s.time / 1000);
    columns.rps.push(s.requestsPerSecond);
    columns.p50.push(s.p50Ms);
    columns.p99.push(s.p99Ms);
    columns.err.push(s.errorRate * 100);
    columns.s2.push(s.status["2xx"]);
    columns.s3.push(s.status["3xx"]);
    columns.s4.push(s.status["4xx"]);
    columns.s5.push(s.status["5xx"]);
    columns.inflight.push(s.inFlight);
    columns.lag.push(s.loopLagP99Ms);
    if (time.length > KEEP) {
      time.shift();
      for (const k of KEYS) columns[k].shift();
    }
  };

  const redraw = () => {
    if (!visible) return;
    for (const { plot, keys } of charts) plot.setData([time, ...keys.map((k) => columns[k])]);
  };

  const build = () => {
    for (const { plot } of charts) plot.destroy();
    charts = CHARTS.map((spec) => {
      const element = document.getElementById(spec.id);
      const keys = spec.series.map(([, key]) => key);
      const plot = new uPlot(
        chartOptions(spec, element.clientWidth),
        [time, ...keys.map((k) => columns[k])],
        element,
      );
      return { plot, keys, element };
    });
  };

  const resize = () => {
    for (const { plot, element } of charts) {
      const width = element.clientWidth;
      if (width > 0 && width !== plot.width) plot.setSize({ width, height: plot.height });
    }
  };
  new ResizeObserver(resize).observe(document.querySelector("#overview .charts"));

  return {
    /** Replaces everything with the server's history (a new event stream). */
    history(samples) {
      time.length = 0;
      for (const k of KEYS) columns[k].length = 0;
      for (const s of samples.slice(-KEEP)) add(s);
      const last = samples.at(-1);
      if (last) showTiles(last);
      redraw();
    },
    /** One new sample. */
    sample(s) {
      add(s);
      showTiles(s);
      redraw();
    },
    show() {
      visible = true;
      if (charts.length === 0) build();
      resize();
      redraw();
    },
    hide() {
      visible = false;
    },
    /** Colours come from the theme: rebuild the charts with the new ones. */
    themeChanged() {
      if (charts.length > 0) build();
    },
  };
}

function chartOptions(spec, width) {
  const css = getComputedStyle(document.documentElement);
  const muted = css.getPropertyValue("--muted").trim();
  const line = css.getPropertyValue("--line").trim();
  const axis = { stroke: muted, grid: { stroke: line, width: 1 }, ticks: { stroke: line } };
  return {
    width: Math.max(width, 200),
    height: 200,
    series: [
      {},
      ...spec.series.map(([label, , color]) => ({
        label,
        stroke: color,
        width: 1.5,
        fill: spec.series.length === 1 ? `${color}1f` : undefined,
        points: { show: false },
        value: (_u, v) => (v === null || v === undefined ? "–" : round(v)),
      })),
    ],
    axes: [axis, { ...axis, size: 56 }],
    scales: {
      x: { time: true },
      // Counts and durations start at zero; an empty chart gets 0..1, not a made-up scale.
      y: { range: (_u, _min, max) => [0, max > 0 ? max * 1.1 : 1] },
    },
    cursor: { drag: { x: false, y: false } },
  };
}

function round(v) {
  return Math.round(v * 100) / 100;
}

function showTiles(s) {
  tile("t-rps", s.requestsPerSecond, String(s.requestsPerSecond));
  tile("t-p50", s.p50Ms, s.p50Ms === null ? "–" : `${s.p50Ms} ms`);
  tile("t-p99", s.p99Ms, s.p99Ms === null ? "–" : `${s.p99Ms} ms`);
  tile("t-err", s.errorRate, `${round(s.errorRate * 100)} %`);
  tile("t-inflight", s.inFlight, String(s.inFlight));
  tile("t-lag", s.loopLagP99Ms, s.loopLagP99Ms === null ? "–" : `${s.loopLagP99Ms} ms`);
}

function tile(id, value, text) {
  const element = document.getElementById(id);
  element.textContent = text;
  element.dataset.value = value === null ? "" : String(value);
}
