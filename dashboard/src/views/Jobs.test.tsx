import { act, fireEvent, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it } from "vitest";
import { FakeFeed, mockFetch, rawJob, rawStats } from "../test/fakes";
import { renderApp } from "../test/render";
import { Jobs } from "./Jobs";

const ID = "01a22590-1d5c-7098-b965-863f2ba7b9f0";

/** The GET /v1/jobs calls' query strings, in order. */
function listed(m: ReturnType<typeof mockFetch>): string[] {
  return m.calls.filter((c) => c.method === "GET" && c.path.startsWith("/v1/jobs?")).map((c) => c.path.slice("/v1/jobs".length));
}

describe("Jobs", () => {
  beforeEach(() => FakeFeed.reset());

  it("pages with nextPageToken, and a status tab starts again at page 1", async () => {
    const m = mockFetch({
      "GET /v1/jobs": ({ url }) => {
        const token = url.searchParams.get("pageToken");
        if (!token) return { body: { jobs: [rawJob({ id: "j1" }), rawJob({ id: "j2", status: "DEAD" })], nextPageToken: "p2" } };
        return { body: { jobs: [rawJob({ id: "j3" })] } };
      },
    });
    renderApp(<Jobs />, { route: "/jobs" });
    const table = await screen.findByTestId("jobs-table");
    expect(within(table).getByText("j1").closest("a")).toHaveAttribute("href", "/jobs/j1");

    await userEvent.click(screen.getByTestId("next-page"));
    expect(await screen.findByText("j3")).toBeInTheDocument();
    expect(screen.getByTestId("page-number")).toHaveTextContent("Page 2");
    expect(screen.getByTestId("next-page")).toBeDisabled();
    expect(listed(m).at(-1)).toBe("?pageSize=50&pageToken=p2");

    await userEvent.click(screen.getByTestId("tab-DEAD"));
    await waitFor(() => expect(listed(m).at(-1)).toBe("?status=DEAD&pageSize=50"));
    expect(screen.getByTestId("location")).toHaveTextContent("/jobs?status=DEAD");
    expect(screen.getByTestId("page-number")).toHaveTextContent("Page 1");
    expect(screen.getByTestId("tab-DEAD")).toHaveAttribute("aria-selected", "true");
  });

  it("sends every filter of the address: type prefix, search, created range, run after, order, worker", async () => {
    const m = mockFetch({ "GET /v1/jobs": () => ({ body: {} }) });
    renderApp(<Jobs />, {
      route: "/jobs?status=PENDING&type=email.*&q=order-42&createdAfter=2026-12-01T00:00:00.000Z&createdBefore=2026-12-02T00:00:00.000Z&runAfter=2026-12-03T00:00:00.000Z&order=RUN_AT&workerId=w-1",
    });
    expect(await screen.findByTestId("jobs-empty")).toHaveTextContent("No jobs in PENDING of type email.* matching order-42.");
    const sent = new URLSearchParams(listed(m)[0]);
    expect(Object.fromEntries(sent)).toEqual({
      status: "PENDING", typePrefix: "email.", query: "order-42", createdAfter: "2026-12-01T00:00:00.000Z",
      createdBefore: "2026-12-02T00:00:00.000Z", runAfter: "2026-12-03T00:00:00.000Z", workerId: "w-1", order: "RUN_AT", pageSize: "50",
    });
    expect(screen.getByTestId("filter-order")).toHaveValue("RUN_AT");
    expect(screen.getByTestId("worker-filter")).toHaveTextContent("Leased to worker w-1");
    // What the overview's Scheduled card opens: the pending jobs whose run_at is later.
    expect(screen.getByTestId("run-after-filter")).toHaveTextContent("Scheduled jobs: run at later than");
    expect(screen.queryByText(/runnable now/)).toBeNull();
  });

  it("changes the order and the type from the form", async () => {
    const m = mockFetch({ "GET /v1/jobs": () => ({ body: {} }) });
    renderApp(<Jobs />, { route: "/jobs?status=DEAD" });
    await screen.findByTestId("jobs-empty");
    fireEvent.change(screen.getByTestId("filter-order"), { target: { value: "PRIORITY" } });
    await waitFor(() => expect(listed(m).at(-1)).toBe("?status=DEAD&order=PRIORITY&pageSize=50"));
    fireEvent.change(screen.getByTestId("filter-type"), { target: { value: "email" } });
    await waitFor(() => expect(listed(m).at(-1)).toBe("?status=DEAD&type=email&order=PRIORITY&pageSize=50"));
    expect(screen.getByTestId("location")).toHaveTextContent("/jobs?status=DEAD&order=PRIORITY&type=email");
  });

  it("offers the run at and priority sorts only on the tabs of one status other than Completed", async () => {
    mockFetch({ "GET /v1/jobs": () => ({ body: {} }) });
    renderApp(<Jobs />, { route: "/jobs" });
    await screen.findByTestId("jobs-empty");
    const offered = () => [...screen.getByTestId("filter-order").querySelectorAll("option")].map((o) => o.getAttribute("value"));
    expect(offered()).toEqual(["NEWEST", "OLDEST"]);
    for (const tab of ["PENDING", "PROCESSING", "DEAD", "CANCELLED"]) {
      await userEvent.click(screen.getByTestId(`tab-${tab}`));
      await waitFor(() => expect(offered()).toEqual(["NEWEST", "OLDEST", "RUN_AT", "PRIORITY"]));
    }
    await userEvent.click(screen.getByTestId("tab-COMPLETED"));
    await waitFor(() => expect(offered()).toEqual(["NEWEST", "OLDEST"]));
  });

  it("falls back to newest first on a tab that cannot sort by run at or priority", async () => {
    const m = mockFetch({ "GET /v1/jobs": () => ({ body: {} }) });
    renderApp(<Jobs />, { route: "/jobs?status=PENDING&order=RUN_AT" });
    await screen.findByTestId("jobs-empty");
    expect(screen.getByTestId("filter-order")).toHaveValue("RUN_AT");
    for (const tab of ["COMPLETED", "ALL"]) {
      await userEvent.click(screen.getByTestId("tab-PENDING"));
      fireEvent.change(screen.getByTestId("filter-order"), { target: { value: "PRIORITY" } });
      await waitFor(() => expect(screen.getByTestId("location")).toHaveTextContent("order=PRIORITY"));
      await userEvent.click(screen.getByTestId(`tab-${tab}`));
      await waitFor(() => expect(screen.getByTestId("filter-order")).toHaveValue("NEWEST"));
      expect(screen.getByTestId("location")).not.toHaveTextContent("order=");
      expect(listed(m).at(-1)).not.toContain("order=");
    }
    // An address that names one anyway (an old link) lists newest first too.
    await userEvent.click(screen.getByTestId("tab-PENDING"));
    expect(listed(m).at(-1)).toBe("?status=PENDING&pageSize=50");
  });

  it("counts each status tab from the live stats, of the chosen type, and suggests the known types", async () => {
    mockFetch({ "GET /v1/jobs": () => ({ body: {} }) });
    const { container } = renderApp(<Jobs />, { route: "/jobs?type=email" });
    await act(() =>
      FakeFeed.last.emit(rawStats({
        types: [
          { type: "email", pending: "2", scheduled: "3", processing: "1", dead: "4" },
          { type: "report", pending: "100" },
        ],
      })),
    );
    const count = (tab: string) => within(screen.getByTestId(`tab-${tab}`)).getByTestId("tab-count").textContent;
    expect(count("PENDING")).toBe("5"); // the scheduled ones are PENDING too
    expect(count("PROCESSING")).toBe("1");
    expect(count("DEAD")).toBe("4");
    expect(count("ALL")).toBe("10");
    expect([...container.querySelectorAll("#job-types option")].map((o) => o.getAttribute("value"))).toEqual(["email", "report"]);
  });

  it("opens the job a searched id names", async () => {
    mockFetch({
      "GET /v1/jobs": () => ({ body: {} }),
      [`GET /v1/jobs/${ID}`]: () => ({ body: rawJob({ id: ID }) }),
    });
    renderApp(<Jobs />, { route: "/jobs" });
    await userEvent.type(screen.getByTestId("job-search"), `${ID}{Enter}`);
    await waitFor(() => expect(screen.getByTestId("location")).toHaveTextContent(`/jobs/${ID}`));
  });

  it("searches anything else, or an id no job has, as a key", async () => {
    const m = mockFetch({ "GET /v1/jobs": () => ({ body: {} }) });
    renderApp(<Jobs />, { route: "/jobs" });
    await userEvent.type(screen.getByTestId("job-search"), "order-42{Enter}");
    await waitFor(() => expect(listed(m).at(-1)).toBe("?query=order-42&pageSize=50"));
    await userEvent.clear(screen.getByTestId("job-search"));
    await userEvent.type(screen.getByTestId("job-search"), `${ID}{Enter}`);
    await waitFor(() => expect(listed(m).at(-1)).toBe(`?query=${ID}&pageSize=50`));
    expect(m.calls.some((c) => c.path === `/v1/jobs/${ID}`)).toBe(true);
  });

  it("cancels every job matching the filter after a confirmation stating the dry run's count", async () => {
    let cancelled = false;
    const m = mockFetch({
      "GET /v1/jobs": () => ({ body: cancelled ? {} : { jobs: [rawJob()], nextPageToken: "p2" } }),
      "POST /v1/jobs:cancel": ({ body }) => {
        if ((body as { dryRun?: boolean }).dryRun) return { body: { count: "120" } };
        cancelled = true;
        return { body: { count: "118" } };
      },
    });
    renderApp(<Jobs />, { route: "/jobs?status=PENDING&type=email" });
    await screen.findByTestId("jobs-table");
    await userEvent.click(screen.getByTestId("cancel-matching"));
    expect(await screen.findByTestId("cancel-matching-question")).toHaveTextContent("Cancel all 120 PENDING jobs of type email?");
    await userEvent.click(screen.getByTestId("cancel-matching-yes"));
    expect(await screen.findByTestId("cancel-matching-outcome")).toHaveTextContent("118 jobs cancelled.");
    expect(m.calls.filter((c) => c.method === "POST").map((c) => c.body)).toEqual([
      { filter: { type: "email", status: "PENDING" }, dryRun: true },
      { filter: { type: "email", status: "PENDING" } },
    ]);
    expect(await screen.findByTestId("jobs-empty")).toBeInTheDocument();
  });

  it("asks the API's consent word `all` for an empty filter, and says when nothing matches", async () => {
    const m = mockFetch({
      "GET /v1/jobs": () => ({ body: {} }),
      "POST /v1/jobs:cancel": () => ({ body: {} }),
    });
    renderApp(<Jobs />, { route: "/jobs" });
    await userEvent.click(await screen.findByTestId("cancel-matching"));
    expect(await screen.findByTestId("cancel-matching-question")).toHaveTextContent("No job matches: nothing to do.");
    expect(m.calls.at(-1)?.body).toEqual({ filter: {}, dryRun: true, all: true });
  });

  it("retries or purges every matching dead job from the Dead tab; finished tabs offer nothing", async () => {
    const m = mockFetch({
      "GET /v1/jobs": () => ({ body: {} }),
      "POST /v1/dlq:purge": () => ({ body: { count: "7" } }),
    });
    renderApp(<Jobs />, { route: "/jobs?status=DEAD&type=email.*" });
    await userEvent.click(await screen.findByTestId("purge-matching"));
    expect(await screen.findByTestId("purge-matching-question")).toHaveTextContent(
      "Delete all 7 dead jobs of a type starting email.? This cannot be undone.",
    );
    expect(m.calls.at(-1)?.body).toEqual({ filter: { typePrefix: "email.", status: "DEAD" }, dryRun: true });
    expect(screen.getByTestId("retry-matching")).toBeInTheDocument();
    expect(screen.queryByTestId("cancel-matching")).not.toBeInTheDocument();

    await userEvent.click(screen.getByTestId("tab-COMPLETED"));
    await waitFor(() => expect(screen.queryByTestId("bulk-bar")).not.toBeInTheDocument());
  });

  it("offers no bulk action to a role that may not change jobs, but lists them", async () => {
    mockFetch({ "GET /v1/jobs": () => ({ body: { jobs: [rawJob()] } }) }, { readOnly: true });
    renderApp(<Jobs />, { route: "/jobs" });
    await screen.findByTestId("jobs-table");
    await waitFor(() => expect(screen.queryByTestId("bulk-bar")).not.toBeInTheDocument());
  });

  it("shows the API's error", async () => {
    mockFetch({ "GET /v1/jobs": () => ({ status: 400, body: { code: 3, message: "page_token: not a token returned by a previous page" } }) });
    renderApp(<Jobs />, { route: "/jobs" });
    expect(await screen.findByText(/page_token: not a token returned by a previous page/)).toBeInTheDocument();
  });
});
