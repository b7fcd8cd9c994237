#!/usr/bin/env node
// Enqueue a job, lease it, ack it and print its final status, all over gRPC from Node.
//
//   node clients/node/example.mjs localhost:50051
//
// FORGE_TOKEN, when set, is sent as the bearer token (a broker started with FORGE_TOKENS needs
// a producer or admin token to enqueue, a worker or admin one to lease and ack). Prints one JSON
// line per step, the last one {"step": "final", "id": ..., "status": "COMPLETED", ...}.
import { randomUUID } from "node:crypto";
import { connect } from "./forge.mjs";

const address = process.argv[2] ?? process.env.FORGE_BROKER ?? "localhost:50051";
const token = process.env.FORGE_TOKEN || null;
const type = process.argv[3] ?? `node_example_${randomUUID().slice(0, 8)}`;
const say = (step, fields) => console.log(JSON.stringify({ step, ...fields }));

const forge = connect(address, { token });
const timeout = setTimeout(() => {
  console.error(`no job leased within 20 s from ${address}`);
  process.exit(2);
}, 20_000);

try {
  const { job, created } = await forge.enqueue(type, { to: "node@example.com", n: 1, tags: ["a", "b"] }, { priority: 5 });
  say("enqueued", { id: job.id, type: job.type, status: job.status, created });

  const ac = new AbortController();
  for await (const { job: leased, leaseToken } of forge.lease({ workerId: `node-example-${process.pid}`, types: [type], signal: ac.signal })) {
    say("leased", { id: leased.id, status: leased.status, attempts: leased.attempts, payload: leased.payload });
    await forge.ack(leased.id, leaseToken, { handledBy: "node", to: leased.payload.to });
    say("acked", { id: leased.id });
    if (leased.id === job.id) break;
  }
  clearTimeout(timeout);

  const final = await forge.getJob(job.id);
  say("final", { id: final.id, status: final.status, attempts: final.attempts, result: final.result, workerId: final.workerId });
  const stats = await forge.stats();
  say("stats", { completed: stats.completed, pending: stats.pending });
  forge.close();
  process.exit(final.status === "COMPLETED" ? 0 : 1);
} catch (err) {
  clearTimeout(timeout);
  console.error(`forge example failed: ${err.code !== undefined ? `${err.code} ${err.details}` : err.message}`);
  forge.close();
  process.exit(1);
}
