import { fireEvent, screen, waitFor } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it } from "vitest";
import { FakeFeed, mockFetch, rawJob } from "../test/fakes";
import { renderApp } from "../test/render";
import { Enqueue } from "./Enqueue";

function setValue(testId: string, value: string) {
  fireEvent.change(screen.getByTestId(testId), { target: { value } });
}

describe("Enqueue", () => {
  beforeEach(() => FakeFeed.reset());

  it("validates the payload as you type and sends nothing while it is invalid", async () => {
    const m = mockFetch({});
    renderApp(<Enqueue />, { route: "/enqueue" });
    await userEvent.type(screen.getByTestId("input-type"), "email");
    setValue("input-payload", '{"to": ');
    expect(screen.getByTestId("error-payload")).toHaveTextContent(/not valid JSON/);
    expect(screen.getByTestId("input-payload")).toHaveAttribute("aria-invalid", "true");
    await userEvent.click(screen.getByTestId("submit-enqueue"));
    expect(m.calls.filter((c) => c.method === "POST")).toHaveLength(0);
    setValue("input-payload", "[1, 2]");
    expect(screen.getByTestId("error-payload")).toHaveTextContent(/must be a JSON object/);
    setValue("input-payload", '{"to": "a@example.com"}');
    expect(screen.queryByTestId("error-payload")).not.toBeInTheDocument();
  });

  it("checks the other fields before sending", async () => {
    const m = mockFetch({});
    renderApp(<Enqueue />, { route: "/enqueue" });
    setValue("input-type", "not a type!");
    setValue("input-priority", "5000");
    setValue("input-maxRetries", "-1");
    await userEvent.click(screen.getByTestId("submit-enqueue"));
    expect(screen.getByTestId("error-type")).toBeInTheDocument();
    expect(screen.getByTestId("error-priority")).toHaveTextContent("must be in [-1000, 1000]");
    expect(screen.getByTestId("error-maxRetries")).toHaveTextContent("must be in [0, 100]");
    expect(screen.getByTestId("input-type")).toHaveFocus();
    expect(m.calls.filter((c) => c.method === "POST")).toHaveLength(0);
  });

  it("sends the job and opens its page", async () => {
    const m = mockFetch({ "POST /v1/jobs": () => ({ body: { job: rawJob({ id: "new-job-1" }), created: true } }) });
    renderApp(<Enqueue />, { route: "/enqueue" });
    setValue("input-type", "email");
    setValue("input-payload", '{"to": "a@example.com", "subject": "hi"}');
    setValue("input-priority", "7");
    setValue("input-maxRetries", "0");
    setValue("input-runAt", "2030-05-06T07:08:09");
    await userEvent.click(screen.getByTestId("submit-enqueue"));
    await waitFor(() => expect(screen.getByTestId("location")).toHaveTextContent("/jobs/new-job-1"));
    const post = m.calls.find((c) => c.method === "POST");
    expect(post?.body).toEqual({
      type: "email",
      payload: { to: "a@example.com", subject: "hi" },
      priority: 7,
      maxRetries: 0,
      runAt: new Date("2030-05-06T07:08:09").toISOString(),
    });
  });

  it("shows a server error by the field it names", async () => {
    mockFetch({
      "POST /v1/jobs": () => ({ status: 400, body: { code: 3, message: "payload: numbers must be finite", details: [] } }),
    });
    renderApp(<Enqueue />, { route: "/enqueue" });
    setValue("input-type", "email");
    await userEvent.click(screen.getByTestId("submit-enqueue"));
    expect(await screen.findByTestId("error-payload")).toHaveTextContent("numbers must be finite");
    expect(screen.getByTestId("form-error")).toHaveTextContent("payload: numbers must be finite");
    expect(screen.getByTestId("location")).toHaveTextContent("/enqueue");
  });

  it("shows other server errors above the form", async () => {
    mockFetch({ "POST /v1/jobs": () => ({ status: 503, body: { code: 14, message: "broker unavailable: connection refused", details: [] } }) });
    renderApp(<Enqueue />, { route: "/enqueue" });
    setValue("input-type", "email");
    await userEvent.click(screen.getByTestId("submit-enqueue"));
    expect(await screen.findByTestId("form-error")).toHaveTextContent("broker unavailable: connection refused (UNAVAILABLE)");
  });
});
