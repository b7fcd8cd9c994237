import { act, screen, within } from "@testing-library/react";
import { beforeEach, describe, expect, it } from "vitest";
import { FakeFeed, mockFetch, rawJob, rawStats } from "../test/fakes";
import { renderApp } from "../test/render";
import { Workers } from "./Workers";

describe("Workers", () => {
  beforeEach(() => FakeFeed.reset());

  it("shows each worker's types, broker, times, in-flight count and running jobs as links", async () => {
    const m = mockFetch({
      "GET /v1/jobs": ({ url }) =>
        url.searchParams.get("workerId") === "w-1"
          ? { body: { jobs: [rawJob({ id: "11111111-2222-3333-4444-555555555555", type: "report", status: "PROCESSING" })] } }
          : { body: {} },
    });
    renderApp(<Workers />, { route: "/workers" });
    await act(() =>
      FakeFeed.last.emit(rawStats({
        workers: [
          { workerId: "w-1", types: ["report"], inFlight: 1, maxInFlight: 8, connectedAt: "2026-01-01T00:00:00Z", lastSeen: "2026-01-01T00:01:00Z", brokerId: "b1" },
          { workerId: "w-2", inFlight: 0, maxInFlight: 4, brokerId: "b2" },
        ],
      })),
    );
    expect(screen.getByTestId("workers-count")).toHaveTextContent("2 connected");
    const one = screen.getByTestId("workers-page-table").querySelector('tr[data-worker-id="w-1"]') as HTMLElement;
    expect(one).toHaveTextContent("report");
    expect(one).toHaveTextContent("b1");
    expect(within(one).getByTestId("worker-inflight")).toHaveTextContent("1 / 8");
    const link = await within(one).findByRole("link", { name: "report · 11111111…5555" });
    expect(link).toHaveAttribute("href", "/jobs/11111111-2222-3333-4444-555555555555");
    const two = screen.getByTestId("workers-page-table").querySelector('tr[data-worker-id="w-2"]') as HTMLElement;
    expect(await within(two).findByText("none")).toBeInTheDocument();
    expect(within(two).getByText("all")).toBeInTheDocument();
    expect(m.calls.map((c) => c.path)).toContain("/v1/jobs?status=PROCESSING&workerId=w-1&pageSize=100");
  });

  it("says how to start a worker when none is connected", async () => {
    mockFetch({});
    renderApp(<Workers />, { route: "/workers" });
    await act(() => FakeFeed.last.emit(rawStats({ workers: [] })));
    expect(screen.getByTestId("workers-empty")).toHaveTextContent("workerd --broker");
  });
});
