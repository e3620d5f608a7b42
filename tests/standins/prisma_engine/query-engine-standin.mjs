#!/usr/bin/env node
// Prisma query-engine STAND-IN for tests. It is NOT Prisma's native engine, which cannot be downloaded
// on the test machines (see shared FACTS.md, "LiteLLM with its database on these machines").
//
// prisma-client-py (LiteLLM's database client) runs the engine binary named by
// PRISMA_QUERY_ENGINE_BINARY as `<binary> --version` and `<binary> -p <port> --enable-metrics
// --enable-raw-queries`, with the schema's path in PRISMA_DML_PATH, and then speaks the engine's HTTP
// protocol to http://localhost:<port>: GET /status, POST / (GraphQL-style queries, single or batched,
// X-transaction-id header inside interactive transactions), POST /transaction/start,
// /transaction/<id>/commit|rollback, GET /metrics.
//
// This program answers that protocol with Prisma's own query engine compiled to WebAssembly
// (@prisma/query-engine-wasm, the same engine commit as the native binary) talking to PostgreSQL
// through @prisma/adapter-pg. The wasm build only takes Prisma's JSON protocol, so each GraphQL-style
// request is parsed and rewritten to it, and the answer is rewritten back: type tags stripped, the
// single result named `result`, as the native engine answers in GraphQL mode.
import { readFileSync } from "node:fs";
import http from "node:http";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const ENGINE_COMMIT = "393aa359c9ad4a4bb28630fb5613f9c281cde053";
const MAX_BODY_BYTES = 16 * 1024 * 1024; // one query; LiteLLM's largest writes are spend-log batches

if (process.argv.includes("--version")) {
  process.stdout.write(`query-engine ${ENGINE_COMMIT}\n`);
  process.exit(0);
}

function fail(message) {
  process.stderr.write(`prisma query-engine stand-in: ${message}\n`);
  process.exit(1);
}

// ------------------------------------------------------------------------------------- the schema

// model name -> field name -> {type, relation}: which values the JSON protocol wants tagged, and
// which model a nested argument or selection belongs to.
function parseSchema(text) {
  // Line by line: attribute arguments such as @default("{}") hold braces.
  const blocks = [];
  let current = null;
  for (const line of text.split("\n")) {
    const opening = line.match(/^\s*(model|enum|type|view)\s+(\w+)\s*\{/);
    if (opening) current = { kind: opening[1], name: opening[2], lines: [] };
    else if (current && /^\s*\}\s*$/.test(line)) {
      blocks.push(current);
      current = null;
    } else if (current) current.lines.push(line);
  }
  const modelNames = new Set(blocks.filter((b) => b.kind === "model").map((b) => b.name));
  const models = {};
  for (const { kind, name, lines } of blocks) {
    if (kind !== "model") continue;
    const fields = {};
    for (const line of lines) {
      const match = line.match(/^\s*(\w+)\s+(\w+)/);
      if (!match) continue;
      const [, field, type] = match;
      fields[field] = { type, relation: modelNames.has(type) ? type : null };
    }
    models[name] = fields;
  }
  return models;
}

// ------------------------------------------------- GraphQL-style query text (prisma-client-py's subset)

function tokenize(text) {
  const tokens = [];
  const pattern = /\s+|,|([{}()[\]:])|("(?:[^"\\]|\\.)*")|(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)|([_A-Za-z][_0-9A-Za-z]*)/y;
  while (pattern.lastIndex < text.length) {
    const at = pattern.lastIndex;
    const match = pattern.exec(text);
    if (!match) throw new Error(`unexpected character at ${at}: ${text.slice(at, at + 20)}`);
    if (match[1]) tokens.push({ kind: match[1] });
    else if (match[2]) tokens.push({ kind: "value", value: JSON.parse(match[2]) });
    else if (match[3]) tokens.push({ kind: "value", value: Number(match[3]) });
    else if (match[4]) tokens.push({ kind: "name", value: match[4] });
  }
  return tokens;
}

function parseQuery(text) {
  const tokens = tokenize(text);
  let i = 0;
  const peek = () => tokens[i] || { kind: "end" };
  const take = (kind) => {
    const token = tokens[i++];
    if (!token || token.kind !== kind) throw new Error(`expected ${kind}, got ${token ? token.kind : "end"}`);
    return token;
  };
  const value = () => {
    const token = tokens[i++];
    if (token.kind === "value") return token.value;
    if (token.kind === "name") {
      const literals = { true: true, false: false, null: null };
      if (token.value in literals) return literals[token.value];
      throw new Error(`unexpected name ${token.value}`);
    }
    if (token.kind === "{") {
      const object = {};
      while (peek().kind !== "}") {
        const key = take("name").value;
        take(":");
        object[key] = value();
      }
      i++;
      return object;
    }
    if (token.kind === "[") {
      const list = [];
      while (peek().kind !== "]") list.push(value());
      i++;
      return list;
    }
    throw new Error(`unexpected ${token.kind}`);
  };
  const args = () => {
    if (peek().kind !== "(") return {};
    i++;
    const object = {};
    while (peek().kind !== ")") {
      const key = take("name").value;
      take(":");
      object[key] = value();
    }
    i++;
    return object;
  };
  const selection = () => {
    const fields = [];
    if (peek().kind !== "{") return fields;
    i++;
    while (peek().kind !== "}") {
      const name = take("name").value;
      fields.push({ name, args: args(), selection: selection() });
    }
    i++;
    return fields;
  };
  const operation = take("name").value;
  if (operation !== "query" && operation !== "mutation") throw new Error(`unknown operation ${operation}`);
  take("{");
  if (take("name").value !== "result") throw new Error("expected the field alias `result`");
  take(":");
  const field = take("name").value;
  const result = { field, args: args(), selection: selection() };
  take("}");
  return result;
}

// ------------------------------------------------------------- GraphQL-style -> JSON protocol

const ACTIONS = [
  "findUnique", "findFirst", "findMany", "createOne", "createMany", "updateOne", "updateMany",
  "deleteOne", "deleteMany", "upsertOne", "aggregate", "groupBy",
].sort((a, b) => b.length - a.length);
const RAW_ACTIONS = new Set(["queryRaw", "executeRaw"]);
const TAGGED_TYPES = new Set(["Json", "DateTime", "BigInt", "Decimal", "Bytes"]);

class Translator {
  constructor(models) {
    this.models = models;
  }

  operation(field) {
    if (RAW_ACTIONS.has(field)) return { action: field, modelName: undefined };
    const orThrow = field.endsWith("OrThrow");
    const base = orThrow ? field.slice(0, -"OrThrow".length) : field;
    const action = ACTIONS.find((a) => base.startsWith(a) && this.models[base.slice(a.length)]);
    if (!action) throw new Error(`unknown query ${field}`);
    return { action: orThrow ? `${action}OrThrow` : action, modelName: base.slice(action.length) };
  }

  // Values of Json/DateTime/... fields travel as strings in GraphQL mode and as {$type, value} here.
  value(input, model, type) {
    if (Array.isArray(input)) return input.map((item) => this.value(item, model, type));
    if (typeof input === "string" && type) return { $type: type, value: input };
    if (input === null || typeof input !== "object") return input;
    const output = {};
    for (const [key, item] of Object.entries(input)) {
      const field = model && this.models[model][key];
      if (field && field.relation) output[key] = this.value(item, field.relation, null);
      else if (field) output[key] = this.value(item, model, TAGGED_TYPES.has(field.type) ? field.type : null);
      else if (key === "path" || key === "mode") output[key] = item; // Json path filter, string mode
      else if (key === "orderBy") output[key] = item; // sort directions ("desc"), not values of the fields
      else output[key] = this.value(item, model, type);
    }
    return output;
  }

  selection(fields, model) {
    const output = {};
    for (const { name, args, selection } of fields) {
      if (!selection.length && !Object.keys(args).length) {
        output[name] = true;
        continue;
      }
      const field = model && this.models[model][name];
      const related = field && field.relation ? field.relation : model;
      output[name] = { arguments: this.value(args, related, null), selection: this.selection(selection, related) };
    }
    return output;
  }

  request(text) {
    const parsed = parseQuery(text);
    const { action, modelName } = this.operation(parsed.field);
    const query = RAW_ACTIONS.has(action)
      ? { arguments: parsed.args, selection: {} }
      : { arguments: this.value(parsed.args, modelName, null), selection: this.selection(parsed.selection, modelName) };
    return modelName ? { modelName, action, query } : { action, query };
  }
}

// Answers come back with {$type, value} tags; GraphQL mode gives the bare value (a Json field as its
// JSON text, which prisma-client-py parses itself).
function untag(value) {
  if (Array.isArray(value)) return value.map(untag);
  if (value === null || typeof value !== "object") return value;
  const keys = Object.keys(value);
  if (keys.length === 2 && "$type" in value && "value" in value) return value.value;
  return Object.fromEntries(keys.map((key) => [key, untag(value[key])]));
}

function asGraphqlAnswer(answer) {
  if (answer.errors) return answer;
  const data = answer.data || {};
  return { data: { result: untag(Object.values(data)[0] ?? null) } };
}

// ---------------------------------------------------------------------------------- the engine

// PostgreSQL types adapter-pg 5.17 cannot map (`name[]` from the catalog tables LiteLLM reads, ...)
// answered as text, as the native engine does, instead of failing the whole raw query.
const MAPPED_OIDS = new Set([
  16, 17, 20, 21, 23, 25, 26, 114, 142, 650, 700, 701, 790, 869, 1042, 1043, 1082, 1083, 1114, 1184, 1266,
  1560, 1562, 1700, 2950, 3802, 143, 199, 651, 791, 1000, 1001, 1002, 1005, 1007, 1009, 1014, 1015, 1016,
  1021, 1022, 1028, 1041, 1115, 1182, 1183, 1231, 1561, 1563, 2951, 3807,
]);
const TEXT_OID = 25;
const TEXT_ARRAY_OID = 1009;

function mapUnsupportedColumns(queryable) {
  const performIO = queryable.performIO;
  queryable.performIO = async function (query) {
    const result = await performIO.call(this, query);
    if (result.ok && result.value.fields) {
      result.value.fields.forEach((field, column) => {
        if (MAPPED_OIDS.has(field.dataTypeID) || field.dataTypeID >= 10000) return;
        const sample = result.value.rows.find((row) => row[column] !== null);
        field.dataTypeID = sample && Array.isArray(sample[column]) ? TEXT_ARRAY_OID : TEXT_OID;
      });
    }
    return result;
  };
}

function databaseUrl(schema) {
  if (process.env.OVERWRITE_DATASOURCES) {
    const [first] = JSON.parse(process.env.OVERWRITE_DATASOURCES);
    if (first && first.url) return first.url;
  }
  const datasource = schema.match(/datasource\s+\w+\s*\{[^}]*url\s*=\s*(?:env\("(\w+)"\)|"([^"]+)")/);
  if (!datasource) fail("no datasource url in the schema");
  const url = datasource[1] ? process.env[datasource[1]] : datasource[2];
  if (!url) fail(`the datasource url variable ${datasource[1]} is not set`);
  return url;
}

async function loadEngine(schema) {
  const pg = require("pg");
  const { PrismaPg } = require("@prisma/adapter-pg");
  const { bindAdapter } = require("@prisma/driver-adapter-utils");
  const wasmDir = join(HERE, "node_modules", "@prisma", "query-engine-wasm", "postgresql");
  const glue = await import(join(wasmDir, "query_engine_bg.js"));
  const { instance } = await WebAssembly.instantiate(readFileSync(join(wasmDir, "query_engine_bg.wasm")), {
    "./query_engine_bg.js": glue,
  });
  glue.__wbg_set_wasm(instance.exports);

  const url = new URL(databaseUrl(schema));
  const poolSize = Number(url.searchParams.get("connection_limit")) || 10;
  // Prisma-only URL parameters mean nothing to libpq; `options` (statement timeouts) is kept.
  for (const key of ["connection_limit", "pool_timeout", "connect_timeout", "socket_timeout", "schema", "pgbouncer"]) {
    url.searchParams.delete(key);
  }
  const pool = new pg.Pool({ connectionString: url.toString(), max: poolSize });
  pool.on("error", (error) => process.stderr.write(`prisma query-engine stand-in: pool: ${error.message}\n`));
  const adapter = new PrismaPg(pool);
  mapUnsupportedColumns(Object.getPrototypeOf(Object.getPrototypeOf(adapter)));
  const logLevel = process.env.RUST_LOG === "info" ? "info" : "error";
  const onLog = (line) => {
    if (logLevel === "info" || line.includes('"level":"ERROR"')) process.stderr.write(`${line}\n`);
  };
  const engine = new glue.QueryEngine({ datamodel: schema, logLevel, logQueries: false }, onLog, bindAdapter(adapter));
  await engine.connect("{}");
  return { engine, pool };
}

// ------------------------------------------------------------------------------------- HTTP

function readBody(request) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    request.on("data", (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(Object.assign(new Error(`request body over ${MAX_BODY_BYTES} bytes`), { status: 413 }));
        request.destroy();
        return;
      }
      chunks.push(chunk);
    });
    request.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    request.on("error", reject);
  });
}

function engineError(message) {
  return { errors: [{ error: message, user_facing_error: { is_panic: false, message, meta: {}, error_code: null } }] };
}

async function handle(request, engine, translator) {
  const url = new URL(request.url, "http://localhost");
  const body = await readBody(request);
  const txId = request.headers["x-transaction-id"];
  if (request.method === "GET" && url.pathname === "/status") return { status: "ok" };
  if (request.method === "GET" && url.pathname === "/metrics") {
    // The wasm build keeps no metrics; answer an empty set in the format asked for.
    return url.searchParams.get("format") === "prometheus" ? "" : { counters: [], gauges: [], histograms: [] };
  }
  if (request.method !== "POST") return null;
  if (url.pathname === "/") {
    const payload = JSON.parse(body);
    if (payload.batch) {
      const batch = payload.batch.map((item) => translator.request(item.query));
      const answer = JSON.parse(
        await engine.query(JSON.stringify({ batch, transaction: payload.transaction ? {} : undefined }), "{}", txId),
      );
      if (answer.errors) return answer;
      return { batchResult: answer.batchResult.map(asGraphqlAnswer) };
    }
    const answer = await engine.query(JSON.stringify(translator.request(payload.query)), "{}", txId);
    return asGraphqlAnswer(JSON.parse(answer));
  }
  if (url.pathname === "/transaction/start") return JSON.parse(await engine.startTransaction(body || "{}", "{}"));
  const tx = url.pathname.match(/^\/transaction\/([^/]+)\/(commit|rollback)$/);
  if (tx) {
    const run = tx[2] === "commit" ? engine.commitTransaction : engine.rollbackTransaction;
    return JSON.parse((await run.call(engine, tx[1], "{}")) || "{}");
  }
  return null;
}

async function main() {
  const portIndex = process.argv.indexOf("-p");
  const port = Number(portIndex > 0 ? process.argv[portIndex + 1] : process.env.PORT);
  if (!port) fail("no port: run with -p <port>");
  const schemaPath = process.env.PRISMA_DML_PATH;
  if (!schemaPath) fail("PRISMA_DML_PATH (the schema file) is not set");
  const schema = readFileSync(schemaPath, "utf8");
  const translator = new Translator(parseSchema(schema));
  const { engine, pool } = await loadEngine(schema);

  const server = http.createServer((request, response) => {
    handle(request, engine, translator)
      .then((answer) => {
        if (answer === null) {
          response.writeHead(404, { "content-type": "application/json" });
          response.end(JSON.stringify(engineError(`no route ${request.method} ${request.url}`)));
        } else if (typeof answer === "string") {
          response.writeHead(200, { "content-type": "text/plain" });
          response.end(answer);
        } else {
          response.writeHead(200, { "content-type": "application/json" });
          response.end(JSON.stringify(answer));
        }
      })
      .catch((error) => {
        response.writeHead(error.status || 500, { "content-type": "application/json" });
        response.end(JSON.stringify(engineError(String(error && error.message ? error.message : error))));
      });
  });
  server.requestTimeout = 300_000;
  server.headersTimeout = 10_000;
  // prisma-client-py connects to http://localhost:<port>: answer on both loopback addresses.
  server.listen(port, "127.0.0.1");
  const v6 = http.createServer(server.listeners("request")[0]);
  v6.on("error", () => {}); // no IPv6 loopback on this host: IPv4 alone serves
  v6.listen(port, "::1");

  const stop = async () => {
    server.close();
    v6.close();
    await engine.disconnect("{}").catch(() => {});
    await pool.end().catch(() => {});
    process.exit(0);
  };
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

main().catch((error) => fail(error && error.stack ? error.stack : String(error)));
