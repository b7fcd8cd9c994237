import { fireEvent, screen, waitFor, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it } from "vitest";
import { FakeFeed, mockFetch, rawJob } from "../test/fakes";
import { renderApp } from "../test/render";
import { Jobs } from "./Jobs";

describe("Jobs", () => {
  beforeEach(() => FakeFeed.reset());

  it("filters by status and type, and pages with nextPageToken", async () => {
    const m = mockFetch({
      "GET /v1/jobs": ({ url }) => {
        const token = url.searchParams.get("pageToken");
        if (!token) return { body: { jobs: [rawJob({ id: "j1" }), rawJob({ id: "j2", status: "DEAD" })], nextPageToken: "p2" } };
        return { body: { jobs: [rawJob({ id: "j3" })] } };
      },
    });
    renderApp(<Jobs />, { route: "/jobs" });
    const table = await screen.findByTestId("jobs-table");
    expect(within(table).getByText("j1")).toBeInTheDocument();
    expect(within(table).getByText("j1").closest("a")).toHaveAttribute("href", "/jobs/j1");

    await userEvent.click(screen.getByTestId("next-page"));
    expect(await screen.findByText("j3")).toBeInTheDocument();
    expect(screen.getByTestId("page-number")).toHaveTextContent("Page 2");
    expect(screen.getByTestId("next-page")).toBeDisabled();
    expect(m.calls.at(-1)?.path).toBe("/v1/jobs?pageSize=50&pageToken=p2");
    await userEvent.click(screen.getByText("Previous"));
    expect(await screen.findByText("j1")).toBeInTheDocument();

    fireEvent.change(screen.getByTestId("filter-status"), { target: { value: "DEAD" } });
    await waitFor(() => expect(m.calls.at(-1)?.path).toBe("/v1/jobs?status=DEAD&pageSize=50"));
    expect(screen.getByTestId("location")).toHaveTextContent("/jobs?status=DEAD");
    fireEvent.change(screen.getByTestId("filter-type"), { target: { value: "email" } });
    await waitFor(() => expect(m.calls.at(-1)?.path).toBe("/v1/jobs?status=DEAD&type=email&pageSize=50"));
    expect(screen.getByTestId("page-number")).toHaveTextContent("Page 1");
  });

  it("reads filters from the address", async () => {
    const m = mockFetch({ "GET /v1/jobs": () => ({ body: {} }) });
    renderApp(<Jobs />, { route: "/jobs?status=PENDING&type=report" });
    expect(await screen.findByTestId("jobs-empty")).toHaveTextContent("No jobs in PENDING of type report.");
    expect(m.calls[0].path).toBe("/v1/jobs?status=PENDING&type=report&pageSize=50");
  });

  it("shows the API's error", async () => {
    mockFetch({ "GET /v1/jobs": () => ({ status: 400, body: { code: 3, message: "page_token: not a token returned by a previous page" } }) });
    renderApp(<Jobs />, { route: "/jobs" });
    expect(await screen.findByRole("alert")).toHaveTextContent("page_token: not a token returned by a previous page");
  });
});
