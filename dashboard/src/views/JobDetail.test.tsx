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
