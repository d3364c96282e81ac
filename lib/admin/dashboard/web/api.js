// Calls to the admin API with the token the user typed (kept in sessionStorage),
// a prompt for it on 401, and the event stream read with fetch (EventSource
// cannot send an Authorization header).

const TOKEN_KEY = "strom.adminToken";

/** An answer the dashboard could not use; `status` is the HTTP status (0: none). */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Set when the user cancelled the prompt: calls in the background then stop asking. */
let declined = false;

/**
 * fetch() on the admin API; on 401 asks for the token and tries again. Calls
 * made in the background (not `interactive`) do not ask again once the user
 * has cancelled the prompt; an action of the user does.
 */
export async function api(path, init = {}, { interactive = false } = {}) {
  let refused = false;
  while (true) {
    const headers = new Headers(init.headers);
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (token) headers.set("authorization", `Bearer ${token}`);
    const response = await fetch(path, { ...init, headers });
    if (response.status !== 401) return response;
    await response.body?.cancel();
    if (declined && !interactive) throw new ApiError(401, "the admin token is required");
    const why = refused
      ? "That token was refused."
      : token
      ? "The saved token was refused."
      : "This call needs the admin token (admin_token in the config).";
    if (await askToken(why) === null) throw new ApiError(401, "the admin token is required");
    refused = true;
  }
}

/** Asks for the token at the user's request; resolves once a token was given (or not). */
export async function requestToken() {
  await askToken("Enter the admin token (admin_token in the config).");
}

/** The answer's text, or an ApiError carrying the server's message for a status >= 400. */
export async function text(response) {
  const body = await response.text();
  if (response.status >= 400) throw new ApiError(response.status, body || response.statusText);
  return body;
}

let pending = null;

/** Shows the token dialog once for all callers; resolves with the token, or null. */
function askToken(why) {
  pending ??= new Promise((resolve) => {
    const dialog = document.getElementById("token-dialog");
    const input = document.getElementById("token-input");
    document.getElementById("token-why").textContent = why;
    input.value = "";
    dialog.addEventListener("close", () => {
      pending = null;
      const token = dialog.returnValue === "ok" ? input.value.trim() : "";
      declined = token === "";
      if (token) {
        sessionStorage.setItem(TOKEN_KEY, token);
        dispatchEvent(new Event("strom-token"));
      }
      resolve(token || null);
    }, { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    input.focus();
  });
  return pending;
}

/**
 * Follows /api/events: `onEvent(name, data)` per server-sent event,
 * `onState("live" | "connecting" | "down" | "token")` as the connection changes.
 * Reconnects after a pause, or once a token is given when one is needed; a new
 * connection starts with a new "history".
 */
export function followEvents(onEvent, onState) {
  const loop = async () => {
    while (true) {
      let needsToken = false;
      try {
        onState("connecting");
        const response = await api("/api/events");
        if (!response.ok) throw new ApiError(response.status, await response.text());
        onState("live");
        await readEvents(response.body, onEvent);
      } catch (e) {
        needsToken = e.status === 401;
        console.warn("event stream:", e.message);
      }
      onState(needsToken ? "token" : "down");
      await new Promise((resolve) => {
        if (needsToken) addEventListener("strom-token", resolve, { once: true });
        else setTimeout(resolve, 2000);
      });
    }
  };
  loop();
}

async function readEvents(body, onEvent) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  while (true) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replaceAll("\r\n", "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let name = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length > 0) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}
