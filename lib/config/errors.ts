// Config problems and the error that carries all of them at once.

/** One thing wrong with a config, at a dotted path such as `backend_pools[0].strategy`. */
export interface Problem {
  readonly path: string;
  readonly message: string;
  /** 1-based line in the TOML file, when known. */
  readonly line?: number;
}

/** Thrown when a config cannot be loaded; `problems` lists every problem found. */
export class ConfigError extends Error {
  readonly problems: readonly Problem[];
  readonly source: string;

  constructor(source: string, problems: readonly Problem[]) {
    super(formatProblems(source, problems));
    this.name = "ConfigError";
    this.source = source;
    this.problems = problems;
  }
}

/** Renders the multi-line report used on the console and in `--check`. */
export function formatProblems(source: string, problems: readonly Problem[]): string {
  const count = problems.length === 1 ? "1 problem" : `${problems.length} problems`;
  const lines = problems.map((p) => {
    const where = p.path === "" ? "" : `${p.path}: `;
    const line = p.line === undefined ? "" : ` (line ${p.line})`;
    // The line goes after the message's first line, before any caret lines below it.
    const [first, ...rest] = p.message.split("\n");
    return `  ${where}${first}${line}${rest.map((r) => `\n    ${r}`).join("")}`;
  });
  return `Cannot load config "${source}": found ${count}\n${lines.join("\n")}`;
}

/** Appends a key to a dotted path, quoting keys that are not bare TOML keys. */
export function childPath(path: string, key: string | number): string {
  if (typeof key === "number") return `${path}[${key}]`;
  const part = /^[A-Za-z0-9_-]+$/.test(key) ? key : JSON.stringify(key);
  return path === "" ? part : `${path}.${part}`;
}
