import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it } from "vitest";
import { FakeFeed, mockFetch } from "../test/fakes";
import { renderApp } from "../test/render";
import { Queues } from "./Queues";

/** A queue as the gateway answers it: settings at their zero value are left out, int64 as strings. */
function rawQueue(over: Record<string, unknown> = {}) {
  return {
    type: "email",
    paused: false,
    concurrencyLimit: 5,
    keyConcurrencyLimit: 0,
    rateLimit: { limit: 20, period: "1s" },
    stats: { type: "email", pending: "12", scheduled: "3", processing: "2", dead: "1" },
    ...over,
  };
}

function row(type: string): HTMLElement {
  return screen.getByTestId("queues-table").querySelector(`tr[data-type="${type}"]`) as HTMLElement;
}

type Raw = Record<string, unknown>;

/** A gateway holding `initial`, changed by pause, resume and PATCH as the broker does (or refusing them). */
function serve(initial: Raw[], refuse?: { status: number; body: unknown }, readOnly = false) {
  const stored = new Map(initial.map((x) => [x.type as string, x]));
  const typeOf = (url: URL) => decodeURIComponent(url.pathname.split("/").pop() ?? "").split(":")[0];
  const change = (type: string, f: (q: Raw) => Raw) => {
    if (refuse) return refuse;
    const next = f(stored.get(type) ?? {});
    stored.set(type, next);
    return { body: next };
  };
  const routes = {
    "GET /v1/queues": () => ({ body: { queues: [...stored.values()] } }),
    ...Object.fromEntries(
      [...stored.keys()].flatMap((type) => [
        [`POST /v1/queues/${type}:pause`, ({ url }: { url: URL }) => change(typeOf(url), (q) => ({ ...q, paused: true }))],
        [`POST /v1/queues/${type}:resume`, ({ url }: { url: URL }) => change(typeOf(url), (q) => ({ ...q, paused: false }))],
        [`PATCH /v1/queues/${type}`, ({ url, body }: { url: URL; body: unknown }) => change(typeOf(url), (q) => ({ ...q, ...(body as Raw) }))],
      ]),
    ),
  };
  return mockFetch(routes, { readOnly });
}

describe("Queues", () => {
  beforeEach(() => FakeFeed.reset());

  it("lists each type's counts, running of its limit, key limit, rate and state", async () => {
    serve([
      rawQueue(),
      { type: "report", paused: true, stats: { type: "report", pending: "4", processing: "0" } },
    ]);
    renderApp(<Queues />, { route: "/queues" });
    await screen.findByTestId("queues-table");

    const email = row("email");
    expect(within(email).getByTestId("queue-running")).toHaveTextContent("2 / 5");
    expect(within(email).getByTestId("queue-key-limit")).toHaveTextContent("∞");
    expect(within(email).getByTestId("queue-rate")).toHaveTextContent("20 / 1 s");
    expect(within(email).getByTestId("queue-state")).toHaveTextContent("Active");
    expect(within(email).getByTestId("toggle-pause")).toHaveTextContent("Pause");
    const cells = [...email.querySelectorAll("td")].map((td) => td.textContent);
    expect(cells.slice(0, 3)).toEqual(["email", "12", "3"]);
    expect(within(email).getByRole("link", { name: "1" })).toHaveAttribute("href", "/dlq?type=email");

    const report = row("report");
    expect(within(report).getByTestId("queue-running")).toHaveTextContent("0 / ∞");
    expect(within(report).getByTestId("queue-rate")).toHaveTextContent("—");
    expect(within(report).getByTestId("queue-state")).toHaveTextContent("Paused");
    expect(within(report).getByTestId("toggle-pause")).toHaveTextContent("Resume");
  });

  it("pauses and resumes a type through its pause and resume calls", async () => {
    const m = serve([rawQueue()]);
    renderApp(<Queues />, { route: "/queues" });
    await screen.findByTestId("queues-table");

    await userEvent.click(within(row("email")).getByTestId("toggle-pause"));
    await waitFor(() => expect(within(row("email")).getByTestId("queue-state")).toHaveTextContent("Paused"));
    expect(screen.getByTestId("queues-outcome")).toHaveTextContent("Queue email paused: none of its jobs is leased until it is resumed");

    await userEvent.click(within(row("email")).getByTestId("toggle-pause"));
    await waitFor(() => expect(within(row("email")).getByTestId("queue-state")).toHaveTextContent("Active"));
    expect(screen.getByTestId("queues-outcome")).toHaveTextContent("Queue email resumed.");
    const posts = m.calls.filter((c) => c.method === "POST").map((c) => c.path);
    expect(posts).toEqual(["/v1/queues/email:pause", "/v1/queues/email:resume"]);
  });

  it("edits limits, sending only the fields changed", async () => {
    const m = serve([rawQueue()]);
    renderApp(<Queues />, { route: "/queues" });
    await screen.findByTestId("queues-table");
    const patches = () => m.calls.filter((c) => c.method === "PATCH").map((c) => [c.path, c.body]);

    await userEvent.click(within(row("email")).getByTestId("edit-limits"));
    const form = screen.getByRole("form", { name: "Limits of email" });
    expect(within(form).getByTestId("input-concurrency")).toHaveValue("5");
    expect(within(form).getByTestId("input-concurrency")).toHaveFocus();
    expect(within(form).getByTestId("input-ratePeriod")).toHaveValue("1");
    await userEvent.clear(within(form).getByTestId("input-concurrency"));
    await userEvent.type(within(form).getByTestId("input-concurrency"), "3");
    await userEvent.click(within(form).getByTestId("save-limits"));
    await waitFor(() => expect(within(row("email")).getByTestId("queue-running")).toHaveTextContent("2 / 3"));
    expect(patches()).toEqual([["/v1/queues/email", { concurrencyLimit: 3 }]]);
    expect(screen.queryByTestId("limits-form")).not.toBeInTheDocument();
    expect(screen.getByTestId("queues-outcome")).toHaveTextContent("Queue email: at most 3 running, ∞ per concurrency key, rate 20 / 1 s.");

    // A new rate and key limit; then the rate removed (present but empty, as the API asks).
    await userEvent.click(within(row("email")).getByTestId("edit-limits"));
    await userEvent.type(screen.getByTestId("input-keyConcurrency"), "{Backspace}1");
    await userEvent.type(screen.getByTestId("input-rateLimit"), "{Backspace}{Backspace}100");
    await userEvent.type(screen.getByTestId("input-ratePeriod"), "{Backspace}0.5");
    await userEvent.click(screen.getByTestId("save-limits"));
    await waitFor(() => expect(within(row("email")).getByTestId("queue-rate")).toHaveTextContent("100 / 0.5 s"));
    expect(within(row("email")).getByTestId("queue-key-limit")).toHaveTextContent("1");
    expect(patches()[1]).toEqual(["/v1/queues/email", { keyConcurrencyLimit: 1, rateLimit: { limit: 100, period: "0.5s" } }]);

    await userEvent.click(within(row("email")).getByTestId("edit-limits"));
    await userEvent.clear(screen.getByTestId("input-rateLimit"));
    await userEvent.clear(screen.getByTestId("input-ratePeriod"));
    await userEvent.click(screen.getByTestId("save-limits"));
    await waitFor(() => expect(within(row("email")).getByTestId("queue-rate")).toHaveTextContent("—"));
    expect(patches()[2]).toEqual(["/v1/queues/email", { rateLimit: {} }]);
  });

  it("shows the field a 400 names under it, and checks what the browser can before sending", async () => {
    const m = serve([rawQueue()], {
      status: 400,
      body: { code: 3, message: "queue.concurrency_limit: must be in [0, 10000] (0: unlimited), got 20000", details: [] },
    });
    renderApp(<Queues />, { route: "/queues" });
    await screen.findByTestId("queues-table");
    await userEvent.click(within(row("email")).getByTestId("edit-limits"));

    await userEvent.type(screen.getByTestId("input-ratePeriod"), "{Backspace}");
    await userEvent.click(screen.getByTestId("save-limits"));
    expect(screen.getByTestId("error-ratePeriod")).toHaveTextContent("must be a number of seconds above 0 with a limit");
    await userEvent.type(screen.getByTestId("input-ratePeriod"), "1");
    await userEvent.type(screen.getByTestId("input-concurrency"), "x");
    await userEvent.click(screen.getByTestId("save-limits"));
    expect(screen.getByTestId("error-concurrency")).toHaveTextContent("must be a whole number, 0 for unlimited");
    expect(m.calls.some((c) => c.method === "PATCH")).toBe(false);

    await userEvent.clear(screen.getByTestId("input-concurrency"));
    await userEvent.type(screen.getByTestId("input-concurrency"), "20000");
    await userEvent.click(screen.getByTestId("save-limits"));
    expect(await screen.findByTestId("error-concurrency")).toHaveTextContent(
      "queue.concurrency_limit: must be in [0, 10000] (0: unlimited), got 20000 (INVALID_ARGUMENT)",
    );
    expect(screen.getByTestId("limits-form")).toBeInTheDocument();
    expect(within(row("email")).getByTestId("queue-running")).toHaveTextContent("2 / 5");
    expect(screen.getAllByRole("alert").some((a) => a.textContent?.startsWith("Read-only"))).toBe(false);
  });

  it("turns read-only when the token's role may not change queues, and says so", async () => {
    serve([rawQueue()], { status: 403, body: { code: 7, message: "role producer may not call PauseQueue", details: [] } });
    renderApp(<Queues />, { route: "/queues" });
    await screen.findByTestId("queues-table");
    await userEvent.click(within(row("email")).getByTestId("edit-limits"));
    await userEvent.click(within(row("email")).getByTestId("toggle-pause"));

    const refused = "your token's role cannot change queues: role producer may not call PauseQueue (PERMISSION_DENIED)";
    expect(await within(row("email")).findByRole("alert")).toHaveTextContent(refused);
    const banner = screen.getAllByRole("alert").find((a) => a.textContent?.startsWith("Read-only"));
    expect(banner).toHaveTextContent(`Read-only: ${refused}`);
    expect(within(row("email")).getByTestId("toggle-pause")).toBeDisabled();
    expect(within(row("email")).getByTestId("edit-limits")).toBeDisabled();
    expect(screen.queryByTestId("limits-form")).not.toBeInTheDocument();
    expect(within(row("email")).getByTestId("queue-state")).toHaveTextContent("Active");
  });

  it("points at the type the overview linked to", async () => {
    serve([rawQueue(), rawQueue({ type: "report" })]);
    renderApp(<Queues />, { route: "/queues?type=report" });
    await screen.findByTestId("queues-table");
    expect(row("report")).toHaveClass("selected");
    expect(row("email")).not.toHaveClass("selected");
  });

  it("shows the CLI command that limits one when there are none", async () => {
    mockFetch({ "GET /v1/queues": () => ({ body: {} }) });
    renderApp(<Queues />, { route: "/queues" });
    const empty = await screen.findByTestId("queues-empty");
    expect(empty).toHaveTextContent("No queues yet");
    expect(empty).toHaveTextContent("forge queue set email --concurrency 5 --rate 20/s");
  });

  it("shows a failed listing", async () => {
    mockFetch({ "GET /v1/queues": () => ({ status: 503, body: { code: 14, message: "broker unavailable: connection refused" } }) });
    renderApp(<Queues />, { route: "/queues" });
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Cannot list queues: broker unavailable: connection refused (UNAVAILABLE)");
  });

  it("has no pause or limit buttons for a role that may only look, and says why", async () => {
    serve([rawQueue()], undefined, true);
    renderApp(<Queues />, { route: "/queues" });
    await screen.findByTestId("queues-table");
    expect(await screen.findByTestId("read-only")).toHaveTextContent("Read-only: your token's role may view queues but not change them.");
    expect(within(row("email")).queryByTestId("toggle-pause")).not.toBeInTheDocument();
    expect(within(row("email")).queryByTestId("edit-limits")).not.toBeInTheDocument();
    expect(within(row("email")).getByTestId("queue-state")).toHaveTextContent("Active");
  });
});
