import assert from "node:assert/strict";
import fc from "fast-check";
import { loadConfigFile, parseConfig } from "../../lib/config/load.ts";
import { ConfigError } from "../../lib/config/errors.ts";
import { summarizeConfig } from "../../lib/config/summary.ts";

const origin = { source: "strom.toml", baseDir: "/etc/strom" };
const POOL = `
[[backend_pools]]
matcher = "Host('a.com')"
addresses = ["127.0.0.1:8080"]
schemes = ["HTTP"]
strategy = { RoundRobin = {} }
`;

/** The problems (path: message) a config text produces. */
function problemsOf(text: string, from = origin): string[] {
  try {
    parseConfig(text, from);
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    return e.problems.map((p) => (p.path ? `${p.path}: ` : "") + p.message);
  }
  return [];
}

Deno.test("parseConfig() applies RustStrom's defaults and Strom's additions", () => {
  const config = parseConfig(POOL, origin);
  assert.equal(config.httpAddress.text, "[::]:80");
  assert.equal(config.httpsAddress.text, "[::]:443");
  assert.equal(config.adminAddress.text, "127.0.0.1:9090");
  assert.equal(config.healthCheckEverySec, 10);
  assert.deepEqual(config.trustedProxies, []);
  const [pool] = config.pools;
  assert.equal(pool.name, "pool-0");
  assert.deepEqual(pool.health, {
    slowThresholdMs: 300,
    timeoutMs: 500,
    path: "/",
    healthyAfter: 2,
    unhealthyAfter: 3,
    expectedStatus: [{ from: 200, to: 299 }],
    expectedBody: null,
    intervalMs: null,
    host: null,
  });
  assert.deepEqual(pool.outlier, {
    consecutiveFailures: 5,
    count5xx: false,
    baseEjectionMs: 30_000,
    maxEjectionMs: 300_000,
    maxEjectionPercent: 50,
  });
  assert.equal(pool.retries, 2);
  assert.equal(pool.retryBudgetPercent, 20);
  assert.deepEqual(pool.client, {
    poolIdleTimeoutMs: null,
    poolMaxIdlePerHost: null,
    maxConnectionsPerHost: null,
    caCerts: [],
  });
  assert.equal(pool.transport, "http1");
  assert.equal(pool.requestTimeoutMs, 30_000);
  assert.equal(pool.connectTimeoutMs, 5_000);
  assert.deepEqual(pool.addresses[0], {
    id: "127.0.0.1:8080",
    host: "127.0.0.1",
    port: 8080,
    authority: "127.0.0.1:8080",
    tls: false,
  });
  assert.ok(Object.isFrozen(config) && Object.isFrozen(pool));
});

Deno.test("parseConfig() accepts the spec's complete example apart from features not built yet", () => {
  const example = `
http_address  = "[::]:80"
https_address = "[::]:443"

[health_interval]
check_every = 10

[[backend_pools]]
matcher   = "Host('example.com') && (PathRegexp('^/api/') || Method('POST'))"
addresses = ["127.0.0.1:8080", "127.0.0.1:8081"]
schemes   = ["HTTP", "HTTPS"]
strategy  = { StickyCookie = { cookie_name = "lb", http_only = true, secure = true, same_site = "Lax", inner = { RoundRobin = {} } } }

[backend_pools.health_config]
slow_threshold = 300
timeout = 500
path = "/health"

[backend_pools.client]
pool_idle_timeout = { secs = 90, nanos = 0 }
pool_max_idle_per_host = 32

[backend_pools.middlewares.HttpsRedirector]
[backend_pools.middlewares.RateLimiter]
limit = 100
window_sec = 60
[backend_pools.middlewares.MaxBodySize]
limit = 10485760
[backend_pools.middlewares.Compression]
[backend_pools.middlewares.CustomErrorPages]
location = "errorpages"
errors = [404, 502]

[[backend_pools]]
matcher   = "PathRegexp('')"          # catch-all
addresses = ["10.0.0.7:80"]
schemes   = ["HTTP"]
strategy  = { Random = {} }

[certificates."example.com"]
type = "Local"
certificate_path = "certs/example.com.pem"
private_key_path = "certs/example.com.key"
`;
  // The error pages are read at load, relative to the config file's folder.
  const baseDir = Deno.makeTempDirSync();
  Deno.mkdirSync(`${baseDir}/errorpages`);
  Deno.writeTextFileSync(`${baseDir}/errorpages/404.html`, "<h1>Not here</h1>");
  Deno.writeTextFileSync(`${baseDir}/errorpages/502.html`, "<h1>Down</h1>");
  const here = { source: "strom.toml", baseDir };
  assert.deepEqual(problemsOf(example, here), [
    `certificates."example.com".certificate_path: cannot read the certificate "${baseDir}/certs/example.com.pem": no such file`,
    `certificates."example.com".private_key_path: cannot read the key "${baseDir}/certs/example.com.key": no such file`,
  ]);
  const config = parseConfig(example.replace(/\[certificates[\s\S]*$/, ""), here);
  Deno.removeSync(baseDir, { recursive: true });
  assert.deepEqual(config.pools[0].middlewares.map((m) => m.name), [
    "HttpsRedirector",
    "RateLimiter",
    "MaxBodySize",
    "Compression",
    "CustomErrorPages",
  ]);
  assert.deepEqual(config.pools[0].middlewares[4].options.pages, {
    404: "<h1>Not here</h1>",
    502: "<h1>Down</h1>",
  });
  assert.equal(config.pools.length, 2);
  assert.equal(config.pools[0].strategy.name, "StickyCookie");
  assert.equal(config.pools[0].client.poolMaxIdlePerHost, 32);
  assert.equal(config.pools[0].health.path, "/health");
  assert.deepEqual([...config.pools[0].schemes], ["HTTP", "HTTPS"]);
});

Deno.test("parseConfig() accepts a plain strategy string and Strom's additions", () => {
  const config = parseConfig(
    `admin_address = "[::1]:9191"
trusted_proxies = ["10.0.0.0/8", "192.168.1.1", "fd00::/8"]
[[backend_pools]]
name = "api"
matcher = "PathPrefix('/api')"
addresses = ["backend.internal", "[::1]:9000"]
schemes = ["HTTP"]
strategy = "LeastConnection"
request_timeout = "1m30s"
connect_timeout = 0.25
`,
    origin,
  );
  assert.equal(config.adminAddress.hostname, "::1");
  assert.equal(config.trustedProxies.length, 3);
  const [pool] = config.pools;
  assert.equal(pool.name, "api");
  assert.deepEqual(pool.strategy, { name: "LeastConnection", options: {} });
  assert.equal(pool.addresses[0].authority, "backend.internal:80");
  assert.equal(pool.addresses[1].authority, "[::1]:9000");
  assert.equal(pool.requestTimeoutMs, 90_000);
  assert.equal(pool.connectTimeoutMs, 250);
});

Deno.test("parseConfig() reports every problem at once with its path", () => {
  const text = `
http_address = "localhost:80"
admin_adress = "127.0.0.1:9090"
trusted_proxies = ["10.0.0.0/33"]
[health_interval]
[[backend_pools]]
matcher = "Host('a.com') &&"
addresses = ["ftp://10.0.0.2:80", 5, "10.0.0.3:99999"]
schemes = ["http"]
strategy = { Roundrobin = {} }
health_check = { path = "/" }
[backend_pools.health_config]
timeout = "500"
path = "health"
[backend_pools.client]
pool_idle_timeout = { secs = 90 }
[backend_pools.middlewares.Authentification]
[[backend_pools]]
matcher = "PathRegexp('')"
addresses = []
schemes = ["HTTP"]
strategy = { StickyCookie = { cookie_name = "lb", http_only = true, same_site = "lax", inner = "Nope" } }
request_timeout = "soon"
`;
  assert.deepEqual(problemsOf(text), [
    'http_address: invalid address "localhost:80": expected an IP address, not a host name',
    'admin_adress: unknown key (did you mean "admin_address"?)',
    'trusted_proxies[0]: invalid network "10.0.0.0/33": invalid prefix length "33"',
    "health_interval.check_every: missing required key",
    `backend_pools[0].matcher: invalid matcher: expected a term, "(" or "!" at column 17\nHost('a.com') &&\n                ^`,
    'backend_pools[0].addresses[0]: invalid address "ftp://10.0.0.2:80": unsupported scheme "ftp" (expected host:port, http:// or https://)',
    'backend_pools[0].addresses[1]: expected a string such as "10.0.0.2:8080"',
    'backend_pools[0].addresses[2]: invalid address "10.0.0.3:99999": invalid port "99999"',
    'backend_pools[0].schemes[0]: invalid scheme "http" (expected "HTTP" or "HTTPS")',
    'backend_pools[0].strategy: unknown strategy "Roundrobin" (did you mean "RoundRobin"?)',
    'backend_pools[0].health_check: unknown key (did you mean "health_config"?)',
    'backend_pools[0].health_config.timeout: expected an integer, found a string ("500")',
    'backend_pools[0].health_config.path: invalid path "health": expected "/" followed by visible ASCII',
    "backend_pools[0].client.pool_idle_timeout.nanos: missing required key",
    'backend_pools[0].middlewares.Authentification: unknown middleware "Authentification" (did you mean "Authentication"?)',
    "backend_pools[1].strategy.StickyCookie.secure: missing required key",
    'backend_pools[1].strategy.StickyCookie.same_site: invalid value "lax" (expected "Strict", "Lax" or "None")',
    'backend_pools[1].strategy.StickyCookie.inner: unknown strategy "Nope" (expected one of "RoundRobin", "Random", "IPHash", "LeastConnection", "StickyCookie", "WeightedRoundRobin", "PowerOfTwoChoices", "PeakEWMA")',
    'backend_pools[1].request_timeout: expected a duration such as 30, "30s", "500ms" or { secs = 30, nanos = 0 }, found a string ("soon")',
  ]);
});

Deno.test("an address with a user, password or path says so, without repeating the password", () => {
  const problems = problemsOf(
    POOL.replace(
      'addresses = ["127.0.0.1:8080"]',
      'addresses = ["http://u:p@ss@127.0.0.1", "http://127.0.0.1:80/path", "http://10.0.0.1:80?x"]',
    ),
  ).map((p) => p.replace(/ \(line \d+\)$/, ""));
  assert.deepEqual(problems, [
    'backend_pools[0].addresses[0]: invalid address "http://u:***@127.0.0.1": a backend address takes no user or password',
    'backend_pools[0].addresses[1]: invalid address "http://127.0.0.1:80/path": a backend address takes no path, query or fragment ("/...")',
    'backend_pools[0].addresses[2]: invalid address "http://10.0.0.1:80?x": a backend address takes no path, query or fragment ("?...")',
  ]);
});

Deno.test("parseConfig() checks WeightedRoundRobin's weights against the pool's addresses", () => {
  const pool = (strategy: string) =>
    `http_address = "127.0.0.1:80"
[[backend_pools]]
matcher = "PathPrefix('/')"
addresses = ["10.0.0.1:80", "10.0.0.2:80"]
schemes = ["HTTP"]
strategy = ${strategy}
`;
  const ok = parseConfig(
    pool(`{ WeightedRoundRobin = { weights = { "10.0.0.1:80" = 4, "10.0.0.2:80" = 0 } } }`),
    origin,
  );
  assert.deepEqual(ok.pools[0].strategy.options, {
    weights: { "10.0.0.1:80": 4, "10.0.0.2:80": 0 },
  });
  assert.match(
    summarizeConfig(ok),
    /strategy WeightedRoundRobin\(10\.0\.0\.1:80 = 4, 10\.0\.0\.2:80 = 0\)/,
  );
  assert.deepEqual(
    problemsOf(pool(`{ WeightedRoundRobin = { weights = { "10.0.0.3:80" = 2 } } }`)),
    [
      'backend_pools[0].strategy.WeightedRoundRobin.weights."10.0.0.3:80": not one of the pool\'s addresses',
    ],
  );
});

Deno.test("parseConfig() validates middleware options and never drops a middleware silently", () => {
  const text = POOL + `
[backend_pools.middlewares.Authentication]
ldap_address = "ldap://127.0.0.1"
user_directory = "ou=people,dc=example,dc=com"
rdn_identifier = "uid"
[backend_pools.middlewares.RateLimiter]
limit = -1
window_sec = 0
burst = 3
`;
  assert.deepEqual(problemsOf(text), [
    "backend_pools[0].middlewares.Authentication.recursive: missing required key",
    "backend_pools[0].middlewares.RateLimiter.limit: expected an integer from 0 to 9007199254740991, found -1",
    "backend_pools[0].middlewares.RateLimiter.window_sec: expected an integer from 1 to 9007199254740991, found 0",
    "backend_pools[0].middlewares.RateLimiter.burst: unknown key",
  ]);
});

/** The problems of one middleware table in an otherwise valid pool. */
function middlewareProblems(name: string, body: string, from = origin): string[] {
  return problemsOf(`${POOL}[backend_pools.middlewares.${name}]\n${body}`, from);
}

const MW = "backend_pools[0].middlewares";

Deno.test("parseConfig() validates HttpsRedirector and RateLimiter options", () => {
  assert.deepEqual(middlewareProblems("HttpsRedirector", "status = 302\nport = 8443"), [
    `${MW}.HttpsRedirector.status: invalid redirect status 302 (expected 301 or 308)`,
    `${MW}.HttpsRedirector.port: unknown key`,
  ]);
  assert.deepEqual(
    middlewareProblems(
      "RateLimiter",
      `limit = 10\nwindow_sec = 1\nstore = "http://127.0.0.1:6379"\non_store_error = "open"\nmax_clients = 0`,
    ),
    [
      `${MW}.RateLimiter.store: invalid store "http://127.0.0.1:6379": expected "redis://" or "rediss://"`,
      `${MW}.RateLimiter.on_store_error: invalid value "open" (expected "allow" or "deny")`,
      `${MW}.RateLimiter.max_clients: expected an integer from 1 to 9007199254740991, found 0`,
    ],
  );
  assert.deepEqual(
    middlewareProblems("RateLimiter", `limit = 10\nwindow_sec = 1\non_store_error = "deny"`),
    [`${MW}.RateLimiter.on_store_error: only applies with "store"`],
  );
  assert.deepEqual(
    middlewareProblems("RateLimiter", `limit = 10\nwindow_sec = 1\nstore = "redis:nohost"`),
    [`${MW}.RateLimiter.store: invalid store "redis:nohost": expected a host`],
  );
  assert.deepEqual(
    middlewareProblems("RateLimiter", `limit = 1\nwindow_sec = 1\nstore = "http://u:pw@a:1"`),
    [`${MW}.RateLimiter.store: invalid store "http://u:***@a:1": expected "redis://" or "rediss://"`],
  );
  const storeProblems = (store: string) =>
    middlewareProblems("RateLimiter", `limit = 1\nwindow_sec = 1\nstore = "${store}"`);
  assert.deepEqual(storeProblems("redis://127.0.0.1:6379/notadb"), [
    `${MW}.RateLimiter.store: invalid store "redis://127.0.0.1:6379/notadb": expected a database number (0 or more) after the host, found "notadb"`,
  ]);
  assert.deepEqual(storeProblems("redis://:pw@127.0.0.1:6379/-1"), [
    `${MW}.RateLimiter.store: invalid store "redis://:***@127.0.0.1:6379/-1": expected a database number (0 or more) after the host, found "-1"`,
  ]);
  assert.deepEqual(storeProblems("redis://127.0.0.1:6379/1/2"), [
    `${MW}.RateLimiter.store: invalid store "redis://127.0.0.1:6379/1/2": expected a database number (0 or more) after the host, found "1/2"`,
  ]);
  assert.deepEqual(storeProblems("redis://127.0.0.1:6379?db=notadb"), [
    `${MW}.RateLimiter.store: invalid store "redis://127.0.0.1:6379?db=notadb": expected no "?" or "#" part`,
  ]);
  assert.deepEqual(storeProblems("redis://127.0.0.1:99999"), [
    `${MW}.RateLimiter.store: invalid store "redis://127.0.0.1:99999": expected "redis://host:port" (a password's "/", "?", "#" and "@" as %2F, %3F...)`,
  ]);
  assert.deepEqual(storeProblems("redis://127.0.0.1:0"), [
    `${MW}.RateLimiter.store: invalid store "redis://127.0.0.1:0": port 0 cannot be connected to`,
  ]);
  assert.deepEqual(storeProblems("redis://:%zz@127.0.0.1"), [
    `${MW}.RateLimiter.store: invalid store "redis://:***@127.0.0.1": expected a user and password in URL encoding ("%40" for "@")`,
  ]);
  for (const good of ["redis://127.0.0.1", "redis://u:p%40ss@[::1]:6380/", "rediss://h:1/15"]) {
    assert.deepEqual(storeProblems(good), [], good);
  }
});

Deno.test("parseConfig() validates Compression, MaxBodySize and Headers options", () => {
  assert.deepEqual(
    middlewareProblems(
      "Compression",
      `min_size = -1\nencodings = ["gzip", "lzma"]\nskip_types = ["png"]`,
    ),
    [
      `${MW}.Compression.min_size: expected an integer from 0 to 9007199254740991, found -1`,
      `${MW}.Compression.encodings[1]: unknown encoding "lzma" (expected one of "br", "zstd", "gzip", "deflate")`,
      `${MW}.Compression.skip_types[0]: invalid media type "png": expected "type/subtype" or "type/"`,
    ],
  );
  assert.deepEqual(middlewareProblems("MaxBodySize", `limit = "10MB"`), [
    `${MW}.MaxBodySize.limit: expected an integer, found a string ("10MB")`,
  ]);
  assert.deepEqual(
    middlewareProblems(
      "Headers",
      `request = { set = { "X Bad" = "1", "Content-Length" = "5" }, remove = [3], drop = [] }
response = { add = { "X-Ok" = "a\\nb" }, remove = ["Connection"] }
`,
    ),
    [
      `${MW}.Headers.request.remove[0]: expected a header name, found 3`,
      `${MW}.Headers.request.set."X Bad": invalid header name "X Bad"`,
      `${MW}.Headers.request.set.Content-Length: cannot change header "Content-Length": Strom manages it`,
      `${MW}.Headers.request.drop: unknown key`,
      `${MW}.Headers.response.remove[0]: cannot change header "Connection": Strom manages it`,
      `${MW}.Headers.response.add.X-Ok: invalid header value: expected a string without CR, LF or NUL`,
    ],
  );
});

Deno.test("parseConfig() validates Authentication options", () => {
  const base = `user_directory = "ou=people,dc=example,dc=com"\nrecursive = true\n`;
  assert.deepEqual(
    middlewareProblems(
      "Authentication",
      base +
        `ldap_address = "ldapi:///run/slapd.sock"\nrdn_identifier = "u id"\nbind_dn = "cn=reader"`,
    ),
    [
      // A missing key is at its table's line, before the keys written in it.
      `${MW}.Authentication.bind_password: missing required key (bind_dn is set)`,
      `${MW}.Authentication.ldap_address: unsupported LDAP address "ldapi:///run/slapd.sock": ldapi:// is not supported`,
      `${MW}.Authentication.rdn_identifier: invalid attribute name "u id": expected letters, digits and "-"`,
    ],
  );
  assert.deepEqual(
    middlewareProblems(
      "Authentication",
      base +
        `ldap_address = "127.0.0.1:389"\nrdn_identifier = "uid"\nbind_password = "x"\nrealm = "caf\u00e9"\ncache_ttl_sec = -5`,
    ),
    [
      `${MW}.Authentication.ldap_address: invalid LDAP address "127.0.0.1:389": expected "ldap://host:port" or "ldaps://host:port"`,
      `${MW}.Authentication.bind_password: only applies with bind_dn`,
      `${MW}.Authentication.realm: invalid realm "café": expected printable ASCII`,
      `${MW}.Authentication.cache_ttl_sec: expected an integer from 0 to 9007199254740991, found -5`,
    ],
  );
  assert.deepEqual(
    middlewareProblems(
      "Authentication",
      base +
        `ldap_address = "ldap://127.0.0.1:389"\nrdn_identifier = "uid"\nbind_dn = "cn=reader"\nbind_password = ""`,
    ),
    [
      `${MW}.Authentication.bind_password: is empty: a bind without a password is refused by LDAP servers`,
    ],
  );
  // A password in an address the check refuses is not repeated (problems reach logs and the API).
  for (
    const address of [
      "ldap://cn=admin:TopSecret1@127.0.0.1:389/dc=example",
      "ldapi://u:TopSecret1@x",
    ]
  ) {
    const problems = middlewareProblems(
      "Authentication",
      base + `ldap_address = "${address}"\nrdn_identifier = "uid"`,
    );
    assert.equal(problems.length, 1);
    assert.ok(!problems[0].includes("TopSecret1"), problems[0]);
    assert.match(problems[0], /:\*\*\*@/);
  }
});

Deno.test("parseConfig() reads error pages and htpasswd files at load, relative to the config", () => {
  const baseDir = Deno.makeTempDirSync();
  const here = { source: "strom.toml", baseDir };
  try {
    Deno.mkdirSync(`${baseDir}/pages`);
    Deno.writeTextFileSync(`${baseDir}/pages/503.html`, "busy");
    assert.deepEqual(
      middlewareProblems(
        "CustomErrorPages",
        `location = "pages"\nerrors = [503, 404, 600, "x"]`,
        here,
      ),
      [
        `${MW}.CustomErrorPages.errors[2]: expected an integer from 100 to 599, found 600`,
        `${MW}.CustomErrorPages.errors[3]: expected an integer, found a string ("x")`,
      ],
    );
    // A page that does not exist is RustStrom's fallback text, with a warning; one that
    // cannot be read is an error.
    const pages = `${POOL}[backend_pools.middlewares.CustomErrorPages]\nlocation = "pages"\n`;
    const config = parseConfig(`${pages}errors = [503, 404]`, here);
    assert.deepEqual(config.pools[0].middlewares[0].options, {
      location: "pages",
      folder: `${baseDir}/pages`,
      pages: { 503: "busy" },
      missing: [404],
    });
    assert.deepEqual(config.warnings, [
      `${MW}.CustomErrorPages.errors[1]: cannot read error page "${baseDir}/pages/404.html": no such file: answers with 404 get "404 - Not Found"`,
    ]);
    Deno.mkdirSync(`${baseDir}/pages/500.html`);
    assert.deepEqual(problemsOf(`${pages}errors = [500]`, here), [
      `${MW}.CustomErrorPages.errors[0]: cannot read error page "${baseDir}/pages/500.html": it is a directory`,
    ]);
    assert.deepEqual(middlewareProblems("BasicAuth", `htpasswd = "users"`, here), [
      `${MW}.BasicAuth.htpasswd: cannot read htpasswd file "${baseDir}/users": no such file`,
    ]);
    Deno.writeTextFileSync(
      `${baseDir}/users`,
      "# users\nann:$apr1$abc$def\nnocolon\nbob:$2y$05$" + "a".repeat(53) + "\n",
    );
    assert.deepEqual(middlewareProblems("BasicAuth", `htpasswd = "users"\nrealm = 5`, here), [
      `${MW}.BasicAuth.htpasswd: in "${baseDir}/users", line 2: unsupported hash for user "ann" (expected bcrypt, "htpasswd -B")`,
      `${MW}.BasicAuth.htpasswd: in "${baseDir}/users", line 3: expected "user:hash"`,
      `${MW}.BasicAuth.realm: expected a string, found an integer (5)`,
    ]);
  } finally {
    Deno.removeSync(baseDir, { recursive: true });
  }
});

Deno.test("parseConfig() finds error pages relative to the working directory, as RustStrom did, when the config's folder has none", () => {
  const cwd = Deno.makeTempDirSync();
  const configDir = Deno.makeTempDirSync();
  const before = Deno.cwd();
  try {
    Deno.mkdirSync(`${cwd}/errors`);
    Deno.writeTextFileSync(`${cwd}/errors/404.html`, "from the working directory");
    Deno.chdir(cwd);
    const text =
      `${POOL}[backend_pools.middlewares.CustomErrorPages]\nlocation = "errors"\nerrors = [404]\n`;
    const config = parseConfig(text, { source: "strom.toml", baseDir: configDir });
    assert.deepEqual(config.pools[0].middlewares[0].options.pages, {
      404: "from the working directory",
    });
    assert.deepEqual(config.warnings, [
      `${MW}.CustomErrorPages.location: "errors" is not in the config file's folder; using "${cwd}/errors" (relative to the working directory, as RustStrom did)`,
    ]);
    // Beside the config file wins when both exist.
    Deno.mkdirSync(`${configDir}/errors`);
    Deno.writeTextFileSync(`${configDir}/errors/404.html`, "beside the config");
    const beside = parseConfig(text, { source: "strom.toml", baseDir: configDir });
    assert.deepEqual(beside.pools[0].middlewares[0].options.pages, { 404: "beside the config" });
    assert.deepEqual(beside.warnings, []);
  } finally {
    Deno.chdir(before);
    Deno.removeSync(cwd, { recursive: true });
    Deno.removeSync(configDir, { recursive: true });
  }
});

Deno.test("parseConfig() validates certificates in both RustStrom forms", () => {
  const text = POOL + `
[certificates."a.com"]
type = "Local"
certificate_path = "a.pem"
[certificates."b.com"]
Local = { certificate_path = "b.pem", private_key_path = "b.key" }
[certificates."10.0.0.1"]
type = "ACME"
staging = true
email = "ops@example.com"
persist_dir = "acme"
[certificates."c.com"]
type = "Remote"
`;
  assert.deepEqual(problemsOf(text), [
    'certificates."a.com".private_key_path: missing required key',
    'certificates."b.com".Local.certificate_path: cannot read the certificate "/etc/strom/b.pem": no such file',
    'certificates."b.com".Local.private_key_path: cannot read the key "/etc/strom/b.key": no such file',
    'certificates."10.0.0.1": ACME does not support IP addresses',
    'certificates."c.com".type: unknown certificate type "Remote" (expected "Local" or "ACME")',
  ]);
});

Deno.test("parseConfig() reads ACME entries with their defaults, directory_url and ca_file", () => {
  const baseDir = Deno.makeTempDirSync();
  try {
    const here = { source: `${baseDir}/strom.toml`, baseDir };
    Deno.writeTextFileSync(
      `${baseDir}/ca.pem`,
      "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    Deno.writeTextFileSync(`${baseDir}/empty.pem`, "");
    const config = parseConfig(
      POOL + `
[certificates."a.com"]
type = "ACME"
staging = true
email = "ops@example.com"
persist_dir = "acme"
[certificates."b.com"]
type = "ACME"
staging = false
email = "ops@example.com"
persist_dir = "/var/lib/strom"
directory_url = "https://127.0.0.1:14000/dir"
renew_before_days = 10
ca_file = "ca.pem"
`,
      here,
    );
    assert.deepEqual(config.certificates, [
      {
        type: "ACME",
        serverName: "a.com",
        staging: true,
        email: "ops@example.com",
        persistDir: `${baseDir}/acme`,
        directoryUrl: "https://acme-staging-v02.api.letsencrypt.org/directory",
        renewBeforeDays: 30,
        caCerts: [],
      },
      {
        type: "ACME",
        serverName: "b.com",
        staging: false,
        email: "ops@example.com",
        persistDir: "/var/lib/strom",
        directoryUrl: "https://127.0.0.1:14000/dir",
        renewBeforeDays: 10,
        caCerts: ["-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----"],
      },
    ]);
    const acme = (extra: string) =>
      `[certificates."c.com"]\ntype = "ACME"\nstaging = false\nemail = "e"\npersist_dir = "d"\n${extra}\n`;
    assert.deepEqual(
      problemsOf(
        POOL + acme(`ca_file = "missing.pem"\ndirectory_url = "acme.example.com"`),
        here,
      ),
      [
        `certificates."c.com".ca_file: cannot read "${baseDir}/missing.pem": no such file`,
        'certificates."c.com".directory_url: invalid URL "acme.example.com": expected https://',
      ],
    );
    assert.deepEqual(
      problemsOf(POOL + acme(`ca_file = "empty.pem"\nrenew_before_days = 0`), here),
      [
        'certificates."c.com".ca_file: no CERTIFICATE block in "empty.pem"',
        'certificates."c.com".renew_before_days: expected an integer from 1 to 365, found 0',
      ],
    );
  } finally {
    Deno.removeSync(baseDir, { recursive: true });
  }
});

Deno.test("parseConfig() gives the TOML line and column of a syntax error", () => {
  try {
    parseConfig(`http_address = "[::]:80"\n[[backend_pools]\n`, origin);
    assert.fail("expected ConfigError");
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    assert.equal(e.problems.length, 1);
    assert.equal(e.problems[0].line, 2);
    assert.match(e.problems[0].message, /^invalid TOML: .* at column \d+$/);
    assert.match(
      e.message,
      /^Cannot load config "strom.toml": found 1 problem\n {2}invalid TOML: .*\(line 2\)$/,
    );
  }
});

Deno.test("parseConfig() keeps RustStrom's load warnings", () => {
  const config = parseConfig(
    `[[backend_pools]]
matcher = "PathRegexp('')"
addresses = []
schemes = []
strategy = "Random"
`,
    origin,
  );
  assert.deepEqual(config.warnings, [
    "backend pool at index 0 is unreachable, since no schemes are registered. Consider adding `HTTP` or `HTTPS` to the schemes array.",
    "backend pool at index 0 does not contain any addresses. It will always result in service unavailable errors.",
  ]);
  assert.deepEqual(parseConfig("", origin).warnings, ["No backend pool found."]);
});

Deno.test("parseConfig() warns that max_connections_per_host counts per worker", () => {
  const pool = (client: string) =>
    `[[backend_pools]]
matcher = "PathPrefix('/')"
addresses = ["127.0.0.1:8080"]
schemes = ["HTTP"]
strategy = "Random"
${client}
`;
  const capped = pool("[backend_pools.client]\nmax_connections_per_host = 4");
  assert.deepEqual(parseConfig(`workers = 2\n${pool("")}${capped}`, origin).warnings, [
    "backend_pools[1].client.max_connections_per_host: 4 per worker: with workers = 2, a backend " +
    "may get up to 8 connections (12 with HTTPS traffic, which the main isolate serves too)",
  ]);
  assert.deepEqual(parseConfig(capped, origin).warnings, [], "one worker: the cap is the cap");
});

Deno.test("parseConfig() warns when two pools keep clients with the same sticky cookie", () => {
  const pool = (name: string, cookie: string) =>
    `[[backend_pools]]
name = "${name}"
matcher = "PathPrefix('/${name}')"
addresses = ["127.0.0.1:8080", "127.0.0.1:8081"]
schemes = ["HTTP"]
strategy = { StickyCookie = { cookie_name = "${cookie}", http_only = true, secure = false, same_site = "Lax", inner = "RoundRobin" } }
`;
  const config = parseConfig(pool("a", "sid") + pool("b", "other") + pool("c", "sid"), origin);
  // Pools of different host names cannot collide: browsers keep cookies per host.
  const vhost = (name: string, host: string) =>
    pool(name, "sid").replace(`PathPrefix('/${name}')`, `Host('${host}')`);
  assert.deepEqual(parseConfig(vhost("x", "a.test") + vhost("y", "b.test"), origin).warnings, []);
  assert.equal(parseConfig(vhost("x", "a.test") + vhost("y", "A.test"), origin).warnings.length, 1);
  assert.deepEqual(config.warnings, [
    'backend_pools[2].strategy: pools "a" and "c" both keep clients with the cookie "sid" ' +
    "(Path=/): a client of both overwrites one pool's with the other's and sticks to neither; " +
    "give each pool its own cookie_name",
  ]);
});

Deno.test("parseConfig() warns of what loads but cannot do what it seems to, and refuses an empty name", () => {
  const config = parseConfig(
    `[[backend_pools]]
matcher = "Path('api') || PathPrefix('v1/') || Path('/ok') || PathPrefix('') || PathPrefix('/m;v=2') || Host('a,b') || Path('/a//b') || PathPrefix('/e/../f') || Path('/g/.') || PathPrefix('/.well-known/x') || Path('/%61dmin') || Method('get') || Host('.') || Path('')"
addresses = ["127.0.0.1:8080", "127.0.0.1:8081", "127.0.0.1:8080"]
schemes = ["HTTP"]
strategy = "RoundRobin"
[backend_pools.middlewares.CustomErrorPages]
location = "/tmp"
errors = []
[backend_pools.middlewares.IpFilter]
deny = []
`,
    origin,
  );
  assert.deepEqual(config.warnings, [
    'backend_pools[0].matcher: Path("api") never matches: request paths begin with "/"',
    'backend_pools[0].matcher: PathPrefix("v1/") never matches: request paths begin with "/"',
    'backend_pools[0].matcher: PathPrefix("/m;v=2") never matches: path parameters (";" up to the next "/") are left out of the path matchers see',
    'backend_pools[0].matcher: Host("a,b") never matches: Strom answers 400 to such a Host',
    'backend_pools[0].matcher: Path("/a//b") never matches: matchers see paths with repeated slashes merged and dot-segments resolved',
    'backend_pools[0].matcher: PathPrefix("/e/../f") never matches: matchers see paths with repeated slashes merged and dot-segments resolved',
    'backend_pools[0].matcher: Path("/g/.") never matches: matchers see paths with repeated slashes merged and dot-segments resolved',
    'backend_pools[0].matcher: Path("/%61dmin") matches only paths sent with "%25" (an escaped "%"): matchers see paths percent-decoded, so write the character itself',
    'backend_pools[0].matcher: Method("get") never matches: Strom answers 400 to methods with lower-case letters',
    'backend_pools[0].matcher: Host(".") never matches: a Host names a host',
    'backend_pools[0].matcher: Path("") never matches: request paths begin with "/"',
    'backend_pools[0].addresses[2]: "127.0.0.1:8080" is also addresses[0]: each listing gets its own share of the traffic, and metrics and the admin API cannot tell them apart',
    "backend_pools[0].middlewares.CustomErrorPages.errors: an empty list: no answer gets a page",
    "backend_pools[0].middlewares.IpFilter.deny: an empty list and no allow: every client passes",
  ]);
  const sticky = (secure: boolean) =>
    parseConfig(
      POOL.replace(
        "strategy = { RoundRobin = {} }",
        `strategy = { StickyCookie = { cookie_name = "lb", http_only = true, secure = ${secure}, same_site = "None", inner = "RoundRobin" } }`,
      ),
      origin,
    ).warnings;
  assert.deepEqual(sticky(false), [
    'backend_pools[0].strategy.StickyCookie.same_site: "None" without secure = true: browsers refuse the cookie, so clients do not stick',
  ]);
  assert.deepEqual(sticky(true), []);
  // An IpFilter that denies nobody but allows some is not empty-handed.
  const allowing = parseConfig(
    POOL + `[backend_pools.middlewares.IpFilter]\nallow = ["10.0.0.0/8"]\ndeny = []\n`,
    origin,
  );
  assert.deepEqual(allowing.warnings, []);
  assert.deepEqual(problemsOf(POOL.replace("[[backend_pools]]", '[[backend_pools]]\nname = ""')), [
    "backend_pools[0].name: expected a non-empty name (or no name: pool-N)",
  ]);
});

Deno.test("parseConfig() loads RustStrom's ignored prometheus_metrics_address with a warning", () => {
  const config = parseConfig(`prometheus_metrics_address = "0.0.0.0:9090"\n${POOL}`, origin);
  assert.deepEqual(config.warnings, [
    'prometheus_metrics_address ("0.0.0.0:9090") is ignored, as RustStrom ignored it: metrics are served at /metrics on admin_address',
  ]);
  assert.equal(config.adminAddress.text, "127.0.0.1:9090");
  assert.deepEqual(problemsOf(`prometheus_metrics_address = 9090\n${POOL}`), [
    "prometheus_metrics_address: expected a string, found an integer (9090)",
  ]);
});

Deno.test("parseConfig() refuses listeners that cannot both bind their port", () => {
  const with_ = (lines: string) => problemsOf(`${lines}\n${POOL}`);
  assert.deepEqual(with_('http_address = "127.0.0.1:9090"'), [
    "admin_address: 127.0.0.1:9090 overlaps http_address 127.0.0.1:9090: each listener needs its own port",
  ]);
  assert.deepEqual(with_('http_address = "[::]:8080"\nadmin_address = "127.0.0.1:8080"'), [
    "admin_address: 127.0.0.1:8080 overlaps http_address [::]:8080: each listener needs its own port",
  ]);
  assert.deepEqual(with_('http_address = "0.0.0.0:8080"\nadmin_address = "[::1]:8080"'), []);
  assert.deepEqual(with_('http_address = "127.0.0.1:0"\nadmin_address = "127.0.0.1:0"'), []);
  assert.deepEqual(with_('http_address = "127.0.0.1:8080"\nadmin_address = "127.0.0.2:8080"'), []);
  // https_address counts only when certificates make Strom bind it.
  assert.deepEqual(with_('https_address = "[::]:80"'), []);
  // ... which a warning says when there are none.
  assert.deepEqual(parseConfig(`https_address = "[::]:8443"\n${POOL}`, origin).warnings, [
    "https_address: no certificates are configured, so Strom does not listen there " +
    "(an HttpsRedirector sends clients to port 443 of their host)",
  ]);
  assert.deepEqual(parseConfig(POOL, origin).warnings, []);
});

Deno.test("parseConfig() takes `true` (and for one without options any value) for a middleware's options, as RustStrom took any value", () => {
  const config = parseConfig(
    `${POOL}[backend_pools.middlewares]\nHttpsRedirector = true\nCompression = true\n`,
    origin,
  );
  assert.deepEqual(config.pools[0].middlewares.map((m) => m.name), [
    "HttpsRedirector",
    "Compression",
  ]);
  assert.deepEqual(config.pools[0].middlewares[0].options, { status: 301 });
  // Any other value turns on one that needs no option, with a warning (RustStrom took it silently).
  const loose = parseConfig(
    `${POOL}[backend_pools.middlewares]\nHttpsRedirector = "yes"\nCompression = 1\n`,
    origin,
  );
  assert.deepEqual(loose.pools[0].middlewares, config.pools[0].middlewares);
  assert.deepEqual(loose.warnings, [
    `${MW}.HttpsRedirector: a string ("yes") turns HttpsRedirector on as \`true\` does`,
    `${MW}.Compression: an integer (1) turns Compression on as \`true\` does`,
  ]);
  // One with required options is refused: RustStrom dropped it without a word (an
  // Authentication dropped left the pool open).
  assert.deepEqual(problemsOf(`${POOL}[backend_pools.middlewares]\nMaxBodySize = "yes"\n`), [
    `${MW}.MaxBodySize: expected a table, found a string ("yes")`,
  ]);
  assert.deepEqual(
    problemsOf(`${POOL}[backend_pools.middlewares]\nHttpsRedirector = false\nRateLimiter = true\n`),
    [
      `${MW}.HttpsRedirector: \`false\` does not turn a middleware off: remove the key instead`,
      `${MW}.RateLimiter.limit: missing required key`,
      `${MW}.RateLimiter.window_sec: missing required key`,
    ],
  );
});

Deno.test("parseConfig() reads Strom's health, outlier and retry settings", () => {
  const config = parseConfig(
    POOL + `retries = 1
retry_budget_percent = 50
[backend_pools.health_config]
healthy_after = 1
unhealthy_after = 5
expected_status = [200, "301-302", "4xx"]
expected_body = "ok"
interval = "2s"
host = "health.internal"
[backend_pools.outlier_detection]
consecutive_failures = 3
count_5xx = true
base_ejection_time = "10s"
max_ejection_time = "1m"
max_ejection_percent = 100
`,
    origin,
  );
  const [pool] = config.pools;
  assert.deepEqual(pool.health.expectedStatus, [
    { from: 200, to: 200 },
    { from: 301, to: 302 },
    { from: 400, to: 499 },
  ]);
  assert.equal(pool.health.intervalMs, 2000);
  assert.equal(pool.health.host, "health.internal");
  assert.deepEqual(pool.outlier, {
    consecutiveFailures: 3,
    count5xx: true,
    baseEjectionMs: 10_000,
    maxEjectionMs: 60_000,
    maxEjectionPercent: 100,
  });
  assert.equal(pool.retries, 1);
  assert.equal(pool.retryBudgetPercent, 50);
  assert.deepEqual(
    problemsOf(
      POOL + `[backend_pools.health_config]
expected_status = ["200-199", 600, "2xy"]
healthy_after = 0
[backend_pools.outlier_detection]
base_ejection_time = "2m"
max_ejection_time = "1m"
`,
    ),
    [
      'backend_pools[0].health_config.expected_status[0]: invalid status "200-199" (expected a code from 100 to 599, a range like "200-399", or "2xx")',
      'backend_pools[0].health_config.expected_status[1]: invalid status 600 (expected a code from 100 to 599, a range like "200-399", or "2xx")',
      'backend_pools[0].health_config.expected_status[2]: invalid status "2xy" (expected a code from 100 to 599, a range like "200-399", or "2xx")',
      "backend_pools[0].health_config.healthy_after: expected an integer from 1 to 100, found 0",
      "backend_pools[0].outlier_detection.max_ejection_time: must not be shorter than base_ejection_time",
    ],
  );
});

Deno.test("parseConfig() reads memory_trim_interval: 1 s by default, 0 for off, at least 100ms", () => {
  assert.equal(parseConfig(POOL, origin).memoryTrimIntervalMs, 1000);
  assert.equal(parseConfig(`memory_trim_interval = 0\n` + POOL, origin).memoryTrimIntervalMs, 0);
  assert.equal(
    parseConfig(`memory_trim_interval = "250ms"\n` + POOL, origin).memoryTrimIntervalMs,
    250,
  );
  assert.deepEqual(problemsOf(`memory_trim_interval = "10ms"\n` + POOL), [
    "memory_trim_interval: expected 0 (off) or at least 100ms",
  ]);
  assert.deepEqual(problemsOf(`memory_trim_interval = -1\n` + POOL), [
    'memory_trim_interval: expected a duration such as 30, "30s", "500ms" or { secs = 30, nanos = 0 }, found an integer (-1)',
  ]);
});

Deno.test("parseConfig() reads the client timeouts: defaults, 0 for off, at least a second", () => {
  const defaults = parseConfig(POOL, origin);
  assert.equal(defaults.clientHeaderTimeoutMs, 10_000);
  assert.equal(defaults.clientIdleTimeoutMs, 60_000);
  const set = parseConfig(`client_header_timeout = "5s"\nclient_idle_timeout = 0\n` + POOL, origin);
  assert.equal(set.clientHeaderTimeoutMs, 5000);
  assert.equal(set.clientIdleTimeoutMs, 0);
  assert.deepEqual(
    problemsOf(`client_header_timeout = "500ms"\nclient_idle_timeout = "soon"\n` + POOL),
    [
      "client_header_timeout: expected 0 (off) or at least 1s: it is checked once a second",
      'client_idle_timeout: expected a duration such as 30, "30s", "500ms" or { secs = 30, nanos = 0 }, found a string ("soon")',
    ],
  );
});

Deno.test("parseConfig() rejects duplicate pool names", () => {
  const pool = POOL.replace("[[backend_pools]]", '[[backend_pools]]\nname = "api"');
  assert.deepEqual(problemsOf(pool + pool), ['backend_pools[1].name: duplicate pool name "api"']);
  // Also while either pool has other problems: all of them at once, not one round after another.
  const broken = pool.replace(/addresses = .*/, 'addresses = ["127.0.0.1:99999"]');
  const problems = problemsOf(broken + broken);
  assert.equal(problems.length, 3, problems.join("\n"));
  assert.ok(problems.includes('backend_pools[1].name: duplicate pool name "api"'));
});

Deno.test("parseConfig() refuses control characters in a pool name (they would split log lines)", () => {
  const pool = POOL.replace("[[backend_pools]]", '[[backend_pools]]\nname = "api\\nINFO forged"');
  assert.deepEqual(problemsOf(pool), [
    'backend_pools[0].name: control characters are not allowed in a name: "api\\nINFO forged"',
  ]);
});

const tomlValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.string(),
    fc.integer(),
    fc.bigInt({ min: 2n ** 53n, max: 2n ** 63n - 1n }), // parsed as bigint
    fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.boolean(),
    fc.constantFrom("RoundRobin", "HTTP", "127.0.0.1:80", "Host('a')", "PathRegexp('')", "[::]:0"),
    fc.array(tie("value"), { maxLength: 4 }),
    tie("table"),
  ),
  table: fc.dictionary(
    fc.constantFrom(
      "matcher",
      "addresses",
      "schemes",
      "strategy",
      "RoundRobin",
      "StickyCookie",
      "inner",
      "health_config",
      "client",
      "middlewares",
      "RateLimiter",
      "limit",
      "secs",
      "nanos",
      "type",
      "x",
    ),
    tie("value"),
    { maxKeys: 5 },
  ),
})).value;

function renderToml(doc: Record<string, unknown>): string {
  const lines: string[] = [];
  for (const [k, v] of Object.entries(doc)) lines.push(`${JSON.stringify(k)} = ${inline(v)}`);
  return lines.join("\n");
}

function inline(v: unknown): string {
  if (typeof v === "string") return JSON.stringify(v);
  if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toExponential();
  if (typeof v === "bigint") return String(v);
  if (typeof v === "boolean") return String(v);
  if (Array.isArray(v)) return `[${v.map(inline).join(", ")}]`;
  return `{ ${
    Object.entries(v as Record<string, unknown>).map(([k, x]) =>
      `${JSON.stringify(k)} = ${inline(x)}`
    )
      .join(", ")
  } }`;
}

const RUNS = Number(Deno.env.get("FC_RUNS") ?? 300);

Deno.test("parseConfig() throws nothing but ConfigError for random documents", () => {
  const topKeys = fc.constantFrom(
    "http_address",
    "admin_address",
    "health_interval",
    "backend_pools",
    "certificates",
    "trusted_proxies",
    "junk",
  );
  const doc = fc.dictionary(topKeys, tomlValue, { maxKeys: 5 });
  const pools = fc.array(fc.dictionary(fc.string(), tomlValue), { maxLength: 3 });
  fc.assert(
    fc.property(fc.oneof(doc, pools.map((p) => ({ backend_pools: p }))), (d) => {
      const text = renderToml(d as Record<string, unknown>);
      try {
        parseConfig(text, origin);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        // Refused for a validator's own exception (see parseConfig): a bug all the same.
        for (const p of e.problems) assert.ok(!p.message.includes("a bug in Strom"), p.message);
      }
    }),
    { seed: 42, numRuns: RUNS },
  );
});

Deno.test("integers beyond 2^53 where strings belong are problems with their path, not a crash", () => {
  const big = "9007199254740993";
  const mw = (body: string) => POOL + body;
  const cases: [string, string][] = [
    [POOL.replace('schemes = ["HTTP"]', `schemes = [${big}]`), "backend_pools[0].schemes[0]"],
    [mw(`[backend_pools.middlewares.StripPrefix]\nprefixes = [${big}]`), "prefixes[0]"],
    [mw(`[backend_pools.middlewares.Compression]\nencodings = [${big}]`), "encodings[0]"],
    [mw(`[backend_pools.middlewares.Compression]\nskip_types = [${big}]`), "skip_types[0]"],
    [mw(`[backend_pools.health_config]\nexpected_status = [${big}]`), "expected_status[0]"],
    [mw(`[backend_pools.middlewares.Headers.request]\nremove = [${big}]`), "remove[0]"],
    [`trusted_proxies = [${big}]\n` + POOL, "trusted_proxies[0]"],
  ];
  for (const [text, path] of cases) {
    const problems = problemsOf(text);
    assert.ok(problems.some((p) => p.includes(`${path}: `)), `${path}: ${problems.join("\n")}`);
    assert.ok(!problems.some((p) => p.includes("a bug in Strom")), problems.join("\n"));
  }
});

Deno.test("parseConfig() throws nothing but ConfigError for random text", () => {
  const chars = fc.constantFrom(..."[]{}=\"'.,#\n abc_019-:".split(""));
  fc.assert(
    fc.property(fc.string({ unit: chars, maxLength: 80 }), (text) => {
      try {
        parseConfig(text, origin);
      } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
      }
    }),
    { seed: 42, numRuns: RUNS * 3 },
  );
});

Deno.test("config/example.toml loads", async () => {
  const { config } = await loadConfigFile(
    new URL("../../config/example.toml", import.meta.url).pathname,
  );
  assert.equal(config.pools.length, 2);
  assert.deepEqual(config.warnings, []);
});

Deno.test("parseConfig() reports a missing key once", () => {
  const text = `
[[backend_pools]]
matcher = "Host('a.com')"
addresses = ["127.0.0.1:8080"]
`;
  assert.deepEqual(problemsOf(text), [
    "backend_pools[0].schemes: missing required key",
    "backend_pools[0].strategy: missing required key",
  ]);
});

Deno.test("parseConfig() refuses durations longer than a timer can wait (24.8 days)", () => {
  const problems = problemsOf(
    `send_timeout = "600h"\n` + POOL + `connect_timeout = "600h"\n` +
      `[backend_pools.health_config]\ntimeout = 2200000000\n`,
  );
  assert.deepEqual(problems.map((p) => p.replace(/ \(line \d+\)$/, "")), [
    "send_timeout: a duration of at most 2147483647 ms (24.8 days): timers cannot wait longer",
    "backend_pools[0].connect_timeout: a duration of at most 2147483647 ms (24.8 days): timers cannot wait longer",
    "backend_pools[0].health_config.timeout: expected an integer from 1 to 2147483647, found 2200000000",
  ]);
  // RustStrom's own pool_idle_timeout (a Rust Duration, "for ever" written as years) is kept
  // as long as a timer can wait, with a warning; a malformed one is still refused.
  const years = parseConfig(
    POOL + `[backend_pools.client]\npool_idle_timeout = { secs = 100000000, nanos = 0 }\n`,
    origin,
  );
  assert.equal(years.pools[0].client?.poolIdleTimeoutMs, 2 ** 31 - 1);
  assert.deepEqual(years.warnings, [
    "backend_pools[0].client.pool_idle_timeout: longer than timers can wait; idle connections are kept 2147483647 ms (24.8 days)",
  ]);
  assert.deepEqual(
    problemsOf(POOL + `[backend_pools.client]\npool_idle_timeout = { secs = -1, nanos = 0 }\n`)
      .map((p) => p.replace(/ \(line \d+\)$/, "")),
    ["backend_pools[0].client.pool_idle_timeout.secs: expected an integer from 0 to 9007199254740991, found -1"],
  );
});

Deno.test("parseConfig() refuses a request or connect timeout under 1 ms (every request would time out)", () => {
  const problems = problemsOf(POOL + `request_timeout = 0\nconnect_timeout = "0.0001s"\n`);
  assert.deepEqual(problems.map((p) => p.replace(/ \(line \d+\)$/, "")), [
    "backend_pools[0].request_timeout: expected a duration of at least 1 ms",
    "backend_pools[0].connect_timeout: expected 0 or a duration of at least 1 ms",
  ]);
  assert.deepEqual(problemsOf(POOL + `read_timeout = 0\nrequest_timeout = "1ms"\n`), []);
  assert.deepEqual(
    problemsOf(`[access_log]\npath = "a\\u0000b"\n` + POOL).map((p) =>
      p.replace(/ \(line \d+\)$/, "")
    ),
    ["access_log.path: a file name cannot hold a NUL character"],
  );
  const htpasswd = problemsOf(
    POOL + `[backend_pools.middlewares.BasicAuth]\nhtpasswd = "u\\u0000sers"\n`,
  );
  assert.equal(htpasswd.length, 1);
  assert.match(htpasswd[0], /htpasswd: cannot read .*: a file name cannot hold a NUL character/);
  // A positive duration under 1 ms rounded to 0, which turns read_timeout and the rest off.
  const tiny = problemsOf(
    `client_header_timeout = "0.4ms"\nmemory_trim_interval = 0.0004\n` + POOL +
      `read_timeout = { secs = 0, nanos = 400000 }\n`,
  );
  assert.deepEqual(tiny.map((p) => p.replace(/ \(line \d+\)$/, "")), [
    "client_header_timeout: expected 0 or a duration of at least 1 ms",
    "memory_trim_interval: expected 0 or a duration of at least 1 ms",
    "backend_pools[0].read_timeout: expected 0 or a duration of at least 1 ms",
  ]);
  assert.equal(parseConfig(POOL + `read_timeout = "1.5ms"\n`, origin).pools[0].readTimeoutMs, 2);
  // The fetch transport connects without it: a config that ran stays valid, with a warning.
  const fetchPool = parseConfig(POOL + `transport = "fetch"\nconnect_timeout = 0\n`, origin);
  assert.deepEqual(fetchPool.warnings, [
    "backend_pools[0].connect_timeout: under 1 ms, every WebSocket upgrade of this pool times out at once",
  ]);
});

Deno.test("parseConfig() reads TOML integers beyond 2^53 and says what is wrong with them", () => {
  const problems = problemsOf(
    POOL +
      `[backend_pools.client]\npool_idle_timeout = { secs = 9223372036854775807, nanos = 0 }\n`,
  );
  assert.equal(problems.length, 1, problems.join("\n"));
  assert.doesNotMatch(problems[0], /invalid TOML/);
  assert.match(
    problems[0],
    /^backend_pools\[0\]\.client\.pool_idle_timeout\.secs: .*, found 9223372036854775807$/,
  );
});

Deno.test("a byte order mark at the start of a config keeps every problem's line", () => {
  const lineOf = (text: string) => {
    try {
      parseConfig(text, origin);
    } catch (e) {
      assert.ok(e instanceof ConfigError);
      return e.problems.map((p) => `${p.path} ${p.line}`);
    }
  };
  assert.deepEqual(lineOf(POOL + "colour = 1\n"), ["backend_pools[0].colour 7"]);
  assert.deepEqual(lineOf("\ufeff" + POOL + "colour = 1\n"), ["backend_pools[0].colour 7"]);
});

Deno.test("the --check summary names the pools whose health checks run on their own interval", () => {
  const config = parseConfig(
    `[health_interval]\ncheck_every = 0\n` + POOL +
      `[backend_pools.health_config]\ninterval = "2s"\n`,
    origin,
  );
  const summary = summarizeConfig(config);
  assert.match(
    summary,
    /health checks: disabled, except in pools that set their own interval \(below\)/,
  );
  assert.match(summary, /^ {6}health checks every 2 s$/m);
});

Deno.test("a config file that is not UTF-8 is refused with the line of the first bad byte", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/strom.toml`;
  await Deno.writeFile(path, new Uint8Array([...new TextEncoder().encode(POOL + "# "), 0xc3, 10]));
  const error = await loadConfigFile(path).then(() => null, (e) => e);
  assert.ok(error instanceof ConfigError);
  assert.deepEqual(error.problems, [
    { path: "", message: "not UTF-8 text (a TOML file must be)", line: 7 },
  ]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("a config file over 8 MiB, or endless, is refused after reading 8 MiB", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/strom.toml`;
  const padding = "#".repeat(1023) + "\n";
  await Deno.writeTextFile(path, POOL + padding.repeat(8 * 1024));
  for (const file of [path, "/dev/zero"]) {
    const error = await loadConfigFile(file).then(() => null, (e) => e);
    assert.ok(error instanceof ConfigError, file);
    assert.deepEqual(error.problems, [
      { path: "", message: "larger than 8 MiB: no config is (is it the right file?)" },
    ]);
  }
  await Deno.writeTextFile(path, POOL + padding.repeat(4 * 1024)); // 4 MiB of comments loads
  assert.equal((await loadConfigFile(path)).config.pools.length, 1);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("parseConfig() refuses an admin token no client could send", () => {
  const problem = "admin_token: the token must be printable ASCII without spaces at its ends " +
    "(no client could send it)";
  for (const token of [" 0123456789abcdef ", "0123456789abcdef\t", "tökentökentökentöken"]) {
    assert.deepEqual(problemsOf(`admin_token = ${JSON.stringify(token)}\n${POOL}`), [problem]);
  }
  assert.deepEqual(problemsOf(`admin_token = "0123456789\\nabcdef"\n${POOL}`), [problem]);
  for (
    const token of ["0123456789abcdef", "0123 4567 89ab cdef", "!~#$%&'()*+,-./:;<=>?@[]^_`{|}"]
  ) {
    assert.deepEqual(problemsOf(`admin_token = ${JSON.stringify(token)}\n${POOL}`), [], token);
  }
  assert.deepEqual(problemsOf(`admin_token = "short"\n${POOL}`), [
    "admin_token: the token must be at least 16 characters",
  ]);
});

Deno.test("parseConfig() refuses an access log in a folder that does not exist", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const here = { source: "strom.toml", baseDir: dir };
    const log = (path: string) => `[access_log]\npath = "${path}"\n${POOL}`;
    assert.deepEqual(problemsOf(log("logs/access.log"), here), [
      `access_log.path: the folder "${dir}/logs" does not exist`,
    ]);
    Deno.writeTextFileSync(`${dir}/logs`, "");
    assert.deepEqual(problemsOf(log("logs/access.log"), here), [
      `access_log.path: "${dir}/logs" is not a folder`,
    ]);
    assert.deepEqual(problemsOf(log("access.log"), here), []);
    assert.deepEqual(problemsOf(log("stdout"), here), []);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("parseConfig() never shows a secret written with the wrong type", () => {
  const ldap = `[backend_pools.middlewares.Authentication]
ldap_address = "ldap://127.0.0.1"
user_directory = "ou=people,dc=example,dc=com"
rdn_identifier = "uid"
recursive = true
bind_dn = "cn=reader"
bind_password = 1234567890123
`;
  const problems = problemsOf(`admin_token = 98765432109876543210\n${POOL}${ldap}`);
  assert.deepEqual(problems, [
    "admin_token: expected a string, found an integer",
    `${MW}.Authentication.bind_password: expected a string, found an integer`,
  ]);
});

Deno.test("parseConfig() takes an LDAP address's user and password out, with a warning", () => {
  const config = parseConfig(
    POOL + `[backend_pools.middlewares.Authentication]
ldap_address = "ldap://cn=x:LdapUrlPass@127.0.0.1:389"
user_directory = "ou=people,dc=example,dc=com"
rdn_identifier = "uid"
recursive = true
`,
    origin,
  );
  assert.deepEqual(config.warnings, [
    `${MW}.Authentication.ldap_address: the user and password in it are not used (set bind_dn and bind_password); ldap://127.0.0.1:389 is`,
  ]);
  const [middleware] = config.pools[0].middlewares;
  assert.equal((middleware.options as { url: string }).url, "ldap://127.0.0.1:389");
});

Deno.test("parseConfig() reads StickyCookie's same_site as RustStrom's example writes it", () => {
  const sticky = (sameSite: string) =>
    POOL.replace(
      "strategy = { RoundRobin = {} }",
      `strategy = { StickyCookie = { cookie_name = "lb", http_only = true, secure = true, same_site = ${sameSite}, inner = { Random = {} } } }`,
    );
  const config = parseConfig(sticky("{ Strict = {} }"), origin);
  assert.equal(config.pools[0].strategy.options.sameSite, "Strict");
  assert.deepEqual(problemsOf(sticky("{ Bogus = {} }")), [
    'backend_pools[0].strategy.StickyCookie.same_site: invalid value "Bogus" (expected "Strict", "Lax" or "None")',
  ]);
  assert.deepEqual(problemsOf(sticky("{ Strict = {}, Lax = {} }")), [
    "backend_pools[0].strategy.StickyCookie.same_site: expected a string, found a table",
  ]);
});

Deno.test("config problems found by a probe: each said once, no password shown, serde's durations", async () => {
  // A password in a backend address without a scheme is hidden too.
  const password = problemsOf(POOL.replace('"127.0.0.1:8080"', '"user:hunter2@127.0.0.1:8080"'));
  assert.equal(password.length, 1);
  assert.ok(!password[0].includes("hunter2"), password[0]);
  assert.match(password[0], /"user:\*\*\*@127\.0\.0\.1:8080"/);
  // A StickyCookie without `inner`: missing, said once.
  assert.deepEqual(
    problemsOf(POOL.replace(
      "strategy = { RoundRobin = {} }",
      'strategy = { StickyCookie = { cookie_name = "lb", http_only = true, secure = false, same_site = "Lax" } }',
    )),
    ["backend_pools[0].strategy.StickyCookie.inner: missing required key"],
  );
  // serde's Duration carries whole seconds out of `nanos`, as RustStrom read it.
  const config = parseConfig(
    POOL + "[backend_pools.client]\npool_idle_timeout = { secs = 0, nanos = 1500000000 }\n",
    origin,
  );
  assert.equal(config.pools[0].client.poolIdleTimeoutMs, 1500);
  // An empty config path is said to be one (it read the working directory before).
  const empty = await loadConfigFile("").then(() => null, (e) => e);
  assert.ok(empty instanceof ConfigError);
  assert.deepEqual(empty.problems.map((p) => p.message), ["the config path is empty"]);
});
