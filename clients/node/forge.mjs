// Forge's Node.js client: the broker's gRPC API (forge.v1.Broker) from JavaScript.
//
//   import { connect } from "./forge.mjs";
//   const forge = connect("localhost:50051", { token: process.env.FORGE_TOKEN });
//   const { job } = await forge.enqueue("email", { to: "a@b.c" }, { priority: 10 });
//   for await (const { job, leaseToken } of forge.lease({ workerId: "node-1", types: ["email"] })) {
//     await forge.ack(job.id, leaseToken, { sent: true });
//   }
//   forge.close();
//
// The service definition comes from the same contract as every other client: by default the
// descriptor set `make proto` writes next to the Python code (clients/python/forge/v1/
// broker.binpb, built with --include_imports, so google/api and google/protobuf come with it);
// without it, proto/forge/v1/broker.proto itself, with the googleapis protos of the venv's
// googleapis-common-protos package (or FORGE_PROTO_INCLUDE) as an include directory.
//
// Messages come back as plain objects: camelCase fields, enums as names ("COMPLETED"),
// google.protobuf.Struct as a JS object, Timestamps as Date, int64 counts as numbers.
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(here, "..", "..");
export const DESCRIPTOR_SET = path.join(REPO, "clients", "python", "forge", "v1", "broker.binpb");
export const PROTO = path.join(REPO, "proto", "forge", "v1", "broker.proto");

// keepCase: a definition built from a descriptor set keeps the proto's snake_case names
// whatever the option says, so ask for them from .proto text too; the wrapper below turns them
// into camelCase.
const LOADER_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

/** The googleapis include directory: FORGE_PROTO_INCLUDE, or the venv's site-packages. */
function googleapisInclude() {
  if (process.env.FORGE_PROTO_INCLUDE) return process.env.FORGE_PROTO_INCLUDE;
  const lib = path.join(REPO, ".venv", "lib");
  for (const py of fs.existsSync(lib) ? fs.readdirSync(lib) : []) {
    const site = path.join(lib, py, "site-packages");
    if (fs.existsSync(path.join(site, "google", "api", "annotations.proto"))) return site;
  }
  return null;
}

// protobufjs builds map fields from a descriptor set as what protoc says they are underneath,
// repeated {key, value} entries, and from .proto text as objects: Struct.fields follows suit.
let mapsAsEntries = false;

/** The package definition of forge.v1: from the descriptor set, or from the .proto files. */
export function loadDefinition({ descriptorSet = process.env.FORGE_DESCRIPTOR_SET ?? DESCRIPTOR_SET } = {}) {
  if (descriptorSet && fs.existsSync(descriptorSet)) {
    mapsAsEntries = true;
    return protoLoader.loadFileDescriptorSetFromBuffer(fs.readFileSync(descriptorSet), LOADER_OPTIONS);
  }
  mapsAsEntries = false;
  const include = googleapisInclude();
  if (!include) {
    throw new Error(
      `cannot load the Forge API: ${descriptorSet} is missing (run \`make proto\`) and no googleapis protos ` +
        "were found for proto/forge/v1/broker.proto (set FORGE_PROTO_INCLUDE)",
    );
  }
  return protoLoader.loadSync(PROTO, { ...LOADER_OPTIONS, includeDirs: [path.join(REPO, "proto"), include] });
}

// The field names of google.protobuf.Value as loaded ("number_value" from a descriptor set,
// "numberValue" from protobufjs's built-in copy when loading .proto text), by lower-case name
// without underscores ("numbervalue").
let valueFields = { nullvalue: "null_value", numbervalue: "number_value", stringvalue: "string_value", boolvalue: "bool_value", structvalue: "struct_value", listvalue: "list_value" };

let brokerService = null;
function service() {
  if (!brokerService) {
    const def = loadDefinition();
    valueFields = Object.fromEntries(def["google.protobuf.Value"].type.field.map((f) => [f.name.replaceAll("_", "").toLowerCase(), f.name]));
    brokerService = grpc.loadPackageDefinition(def).forge.v1.Broker;
  }
  return brokerService;
}

// --- google.protobuf.Struct / Value / Timestamp <-> plain JS ---------------------------------

export function toValue(v) {
  const f = valueFields;
  if (v === null || v === undefined) return { [f.nullvalue]: "NULL_VALUE" };
  if (typeof v === "number") return { [f.numbervalue]: v };
  if (typeof v === "string") return { [f.stringvalue]: v };
  if (typeof v === "boolean") return { [f.boolvalue]: v };
  if (Array.isArray(v)) return { [f.listvalue]: { values: v.map(toValue) } };
  if (v instanceof Date) return { [f.stringvalue]: v.toISOString() };
  if (typeof v === "object") return { [f.structvalue]: toStruct(v) };
  throw new TypeError(`cannot send a ${typeof v} in a JSON payload`);
}

export function toStruct(obj) {
  const entries = Object.entries(obj ?? {}).map(([key, v]) => [key, toValue(v)]);
  return { fields: mapsAsEntries ? entries.map(([key, value]) => ({ key, value })) : Object.fromEntries(entries) };
}

export function fromValue(v) {
  if (!v || !v.kind) return null;
  const value = v[v.kind];
  switch (v.kind.replaceAll("_", "").toLowerCase()) {
    case "numbervalue":
    case "stringvalue":
    case "boolvalue":
      return value;
    case "structvalue":
      return fromStruct(value);
    case "listvalue":
      return (value?.values ?? []).map(fromValue);
    default:
      return null;
  }
}

export function fromStruct(s) {
  if (!s) return null;
  const fields = s.fields ?? {};
  const entries = Array.isArray(fields) ? fields.map((e) => [e.key, e.value]) : Object.entries(fields);
  return Object.fromEntries(entries.map(([k, v]) => [k, fromValue(v)]));
}

function toTimestamp(d) {
  const ms = d instanceof Date ? d.getTime() : new Date(d).getTime();
  if (Number.isNaN(ms)) throw new TypeError(`not a time: ${d}`);
  return { seconds: String(Math.floor(ms / 1000)), nanos: (((ms % 1000) + 1000) % 1000) * 1e6 };
}

function fromTimestamp(t) {
  if (!t) return null;
  return new Date(Number(t.seconds) * 1000 + Math.round((t.nanos ?? 0) / 1e6));
}

/** A Job message as a plain object. */
export function jobFromProto(j) {
  if (!j) return null;
  return {
    id: j.id,
    type: j.type,
    payload: fromStruct(j.payload) ?? {},
    priority: j.priority,
    maxRetries: j.max_retries,
    attempts: j.attempts,
    status: j.status,
    runAt: fromTimestamp(j.run_at),
    createdAt: fromTimestamp(j.created_at),
    updatedAt: fromTimestamp(j.updated_at),
    lastError: j.last_error,
    result: fromStruct(j.result),
    workerId: j.worker_id,
    leaseExpiresAt: fromTimestamp(j.lease_expires_at),
    idempotencyKey: j.idempotency_key,
    concurrencyKey: j.concurrency_key,
  };
}

const COUNTS = ["pending", "scheduled", "processing", "completed", "dead", "cancelled"];

function countsOf(m) {
  return Object.fromEntries(COUNTS.map((k) => [k, Number(m[k] ?? 0)]));
}

/** A QueueStats message as a plain object, int64 counts as numbers. */
export function statsFromProto(s) {
  const wait = s.queue_wait;
  return {
    computedAt: fromTimestamp(s.computed_at),
    ...countsOf(s),
    oldestPendingAgeSeconds: s.oldest_pending_age_seconds,
    types: (s.types ?? []).map((t) => ({ type: t.type, ...countsOf(t), oldestPendingAgeSeconds: t.oldest_pending_age_seconds })),
    throughput: (s.throughput ?? []).map((p) => ({ minute: fromTimestamp(p.minute), completed: p.completed, failed: p.failed })),
    queueWait: wait ? { p50Ms: wait.p50_ms, p90Ms: wait.p90_ms, p99Ms: wait.p99_ms, count: Number(wait.count ?? 0), windowSeconds: wait.window_seconds } : null,
    workers: (s.workers ?? []).map((w) => ({
      workerId: w.worker_id,
      types: w.types,
      inFlight: w.in_flight,
      maxInFlight: w.max_in_flight,
      connectedAt: fromTimestamp(w.connected_at),
      lastSeen: fromTimestamp(w.last_seen),
      brokerId: w.broker_id,
    })),
  };
}

// --- the client ---------------------------------------------------------------------------------

/**
 * A client for the broker at `address` ("host:port").
 *
 * Options: `token` (sent as `authorization: Bearer <token>` on every call), `credentials`
 * (grpc.credentials; plaintext by default), `timeoutMs` (deadline of each unary call, 30 s).
 */
export function connect(address, { token = null, credentials = null, timeoutMs = 30_000, channelOptions = {} } = {}) {
  const Broker = service();
  const stub = new Broker(address, credentials ?? grpc.credentials.createInsecure(), channelOptions);

  const metadata = () => {
    const md = new grpc.Metadata();
    if (token) md.set("authorization", `Bearer ${token}`);
    return md;
  };

  const unary = (method, request) =>
    new Promise((resolve, reject) => {
      stub[method](request, metadata(), { deadline: Date.now() + timeoutMs }, (err, reply) => (err ? reject(err) : resolve(reply)));
    });

  return {
    /** The underlying grpc-js stub, for the methods this wrapper leaves out. */
    stub,

    /** Enqueue one job; resolves to `{ job, created }` (`created` false for a known idempotency key). */
    async enqueue(type, payload = {}, { priority, maxRetries, runAt, idempotencyKey, concurrencyKey } = {}) {
      const req = { type, payload: toStruct(payload), idempotency_key: idempotencyKey ?? "", concurrency_key: concurrencyKey ?? "" };
      if (priority !== undefined) req.priority = priority;
      if (maxRetries !== undefined) req.max_retries = maxRetries;
      if (runAt !== undefined && runAt !== null) req.run_at = toTimestamp(runAt);
      const reply = await unary("Enqueue", req);
      return { job: jobFromProto(reply.job), created: reply.created };
    },

    /**
     * Enqueue one job of `type` per payload, all or none, each with the same options (no
     * idempotency key: a key names one job). One EnqueueBatch call in columns: the options travel
     * once, each payload as its JSON text. Resolves to `{ jobs, created }`, or with `idsOnly` to
     * `{ ids, created }` (cheaper to build and read), in payload order. A refused payload rejects
     * the call naming its index (`payloads_json[3]: ...`), and nothing of the batch is stored.
     */
    async enqueueMany(type, payloads, { priority, maxRetries, runAt, concurrencyKey, idsOnly = false } = {}) {
      const template = { type, concurrency_key: concurrencyKey ?? "" };
      if (priority !== undefined) template.priority = priority;
      if (maxRetries !== undefined) template.max_retries = maxRetries;
      if (runAt !== undefined && runAt !== null) template.run_at = toTimestamp(runAt);
      const reply = await unary("EnqueueBatch", {
        template,
        payloads_json: Array.from(payloads, (p) => JSON.stringify(p ?? {})),
        answer: idsOnly ? "ANSWER_IDS" : "ANSWER_JOBS",
      });
      return idsOnly ? { ids: reply.ids, created: reply.created } : { jobs: reply.jobs.map(jobFromProto), created: reply.created };
    },

    async getJob(id) {
      return jobFromProto(await unary("GetJob", { id }));
    },

    async stats() {
      return statsFromProto(await unary("Stats", {}));
    },

    async cancel(id, reason = "") {
      return jobFromProto(await unary("CancelJob", { id, reason }));
    },

    /**
     * Leased jobs as they come, `{ job, leaseToken }`, for as long as the loop runs: leaving it
     * (break, return, throw) or `signal` aborting cancels the stream. Ack or nack each job with
     * its lease token before `leaseSeconds` run out.
     */
    async *lease({ workerId, types = [], maxInFlight = 1, leaseSeconds = 0, signal } = {}) {
      if (!workerId) throw new TypeError("lease needs a workerId");
      const call = stub.Lease({ worker_id: workerId, types, max_in_flight: maxInFlight, lease_seconds: leaseSeconds }, metadata());
      // Cancelling reports CANCELLED as an error event; nobody is listening by then.
      call.on("error", () => {});
      const onAbort = () => call.cancel();
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        for await (const reply of call) {
          for (const leased of reply.jobs ?? []) yield { job: jobFromProto(leased.job), leaseToken: leased.lease_token };
        }
      } catch (err) {
        if (signal?.aborted && err?.code === grpc.status.CANCELLED) return;
        throw err;
      } finally {
        signal?.removeEventListener("abort", onAbort);
        call.cancel();
      }
    },

    /** The job is done: COMPLETED, with an optional JSON result. */
    async ack(jobId, leaseToken, result = null) {
      const req = { job_id: jobId, lease_token: leaseToken };
      if (result !== null && result !== undefined) req.result = toStruct(result);
      await unary("Ack", req);
    },

    /** The attempt failed: back to PENDING after the backoff, or DEAD once retries are spent. */
    async nack(jobId, leaseToken, error, { permanent = false } = {}) {
      const reply = await unary("Nack", { job_id: jobId, lease_token: leaseToken, error: String(error ?? ""), permanent });
      return { status: reply.status, runAt: fromTimestamp(reply.run_at) };
    },

    close() {
      stub.close();
    },
  };
}

export { grpc };
