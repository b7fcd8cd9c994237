import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { act, render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { MemoryRouter } from "react-router-dom";
import { App } from "./App";
import { StatsProvider } from "./hooks/stats";
import { THEME_KEY } from "./hooks/useTheme";
import { FakeFeed, mockFetch, rawStats } from "./test/fakes";

const opts = { fetchImpl: FakeFeed.fetch, backoffMs: [50] };

function renderWhole(route = "/") {
  return render(
    <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false } } })}>
      <StatsProvider streamOptions={opts}>
        <MemoryRouter initialEntries={[route]}>
          <App />
        </MemoryRouter>
      </StatsProvider>
    </QueryClientProvider>,
  );
}

function prefersDark(dark: boolean) {
  vi.spyOn(window, "matchMedia").mockImplementation(
    (q: string) =>
      ({ matches: dark && q.includes("dark"), media: q, addEventListener: () => {}, removeEventListener: () => {} }) as unknown as MediaQueryList,
  );
}

describe("App", () => {
  beforeEach(() => {
    FakeFeed.reset();
    mockFetch({ "GET /v1/stats": () => ({ body: rawStats() }), "GET /v1/jobs": () => ({ body: {} }), "GET /v1/dlq": () => ({ body: {} }), "GET /v1/schedules": () => ({ body: {} }) });
  });

  it("defaults to the system's color scheme", () => {
    prefersDark(true);
    renderWhole();
    expect(document.documentElement.dataset.theme).toBe("dark");
  });

  it("toggles the theme and remembers the choice", async () => {
    prefersDark(false);
    renderWhole();
    expect(document.documentElement.dataset.theme).toBe("light");
    await userEvent.click(screen.getByTestId("theme-toggle"));
    expect(document.documentElement.dataset.theme).toBe("dark");
    expect(localStorage.getItem(THEME_KEY)).toBe("dark");
    await userEvent.click(screen.getByTestId("theme-toggle"));
    expect(localStorage.getItem(THEME_KEY)).toBe("light");
  });

  it("uses the remembered theme over the system's", () => {
    prefersDark(true);
    localStorage.setItem(THEME_KEY, "light");
    renderWhole();
    expect(document.documentElement.dataset.theme).toBe("light");
  });

  // The whole app, charts included, on a shared machine: a generous bound.
  it("navigates between views and badges the dead-letter count", { timeout: 20_000 }, async () => {
    renderWhole();
    await act(() => FakeFeed.last.emit(rawStats({ dead: "4" })));
    expect(screen.getByTestId("nav-dead-count")).toHaveTextContent("4");
    await userEvent.click(screen.getByRole("link", { name: /Dead letters/ }));
    expect(await screen.findByRole("heading", { name: "Dead-letter queue" })).toBeInTheDocument();
    await userEvent.click(screen.getByRole("link", { name: "Schedules" }));
    expect(await screen.findByRole("heading", { name: "Schedules" })).toBeInTheDocument();
    await userEvent.click(screen.getByRole("link", { name: "Enqueue" }));
    expect(screen.getByRole("heading", { name: "Enqueue a job" })).toBeInTheDocument();
    await userEvent.click(screen.getByRole("link", { name: "Jobs" }));
    expect(screen.getByRole("heading", { name: "Jobs" })).toBeInTheDocument();
  });

  it("shows a page for unknown routes", () => {
    renderWhole("/nowhere");
    expect(screen.getByRole("heading", { name: "Page not found" })).toBeInTheDocument();
  });
});
