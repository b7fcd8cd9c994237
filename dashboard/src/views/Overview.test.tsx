import { act, screen, within } from "@testing-library/react";
import { beforeEach, describe, expect, it } from "vitest";
import { ConnectionIndicator } from "../components/ConnectionIndicator";
import { FakeFeed, mockFetch, rawStats } from "../test/fakes";
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
    mockFetch({ "GET /v1/stats": () => ({ status: 503, body: { code: 14, message: "broker unavailable" } }) });
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
    expect(screen.getByTestId("throughput-chart")).toHaveAttribute("aria-label", expect.stringContaining("13 attempts"));

    await act(() => FakeFeed.last.emit(rawStats({ completed: "41", pending: "11" })));
    expect(within(screen.getByTestId("count-completed")).getByText("41")).toBeInTheDocument();
    expect(within(screen.getByTestId("count-pending")).getByText("11")).toBeInTheDocument();

    // A paused type says so, on its link to the Queues page.
    await act(() => FakeFeed.last.emit(rawStats({ types: [{ type: "email", pending: "11", paused: true }] })));
    expect(within(screen.getByTestId("types-table")).getByTestId("queue-link")).toHaveTextContent("Paused");
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
