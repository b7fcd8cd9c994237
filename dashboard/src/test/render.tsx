import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { render } from "@testing-library/react";
import type { ReactElement } from "react";
import { MemoryRouter, Route, Routes, useLocation } from "react-router-dom";
import { StatsProvider } from "../hooks/stats";
import { FakeFeed } from "./fakes";

/** Shows the current route, so tests can see where a navigation went. */
function WhereAmI() {
  const loc = useLocation();
  return <output data-testid="location">{loc.pathname + loc.search}</output>;
}

const streamOptions = { fetchImpl: FakeFeed.fetch, backoffMs: [50] };

export function renderApp(ui: ReactElement, { route = "/", path }: { route?: string; path?: string } = {}) {
  const routePath = path ?? route.split("?")[0];
  const client = new QueryClient({ defaultOptions: { queries: { retry: false }, mutations: { retry: false } } });
  const result = render(
    <QueryClientProvider client={client}>
      <StatsProvider streamOptions={streamOptions}>
        <MemoryRouter initialEntries={[route]}>
          <Routes>
            <Route path={routePath} element={ui} />
            <Route path="*" element={<p>elsewhere</p>} />
          </Routes>
          <WhereAmI />
        </MemoryRouter>
      </StatsProvider>
    </QueryClientProvider>,
  );
  return { ...result, client };
}
