// API tokens across the whole app: a 401 anywhere brings up the sign-in view, the token is
// checked, kept in sessionStorage and sent on every call and on the stats stream, the calls are
// made again, and "Sign out" forgets it.
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { act, render, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it } from "vitest";
import { MemoryRouter } from "react-router-dom";
import { App } from "./App";
import { TOKEN_KEY, auth } from "./api/auth";
import { StatsProvider } from "./hooks/stats";
import { FakeFeed, type Handler, mockFetch, rawJob, rawStats } from "./test/fakes";

const GOOD = "admin-s3cret";
const opts = { fetchImpl: FakeFeed.fetch, backoffMs: [50] };

function renderWhole(route = "/") {
  return render(
    <QueryClientProvider client={new QueryClient({ defaultOptions: { queries: { retry: false }, mutations: { retry: false } } })}>
      <StatsProvider streamOptions={opts}>
        <MemoryRouter initialEntries={[route]}>
          <App />
        </MemoryRouter>
      </StatsProvider>
    </QueryClientProvider>,
  );
}

const REFUSED = { status: 401, body: { code: 16, message: "missing or invalid API token", details: [] } };

/** A route that answers only calls carrying the good token. */
function guarded(answer: Handler): Handler {
  return (req) => (req.headers.get("authorization") === `Bearer ${GOOD}` ? answer(req) : REFUSED);
}

function serve() {
  return mockFetch({
    "GET /v1/stats": guarded(() => ({ body: rawStats() })),
    "GET /v1/jobs": guarded(() => ({ body: { jobs: [rawJob({ id: "j1", type: "email" })] } })),
    "GET /v1/dlq": guarded(() => ({ body: {} })),
  });
}

async function signIn(token: string) {
  const input = screen.getByTestId("token-input");
  await userEvent.clear(input);
  await userEvent.type(input, token);
  await userEvent.click(screen.getByTestId("sign-in"));
}

describe("API tokens", () => {
  beforeEach(() => {
    FakeFeed.reset();
    sessionStorage.clear();
    auth.reset();
  });

  it("asks for a token when the stats stream answers 401, then goes live with it", async () => {
    serve();
    FakeFeed.answers.push(REFUSED);
    renderWhole("/");
    const dialog = await screen.findByRole("dialog", { name: "Sign in with an API token" });
    const input = within(dialog).getByTestId("token-input");
    expect(input).toHaveAttribute("type", "password");
    expect(dialog).toHaveTextContent("FORGE_TOKENS");
    expect(dialog).toHaveTextContent(/admin.*cancel jobs and retry dead ones/);
    expect(screen.getByTestId("signin-reason")).toHaveTextContent("missing or invalid API token");
    expect(screen.queryByTestId("sign-out")).not.toBeInTheDocument();
    // No retrying with a refused token while the prompt is up.
    await act(() => new Promise((r) => setTimeout(r, 120)));
    expect(FakeFeed.instances).toHaveLength(1);

    await signIn(GOOD);
    await waitFor(() => expect(screen.queryByRole("dialog")).not.toBeInTheDocument());
    expect(sessionStorage.getItem(TOKEN_KEY)).toBe(GOOD);
    // The stream came back by itself, with the token.
    await waitFor(() => expect(FakeFeed.instances).toHaveLength(2));
    expect(FakeFeed.last.headers.get("authorization")).toBe(`Bearer ${GOOD}`);
    await act(() => FakeFeed.last.emit(rawStats({ completed: "77" })));
    expect(screen.getByTestId("connection")).toHaveAttribute("data-state", "live");
    expect(within(screen.getByTestId("count-completed")).getByText("77")).toBeInTheDocument();
    expect(screen.getByTestId("sign-out")).toBeInTheDocument();
  });

  it("refuses a wrong token in the dialog and keeps asking", async () => {
    const m = serve();
    FakeFeed.answers.push(REFUSED);
    renderWhole("/");
    await screen.findByRole("dialog");
    await signIn("wrong");
    expect(await screen.findByTestId("signin-error")).toHaveTextContent("That token was refused: missing or invalid API token");
    expect(screen.getByTestId("token-input")).toHaveAttribute("aria-invalid", "true");
    expect(sessionStorage.getItem(TOKEN_KEY)).toBe(null);
    expect(m.calls.at(-1)?.headers.get("authorization")).toBe("Bearer wrong");
    expect(FakeFeed.instances).toHaveLength(1);
  });

  it("makes a refused call again once signed in", async () => {
    const m = serve();
    renderWhole("/jobs");
    // The jobs list answered 401: the prompt replaces the view.
    await screen.findByRole("dialog");
    const before = m.calls.filter((c) => c.path.startsWith("/v1/jobs")).length;
    expect(before).toBeGreaterThan(0);
    await signIn(GOOD);
    const table = await screen.findByTestId("jobs-table");
    expect(within(table).getByText("email")).toBeInTheDocument();
    const jobCalls = m.calls.filter((c) => c.path.startsWith("/v1/jobs"));
    expect(jobCalls.length).toBeGreaterThan(before);
    expect(jobCalls.at(-1)?.headers.get("authorization")).toBe(`Bearer ${GOOD}`);
  });

  it("uses the token kept for the session, and signing out forgets it", async () => {
    sessionStorage.setItem(TOKEN_KEY, GOOD);
    auth.reset();
    const m = serve();
    renderWhole("/jobs");
    expect(await screen.findByTestId("jobs-table")).toBeInTheDocument();
    expect(m.calls[0].headers.get("authorization")).toBe(`Bearer ${GOOD}`);
    expect(FakeFeed.last.headers.get("authorization")).toBe(`Bearer ${GOOD}`);
    const stream = FakeFeed.last;

    await userEvent.click(screen.getByTestId("sign-out"));
    expect(sessionStorage.getItem(TOKEN_KEY)).toBe(null);
    expect(auth.token()).toBe(null);
    expect(await screen.findByRole("dialog")).toBeInTheDocument();
    expect(screen.queryByTestId("sign-out")).not.toBeInTheDocument();
    expect(screen.queryByTestId("signin-reason")).not.toBeInTheDocument();
    expect(stream.isAborted).toBe(true);

    // Signing in again (with another token, say) brings the views back.
    await signIn(GOOD);
    expect(await screen.findByTestId("jobs-table")).toBeInTheDocument();
  });

  it("shows a 403 where it happened, and does not ask to sign in", async () => {
    sessionStorage.setItem(TOKEN_KEY, "producer-token");
    auth.reset();
    mockFetch({
      "GET /v1/dlq": () => ({ body: { jobs: [rawJob({ id: "d1", status: "DEAD", lastError: "boom d1" })] } }),
      "POST /v1/dlq/d1:retry": () => ({ status: 403, body: { code: 7, message: "role producer may not call RetryDeadJob", details: [] } }),
    });
    renderWhole("/dlq");
    const row = (await screen.findByText("boom d1")).closest("tr") as HTMLElement;
    await userEvent.click(within(row).getByTestId("retry-one"));
    const outcome = await screen.findByTestId("dlq-outcome");
    expect(outcome).toHaveTextContent("your token's role cannot retry dead jobs: role producer may not call RetryDeadJob (PERMISSION_DENIED)");
    expect(within(row).getByRole("alert")).toHaveTextContent("your token's role cannot retry dead jobs");
    expect(screen.queryByRole("dialog")).not.toBeInTheDocument();
    expect(sessionStorage.getItem(TOKEN_KEY)).toBe("producer-token");
  });
});
