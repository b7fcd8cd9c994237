import { act, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it } from "vitest";
import { ConnectionIndicator } from "../components/ConnectionIndicator";
import { FakeFeed, mockFetch, rawStats, rawThroughput } from "../test/fakes";
import { renderApp } from "../test/render";
import { Overview } from "./Overview";

function Page() {
  return (
    <>
      <ConnectionIndicator />
      <Overview />
    </>
  );
}

describe("Overview", () => {
  beforeEach(() => FakeFeed.reset());

  it("shows counts, types, queue wait and workers from the live stream, and follows updates", async () => {
    mockFetch({
      "GET /v1/stats": () => ({ status: 503, body: { code: 14, message: "broker unavailable" } }),
      "GET /v1/stats/throughput": () => ({ body: rawThroughput() }),
    });
    renderApp(<Page />);
    expect(screen.getByTestId("connection")).toHaveAttribute("data-state", "connecting");
    await act(() => FakeFeed.last.emit({ result: rawStats() }));

    expect(screen.getByTestId("connection")).toHaveAttribute("data-state", "live");
    expect(screen.getByTestId("connection")).toHaveTextContent("Live");
    expect(within(screen.getByTestId("count-pending")).getByText("12")).toBeInTheDocument();
    expect(within(screen.getByTestId("count-scheduled")).getByText("3")).toBeInTheDocument();
    expect(within(screen.getByTestId("count-cancelled")).getByText("0")).toBeInTheDocument();
    const types = screen.getByTestId("types-table");
    expect(within(types).getByText("email")).toBeInTheDocument();
    expect(within(types).getByText("4.5s")).toBeInTheDocument();
    expect(within(types).getByTestId("queue-link")).toHaveAttribute("href", "/queues?type=email");
    expect(within(types).getByTestId("queue-link")).toHaveTextContent("queue");
    expect(within(screen.getByTestId("queue-wait")).getByText("250 ms")).toBeInTheDocument();
    const workers = screen.getByTestId("workers-table");
    expect(within(workers).getByText("w-1")).toBeInTheDocument();
    expect(within(workers).getByText("2 / 8")).toBeInTheDocument();
    expect(screen.getByTestId("minute-completed")).toHaveTextContent("7");

    await act(() => FakeFeed.last.emit(rawStats({ completed: "41", pending: "11" })));
    expect(within(screen.getByTestId("count-completed")).getByText("41")).toBeInTheDocument();
    expect(within(screen.getByTestId("count-pending")).getByText("11")).toBeInTheDocument();

    // A paused type says so, on its link to the Queues page.
    await act(() => FakeFeed.last.emit(rawStats({ types: [{ type: "email", pending: "11", paused: true }] })));
    expect(within(screen.getByTestId("types-table")).getByTestId("queue-link")).toHaveTextContent("Paused");
  });

  it("charts the last hour per type: completed stacked, failures, queue wait p50/p99", async () => {
    const m = mockFetch({ "GET /v1/stats/throughput": () => ({ body: rawThroughput() }) });
    renderApp(<Page />);
    await act(() => FakeFeed.last.emit(rawStats()));
    expect(await screen.findByTestId("chart-throughput")).toHaveAttribute("data-total", "14");
    expect(screen.getByTestId("chart-throughput")).toHaveAttribute("aria-label", "14 completed attempts over the last 2 minutes");
    expect(screen.getByTestId("chart-failures")).toHaveAttribute("data-total", "4");
    expect(screen.getByTestId("chart-queue-wait")).toHaveAttribute("data-total", "15");
    expect(m.calls.find((c) => c.path.startsWith("/v1/stats/throughput"))?.path).toBe("/v1/stats/throughput?window=3600s");
  });

  it("shows why the last hour cannot be charted", async () => {
    mockFetch({ "GET /v1/stats/throughput": () => ({ status: 403, body: { code: 7, message: "role worker may not call GetThroughput" } }) });
    renderApp(<Page />);
    await act(() => FakeFeed.last.emit(rawStats()));
    expect((await screen.findAllByText(/Cannot load the last hour/))[0].closest("[role=alert]")).toHaveTextContent(
      "your token's role cannot view the queue's stats: role worker may not call GetThroughput (PERMISSION_DENIED)",
    );
  });

  it("opens the pending jobs whose run_at is later than the click, soonest first, from the Scheduled card", async () => {
    mockFetch({});
    renderApp(<Page />);
    await act(() => FakeFeed.last.emit(rawStats()));
    const before = Date.now();
    await userEvent.click(screen.getByTestId("count-scheduled"));
    const location = new URL(screen.getByTestId("location").textContent ?? "", "http://x");
    expect(location.pathname).toBe("/jobs");
    expect(location.searchParams.get("status")).toBe("PENDING");
    expect(location.searchParams.get("order")).toBe("RUN_AT");
    const runAfter = Date.parse(location.searchParams.get("runAfter") ?? "");
    expect(runAfter).toBeGreaterThanOrEqual(before);
    expect(runAfter).toBeLessThanOrEqual(Date.now());
  });

  it("says so when the stream drops, and falls back to polling /v1/stats", async () => {
    const m = mockFetch({ "GET /v1/stats": () => ({ body: rawStats({ completed: "99" }) }) });
    renderApp(<Page />);
    await act(() => FakeFeed.last.emit(rawStats()));
    await act(() => FakeFeed.last.fail());
    expect(screen.getByTestId("connection")).toHaveAttribute("data-state", "reconnecting");
    expect(screen.getByTestId("connection")).toHaveTextContent("Reconnecting…");
    expect(await within(screen.getByTestId("count-completed")).findByText("99")).toBeInTheDocument();
    expect(m.calls.some((c) => c.path === "/v1/stats")).toBe(true);
    // The stream is reopened on its own and takes over again.
    await act(() => new Promise((r) => setTimeout(r, 80)));
    expect(FakeFeed.instances.length).toBeGreaterThan(1);
    await act(() => FakeFeed.last.emit(rawStats({ completed: "100" })));
    expect(screen.getByTestId("connection")).toHaveAttribute("data-state", "live");
    expect(within(screen.getByTestId("count-completed")).getByText("100")).toBeInTheDocument();
  });

  it("shows why stats cannot be loaded at all", async () => {
    mockFetch({ "GET /v1/stats": () => ({ status: 503, body: { code: 14, message: "broker unavailable: connection refused" } }) });
    renderApp(<Page />);
    await act(() => FakeFeed.last.fail());
    expect(await screen.findByText(/Cannot load stats: broker unavailable: connection refused/)).toBeInTheDocument();
  });

  it("shows empty states", async () => {
    mockFetch({});
    renderApp(<Page />);
    await act(() => FakeFeed.last.emit({}));
    expect(screen.getByText(/No jobs yet/)).toBeInTheDocument();
    expect(screen.getByText(/No worker has a lease stream open/)).toBeInTheDocument();
  });
});
