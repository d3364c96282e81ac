// Code point sets written out as pattern source without the `u` and `i` flags
// (lib/config/code_points.ts): each must match exactly the code points of
// its set, as V8's Unicode mode would, and nothing else.

import assert from "node:assert/strict";
import fc from "fast-check";
import {
  caseClosed,
  type CodePoints,
  complement,
  has,
  property,
  source,
  union,
} from "../../lib/config/code_points.ts";

const RUNS = Number(Deno.env.get("FC_RUNS") ?? 200);

/** A code point that is no surrogate. */
const scalar = fc.oneof(
  fc.integer({ min: 0, max: 0xd7ff }),
  fc.integer({ min: 0xe000, max: 0x10ffff }),
);

Deno.test("source() matches one code point of its set, and nothing else, without the u flag", () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(scalar, scalar), { maxLength: 8 }),
      fc.array(scalar),
      (pairs, probes) => {
        const set = union(...pairs.map(([a, b]): CodePoints => a <= b ? [a, b] : [b, a]));
        const pattern = new RegExp(`^${source(set)}$`);
        // Around each range's ends, and random code points.
        const around = pairs.flat().flatMap((cp) => [cp - 1, cp, cp + 1]);
        for (const cp of [...around, ...probes]) {
          if (cp < 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) continue;
          assert.equal(
            pattern.test(String.fromCodePoint(cp)),
            has(set, cp),
            `U+${cp.toString(16)}`,
          );
        }
        // Never half of a pair.
        assert.equal(pattern.test("\ud83d"), false);
        assert.equal(pattern.test("\ude00"), false);
      },
    ),
    { numRuns: RUNS },
  );
});

Deno.test("property() and caseClosed() agree with V8's Unicode mode", () => {
  const names = ["L", "Lu", "Script=Greek", "Nd", "White_Space", "Script=Deseret", "So"];
  fc.assert(
    fc.property(fc.constantFrom(...names), fc.array(scalar, { maxLength: 50 }), (name, probes) => {
      const set = property(name);
      const folded = caseClosed(set);
      const plain = new RegExp(`^\\p{${name}}$`, "u");
      const caseless = new RegExp(`^\\p{${name}}$`, "iu");
      for (const cp of probes) {
        const c = String.fromCodePoint(cp);
        assert.equal(has(set, cp), plain.test(c), `${name} U+${cp.toString(16)}`);
        assert.equal(has(folded, cp), caseless.test(c), `(?i)${name} U+${cp.toString(16)}`);
      }
    }),
    { numRuns: RUNS },
  );
  // Letters whose case groups span more than two, or reach beyond U+FFFF.
  const sigma = caseClosed([0x3c3, 0x3c3]);
  for (const cp of [0x3a3, 0x3c2, 0x3c3]) assert.ok(has(sigma, cp), cp.toString(16));
  const kelvin = caseClosed([0x6b, 0x6b]);
  for (const cp of [0x4b, 0x6b, 0x212a]) assert.ok(has(kelvin, cp), cp.toString(16));
  assert.ok(has(caseClosed([0x10400, 0x10400]), 0x10428));
  assert.deepEqual(complement(complement([3, 7, 100, 0x10ffff])), [3, 7, 100, 0x10ffff]);
});
