// Maps config names to strategy factories. The validator takes its list of
// names from here, so a new strategy is one file and one line below.

import { describe, isTable, suggest, TableReader } from "../config/fields.ts";
import type { Problem } from "../config/errors.ts";
import type { StrategyConfig } from "../config/types.ts";
import type { Strategy, StrategyDeps } from "./strategy.ts";
import { roundRobin } from "./round_robin.ts";
import { random } from "./random.ts";
import { ipHash } from "./ip_hash.ts";
import { leastConnection } from "./least_connection.ts";
import { stickyCookie } from "./sticky_cookie.ts";
import { weightedRoundRobin } from "./weighted_round_robin.ts";
import { powerOfTwoChoices } from "./power_of_two.ts";
import { peakEwma } from "./peak_ewma.ts";

/** What a strategy's options may be checked against. */
export interface StrategyParseContext {
  /** The pool's addresses as written, when they are valid. */
  readonly addresses?: readonly string[];
  /** Records a non-fatal remark about the value at `path` (a load warning). */
  readonly warn?: (path: string, message: string) => void;
}

/** One strategy: option validation at config time, construction at runtime. */
export interface StrategyFactory {
  readonly name: string;
  /** Validates the options table; problems go to the reader. */
  parse(
    reader: TableReader,
    parseInner: (value: unknown, path: string) => StrategyConfig | undefined,
    context: StrategyParseContext,
  ): Record<string, unknown>;
  /** Builds a fresh strategy instance (its state lives for one config generation). */
  create(
    options: Readonly<Record<string, unknown>>,
    deps: StrategyDeps,
    build: (config: StrategyConfig, deps: StrategyDeps) => Strategy,
  ): Strategy;
}

const FACTORIES: readonly StrategyFactory[] = [
  roundRobin,
  random,
  ipHash,
  leastConnection,
  stickyCookie,
  weightedRoundRobin,
  powerOfTwoChoices,
  peakEwma,
];

const BY_NAME = new Map(FACTORIES.map((f) => [f.name, f]));

/** The strategy names a config may use, in documentation order. */
export const STRATEGY_NAMES: readonly string[] = FACTORIES.map((f) => f.name);

/**
 * Validates a `strategy` value: `"RoundRobin"` or `{ RoundRobin = {} }` (exactly
 * one key). Returns undefined after recording problems.
 */
export function parseStrategy(
  value: unknown,
  path: string,
  problems: Problem[],
  context: StrategyParseContext = {},
): StrategyConfig | undefined {
  let name: string;
  let options: unknown = {};
  if (typeof value === "string") name = value;
  else if (isTable(value)) {
    const keys = Object.keys(value);
    if (keys.length !== 1) {
      problems.push({
        path,
        message: `expected exactly one strategy name as key, found ${keys.length} keys`,
      });
      return undefined;
    }
    name = keys[0];
    options = value[name];
  } else {
    problems.push({
      path,
      message: `expected a strategy name or table, found ${describe(value)}`,
    });
    return undefined;
  }
  const factory = BY_NAME.get(name);
  if (!factory) {
    const hint = suggest(name, STRATEGY_NAMES);
    const list = STRATEGY_NAMES.map((n) => `"${n}"`).join(", ");
    problems.push({
      path,
      message: `unknown strategy ${JSON.stringify(name)}` +
        (hint ? ` (did you mean "${hint}"?)` : ` (expected one of ${list})`),
    });
    return undefined;
  }
  const optionsPath = typeof value === "string" ? path : `${path}.${name}`;
  const reader = TableReader.of(options, optionsPath, problems);
  if (!reader) return undefined;
  const before = problems.length;
  const parsed = factory.parse(reader, (v, p) => parseStrategy(v, p, problems, context), context);
  reader.finish();
  if (problems.length > before) return undefined;
  return Object.freeze({ name, options: Object.freeze(parsed) });
}

/** Builds a strategy instance for a validated config. */
export function createStrategy(config: StrategyConfig, deps: StrategyDeps): Strategy {
  const factory = BY_NAME.get(config.name);
  if (!factory) throw new Error(`Cannot create strategy: unknown name "${config.name}"`);
  return factory.create(config.options, deps, createStrategy);
}
