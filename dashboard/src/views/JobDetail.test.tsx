import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it } from "vitest";
import { FakeFeed, mockFetch, rawJob } from "../test/fakes";
import { renderApp } from "../test/render";
import { JobDetail } from "./JobDetail";

const ID = "01a22590-1d5c-7098-b965-863f2ba7b9f0";

describe("JobDetail", () => {
  beforeEach(() => FakeFeed.reset());

  it("shows everything about a running job", async () => {
    mockFetch({
      [`GET /v1/jobs/${ID}`]: () => ({
        body: rawJob({
          status: "PROCESSING", attempts: 2, priority: 5, workerId: "worker-7", leaseExpiresAt: "2030-01-01T00:00:00Z",
          lastError: "RuntimeError: timeout", payload: { to: "x@example.com" },
        }),
      }),
    });
    renderApp(<JobDetail />, { route: `/jobs/${ID}`, path: "/jobs/:id" });
    expect(await screen.findByTestId("job-status")).toHaveTextContent("PROCESSING");
    expect(screen.getByTestId("job-attempts")).toHaveTextContent("2 of 4 (max retries 3)");
    expect(screen.getByTestId("job-priority")).toHaveTextContent("5");
    expect(screen.getByTestId("job-worker")).toHaveTextContent("worker-7");
    expect(screen.getByTestId("job-last-error")).toHaveTextContent("RuntimeError: timeout");
    expect(screen.getByTestId("job-payload")).toHaveTextContent('"to": "x@example.com"');
    expect(screen.getByTestId("job-result")).toHaveTextContent("No result yet");
  });

  it("shows the result of a completed job and offers no cancel", async () => {
    mockFetch({ [`GET /v1/jobs/${ID}`]: () => ({ body: rawJob({ status: "COMPLETED", result: { message_id: "m1" } }) }) });
    renderApp(<JobDetail />, { route: `/jobs/${ID}`, path: "/jobs/:id" });
    expect(await screen.findByTestId("job-result")).toHaveTextContent('"message_id": "m1"');
    expect(screen.queryByTestId("cancel-job")).not.toBeInTheDocument();
  });

  it("cancels after confirmation and shows the new state", async () => {
    const m = mockFetch({
      [`GET /v1/jobs/${ID}`]: () => ({ body: rawJob() }),
      [`POST /v1/jobs/${ID}:cancel`]: () => ({ body: rawJob({ status: "CANCELLED", lastError: "cancelled: not needed" }) }),
    });
    renderApp(<JobDetail />, { route: `/jobs/${ID}`, path: "/jobs/:id" });
    await userEvent.click(await screen.findByTestId("cancel-job"));
    await userEvent.type(screen.getByTestId("cancel-reason"), "not needed");
    await userEvent.click(screen.getByTestId("confirm-cancel"));
    await waitFor(() => expect(screen.getByTestId("job-status")).toHaveTextContent("CANCELLED"));
    expect(m.calls.find((c) => c.method === "POST")?.body).toEqual({ reason: "not needed" });
    expect(screen.queryByTestId("cancel-job")).not.toBeInTheDocument();
  });

  it("shows a refused cancel", async () => {
    mockFetch({
      [`GET /v1/jobs/${ID}`]: () => ({ body: rawJob() }),
      [`POST /v1/jobs/${ID}:cancel`]: () => ({ status: 400, body: { code: 9, message: "job is COMPLETED; only PENDING, PROCESSING or DEAD jobs can be cancelled" } }),
    });
    renderApp(<JobDetail />, { route: `/jobs/${ID}`, path: "/jobs/:id" });
    await userEvent.click(await screen.findByTestId("cancel-job"));
    await userEvent.click(screen.getByTestId("confirm-cancel"));
    const alert = await screen.findByText(/only PENDING, PROCESSING or DEAD jobs can be cancelled/);
    expect(alert.closest("[role=alert]")).toHaveTextContent("Cancel failed");
    expect(alert.closest("[role=alert]")).toHaveTextContent("FAILED_PRECONDITION");
  });

  it("says when the job does not exist", async () => {
    mockFetch({ [`GET /v1/jobs/${ID}`]: () => ({ status: 404, body: { code: 5, message: `job ${ID} not found` } }) });
    renderApp(<JobDetail />, { route: `/jobs/${ID}`, path: "/jobs/:id" });
    const alert = await screen.findByRole("alert");
    expect(within(alert).getByText(/Not found/)).toBeInTheDocument();
    expect(alert).toHaveTextContent(`job ${ID} not found`);
  });

  it("names the schedule that enqueued the job, linking to the Schedules page", async () => {
    mockFetch({
      [`GET /v1/jobs/${ID}`]: () => ({ body: rawJob({ schedule: "nightly:eu", idempotencyKey: "schedule:nightly:eu:2030-01-02T02:00:00Z" }) }),
    });
    renderApp(<JobDetail />, { route: `/jobs/${ID}`, path: "/jobs/:id" });
    const field = await screen.findByTestId("job-schedule");
    expect(field).toHaveTextContent("nightly:eu");
    expect(within(field).getByRole("link")).toHaveAttribute("href", "/schedules?name=nightly%3Aeu");
    expect(field.closest(".field-row")).toHaveTextContent(/^Schedule/);
  });

  it("shows no schedule for a job enqueued by hand", async () => {
    mockFetch({ [`GET /v1/jobs/${ID}`]: () => ({ body: rawJob() }) });
    renderApp(<JobDetail />, { route: `/jobs/${ID}`, path: "/jobs/:id" });
    await screen.findByTestId("job-status");
    expect(screen.queryByTestId("job-schedule")).not.toBeInTheDocument();
  });

  it("retries a dead job", async () => {
    mockFetch({
      [`GET /v1/jobs/${ID}`]: () => ({ body: rawJob({ status: "DEAD", attempts: 1, lastError: "boom" }) }),
      [`POST /v1/dlq/${ID}:retry`]: () => ({ body: rawJob({ status: "PENDING", attempts: 0, lastError: "boom" }) }),
    });
    renderApp(<JobDetail />, { route: `/jobs/${ID}`, path: "/jobs/:id" });
    await userEvent.click(await screen.findByTestId("retry-job"));
    await waitFor(() => expect(screen.getByTestId("job-status")).toHaveTextContent("PENDING"));
  });
});

describe("JobDetail attempt timeline", () => {
  beforeEach(() => FakeFeed.reset());

  it("shows each failed attempt with its worker, duration and error, and the attempt that succeeded", async () => {
    mockFetch({
      [`GET /v1/jobs/${ID}`]: () => ({
        body: rawJob({
          status: "COMPLETED", attempts: 3, workerId: "w-3", leasedAt: "2026-01-01T00:02:00Z", finishedAt: "2026-01-01T00:02:04Z",
          errors: [
            { attempt: 1, workerId: "w-1", startedAt: "2026-01-01T00:00:00Z", at: "2026-01-01T00:00:02.500Z", error: "ValueError: bad input\nTraceback (most recent call last):\n  File \"h.py\", line 3" },
            { attempt: 2, workerId: "w-2", startedAt: "2026-01-01T00:01:00Z", at: "2026-01-01T00:01:30Z", error: "lease expired: worker w-2 did not ack, nack or heartbeat in time" },
          ],
        }),
      }),
    });
    renderApp(<JobDetail />, { route: `/jobs/${ID}`, path: "/jobs/:id" });
    await screen.findByTestId("attempt-timeline");
    const rows = screen.getAllByTestId("attempt-row");
    expect(rows).toHaveLength(3);
    expect(rows[0]).toHaveTextContent("Attempt 1");
    expect(within(rows[0]).getByTestId("attempt-worker")).toHaveTextContent("w-1");
    expect(within(rows[0]).getByTestId("attempt-duration")).toHaveTextContent("took 2.50 s");
    const first = within(rows[0]).getByTestId("attempt-error");
    expect(first.querySelector(".error-text")).toHaveTextContent(/^ValueError: bad input$/);
    expect(first.querySelector("details pre")).toHaveTextContent('File "h.py", line 3');
    expect(within(rows[1]).getByTestId("attempt-duration")).toHaveTextContent("took 30.0 s");
    expect(rows[1].querySelector("details")).toBeNull();
    expect(rows[2]).toHaveTextContent("Attempt 3");
    expect(rows[2]).toHaveTextContent("succeeded");
    expect(within(rows[2]).getByTestId("attempt-worker")).toHaveTextContent("w-3");
    expect(within(rows[2]).getByTestId("attempt-duration")).toHaveTextContent(/took 4.00 s$/);
  });

  it("adds no row for a dead job's last attempt, which its last error already records", async () => {
    mockFetch({
      [`GET /v1/jobs/${ID}`]: () => ({
        body: rawJob({
          status: "DEAD", attempts: 1, maxRetries: 0, leasedAt: "2026-01-01T00:00:00Z", finishedAt: "2026-01-01T00:00:01Z",
          errors: [{ attempt: 1, workerId: "w-1", startedAt: "2026-01-01T00:00:00Z", at: "2026-01-01T00:00:01Z", error: "boom" }],
        }),
      }),
    });
    renderApp(<JobDetail />, { route: `/jobs/${ID}`, path: "/jobs/:id" });
    await screen.findByTestId("attempt-timeline");
    expect(screen.getAllByTestId("attempt-row")).toHaveLength(1);
  });

  it("says a job that never ran has no attempt", async () => {
    mockFetch({ [`GET /v1/jobs/${ID}`]: () => ({ body: rawJob() }) });
    renderApp(<JobDetail />, { route: `/jobs/${ID}`, path: "/jobs/:id" });
    expect(await screen.findByTestId("attempt-timeline")).toHaveTextContent("No attempt yet");
  });

  it("copies commands that enqueue the same job, quoting the payload for a shell", async () => {
    const user = userEvent.setup();
    mockFetch({ [`GET /v1/jobs/${ID}`]: () => ({ body: rawJob({ type: "email", priority: 5, maxRetries: 2, payload: { to: "o'neil@example.com" } }) }) });
    renderApp(<JobDetail />, { route: `/jobs/${ID}`, path: "/jobs/:id" });
    await user.click(await screen.findByTestId("copy-forge"));
    expect(await navigator.clipboard.readText()).toBe(
      `forge enqueue 'email' '{"to":"o'\\''neil@example.com"}' --priority 5 --max-retries 2`,
    );
    expect(screen.getByTestId("copy-forge")).toHaveTextContent("Copied");
    await user.click(screen.getByTestId("copy-curl"));
    const curl = await navigator.clipboard.readText();
    expect(curl).toContain(`'${window.location.origin}/v1/jobs'`);
    expect(curl).toContain(`-H "Authorization: Bearer $FORGE_TOKEN"`);
    expect(curl).toContain(`-d '{"type":"email","payload":{"to":"o'\\''neil@example.com"},"priority":5,"maxRetries":2}'`);
  });

  it("has no cancel or retry for a role that may only look", async () => {
    mockFetch({ [`GET /v1/jobs/${ID}`]: () => ({ body: rawJob({ status: "DEAD" }) }) }, { readOnly: true });
    renderApp(<JobDetail />, { route: `/jobs/${ID}`, path: "/jobs/:id" });
    expect(await screen.findByTestId("job-status")).toHaveTextContent("DEAD");
    await waitFor(() => expect(screen.queryByTestId("retry-job")).not.toBeInTheDocument());
    expect(screen.queryByTestId("cancel-job")).not.toBeInTheDocument();
  });
});
