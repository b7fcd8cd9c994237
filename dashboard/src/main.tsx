import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { HashRouter } from "react-router-dom";
import { ApiError } from "./api/client";
import { App } from "./App";
import { StatsProvider } from "./hooks/stats";
import "./styles.css";

// Hash routes (/#/jobs/ID): the gateway answers /jobs/{id}, /dlq and /stats itself (the seed's
// REST paths), so the app's own paths must never reach it.
const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      staleTime: 1000,
      // An answer from the API (404, 400, ...) will not change by asking again; a gateway that
      // cannot be reached might.
      retry: (failures, error) => failures < 2 && (!(error instanceof ApiError) || error.status === 0 || error.status >= 500),
      refetchOnWindowFocus: true,
    },
  },
});

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <StatsProvider>
        <HashRouter>
          <App />
        </HashRouter>
      </StatsProvider>
    </QueryClientProvider>
  </StrictMode>,
);
