import { act, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it } from "vitest";
import { FakeFeed, mockFetch, rawJob, rawStats } from "../test/fakes";
import { renderApp } from "../test/render";
import { DeadLetters } from "./DeadLetters";

function dead(id: string, err = `boom ${id}`) {
  return rawJob({ id, status: "DEAD", attempts: 1, maxRetries: 0, lastError: err, updatedAt: "2026-01-01T00:00:00Z" });
}

describe("DeadLetters", () => {
  beforeEach(() => FakeFeed.reset());

  function serve(ids: string[], refuse: string[] = []) {
    let current = [...ids];
    return mockFetch({
      "GET /v1/dlq": () => ({ body: { jobs: current.map((id) => dead(id)) } }),
      ...Object.fromEntries(
        ids.map((id) => [
          `POST /v1/dlq/${id}:retry`,
          () => {
            if (refuse.includes(id)) return { status: 400, body: { code: 9, message: `job ${id} is PENDING, not DEAD` } };
            current = current.filter((x) => x !== id);
            return { body: rawJob({ id, status: "PENDING", updatedAt: "2026-01-01T00:05:00Z" }) };
          },
        ]),
      ),
    });
  }

  it("lists dead jobs with their errors", async () => {
    serve(["a", "b"]);
    renderApp(<DeadLetters />, { route: "/dlq" });
    const table = await screen.findByTestId("dlq-table");
    expect(within(table).getByText("boom a")).toBeInTheDocument();
    expect(within(table).getByText("boom b")).toBeInTheDocument();
  });

  it("retries one job, which leaves the list", async () => {
    const m = serve(["a", "b"]);
    renderApp(<DeadLetters />, { route: "/dlq" });
    const row = (await screen.findByText("boom a")).closest("tr")!;
    await userEvent.click(within(row as HTMLElement).getByTestId("retry-one"));
    await waitFor(() => expect(screen.queryByText("boom a")).not.toBeInTheDocument());
    expect(screen.getByText("boom b")).toBeInTheDocument();
    expect(screen.getByTestId("dlq-outcome")).toHaveTextContent("1 job sent back to PENDING.");
    expect(m.calls.filter((c) => c.method === "POST").map((c) => c.path)).toEqual(["/v1/dlq/a:retry"]);
  });

  it("retries the selected jobs", async () => {
    const m = serve(["a", "b", "c"]);
    renderApp(<DeadLetters />, { route: "/dlq" });
    await screen.findByTestId("dlq-table");
    expect(screen.getByTestId("retry-selected")).toBeDisabled();
    await userEvent.click(screen.getByLabelText("Select a"));
    await userEvent.click(screen.getByLabelText("Select c"));
    expect(screen.getByTestId("retry-selected")).toHaveTextContent("Retry selected (2)");
    await userEvent.click(screen.getByTestId("retry-selected"));
    await waitFor(() => expect(screen.queryByText("boom a")).not.toBeInTheDocument());
    expect(screen.queryByText("boom c")).not.toBeInTheDocument();
    expect(screen.getByText("boom b")).toBeInTheDocument();
    expect(screen.getByTestId("dlq-outcome")).toHaveTextContent("2 jobs sent back to PENDING.");
    expect(screen.getByTestId("retry-selected")).toHaveTextContent("Retry selected (0)");
    expect(m.calls.filter((c) => c.method === "POST").map((c) => c.path).sort()).toEqual(["/v1/dlq/a:retry", "/v1/dlq/c:retry"]);
  });

  it("selects all, and keeps a refused job in the list with its error", async () => {
    serve(["a", "b"], ["b"]);
    renderApp(<DeadLetters />, { route: "/dlq" });
    await screen.findByTestId("dlq-table");
    await userEvent.click(screen.getByTestId("select-all"));
    await userEvent.click(screen.getByTestId("retry-selected"));
    expect(await screen.findByTestId("dlq-outcome")).toHaveTextContent("1 retried, 1 failed: job b is PENDING, not DEAD (FAILED_PRECONDITION)");
    expect(screen.queryByText("boom a")).not.toBeInTheDocument();
    const row = screen.getByText("boom b").closest("tr")!;
    expect(row).toHaveTextContent("Retry failed: job b is PENDING, not DEAD");
  });

  it("shows a job again when it comes back to the queue after the retry", async () => {
    let jobs = [dead("a")];
    mockFetch({
      "GET /v1/dlq": () => ({ body: { jobs } }),
      "POST /v1/dlq/a:retry": () => {
        // It fails again at once and is back, newer than the retry.
        jobs = [{ ...dead("a", "boom again"), updatedAt: "2026-01-01T00:06:00Z" }];
        return { body: rawJob({ id: "a", status: "PENDING", updatedAt: "2026-01-01T00:05:00Z" }) };
      },
    });
    renderApp(<DeadLetters />, { route: "/dlq" });
    await userEvent.click(await screen.findByTestId("retry-one"));
    expect(await screen.findByText("boom again")).toBeInTheDocument();
  });

  it("says when the queue is empty, and shows list errors", async () => {
    mockFetch({ "GET /v1/dlq": () => ({ body: {} }) });
    renderApp(<DeadLetters />, { route: "/dlq" });
    expect(await screen.findByTestId("dlq-empty")).toHaveTextContent("The dead-letter queue is empty.");
  });

  it("shows a failed listing", async () => {
    mockFetch({ "GET /v1/dlq": () => ({ status: 503, body: { code: 14, message: "broker unavailable: connection refused" } }) });
    renderApp(<DeadLetters />, { route: "/dlq" });
    expect(await screen.findByText(/broker unavailable: connection refused/)).toBeInTheDocument();
  });
});

describe("DeadLetters, all of one type", () => {
  beforeEach(() => FakeFeed.reset());

  /** A DLQ of `n` dead email jobs, listed 2 a page, that the bulk calls empty. */
  function serveType(n: number, bulk: { status?: number; body?: unknown } | null = null) {
    let left = n;
    return mockFetch({
      "GET /v1/dlq": () => ({ body: { jobs: left > 0 ? [dead("a"), dead("b")] : [], nextPageToken: left > 2 ? "next" : "" } }),
      "POST /v1/dlq:retry": () => bulk ?? ((left = 0), { body: { count: String(n) } }),
      "POST /v1/dlq:purge": () => bulk ?? ((left = 0), { body: { count: String(n) } }),
    });
  }

  it("offers nothing for the whole queue, only for a type chosen in the filter", async () => {
    serveType(5);
    renderApp(<DeadLetters />, { route: "/dlq" });
    await screen.findByTestId("dlq-table");
    expect(screen.queryByTestId("retry-type")).not.toBeInTheDocument();
    expect(screen.queryByTestId("purge-type")).not.toBeInTheDocument();
  });

  it("retries every dead job of the type after a confirmation stating the type's dead count, and says how many went", async () => {
    const m = serveType(120);
    renderApp(<DeadLetters />, { route: "/dlq?type=email" });
    await screen.findByTestId("dlq-table");
    await act(() => FakeFeed.last.emit(rawStats({ types: [{ type: "email", dead: "120" }, { type: "sms", dead: "3" }] })));
    await userEvent.click(screen.getByTestId("retry-type"));
    expect(screen.getByRole("group")).toHaveTextContent("Retry all 120 dead jobs of type email?");
    await userEvent.click(screen.getByTestId("retry-type-yes"));
    expect(await screen.findByTestId("dlq-outcome")).toHaveTextContent("120 jobs of type email sent back to PENDING.");
    expect(m.calls.find((c) => c.path === "/v1/dlq:retry")?.body).toEqual({ filter: { type: "email" } });
    expect(await screen.findByTestId("dlq-empty")).toHaveTextContent("The dead-letter queue is empty for type email.");
  });

  it("counts from the list when the stats are not in yet and it has one page", async () => {
    const m = mockFetch({
      "GET /v1/dlq": () => ({ body: { jobs: [dead("a"), dead("b")] } }),
      "POST /v1/dlq:purge": () => ({ body: { count: "2" } }),
    });
    renderApp(<DeadLetters />, { route: "/dlq?type=email" });
    await screen.findByTestId("dlq-table");
    await userEvent.click(screen.getByTestId("purge-type"));
    expect(screen.getByRole("group")).toHaveTextContent("Delete all 2 dead jobs of type email? This cannot be undone.");
    await userEvent.click(screen.getByTestId("purge-type-yes"));
    expect(await screen.findByTestId("dlq-outcome")).toHaveTextContent("2 jobs of type email deleted.");
    expect(m.calls.find((c) => c.path === "/v1/dlq:purge")?.body).toEqual({ filter: { type: "email" } });
  });

  it("keeps the jobs when the question is declined", async () => {
    const m = serveType(3);
    renderApp(<DeadLetters />, { route: "/dlq?type=email" });
    await screen.findByTestId("dlq-table");
    await userEvent.click(screen.getByTestId("purge-type"));
    await userEvent.click(screen.getByTestId("purge-type-no"));
    expect(m.calls.some((c) => c.method === "POST")).toBe(false);
    expect(screen.getByTestId("purge-type")).toBeEnabled();
  });

  it("turns read-only when the token's role may not change the dead-letter queue, and says so", async () => {
    serveType(3, { status: 403, body: { code: 7, message: "role producer may not call RetryDeadJobs", details: [] } });
    renderApp(<DeadLetters />, { route: "/dlq?type=email" });
    await screen.findByTestId("dlq-table");
    await userEvent.click(screen.getByTestId("retry-type"));
    await userEvent.click(screen.getByTestId("retry-type-yes"));
    const banner = await screen.findByText(/^Read-only/);
    expect(banner.closest("[role=alert]")).toHaveTextContent(
      "your token's role cannot retry dead jobs: role producer may not call RetryDeadJobs (PERMISSION_DENIED)",
    );
    expect(screen.getByTestId("retry-type")).toBeDisabled();
    expect(screen.getByTestId("purge-type")).toBeDisabled();
    expect(screen.queryByTestId("dlq-outcome")).not.toBeInTheDocument();
  });
});
