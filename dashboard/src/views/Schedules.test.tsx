import { screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it } from "vitest";
import { formatTime } from "../lib/format";
import { FakeFeed, mockFetch, rawSchedule } from "../test/fakes";
import { renderApp } from "../test/render";
import { Schedules } from "./Schedules";

const JOB = "01a22590-1d5c-7098-b965-863f2ba7b9f0";

function row(name: string): HTMLElement {
  return screen.getByTestId("schedules-table").querySelector(`tr[data-schedule="${name}"]`) as HTMLElement;
}

/** A gateway holding `schedules`, which PUT replaces and DELETE removes, as the broker does. */
function serve(initial: Record<string, unknown>[], refuse?: { status: number; body: unknown }) {
  const stored = new Map(initial.map((s) => [s.name as string, s]));
  const one = ({ url }: { url: URL }) => decodeURIComponent(url.pathname.split("/").pop() ?? "");
  const routes = {
    "GET /v1/schedules": () => ({ body: { schedules: [...stored.values()], nextPageToken: "" } }),
    ...Object.fromEntries(
      [...stored.keys()].flatMap((name) => [
        [`GET /v1/schedules/${name}`, (req: { url: URL }) => ({ body: stored.get(one(req)) ?? {} })],
        [
          `PUT /v1/schedules/${name}`,
          (req: { url: URL; body: unknown }) => {
            if (refuse) return refuse;
            const body = req.body as Record<string, unknown>;
            const next = { ...body, nextRunAt: body.paused ? undefined : "2030-01-02T02:00:00Z", updatedAt: "2026-01-02T00:00:00Z" };
            stored.set(one(req), next);
            return { body: next };
          },
        ],
        [
          `DELETE /v1/schedules/${name}`,
          (req: { url: URL }) => {
            if (refuse) return refuse;
            stored.delete(one(req));
            return { body: {} };
          },
        ],
      ]),
    ),
  };
  return mockFetch(routes);
}

describe("Schedules", () => {
  beforeEach(() => FakeFeed.reset());

  it("lists schedules: timing in words, zone, next and last run with the absolute time on hover, the last job, the state", async () => {
    serve([
      rawSchedule({ lastRunAt: "2026-01-01T02:00:00Z", lastJobId: JOB }),
      rawSchedule({ name: "ping", cron: "", every: "30s", timezone: "UTC", paused: true, nextRunAt: undefined, job: { type: "ping" } }),
    ]);
    renderApp(<Schedules />, { route: "/schedules" });
    await screen.findByTestId("schedules-table");

    const nightly = row("nightly");
    expect(within(nightly).getByTestId("schedule-timing")).toHaveTextContent("At 03:00");
    expect(within(nightly).getByTestId("schedule-timing")).toHaveTextContent("0 3 * * *");
    expect(nightly).toHaveTextContent("Europe/Berlin");
    expect(nightly).toHaveTextContent("report");
    const times = nightly.querySelectorAll("time");
    expect(times[0]).toHaveAttribute("title", formatTime("2030-01-02T02:00:00Z"));
    expect(times[0]).toHaveTextContent(/^in /);
    expect(times[1]).toHaveAttribute("title", formatTime("2026-01-01T02:00:00Z"));
    expect(times[1]).toHaveTextContent(/ ago$/);
    expect(within(nightly).getByTestId("last-job")).toHaveAttribute("href", `/jobs/${JOB}`);
    expect(within(nightly).getByTestId("schedule-state")).toHaveTextContent("Active");
    expect(within(nightly).getByTestId("toggle-pause")).toHaveTextContent("Pause");

    const ping = row("ping");
    expect(within(ping).getByTestId("schedule-timing")).toHaveTextContent(/^every 30 s$/);
    expect(within(ping).getByTestId("schedule-state")).toHaveTextContent("Paused");
    expect(ping).toHaveTextContent("paused");
    expect(ping).toHaveTextContent("never");
    expect(ping).toHaveTextContent("none yet");
    expect(within(ping).getByTestId("toggle-pause")).toHaveTextContent("Resume");
  });

  it("pauses by putting back the schedule as read with only paused changed, and resumes the same way", async () => {
    const read = rawSchedule({ lastRunAt: "2026-01-01T02:00:00Z", lastJobId: JOB });
    const m = serve([read]);
    renderApp(<Schedules />, { route: "/schedules" });
    await screen.findByTestId("schedules-table");

    await userEvent.click(within(row("nightly")).getByTestId("toggle-pause"));
    await waitFor(() => expect(within(row("nightly")).getByTestId("schedule-state")).toHaveTextContent("Paused"));
    expect(screen.getByTestId("schedules-outcome")).toHaveTextContent("Schedule nightly paused");
    const puts = () => m.calls.filter((c) => c.method === "PUT");
    expect(puts().map((c) => [c.path, c.body])).toEqual([["/v1/schedules/nightly", { ...read, paused: true }]]);
    // It was read afresh just before: a change made since the list came is not undone.
    const before = m.calls.indexOf(puts()[0]);
    expect(m.calls[before - 1]).toMatchObject({ method: "GET", path: "/v1/schedules/nightly" });

    await userEvent.click(within(row("nightly")).getByTestId("toggle-pause"));
    await waitFor(() => expect(within(row("nightly")).getByTestId("schedule-state")).toHaveTextContent("Active"));
    expect(puts()[1].body).toMatchObject({ name: "nightly", cron: "0 3 * * *", paused: false });
    expect(screen.getByTestId("schedules-outcome")).toHaveTextContent("Schedule nightly resumed: next run in");
  });

  it("deletes only after confirmation", async () => {
    const m = serve([rawSchedule(), rawSchedule({ name: "hourly", cron: "@hourly" })]);
    renderApp(<Schedules />, { route: "/schedules" });
    await screen.findByTestId("schedules-table");

    await userEvent.click(within(row("nightly")).getByTestId("delete-schedule"));
    expect(within(row("nightly")).getByRole("group", { name: "Delete nightly?" })).toBeInTheDocument();
    await userEvent.click(within(row("nightly")).getByTestId("delete-schedule-no"));
    expect(m.calls.some((c) => c.method === "DELETE")).toBe(false);

    await userEvent.click(within(row("nightly")).getByTestId("delete-schedule"));
    await userEvent.click(within(row("nightly")).getByTestId("delete-schedule-yes"));
    await waitFor(() => expect(screen.queryByText("nightly")).not.toBeInTheDocument());
    expect(screen.getByTestId("schedules-outcome")).toHaveTextContent("Schedule nightly deleted. The jobs it enqueued stay.");
    expect(m.calls.filter((c) => c.method === "DELETE").map((c) => c.path)).toEqual(["/v1/schedules/nightly"]);
    expect(row("hourly")).toHaveTextContent("Every hour");
  });

  it("turns read-only when the token's role may not change schedules, and says so", async () => {
    serve([rawSchedule()], { status: 403, body: { code: 7, message: "role producer may not call PutSchedule", details: [] } });
    renderApp(<Schedules />, { route: "/schedules" });
    await screen.findByTestId("schedules-table");
    await userEvent.click(within(row("nightly")).getByTestId("toggle-pause"));

    const refused = "your token's role cannot change schedules: role producer may not call PutSchedule (PERMISSION_DENIED)";
    expect(await within(row("nightly")).findByRole("alert")).toHaveTextContent(refused);
    const banner = screen.getAllByRole("alert").find((a) => a.textContent?.startsWith("Read-only"));
    expect(banner).toHaveTextContent(`Read-only: ${refused}`);
    expect(within(row("nightly")).getByTestId("toggle-pause")).toBeDisabled();
    expect(within(row("nightly")).getByTestId("delete-schedule")).toBeDisabled();
    expect(within(row("nightly")).getByTestId("schedule-state")).toHaveTextContent("Active");
  });

  it("points at the schedule the job page came from", async () => {
    serve([rawSchedule(), rawSchedule({ name: "hourly", cron: "@hourly" })]);
    renderApp(<Schedules />, { route: "/schedules?name=hourly" });
    await screen.findByTestId("schedules-table");
    expect(row("hourly")).toHaveClass("selected");
    expect(row("nightly")).not.toHaveClass("selected");
  });

  it("shows the CLI command that creates one when there are none", async () => {
    mockFetch({ "GET /v1/schedules": () => ({ body: {} }) });
    renderApp(<Schedules />, { route: "/schedules" });
    const empty = await screen.findByTestId("schedules-empty");
    expect(empty).toHaveTextContent("No schedules yet");
    expect(empty).toHaveTextContent("forge schedule put nightly-report --cron '0 3 * * *' --timezone Europe/Berlin --type report");
  });

  it("shows a failed listing", async () => {
    mockFetch({ "GET /v1/schedules": () => ({ status: 503, body: { code: 14, message: "broker unavailable: connection refused" } }) });
    renderApp(<Schedules />, { route: "/schedules" });
    const alert = await screen.findByRole("alert");
    expect(alert).toHaveTextContent("Cannot list schedules: broker unavailable: connection refused (UNAVAILABLE)");
  });
});
