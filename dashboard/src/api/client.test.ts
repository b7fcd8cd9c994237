import { describe, expect, it } from "vitest";
import { mockFetch, rawJob } from "../test/fakes";
import { auth } from "./auth";
import { ApiError, actionOf, api, errorMessage, fieldOf } from "./client";

describe("fieldOf", () => {
  it("finds the field an INVALID_ARGUMENT message names", () => {
    expect(fieldOf("type: must be 1 to 128 characters of [A-Za-z0-9_.:-]")).toBe("type");
    expect(fieldOf("max_retries: must be in [0, 100], got 500")).toBe("max_retries");
    expect(fieldOf("jobs[3].type: is required")).toBe("jobs[3].type");
    expect(fieldOf("broker unavailable: connection refused")).toBe(null);
    expect(fieldOf("job not found")).toBe(null);
  });
});

describe("actionOf", () => {
  it("says what the schedule routes do, for a 403's message", () => {
    expect(actionOf("PUT", "/v1/schedules/nightly")).toBe("change schedules");
    expect(actionOf("DELETE", "/v1/schedules/nightly")).toBe("delete schedules");
    expect(actionOf("GET", "/v1/schedules?pageSize=100")).toBe("view schedules");
  });

  it("says what the queue routes do", () => {
    expect(actionOf("POST", "/v1/queues/email:pause")).toBe("change queues");
    expect(actionOf("PATCH", "/v1/queues/email")).toBe("change queues");
    expect(actionOf("GET", "/v1/queues")).toBe("view queues");
  });
});

describe("api", () => {
  it("sends filters as query parameters and parses the page", async () => {
    const m = mockFetch({ "GET /v1/jobs": () => ({ body: { jobs: [rawJob()], nextPageToken: "t2" } }) });
    const page = await api.listJobs({ status: "DEAD", type: "email", pageSize: 25, pageToken: "t1" });
    expect(m.calls[0].path).toBe("/v1/jobs?status=DEAD&type=email&pageSize=25&pageToken=t1");
    expect(page.nextPageToken).toBe("t2");
    expect(page.jobs[0].type).toBe("email");
  });

  it("leaves out empty filters", async () => {
    const m = mockFetch({ "GET /v1/dlq": () => ({ body: {} }) });
    await api.listDead({ type: "" });
    expect(m.calls[0].path).toBe("/v1/dlq");
  });

  it("posts custom methods with a JSON body", async () => {
    const m = mockFetch({
      "POST /v1/dlq/abc:retry": () => ({ body: rawJob({ id: "abc" }) }),
      "POST /v1/jobs/abc:cancel": () => ({ body: rawJob({ id: "abc", status: "CANCELLED" }) }),
    });
    await api.retryDead("abc");
    const cancelled = await api.cancelJob("abc", "no longer needed");
    expect(m.calls.map((c) => [c.method, c.path, c.body])).toEqual([
      ["POST", "/v1/dlq/abc:retry", {}],
      ["POST", "/v1/jobs/abc:cancel", { reason: "no longer needed" }],
    ]);
    expect(cancelled.status).toBe("CANCELLED");
  });

  it("turns the gateway's error body into an ApiError", async () => {
    mockFetch({ "POST /v1/jobs": () => ({ status: 400, body: { code: 3, message: "priority: must be in [-1000, 1000], got 5000", details: [] } }) });
    const err = await api.enqueue({ type: "email", payload: {}, priority: 5000 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    const e = err as ApiError;
    expect(e.status).toBe(400);
    expect(e.codeName).toBe("INVALID_ARGUMENT");
    expect(e.field).toBe("priority");
    expect(errorMessage(e)).toBe("priority: must be in [-1000, 1000], got 5000 (INVALID_ARGUMENT)");
  });

  it("reports a gateway that cannot be reached", async () => {
    mockFetch({});
    (globalThis.fetch as unknown as { mockImplementationOnce: (f: () => never) => void }).mockImplementationOnce(() => {
      throw new TypeError("Failed to fetch");
    });
    const err = (await api.stats().catch((e: unknown) => e)) as ApiError;
    expect(err.status).toBe(0);
    expect(err.message).toMatch(/cannot reach the gateway/);
  });

  it("reports a non-JSON error page", async () => {
    const fn = mockFetch({}).fn;
    fn.mockImplementationOnce(async () => new Response("<html>Bad gateway</html>", { status: 502 }));
    const err = (await api.getJob("x").catch((e: unknown) => e)) as ApiError;
    expect(err.status).toBe(502);
    expect(err.message).toContain("HTTP 502");
  });
});

describe("api with a token", () => {
  it("sends no Authorization header without a token, and the bearer token with one", async () => {
    const m = mockFetch({ "GET /v1/jobs/abc": () => ({ body: rawJob({ id: "abc" }) }), "POST /v1/dlq/abc:retry": () => ({ body: rawJob({ id: "abc" }) }) });
    await api.getJob("abc");
    expect(m.calls[0].headers.has("authorization")).toBe(false);
    auth.signIn("  tok-123  ");
    expect(sessionStorage.getItem("forge.token")).toBe("tok-123");
    await api.getJob("abc");
    await api.retryDead("abc");
    expect(m.calls.slice(1).map((c) => c.headers.get("authorization"))).toEqual(["Bearer tok-123", "Bearer tok-123"]);
    expect(m.calls[2].headers.get("content-type")).toBe("application/json");
  });

  it("a 401 asks for sign-in and forgets the refused token", async () => {
    auth.signIn("stale");
    mockFetch({ "GET /v1/stats": () => ({ status: 401, body: { code: 16, message: "invalid token", details: [] } }) });
    const err = (await api.stats().catch((e: unknown) => e)) as ApiError;
    expect(err.status).toBe(401);
    expect(auth.get()).toEqual({ token: null, required: true, reason: "invalid token" });
    expect(sessionStorage.getItem("forge.token")).toBe(null);
  });

  it("an answer to an older token does not undo a newer sign-in", async () => {
    auth.signIn("old");
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    mockFetch({ "GET /v1/stats": async () => (await gate, { status: 401, body: { code: 16, message: "invalid token" } }) });
    const pending = api.stats().catch(() => null);
    auth.signIn("new");
    release();
    await pending;
    expect(auth.get()).toEqual({ token: "new", required: false, reason: null });
  });

  it("checkToken sends the token it checks and leaves a 401 to the caller", async () => {
    const m = mockFetch({ "GET /v1/stats": () => ({ status: 401, body: { code: 16, message: "invalid token" } }) });
    const err = (await api.checkToken("guess").catch((e: unknown) => e)) as ApiError;
    expect(err.status).toBe(401);
    expect(m.calls[0].headers.get("authorization")).toBe("Bearer guess");
    expect(auth.get().required).toBe(false);
  });

  it("a 403 says what the token's role cannot do, with the broker's message", async () => {
    mockFetch({
      "POST /v1/dlq/abc:retry": () => ({ status: 403, body: { code: 7, message: "role producer may not call RetryDeadJob", details: [] } }),
      "POST /v1/jobs": () => ({ status: 403, body: { code: 7, message: "type: role worker may not enqueue", details: [] } }),
    });
    const err = (await api.retryDead("abc").catch((e: unknown) => e)) as ApiError;
    expect(err.status).toBe(403);
    expect(errorMessage(err)).toBe("your token's role cannot retry dead jobs: role producer may not call RetryDeadJob (PERMISSION_DENIED)");
    const enq = (await api.enqueue({ type: "email", payload: {} }).catch((e: unknown) => e)) as ApiError;
    expect(enq.field).toBe(null); // not a form field's fault, whatever the message starts with
    expect(errorMessage(enq)).toMatch(/^your token's role cannot enqueue jobs: /);
    expect(auth.get().required).toBe(false);
  });
});
