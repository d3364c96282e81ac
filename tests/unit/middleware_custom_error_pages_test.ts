import assert from "node:assert/strict";
import { customErrorPages } from "../../lib/middleware/custom_error_pages.ts";
import { HttpError } from "../../lib/middleware/middleware.ts";
import { compose } from "../../lib/middleware/middleware.ts";
import { errorResponse } from "../../lib/proxy/errors.ts";
import { build, fakeContext, run, testDeps } from "../_helpers/middleware.ts";
import { waitFor } from "../_helpers/servers.ts";
import type { ManualClock } from "../_helpers/clock.ts";
import { systemClock } from "../../lib/clock.ts";
import { TableReader } from "../../lib/config/fields.ts";
import type { Problem } from "../../lib/config/errors.ts";

async function withPages<T>(body: (dir: string) => Promise<T>): Promise<T> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/pages`);
    await Deno.writeTextFile(`${dir}/pages/502.html`, "<h1>Back soon — é</h1>");
    await Deno.writeTextFile(`${dir}/pages/429.html`, "<h1>Slow down</h1>");
    return await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("customErrorPages() replaces a listed status's body with the page, as text/html with its length", async () => {
  await withPages(async (dir) => {
    const deps = testDeps({ baseDir: dir });
    const mw = await build(customErrorPages, { location: "pages", errors: [502, 429] }, deps);
    const r = await run(mw, fakeContext("http://a.com/"), () =>
      new Response("upstream detail", {
        status: 502,
        headers: {
          "content-type": "application/json",
          "content-encoding": "gzip",
          "content-length": "15",
          "content-md5": "abc",
          "content-disposition": "attachment; filename=x.bin",
          "x-request-id": "abc",
        },
      }));
    const bytes = new TextEncoder().encode("<h1>Back soon — é</h1>");
    assert.equal(r.status, 502);
    assert.equal(r.headers.get("content-type"), "text/html; charset=utf-8");
    assert.equal(r.headers.get("content-length"), String(bytes.length)); // bytes, not characters
    assert.equal(r.headers.get("content-encoding"), null);
    // They described the backend's body (a probe: the page was saved as x.bin, its MD5 wrong).
    assert.deepEqual([r.headers.get("content-md5"), r.headers.get("content-disposition")], [
      null,
      null,
    ]);
    assert.equal(r.headers.get("x-request-id"), "abc");
    assert.equal(await r.text(), "<h1>Back soon — é</h1>");
  });
});

Deno.test("customErrorPages() applies to Strom's own answers from inner middlewares, keeping their headers", async () => {
  await withPages(async (dir) => {
    const mw = await build(
      customErrorPages,
      { location: "pages", errors: [429] },
      testDeps({ baseDir: dir }),
    );
    const refuse = () => {
      throw new HttpError(429, { headers: { "retry-after": "7" } });
    };
    const chain = compose([mw, refuse], errorResponse);
    const r = await chain(
      fakeContext("http://a.com/"),
      () => Promise.reject(new Error("unreached")),
    );
    assert.deepEqual([r.status, r.headers.get("retry-after"), await r.text()], [
      429,
      "7",
      "<h1>Slow down</h1>",
    ]);
  });
});

Deno.test("customErrorPages() leaves other statuses alone and sends no body to HEAD", async () => {
  await withPages(async (dir) => {
    const mw = await build(
      customErrorPages,
      { location: "pages", errors: [502] },
      testDeps({ baseDir: dir }),
    );
    const other = await run(
      mw,
      fakeContext("http://a.com/"),
      () => new Response("gone", { status: 503 }),
    );
    assert.deepEqual([other.status, await other.text()], [503, "gone"]);
    const head = await run(
      mw,
      fakeContext("http://a.com/", { method: "HEAD" }),
      () => new Response(null, { status: 502 }),
    );
    assert.equal(head.status, 502);
    assert.equal(await head.text(), "");
    assert.equal(head.headers.get("content-type"), "text/html; charset=utf-8");
  });
});

Deno.test("customErrorPages() gives a status whose page does not exist RustStrom's `<code> - <reason>` text", async () => {
  await withPages(async (dir) => {
    const deps = testDeps({ baseDir: dir });
    const mw = await build(customErrorPages, { location: "pages", errors: [502, 404] }, deps);
    const r = await run(
      mw,
      fakeContext("http://a.com/"),
      () =>
        new Response("<p>nothing here</p>", {
          status: 404,
          headers: { "content-type": "text/html", "content-length": "19" },
        }),
    );
    assert.equal(r.status, 404);
    assert.equal(r.headers.get("content-type"), "text/plain; charset=utf-8");
    assert.equal(r.headers.get("content-length"), "16");
    assert.equal(await r.text(), "404 - Not Found\n");
  });
});

Deno.test("customErrorPages() serves an edited page, a page made after load, and the fallback for a deleted one, without a reload", async () => {
  await withPages(async (dir) => {
    const deps = testDeps({ baseDir: dir, clock: systemClock as ManualClock });
    const mw = await build(customErrorPages, { location: "pages", errors: [502, 404, 429] }, deps);
    const answer = async (status: number) => {
      const r = await run(mw, fakeContext("http://a.com/"), () => new Response("x", { status }));
      return `${r.headers.get("content-type")} ${await r.text()}`;
    };
    try {
      assert.equal(await answer(502), "text/html; charset=utf-8 <h1>Back soon — é</h1>");
      assert.equal(await answer(404), "text/plain; charset=utf-8 404 - Not Found\n");
      await Deno.writeTextFile(`${dir}/pages/502.html`, "<h1>Edited</h1>");
      await Deno.writeTextFile(`${dir}/pages/404.html`, "<h1>Gone</h1>");
      await Deno.remove(`${dir}/pages/429.html`);
      await waitFor(
        async () => (await answer(502)) === "text/html; charset=utf-8 <h1>Edited</h1>",
        "the edited 502 page",
      );
      await waitFor(
        async () => (await answer(404)) === "text/html; charset=utf-8 <h1>Gone</h1>",
        "the new 404 page",
      );
      await waitFor(
        async () => (await answer(429)) === "text/plain; charset=utf-8 429 - Too Many Requests\n",
        "the fallback for the deleted 429 page",
      );
    } finally {
      await mw.close?.();
    }
  });
});

Deno.test("customErrorPages() picks up a folder missing at load, and a folder replaced by another, without a reload", async () => {
  const dir = await Deno.makeTempDir();
  const deps = testDeps({ baseDir: dir, clock: systemClock as ManualClock });
  const mw = await build(customErrorPages, { location: "pages", errors: [502] }, deps);
  // A second pool with the same folder shares its watch.
  const other = await build(customErrorPages, { location: "pages", errors: [502, 503] }, deps);
  const answerOf = async (m: typeof mw) => {
    const r = await run(m, fakeContext("http://a.com/"), () => new Response("x", { status: 502 }));
    return await r.text();
  };
  const answer = async () => {
    const [a, b] = [await answerOf(mw), await answerOf(other)];
    return a === b ? a : `${a} / ${b}`;
  };
  try {
    assert.equal(await answer(), "502 - Bad Gateway\n");
    await Deno.mkdir(`${dir}/next`);
    await Deno.writeTextFile(`${dir}/next/502.html`, "<h1>First</h1>");
    await Deno.rename(`${dir}/next`, `${dir}/pages`); // the folder appears, page and all
    await waitFor(async () => (await answer()) === "<h1>First</h1>", "the page of the new folder");
    await Deno.mkdir(`${dir}/next`);
    await Deno.writeTextFile(`${dir}/next/502.html`, "<h1>Second</h1>");
    await Deno.rename(`${dir}/pages`, `${dir}/old`);
    await Deno.rename(`${dir}/next`, `${dir}/pages`); // a deploy swaps the folder
    await waitFor(async () => (await answer()) === "<h1>Second</h1>", "the replaced folder's page");
    await Deno.writeTextFile(`${dir}/pages/502.html`, "<h1>Third</h1>");
    await waitFor(async () => (await answer()) === "<h1>Third</h1>", "an edit in the new folder");
    await other.close?.();
    await Deno.writeTextFile(`${dir}/pages/502.html`, "<h1>Fourth</h1>");
    await waitFor(
      async () => (await answerOf(mw)) === "<h1>Fourth</h1>",
      "the watch to outlive the other pool",
    );
  } finally {
    await other.close?.();
    await mw.close?.();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("customErrorPages() takes RustStrom's codes below 400, ignoring with a warning those without a body", async () => {
  await withPages(async (dir) => {
    await Deno.writeTextFile(`${dir}/pages/302.html`, "<a href=/new>moved</a>");
    const warnings: string[] = [];
    const problems: Problem[] = [];
    const reader = new TableReader(
      { location: "pages", errors: [302, 304, 204, 101, 502] },
      "CustomErrorPages",
      problems,
    );
    const options = customErrorPages.parse(reader, {
      baseDir: dir,
      warn: (path, message) => warnings.push(`${path}: ${message}`),
    });
    reader.finish();
    assert.deepEqual(problems, []);
    assert.deepEqual(Object.keys(options.pages).sort(), ["302", "502"]);
    assert.deepEqual(warnings, [
      "CustomErrorPages.errors[1]: ignored: a 304 answer has no body to replace",
      "CustomErrorPages.errors[2]: ignored: a 204 answer has no body to replace",
      "CustomErrorPages.errors[3]: ignored: a 101 answer has no body to replace",
    ]);
    const mw = await customErrorPages.create(options, testDeps({ baseDir: dir }));
    try {
      const r = await run(
        mw,
        fakeContext("http://a.com/"),
        () => new Response("old", { status: 302, headers: { location: "/new" } }),
      );
      assert.deepEqual([r.status, r.headers.get("location"), await r.text()], [
        302,
        "/new",
        "<a href=/new>moved</a>",
      ]);
    } finally {
      await mw.close?.();
    }
  });
});
