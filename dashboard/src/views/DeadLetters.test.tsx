import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it } from "vitest";
import { FakeFeed, mockFetch, rawJob } from "../test/fakes";
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

describe("DeadLetters, every dead job matching", () => {
  beforeEach(() => FakeFeed.reset());

  /** A DLQ of `n` dead email jobs, listed 2 a page, that the bulk calls (unless dry) empty. */
  function serveType(n: number) {
    let left = n;
    const bulk = ({ body }: { body: unknown }) => {
      const count = String(left);
      if (!(body as { dryRun?: boolean }).dryRun) left = 0;
      return { body: { count } };
    };
    return mockFetch({
      "GET /v1/dlq": () => ({ body: { jobs: left > 0 ? [dead("a"), dead("b")] : [], nextPageToken: left > 2 ? "next" : "" } }),
      "POST /v1/dlq:retry": bulk,
      "POST /v1/dlq:purge": bulk,
    });
  }

  it("retries every dead job of the filtered type, on every page, after a confirmation with the dry run's count", async () => {
    const m = serveType(120);
    renderApp(<DeadLetters />, { route: "/dlq?type=email" });
    await screen.findByTestId("dlq-table");
    await userEvent.click(screen.getByTestId("retry-matching"));
    expect(await screen.findByTestId("retry-matching-question")).toHaveTextContent("Retry all 120 dead jobs of type email?");
    await userEvent.click(screen.getByTestId("retry-matching-yes"));
    expect(await screen.findByTestId("retry-matching-outcome")).toHaveTextContent("120 jobs sent back to PENDING.");
    expect(m.calls.filter((c) => c.path === "/v1/dlq:retry").map((c) => c.body)).toEqual([
      { filter: { type: "email" }, dryRun: true },
      { filter: { type: "email" } },
    ]);
    expect(await screen.findByTestId("dlq-empty")).toHaveTextContent("The dead-letter queue is empty for type email.");
  });

  it("purges the whole queue without a type, sending the API's `all`", async () => {
    const m = serveType(2);
    renderApp(<DeadLetters />, { route: "/dlq" });
    await screen.findByTestId("dlq-table");
    await userEvent.click(screen.getByTestId("purge-matching"));
    expect(await screen.findByTestId("purge-matching-question")).toHaveTextContent("Delete all 2 dead jobs? This cannot be undone.");
    await userEvent.click(screen.getByTestId("purge-matching-yes"));
    expect(await screen.findByTestId("purge-matching-outcome")).toHaveTextContent("2 jobs deleted.");
    expect(m.calls.filter((c) => c.path === "/v1/dlq:purge").map((c) => c.body)).toEqual([
      { filter: {}, dryRun: true, all: true },
      { filter: {}, all: true },
    ]);
  });

  it("retries the whole queue without a type, with no `all` (the retry call has none)", async () => {
    const m = serveType(2);
    renderApp(<DeadLetters />, { route: "/dlq" });
    await screen.findByTestId("dlq-table");
    await userEvent.click(screen.getByTestId("retry-matching"));
    expect(await screen.findByTestId("retry-matching-question")).toHaveTextContent("Retry all 2 dead jobs?");
    await userEvent.click(screen.getByTestId("retry-matching-yes"));
    expect(await screen.findByTestId("retry-matching-outcome")).toHaveTextContent("2 jobs sent back to PENDING.");
    expect(m.calls.filter((c) => c.path === "/v1/dlq:retry").map((c) => c.body)).toEqual([{ filter: {}, dryRun: true }, { filter: {} }]);
  });

  it("keeps the jobs when the question is declined", async () => {
    const m = serveType(3);
    renderApp(<DeadLetters />, { route: "/dlq?type=email" });
    await screen.findByTestId("dlq-table");
    await userEvent.click(screen.getByTestId("purge-matching"));
    await userEvent.click(await screen.findByTestId("purge-matching-no"));
    expect(m.calls.filter((c) => c.method === "POST").map((c) => c.body)).toEqual([{ filter: { type: "email" }, dryRun: true }]);
    expect(screen.getByTestId("purge-matching")).toBeEnabled();
  });

  it("shows a refusal by the call's name", async () => {
    mockFetch({
      "GET /v1/dlq": () => ({ body: { jobs: [dead("a")] } }),
      "POST /v1/dlq:retry": () => ({ status: 403, body: { code: 7, message: "role producer may not call RetryDeadJobs", details: [] } }),
    });
    renderApp(<DeadLetters />, { route: "/dlq?type=email" });
    await screen.findByTestId("dlq-table");
    await userEvent.click(screen.getByTestId("retry-matching"));
    expect(await screen.findByTestId("retry-matching-error")).toHaveTextContent(
      "your token's role cannot retry dead jobs: role producer may not call RetryDeadJobs (PERMISSION_DENIED)",
    );
  });

  it("offers no retry or purge to a role that may not change jobs", async () => {
    mockFetch({ "GET /v1/dlq": () => ({ body: { jobs: [dead("a")] } }) }, { readOnly: true });
    renderApp(<DeadLetters />, { route: "/dlq" });
    await screen.findByTestId("dlq-table");
    await waitFor(() => expect(screen.queryByTestId("bulk-bar")).not.toBeInTheDocument());
    expect(screen.queryByTestId("retry-one")).not.toBeInTheDocument();
    expect(screen.queryByTestId("retry-selected")).not.toBeInTheDocument();
  });
});
