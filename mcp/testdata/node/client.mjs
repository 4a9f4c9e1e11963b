// A Model Context Protocol client for tf's tests, built on the official
// TypeScript SDK. It connects, lists the tools, makes an allowed call, a
// denied call and a long call with progress notifications, and prints what
// it saw as one JSON object on stdout.
//
//   node client.mjs http URL PROXY_URL   (Streamable HTTP through tf's proxy)
//   node client.mjs stdio CMD [ARGS...]  (a stdio server, e.g. under tf mcp wrap)
//   node client.mjs lists URL PROXY_URL  (only the four lists, as names)
//   node client.mjs sse URL PROXY_URL    (as http, over the legacy HTTP+SSE transport)
//   node client.mjs sse-outcomes URL PROXY_URL (legacy HTTP+SSE: a failing call,
//        a failing resource read, a slow call, and a call given up on before
//        the client closes)
//   node client.mjs sampling http URL PROXY_URL | sampling stdio CMD [ARGS...]
//        (a client that can sample: calls trigger-sampling-request and
//        reports whether its sampling handler ran)
import http from "node:http";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { SSEClientTransport } from "@modelcontextprotocol/sdk/client/sse.js";
import { CreateMessageRequestSchema } from "@modelcontextprotocol/sdk/types.js";

// proxyFetch sends requests through an HTTP proxy in absolute form, as a
// proxy-aware client does (Node 20's fetch ignores proxy settings).
function proxyFetch(proxyURL) {
  const p = new URL(proxyURL);
  const auth = "Basic " + Buffer.from(decodeURIComponent(p.username) + ":" + decodeURIComponent(p.password)).toString("base64");
  return (input, init = {}) =>
    new Promise((resolve, reject) => {
      const url = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
      const headers = {};
      new Headers(init.headers || {}).forEach((v, k) => {
        headers[k] = v;
      });
      headers["proxy-authorization"] = auth;
      headers["host"] = url.host;
      const req = http.request(
        { host: p.hostname, port: p.port, method: init.method || "GET", path: url.href, headers, signal: init.signal },
        (res) => {
          const rh = new Headers();
          for (const [k, v] of Object.entries(res.headers)) {
            if (Array.isArray(v)) v.forEach((x) => rh.append(k, x));
            else if (v !== undefined) rh.set(k, v);
          }
          const empty = [101, 204, 205, 304].includes(res.statusCode);
          const body = empty
            ? null
            : new ReadableStream({
                start(ctrl) {
                  res.on("data", (c) => ctrl.enqueue(new Uint8Array(c)));
                  res.on("end", () => ctrl.close());
                  res.on("error", (e) => ctrl.error(e));
                },
                cancel() {
                  res.destroy();
                },
              });
          resolve(new Response(body, { status: res.statusCode, statusText: res.statusMessage, headers: rh }));
        },
      );
      req.on("error", reject);
      if (init.body) req.end(typeof init.body === "string" ? init.body : Buffer.from(init.body));
      else req.end();
    });
}

function text(result) {
  return (result.content || []).filter((c) => c.type === "text").map((c) => c.text).join("");
}

async function sampling(how, rest) {
  const transport =
    how === "http"
      ? new StreamableHTTPClientTransport(new URL(rest[0]), { fetch: proxyFetch(rest[1]) })
      : new StdioClientTransport({ command: rest[0], args: rest.slice(1), env: process.env, stderr: "inherit" });
  const client = new Client({ name: "tf-test", version: "1.0.0" }, { capabilities: { sampling: {} } });
  const out = { sampled: false };
  client.setRequestHandler(CreateMessageRequestSchema, async () => {
    out.sampled = true;
    return { role: "assistant", content: { type: "text", text: "sampled!" }, model: "test-model" };
  });
  await client.connect(transport);
  try {
    const r = await client.callTool({ name: "trigger-sampling-request", arguments: { prompt: "hi" } }, undefined, { timeout: 20000 });
    out.text = text(r);
    out.isError = !!r.isError;
  } catch (e) {
    out.error = String(e && e.message ? e.message : e);
  }
  await client.close();
  process.stdout.write(JSON.stringify(out) + "\n");
}

// sseOutcomes makes the calls whose outcome records tf must complete from
// the legacy transport's stream.
async function sseOutcomes(rest) {
  const transport = new SSEClientTransport(new URL(rest[0]), { fetch: proxyFetch(rest[1]) });
  const client = new Client({ name: "tf-test", version: "1.0.0" });
  await client.connect(transport);
  const out = {};
  const bad = await client.callTool({ name: "echo", arguments: { message: 5 } });
  out.bad = { text: text(bad), isError: !!bad.isError };
  try {
    await client.readResource({ uri: "demo://no/such/resource" });
    out.read = "read";
  } catch (e) {
    out.read = String(e && e.message ? e.message : e);
  }
  const slow = await client.callTool(
    { name: "trigger-long-running-operation", arguments: { duration: 3, steps: 1 } },
    undefined,
    { timeout: 20000 },
  );
  out.slow = { text: text(slow), isError: !!slow.isError };
  try {
    await client.callTool(
      { name: "trigger-long-running-operation", arguments: { duration: 30, steps: 1 } },
      undefined,
      { timeout: 500 },
    );
    out.abandoned = "answered";
  } catch (e) {
    out.abandoned = String(e && e.message ? e.message : e);
  }
  await client.close();
  process.stdout.write(JSON.stringify(out) + "\n");
}

async function main() {
  const [mode, ...rest] = process.argv.slice(2);
  if (mode === "sampling") return sampling(rest[0], rest.slice(1));
  if (mode === "sse-outcomes") return sseOutcomes(rest);
  let transport;
  if (mode === "http" || mode === "lists") {
    transport = new StreamableHTTPClientTransport(new URL(rest[0]), { fetch: proxyFetch(rest[1]) });
  } else if (mode === "sse") {
    // The legacy HTTP+SSE transport (protocol 2024-11-05).
    transport = new SSEClientTransport(new URL(rest[0]), { fetch: proxyFetch(rest[1]) });
  } else if (mode === "stdio") {
    transport = new StdioClientTransport({ command: rest[0], args: rest.slice(1), env: process.env, stderr: "inherit" });
  } else {
    throw new Error("usage: client.mjs http URL PROXY_URL | stdio CMD [ARGS...]");
  }
  const client = new Client({ name: "tf-test", version: "1.0.0" });
  await client.connect(transport);
  const out = {};
  out.tools = (await client.listTools()).tools.map((t) => t.name).sort();
  if (mode === "lists") {
    out.resources = (await client.listResources()).resources.map((r) => r.uri).sort();
    out.templates = (await client.listResourceTemplates()).resourceTemplates.map((r) => r.uriTemplate).sort();
    out.prompts = (await client.listPrompts()).prompts.map((p) => p.name).sort();
    await client.close();
    process.stdout.write(JSON.stringify(out) + "\n");
    return;
  }
  const echo = await client.callTool({ name: "echo", arguments: { message: "hi" } });
  out.echo = { text: text(echo), isError: !!echo.isError };
  const sum = await client.callTool({ name: "get-sum", arguments: { a: 1, b: 2 } });
  out.sum = { text: text(sum), isError: !!sum.isError };

  const start = Date.now();
  const progress = [];
  const long = await client.callTool(
    { name: "trigger-long-running-operation", arguments: { duration: 2, steps: 4 } },
    undefined,
    { onprogress: (p) => progress.push({ at: Date.now() - start, progress: p.progress }), timeout: 20000 },
  );
  out.long = { text: text(long), isError: !!long.isError, progress, resultAt: Date.now() - start };
  await client.close();
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => {
  process.stderr.write(String(e && e.stack ? e.stack : e) + "\n");
  process.exit(1);
});
