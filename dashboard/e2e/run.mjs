#!/usr/bin/env node
// End-to-end test of the dashboard in a real headless Chromium against a real Forge stack
// (PostgreSQL, broker, gateway serving dashboard/dist, one workerd with the demo handlers and
// tests/handlers/dashboard_handlers.py). tests/test_dashboard_e2e.py starts the stack and runs:
//
//   node dashboard/e2e/run.mjs http://127.0.0.1:PORT
//
// Environment:
//   SCREENSHOT_DIR          where to save a screenshot of each view (default dashboard/e2e/screenshots)
//   DOCS_SCREENSHOT_DIR     also save the README's pictures of each view there (1280×800)
//   DASHBOARD_E2E_FIX_FILE  the file that makes the `fail_until_fixed` handler succeed
//   E2E_CONTROL=1           the runner restarts processes on request: this script prints
//                           "@@restart gateway" (or broker) and waits for a line on stdin
//   CHROMIUM                the browser binary (default /usr/bin/chromium)
//   E2E_AUTH_TOKEN          run the API-token scenarios instead (the broker has FORGE_TOKENS):
//                           this is an admin token; E2E_PRODUCER_TOKEN a producer one
//
// Exits 0 when every scenario passed, 1 otherwise (with the failing step and a screenshot).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const BASE = (process.argv[2] ?? process.env.BASE_URL ?? "http://127.0.0.1:8080").replace(/\/$/, "");
const SHOTS = path.resolve(process.env.SCREENSHOT_DIR ?? path.join(here, "screenshots"));
const DOCS_SHOTS = process.env.DOCS_SCREENSHOT_DIR ? path.resolve(process.env.DOCS_SCREENSHOT_DIR) : null;
const FIX_FILE = process.env.DASHBOARD_E2E_FIX_FILE ?? "";
const CONTROL = process.env.E2E_CONTROL === "1";
const EXECUTABLE = process.env.CHROMIUM ?? "/usr/bin/chromium";
const WORKER_ID = process.env.E2E_WORKER_ID ?? "";
const AUTH_TOKEN = process.env.E2E_AUTH_TOKEN ?? "";
const PRODUCER_TOKEN = process.env.E2E_PRODUCER_TOKEN ?? "";
const AUTH_MODE = AUTH_TOKEN !== "";

const started = Date.now();
const elapsed = () => `${((Date.now() - started) / 1000).toFixed(1)}s`;
const log = (...a) => console.log(`[e2e ${elapsed()}]`, ...a);

class Failure extends Error {}
function check(cond, message) {
  if (!cond) throw new Failure(message);
}

// --- the runner's side channel: ask it to restart a process, wait until it has --------------
const stdinLines = CONTROL ? readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]() : null;
async function askRunner(what) {
  check(stdinLines, `cannot restart the ${what}: not run with E2E_CONTROL=1`);
  console.log(`@@restart ${what}`);
  const { value, done } = await stdinLines.next();
  check(!done && value.trim() === "ok", `the runner did not restart the ${what}: ${value}`);
}

// --- browser ----------------------------------------------------------------------------------
const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), "forge-e2e-chromium-"));
fs.mkdirSync(SHOTS, { recursive: true });
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: EXECUTABLE,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1280, height: 860 },
  colorScheme: "light",
  timezoneId: "UTC",
  locale: "en-US",
});
context.setDefaultTimeout(15_000);
const page = context.pages()[0] ?? (await context.newPage());

// Every console error or uncaught exception fails the run, except network errors while a
// scenario deliberately takes the gateway or broker away.
const consoleErrors = [];
let outageExpected = false;
let refusalExpected = false;
page.on("console", (msg) => {
  if (msg.type() !== "error" && msg.type() !== "warning") return;
  const text = msg.text();
  const network = /Failed to load resource|net::ERR_|EventSource|status of 50[0-9]/.test(text);
  if (outageExpected && network) return;
  // Chromium logs every 4xx answer; one is the point of the "refused" scenario.
  if (refusalExpected && /Failed to load resource: the server responded with a status of 400/.test(text)) return;
  // Against a broker with tokens, refused tokens (401) and roles (403) are what is tested.
  if (AUTH_MODE && /Failed to load resource: the server responded with a status of 40[13]/.test(text)) return;
  consoleErrors.push(`console.${msg.type()}: ${text}`);
});
page.on("pageerror", (err) => consoleErrors.push(`uncaught: ${err.message}`));

async function shot(name, opts = {}) {
  const file = path.join(SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true, ...opts });
  log(`screenshot ${path.relative(process.cwd(), file)}`);
}

/** The README's picture of a view: what a 1280×800 window shows, no pointer over a row. */
async function docShot(name) {
  if (!DOCS_SHOTS) return;
  fs.mkdirSync(DOCS_SHOTS, { recursive: true });
  const viewport = page.viewportSize();
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.mouse.move(0, 0);
  await page.waitForTimeout(400); // charts re-measure their box
  const file = path.join(DOCS_SHOTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: false });
  await page.setViewportSize(viewport);
  log(`screenshot ${path.relative(process.cwd(), file)}`);
}

/** Call the REST API from the page (same origin, exactly what the app does), as the admin when
 * the broker has tokens. */
async function apiCall(method, url, body) {
  return page.evaluate(
    async ([m, u, b, t]) => {
      const headers = { "Content-Type": "application/json", ...(t ? { Authorization: `Bearer ${t}` } : {}) };
      const r = await fetch(u, { method: m, headers, body: b === null ? undefined : JSON.stringify(b) });
      return { status: r.status, body: await r.json() };
    },
    [method, url, body ?? null, AUTH_TOKEN],
  );
}

async function getJob(id) {
  const r = await apiCall("GET", `/v1/jobs/${id}`);
  check(r.status === 200, `GET /v1/jobs/${id} answered ${r.status}: ${JSON.stringify(r.body)}`);
  return r.body;
}

async function waitFor(what, fn, timeoutMs = 20_000, everyMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await page.waitForTimeout(everyMs);
  }
  throw new Failure(`timed out after ${timeoutMs / 1000}s waiting for ${what}`);
}

async function count(name) {
  return Number(await page.getByTestId(`count-${name}`).locator(".card-value").getAttribute("data-value"));
}

async function go(hash) {
  await page.goto(`${BASE}/#${hash}`);
}

function jobIdFromUrl() {
  const m = /#\/jobs\/([^/?#]+)$/.exec(page.url());
  check(m, `expected a job page, at ${page.url()}`);
  return decodeURIComponent(m[1]);
}

async function enqueueFromForm({ type, payload, priority, maxRetries }) {
  await go("/enqueue");
  await page.getByTestId("input-type").fill(type);
  await page.getByTestId("input-payload").fill(JSON.stringify(payload, null, 2));
  if (priority !== undefined) await page.getByTestId("input-priority").fill(String(priority));
  if (maxRetries !== undefined) await page.getByTestId("input-maxRetries").fill(String(maxRetries));
  await page.getByTestId("submit-enqueue").click();
  await page.waitForURL(/#\/jobs\/[^/]+$/);
  return jobIdFromUrl();
}

// --- scenarios ----------------------------------------------------------------------------------
const results = [];
/** Runs `fn` as a scenario of its group: the API-token ones with E2E_AUTH_TOKEN, the others without. */
async function scenario(name, fn, group = "main") {
  if ((group === "auth") !== AUTH_MODE) return;
  const t0 = Date.now();
  log(`▶ ${name}`);
  try {
    await fn();
    results.push({ name, ok: true, seconds: (Date.now() - t0) / 1000 });
    log(`✔ ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
  } catch (err) {
    results.push({ name, ok: false, seconds: (Date.now() - t0) / 1000, error: err });
    log(`✘ ${name}: ${err instanceof Error ? err.message : err}`);
    await shot(`FAILED-${name.replace(/[^a-z0-9]+/gi, "-")}`).catch(() => {});
    throw err;
  }
}

let exitCode = 0;
try {
  await scenario("overview goes live", async () => {
    await go("/");
    await page.getByTestId("connection").and(page.locator('[data-state="live"]')).waitFor();
    await page.getByTestId("count-completed").waitFor();
    if (WORKER_ID) await page.getByTestId("workers-table").getByText(WORKER_ID, { exact: true }).waitFor();
    check((await page.getByTestId("worker-count").textContent()).includes("1 connected"), "expected one connected worker");
  });

  await scenario("enqueue form: client-side validation", async () => {
    await go("/enqueue");
    await page.getByTestId("input-type").fill("email");
    await page.getByTestId("input-payload").fill('{"to": "ops@example.com",');
    await page.getByTestId("error-payload").waitFor();
    check(/not valid JSON/.test(await page.getByTestId("error-payload").textContent()), "payload error should say the JSON is invalid");
    await page.getByTestId("input-maxRetries").fill("500");
    await page.getByTestId("submit-enqueue").click();
    await page.getByTestId("error-maxRetries").waitFor();
    check(page.url().endsWith("#/enqueue"), "an invalid form must not be sent");
    await shot("enqueue");
  });

  await scenario("enqueue a job from the form and watch it complete", async () => {
    const id = await enqueueFromForm({
      type: "email",
      payload: { to: "ops@example.com", subject: "Hello from the dashboard e2e" },
      priority: 5,
      maxRetries: 2,
    });
    log(`enqueued ${id}`);
    await page.getByTestId("enqueued-notice").waitFor();
    await page.getByTestId("job-status").getByText("COMPLETED", { exact: true }).waitFor({ timeout: 20_000 });
    check((await page.getByTestId("job-priority").textContent()).trim() === "5", "priority shown");
    check((await page.getByTestId("job-result").textContent()).includes("message_id"), "result shown");
    check((await page.getByTestId("job-payload").textContent()).includes("ops@example.com"), "payload shown");
    if (WORKER_ID) check((await page.getByTestId("job-worker").textContent()).includes(WORKER_ID), "worker shown");
    await shot("job");
  });

  await scenario("cancel a scheduled job from its page", async () => {
    const runAt = new Date(Date.now() + 3600_000).toISOString();
    const r = await apiCall("POST", "/v1/jobs", { type: "email", payload: { to: "later@example.com", subject: "later" }, runAt });
    check(r.status === 200, `enqueue answered ${r.status}`);
    await go(`/jobs/${r.body.job.id}`);
    await page.getByTestId("cancel-job").click();
    await page.getByTestId("cancel-reason").fill("not needed after all");
    await page.getByTestId("confirm-cancel").click();
    await page.getByTestId("job-status").getByText("CANCELLED", { exact: true }).waitFor();
    check((await page.getByTestId("job-last-error").textContent()).includes("not needed after all"), "cancel reason shown as last error");
  });

  await scenario("an API refusal is shown (someone else cancelled the job first)", async () => {
    const runAt = new Date(Date.now() + 3600_000).toISOString();
    const r = await apiCall("POST", "/v1/jobs", { type: "email", payload: { to: "x@example.com", subject: "x" }, runAt });
    const id = r.body.job.id;
    await go(`/jobs/${id}`);
    await page.getByTestId("cancel-job").click();
    const other = await apiCall("POST", `/v1/jobs/${id}:cancel`, { reason: "the other operator" });
    check(other.status === 200, `cancel behind the page's back answered ${other.status}`);
    refusalExpected = true;
    await page.getByTestId("confirm-cancel").click();
    const alert = page.getByRole("alert").filter({ hasText: "Cancel failed" });
    await alert.waitFor();
    const text = await alert.textContent();
    check(text.includes("cannot be cancelled") && text.includes("FAILED_PRECONDITION"), `refusal shown as: ${text}`);
    await page.getByTestId("job-status").getByText("CANCELLED", { exact: true }).waitFor();
    refusalExpected = false;
  });

  await scenario("a failing job reaches the DLQ, is retried from it and leaves it", async () => {
    const id = await enqueueFromForm({ type: "always_fail", payload: { note: "fails every time" }, maxRetries: 0 });
    log(`enqueued ${id}`);
    await page.getByTestId("job-status").getByText("DEAD", { exact: true }).waitFor({ timeout: 20_000 });
    check((await page.getByTestId("job-last-error").textContent()).includes("boom"), "last error shown on the job page");
    const before = await getJob(id);

    await go("/dlq");
    const row = page.locator(`tr[data-job-id="${id}"]`);
    await row.waitFor();
    check((await row.textContent()).includes("boom"), "the DLQ row shows the error");
    await shot("dlq-one");
    // Its handler always fails, so the retried job is soon dead again and back in the list, as
    // a newer row: watch the DOM for the moment it leaves rather than polling for it.
    await page.evaluate((jobId) => {
      window.__left = false;
      const main = document.querySelector("main");
      const obs = new MutationObserver(() => {
        if (!main.querySelector(`tr[data-job-id="${jobId}"]`)) {
          window.__left = true;
          obs.disconnect();
        }
      });
      obs.observe(main, { childList: true, subtree: true });
    }, id);
    await row.getByTestId("retry-one").click();
    await page.waitForFunction(() => window.__left === true, null, { timeout: 10_000 });
    check((await page.getByTestId("dlq-outcome").textContent()).includes("1 job sent back to PENDING"), "outcome shown");
    // The broker really took it back: a new attempt started after the retry (its handler
    // always fails, so it may already be dead again, as a newer row).
    await waitFor("the retried job to run again", async () => {
      const j = await getJob(id);
      return j.status !== "DEAD" || Date.parse(j.updatedAt) > Date.parse(before.updatedAt);
    });
  });

  await scenario("select several dead jobs and retry them once the bug is fixed", async () => {
    check(FIX_FILE, "DASHBOARD_E2E_FIX_FILE is not set");
    fs.rmSync(FIX_FILE, { force: true });
    const ids = [];
    for (let n = 1; n <= 3; n++) {
      const r = await apiCall("POST", "/v1/jobs", { type: "fail_until_fixed", payload: { n }, maxRetries: 0 });
      check(r.status === 200, `enqueue answered ${r.status}: ${JSON.stringify(r.body)}`);
      ids.push(r.body.job.id);
    }
    await waitFor("three jobs in DEAD", async () => {
      for (const id of ids) if ((await getJob(id)).status !== "DEAD") return false;
      return true;
    });
    await go("/dlq");
    for (const id of ids) await page.locator(`tr[data-job-id="${id}"]`).waitFor();
    await shot("dlq");

    fs.writeFileSync(FIX_FILE, "fixed\n");
    for (const id of ids) await page.getByLabel(`Select ${id}`).check();
    check((await page.getByTestId("retry-selected").textContent()).includes("(3)"), "three selected");
    await page.getByTestId("retry-selected").click();
    for (const id of ids) await page.locator(`tr[data-job-id="${id}"]`).waitFor({ state: "detached" });
    check((await page.getByTestId("dlq-outcome").textContent()).includes("3 jobs sent back to PENDING"), "outcome shown");
    await waitFor("the retried jobs to complete", async () => {
      for (const id of ids) if ((await getJob(id)).status !== "COMPLETED") return false;
      return true;
    });
    // They stay out of the list when it refreshes from the server.
    await page.reload();
    await page.locator('[data-testid="dlq-table"], [data-testid="dlq-empty"]').first().waitFor();
    for (const id of ids) check((await page.locator(`tr[data-job-id="${id}"]`).count()) === 0, `${id} is back in the DLQ`);
  });

  await scenario("the job page lists each failed attempt with its worker and error", async () => {
    // max_retries 1: two attempts, both failing (the second after the 5 s backoff), then DEAD.
    const r = await apiCall("POST", "/v1/jobs", { type: "always_fail", payload: { note: "fails twice" }, maxRetries: 1, priority: 3 });
    check(r.status === 200, `enqueue answered ${r.status}: ${JSON.stringify(r.body)}`);
    const id = r.body.job.id;
    await go(`/jobs/${id}`);
    await page.getByTestId("job-status").getByText("DEAD", { exact: true }).waitFor({ timeout: 30_000 });
    const rows = page.getByTestId("attempt-row");
    await waitFor("two attempts in the timeline", async () => (await rows.count()) === 2);
    for (let n = 0; n < 2; n++) {
      const row = rows.nth(n);
      check((await row.textContent()).includes(`Attempt ${n + 1}`), `row ${n} names attempt ${n + 1}`);
      if (WORKER_ID) check((await row.getByTestId("attempt-worker").textContent()) === WORKER_ID, `row ${n} names the worker`);
      check((await row.getByTestId("attempt-error").textContent()).includes("boom"), `row ${n} shows the error`);
      check((await row.getByTestId("attempt-duration").textContent()).startsWith("took "), `row ${n} shows how long it ran`);
    }
    const forge = await page.getByTestId("forge-command").textContent();
    check(forge === `forge enqueue 'always_fail' '{"note":"fails twice"}' --priority 3 --max-retries 1`, `forge command: ${forge}`);
    await shot("job-attempts");
    await docShot("job");
  });

  await scenario("jobs list filters and opens a job", async () => {
    await go("/jobs?status=COMPLETED");
    await page.getByTestId("jobs-table").waitFor();
    const statuses = await page.getByTestId("jobs-table").getByTestId("status-badge").allTextContents();
    check(statuses.length > 0 && statuses.every((s) => s === "COMPLETED"), `status filter: ${statuses}`);
    await page.getByTestId("filter-type").fill("fail_until_fixed");
    await waitFor("the type filter", async () => {
      const types = await page.locator('[data-testid="jobs-table"] tbody tr td:nth-child(2)').allTextContents();
      return types.length === 3 && types.every((t) => t === "fail_until_fixed");
    });
    await shot("jobs");
    await page.locator('[data-testid="jobs-table"] tbody tr a').first().click();
    await page.getByTestId("job-status").getByText("COMPLETED", { exact: true }).waitFor();
  });

  await scenario("search: a job id opens the job, a key lists its job", async () => {
    const key = `e2e-search-${Date.now()}`;
    const r = await apiCall("POST", "/v1/jobs", { type: "email", payload: { to: "search@example.com", subject: "find me" }, idempotencyKey: key });
    check(r.status === 200, `enqueue answered ${r.status}: ${JSON.stringify(r.body)}`);
    const id = r.body.job.id;
    await go("/jobs");
    await page.getByTestId("jobs-table").waitFor();
    await docShot("jobs");
    await page.getByTestId("job-search").fill(id);
    await page.getByTestId("search-submit").click();
    await page.waitForURL(new RegExp(`#/jobs/${id}$`));
    await page.getByTestId("job-status").waitFor();

    await go("/jobs");
    await page.getByTestId("job-search").fill(key);
    await page.getByTestId("job-search").press("Enter");
    await waitFor("the key's job alone in the list", async () => {
      const rows = await page.locator('[data-testid="jobs-table"] tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.jobId));
      return rows.length === 1 && rows[0] === id;
    });
    check(page.url().includes(`q=${key}`), `the search is in the address: ${page.url()}`);
  });

  await scenario("cancel every job matching the jobs list's filter, on every page, after a confirmation with their count", async () => {
    const type = "newsletter";
    const runAt = new Date(Date.now() + 3600_000).toISOString();
    const jobs = Array.from({ length: 30 }, (_, n) => ({ type, payload: { n }, runAt }));
    const r = await apiCall("POST", "/v1/jobs:batch", { jobs });
    check(r.status === 200, `batch enqueue answered ${r.status}: ${JSON.stringify(r.body)}`);
    // A runnable one beside them, of a type no worker takes, so that it stays PENDING.
    const now = await apiCall("POST", "/v1/jobs", { type: `${type}.unclaimed`, payload: {} });
    check(now.status === 200, `enqueue answered ${now.status}: ${JSON.stringify(now.body)}`);
    // The overview's Scheduled card lists the scheduled jobs alone: pending, run_at later than
    // the click, soonest first.
    await go("/");
    await page.getByTestId("count-scheduled").click();
    await page.waitForURL(/#\/jobs\?status=PENDING&order=RUN_AT&runAfter=[^&]+$/);
    await waitFor("the scheduled jobs in the list", async () => {
      const types = await page.locator('[data-testid="jobs-table"] tbody tr td:nth-child(2)').allTextContents();
      return types.filter((t) => t === type).length === 30;
    });
    const listedIds = await page.locator('[data-testid="jobs-table"] tbody tr').evaluateAll((trs) => trs.map((tr) => tr.dataset.jobId));
    check(!listedIds.includes(now.body.job.id), "the runnable job is not among the scheduled ones");
    const future = await page.locator('[data-testid="jobs-table"] tbody tr td:nth-child(6)').allTextContents();
    check(future.every((t) => t.startsWith("in ")), `every listed job runs later: ${future.join(", ")}`);
    await shot("jobs-scheduled");
    const gone = await apiCall("POST", `/v1/jobs/${now.body.job.id}:cancel`, {});
    check(gone.status === 200, `cancel answered ${gone.status}: ${JSON.stringify(gone.body)}`);
    await go(`/jobs?status=PENDING&type=${type}&pageSize=25`);
    // The previous list stays up until this one is in.
    await waitFor("the filter's jobs to span more than one page", () => page.getByTestId("next-page").isEnabled());
    // The tab counts the type's pending jobs from the live stats (scheduled ones included).
    const pendingTab = page.getByTestId("tab-PENDING").getByTestId("tab-count");
    await waitFor("the Pending tab to count 30", async () => (await pendingTab.getAttribute("data-value")) === "30");
    await page.getByTestId("cancel-matching").click();
    const question = page.getByTestId("cancel-matching-question");
    await question.waitFor();
    check((await question.textContent()).includes(`Cancel all 30 PENDING jobs of type ${type}?`), `question: ${await question.textContent()}`);
    await shot("jobs-cancel-matching");
    await page.getByTestId("cancel-matching-yes").click();
    const outcome = page.getByTestId("cancel-matching-outcome");
    await outcome.waitFor();
    check((await outcome.textContent()).includes("30 jobs cancelled."), `outcome: ${await outcome.textContent()}`);
    await page.getByTestId("jobs-empty").waitFor();
    const cancelled = await apiCall("GET", `/v1/jobs?type=${type}&status=CANCELLED&pageSize=100`);
    check(cancelled.body.jobs?.length === 30, `the broker cancelled them: ${cancelled.body.jobs?.length}`);
  });

  await scenario("retry every dead job of one type, on every page, after a confirmation with their count: the DLQ empties", async () => {
    check(FIX_FILE, "DASHBOARD_E2E_FIX_FILE is not set");
    const type = "fail_until_fixed";
    fs.rmSync(FIX_FILE, { force: true });
    const jobs = Array.from({ length: 60 }, (_, n) => ({ type, payload: { n: 100 + n }, maxRetries: 0 }));
    const r = await apiCall("POST", "/v1/jobs:batch", { jobs });
    check(r.status === 200, `batch enqueue answered ${r.status}: ${JSON.stringify(r.body)}`);
    const ids = r.body.jobs.map((j) => j.id);
    await waitFor("60 dead jobs of the type", async () => ((await apiCall("GET", `/v1/dlq?type=${type}&pageSize=500`)).body.jobs ?? []).length === 60, 30_000, 300);

    // Without a type the questions count the whole queue (the API takes both calls' bodies);
    // declined, nothing changes.
    await go("/dlq");
    await page.getByTestId("dlq-table").waitFor();
    for (const action of ["retry-matching", "purge-matching"]) {
      await page.getByTestId(action).click();
      const asked = await page.getByTestId(`${action}-question`).textContent();
      check(/^(Retry|Delete) all \d+ dead jobs\?/.test(asked), `whole-queue question: ${asked}`);
      await page.getByTestId(`${action}-no`).click();
    }

    await go(`/dlq?type=${type}`);
    await waitFor("the DLQ of the type to span more than one page", () => page.getByTestId("next-page").isEnabled());
    fs.writeFileSync(FIX_FILE, "fixed\n");
    await page.getByTestId("retry-matching").click();
    const question = page.getByTestId("retry-matching-question");
    await question.waitFor();
    check((await question.textContent()).includes(`Retry all 60 dead jobs of type ${type}?`), `question: ${await question.textContent()}`);
    await shot("dlq-retry-type");
    await docShot("dlq");
    await page.getByTestId("retry-matching-yes").click();
    const outcome = page.getByTestId("retry-matching-outcome");
    await outcome.waitFor();
    check((await outcome.textContent()).includes("60 jobs sent back to PENDING."), `outcome: ${await outcome.textContent()}`);
    await page.getByTestId("dlq-empty").waitFor();
    await waitFor("every retried job to complete", async () => {
      for (const id of ids) if ((await getJob(id)).status !== "COMPLETED") return false;
      return true;
    }, 30_000, 500);
  });

  await scenario("the workers page shows a running job, linked to its page", async () => {
    check(WORKER_ID, "E2E_WORKER_ID is not set");
    const r = await apiCall("POST", "/v1/jobs", { type: "sleepy", payload: { seconds: 8 } });
    check(r.status === 200, `enqueue answered ${r.status}: ${JSON.stringify(r.body)}`);
    const id = r.body.job.id;
    await go("/workers");
    const row = page.locator(`tr[data-worker-id="${WORKER_ID}"]`);
    await row.waitFor();
    const link = row.locator(`[data-testid="worker-jobs"] a[data-job-id="${id}"]`);
    await link.waitFor({ timeout: 15_000 });
    check((await row.textContent()).includes("sleepy"), "the worker's types are listed");
    check(/^\d+ \/ \d+$/.test((await row.getByTestId("worker-inflight").textContent()).trim()), "in flight n / max");
    await shot("workers");
    await docShot("workers");
    await link.click();
    await page.waitForURL(new RegExp(`#/jobs/${id}$`));
    await page.getByTestId("job-status").getByText("PROCESSING", { exact: true }).waitFor();
    await waitFor("the sleepy job to complete", async () => (await getJob(id)).status === "COMPLETED", 20_000, 500);
  });

  await scenario("a schedule fires, links to its last job, is paused and deleted from its page", async () => {
    const name = "e2e-every-second";
    const path = `/v1/schedules/${name}`;
    const put = await apiCall("PUT", path, { every: "1s", job: { type: "email", payload: { to: "cron@example.com", subject: "every second" } } });
    check(put.status === 200, `PUT ${path} answered ${put.status}: ${JSON.stringify(put.body)}`);
    // Two cron schedules beside it, for the screenshot: not due during the test.
    const others = {
      "nightly-report": { cron: "0 3 * * *", timezone: "Europe/Berlin", job: { type: "report", payload: { rows: 1000 } } },
      "weekday-digest": { cron: "30 8 * * MON-FRI", timezone: "America/New_York", job: { type: "email", payload: { to: "team@example.com" } } },
    };
    for (const [other, body] of Object.entries(others)) {
      const r = await apiCall("PUT", `/v1/schedules/${other}`, body);
      check(r.status === 200, `PUT /v1/schedules/${other} answered ${r.status}: ${JSON.stringify(r.body)}`);
    }
    await go("/schedules");
    const row = page.locator(`tr[data-schedule="${name}"]`);
    await row.waitFor();
    check((await row.getByTestId("schedule-timing").textContent()).trim() === "every 1 s", "the period in words");
    check((await row.getByTestId("schedule-state").textContent()) === "Active", "a new schedule is active");
    const nightly = page.locator('tr[data-schedule="nightly-report"]');
    check((await nightly.getByTestId("schedule-timing").textContent()).startsWith("At 03:00"), "a cron expression in words");
    check((await nightly.textContent()).includes("Europe/Berlin"), "the time zone is shown");
    // It fires every second and the page lists again every 2 s: the last job shows up by itself.
    const lastJob = row.getByTestId("last-job");
    await lastJob.waitFor({ timeout: 10_000 });
    await page.mouse.move(0, 0); // no row under the pointer in the picture
    await shot("schedules");
    await docShot("schedules");

    await lastJob.click();
    await page.waitForURL(/#\/jobs\/[^/]+$/);
    const jobId = jobIdFromUrl();
    await page.getByTestId("job-schedule").waitFor();
    check((await page.getByTestId("job-schedule").textContent()).trim() === name, "the job page names its schedule");
    const job = await getJob(jobId);
    check(job.schedule === name && job.idempotencyKey.startsWith(`schedule:${name}:`), `the job came from the schedule: ${JSON.stringify(job)}`);
    // And its link leads back to the schedule's row.
    await page.getByTestId("job-schedule").getByRole("link").click();
    await page.locator(`tr.selected[data-schedule="${name}"]`).waitFor();

    await row.getByTestId("toggle-pause").click();
    await page.locator(`tr[data-schedule="${name}"][data-paused="true"]`).waitFor();
    check((await row.getByTestId("schedule-state").textContent()) === "Paused", "the row says Paused");
    check((await page.getByTestId("schedules-outcome").textContent()).includes(`Schedule ${name} paused`), "the outcome is shown");
    const paused = await apiCall("GET", path);
    check(paused.body.paused === true && !paused.body.nextRunAt, `the broker has it paused: ${JSON.stringify(paused.body)}`);
    // Nothing fires while it is paused: the last job stays the same, in the API and on the page
    // (which lists again meanwhile).
    await page.waitForTimeout(2500);
    const later = await apiCall("GET", path);
    check(later.body.lastJobId === paused.body.lastJobId, `a paused schedule fired: ${paused.body.lastJobId} → ${later.body.lastJobId}`);
    check((await row.getByTestId("last-job").getAttribute("title")) === paused.body.lastJobId, "the page shows the last job");

    await row.getByTestId("delete-schedule").click();
    await row.getByTestId("delete-schedule-yes").click();
    await row.waitFor({ state: "detached" });
    check((await page.getByTestId("schedules-outcome").textContent()).includes(`Schedule ${name} deleted`), "the outcome is shown");
    const list = await apiCall("GET", "/v1/schedules");
    check(!list.body.schedules.some((s) => s.name === name), "the broker still has the schedule");
    for (const other of Object.keys(others)) check((await apiCall("DELETE", `/v1/schedules/${other}`)).status === 200, `DELETE ${other}`);
    check((await page.getByTestId("schedules-empty").textContent()).includes("forge schedule put"), "the empty page shows how to create one");
  });

  await scenario("a type is paused from the Queues page and leases nothing until resumed; its limit is set there", async () => {
    const type = "report";
    const path = `/v1/queues/${type}`;
    // A rate and a key limit on a type with no jobs, beside it: listed, and in the screenshot.
    const webhook = await apiCall("PATCH", "/v1/queues/webhook", { rateLimit: { limit: 20, period: "1s" }, keyConcurrencyLimit: 1 });
    check(webhook.status === 200, `PATCH /v1/queues/webhook answered ${webhook.status}: ${JSON.stringify(webhook.body)}`);
    const batch = await apiCall("POST", "/v1/jobs:batch", { jobs: [1, 2, 3].map((n) => ({ type, payload: { rows: 1000 * n } })) });
    check(batch.status === 200, `batch enqueue answered ${batch.status}: ${JSON.stringify(batch.body)}`);
    await waitFor("the first reports to complete", async () => {
      for (const j of batch.body.jobs) if ((await getJob(j.id)).status !== "COMPLETED") return false;
      return true;
    });

    await go("/queues");
    const row = page.locator(`tr[data-type="${type}"]`);
    await row.waitFor();
    check((await row.getByTestId("queue-state").textContent()) === "Active", "a type is active until paused");
    check((await row.getByTestId("queue-running").textContent()) === "0 / ∞", "no limit: ∞");
    const hook = page.locator('tr[data-type="webhook"]');
    check((await hook.getByTestId("queue-rate").textContent()) === "20 / 1 s", "the rate is shown");
    check((await hook.getByTestId("queue-key-limit").textContent()) === "1", "the key limit is shown");

    await row.getByTestId("toggle-pause").click();
    await page.locator(`tr[data-type="${type}"][data-paused="true"]`).waitFor();
    check((await row.getByTestId("queue-state").textContent()) === "Paused", "the row says Paused");
    check((await page.getByTestId("queues-outcome").textContent()).includes(`Queue ${type} paused`), "the outcome is shown");
    const paused = await apiCall("GET", path);
    check(paused.status === 200 && paused.body.paused === true, `the broker has it paused: ${JSON.stringify(paused.body)}`);
    // Enqueue still works, but nothing of the type is leased while it is paused.
    const held = await apiCall("POST", "/v1/jobs", { type, payload: { rows: 1000 } });
    check(held.status === 200, `enqueue into a paused type answered ${held.status}`);
    const heldId = held.body.job.id;
    await page.waitForTimeout(2000);
    const still = await getJob(heldId);
    check(still.status === "PENDING" && !still.attempts, `a job of a paused type was leased: ${JSON.stringify(still)}`);
    // The page lists again every 2 s: the held job shows up in the pending count by itself.
    await waitFor("the pending count to show the held job", async () => (await row.locator("td").nth(1).textContent()) === "1", 10_000);
    await page.mouse.move(0, 0); // no row under the pointer in the picture
    await shot("queues");
    await docShot("queues");

    await row.getByTestId("toggle-pause").click();
    await page.locator(`tr[data-type="${type}"][data-paused="false"]`).waitFor();
    check((await page.getByTestId("queues-outcome").textContent()).includes(`Queue ${type} resumed`), "the outcome is shown");
    await waitFor("the held job to complete once resumed", async () => (await getJob(heldId)).status === "COMPLETED", 20_000);

    // Limits: a value the API refuses is shown under its field, by the API's name for it.
    await row.getByTestId("edit-limits").click();
    const form = page.getByTestId("limits-form");
    refusalExpected = true;
    await form.getByTestId("input-concurrency").fill("2000000");
    await form.getByTestId("save-limits").click();
    await form.getByTestId("error-concurrency").waitFor();
    const refusal = await form.getByTestId("error-concurrency").textContent();
    check(refusal.includes("queue.concurrency_limit") && refusal.includes("INVALID_ARGUMENT"), `400 shown as: ${refusal}`);
    refusalExpected = false;
    await form.getByTestId("input-concurrency").fill("2");
    await shot("queues-limits");
    await form.getByTestId("save-limits").click();
    await form.waitFor({ state: "detached" });
    await waitFor("the row to show the limit", async () => (await row.getByTestId("queue-running").textContent()).endsWith("/ 2"));
    const limited = await apiCall("GET", path);
    check(limited.body.concurrencyLimit === 2 && limited.body.paused !== true, `the broker has the limit: ${JSON.stringify(limited.body)}`);
    check(limited.body.rateLimit === undefined || !limited.body.rateLimit.limit, "only the limit changed");
  });

  await scenario("overview counters move as jobs complete", async () => {
    await go("/");
    await page.getByTestId("connection").and(page.locator('[data-state="live"]')).waitFor();
    const before = await count("completed");
    const jobs = [];
    for (let n = 0; n < 40; n++) jobs.push({ type: "email", payload: { to: `user${n}@example.com`, subject: `Batch ${n}` } });
    for (let n = 0; n < 6; n++) jobs.push({ type: "report", payload: { rows: 20000 } });
    const r = await apiCall("POST", "/v1/jobs:batch", { jobs });
    check(r.status === 200, `batch enqueue answered ${r.status}: ${JSON.stringify(r.body)}`);
    // No reload: the numbers arrive over the SSE stream.
    const seen = new Set([before]);
    await waitFor("completed to rise by 46", async () => {
      const c = await count("completed");
      seen.add(c);
      return c >= before + jobs.length;
    }, 30_000, 100);
    log(`completed went ${before} → ${before + jobs.length} through ${seen.size} distinct values`);
    check(seen.size >= 2, "the counter should be seen moving");
    check((await page.getByTestId("types-table").textContent()).includes("report"), "per-type table lists report");
    await page.waitForTimeout(1200); // let the chart and queue-wait settle on the last snapshot
    await shot("overview");
  });

  await scenario("the overview charts the last hour: throughput per type, failures, queue wait", async () => {
    await go("/");
    // The charts ask every 10 s: the batch above shows within two rounds.
    for (const id of ["chart-throughput", "chart-failures", "chart-queue-wait"]) {
      await waitFor(`${id} to have data`, async () => Number(await page.getByTestId(id).getAttribute("data-total")) > 0, 25_000, 500);
    }
    const throughput = page.getByTestId("chart-throughput");
    check((await throughput.locator(".recharts-bar-rectangle").count()) > 0, "throughput bars are drawn");
    const legend = await throughput.locator(".recharts-legend-wrapper").textContent();
    check(legend.includes("email") && legend.includes("report"), `a band per type: ${legend}`);
    check((await page.getByTestId("chart-failures").locator(".recharts-bar-rectangle").count()) > 0, "failure bars are drawn");
    check((await page.getByTestId("chart-queue-wait").locator(".recharts-line-curve").count()) === 2, "p50 and p99 lines are drawn");
    await docShot("overview");
  });

  await scenario("dark theme and a narrow window", async () => {
    await go("/");
    await page.getByTestId("theme-toggle").click();
    check((await page.evaluate(() => document.documentElement.dataset.theme)) === "dark", "dark theme applied");
    await page.reload();
    check((await page.evaluate(() => document.documentElement.dataset.theme)) === "dark", "theme remembered across reloads");
    await page.getByTestId("count-completed").waitFor();
    await page.waitForTimeout(800);
    await shot("overview-dark");
    await page.setViewportSize({ width: 390, height: 844 });
    for (const view of ["/", "/jobs", "/dlq", "/workers", "/queues", "/schedules", "/enqueue"]) {
      await go(view);
      await page.locator("main h1").first().waitFor();
      await page.waitForTimeout(300);
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
      check(overflow <= 1, `${view} overflows a 390px window by ${overflow}px`);
    }
    await go("/");
    await page.getByTestId("count-completed").waitFor();
    await page.waitForTimeout(800);
    await shot("overview-narrow");
    await page.getByTestId("theme-toggle").click();
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  if (CONTROL) {
    await scenario("reconnects by itself when the gateway restarts", async () => {
      await go("/");
      const conn = page.getByTestId("connection");
      await conn.and(page.locator('[data-state="live"]')).waitFor();
      outageExpected = true;
      await askRunner("gateway-down");
      await conn.and(page.locator('[data-state="reconnecting"]')).waitFor({ timeout: 20_000 });
      await shot("reconnecting");
      await askRunner("gateway-up");
      await conn.and(page.locator('[data-state="live"]')).waitFor({ timeout: 20_000 });
      outageExpected = false;
      // And the numbers still move.
      const before = await count("completed");
      const r = await apiCall("POST", "/v1/jobs", { type: "email", payload: { to: "again@example.com", subject: "after restart" } });
      check(r.status === 200, `enqueue after the restart answered ${r.status}`);
      await waitFor("completed to move after the restart", async () => (await count("completed")) > before, 20_000);
    });

    await scenario("reconnects by itself when the broker restarts", async () => {
      const conn = page.getByTestId("connection");
      // Record every state the indicator passes through (the outage may be brief).
      await page.evaluate(() => {
        const el = document.querySelector('[data-testid="connection"]');
        window.__connStates = [el.dataset.state];
        new MutationObserver(() => window.__connStates.push(el.dataset.state)).observe(el, { attributeFilter: ["data-state"] });
      });
      outageExpected = true;
      await askRunner("broker");
      // The broker came back on the same port; the stream follows without a reload.
      await conn.and(page.locator('[data-state="live"]')).waitFor({ timeout: 30_000 });
      const before = await count("completed");
      const r = await apiCall("POST", "/v1/jobs", { type: "email", payload: { to: "broker@example.com", subject: "after broker restart" } });
      check(r.status === 200, `enqueue after the broker restart answered ${r.status}`);
      await waitFor("completed to move after the broker restart", async () => (await count("completed")) > before, 30_000);
      const states = await page.evaluate(() => window.__connStates);
      log(`indicator states during the broker restart: ${states.join(" → ")}`);
      check(states.includes("reconnecting"), "the indicator never showed the outage");
      check(states.at(-1) === "live", "the indicator should end live");
      outageExpected = false;
    });
  }

  // --- a broker with API tokens (E2E_AUTH_TOKEN) ----------------------------------------------
  const storedToken = () => page.evaluate(() => sessionStorage.getItem("forge.token"));
  async function signIn(token) {
    await page.getByTestId("token-input").fill(token);
    await page.getByTestId("sign-in").click();
  }

  await scenario("asks for an API token and refuses a wrong one", async () => {
    await go("/");
    const dialog = page.getByTestId("signin");
    await dialog.waitFor();
    check((await page.getByTestId("token-input").getAttribute("type")) === "password", "the token field should be a password field");
    check((await dialog.textContent()).includes("FORGE_TOKENS"), "the prompt should say where tokens come from");
    check((await page.getByTestId("signin-reason").textContent()).includes("API token"), "the prompt should show the gateway's 401 message");
    check((await page.getByTestId("sign-out").count()) === 0, "no sign-out control without a token");
    await shot("auth-signin");
    await signIn("not-the-token");
    await page.getByTestId("signin-error").waitFor();
    check((await page.getByTestId("signin-error").textContent()).includes("That token was refused"), "a wrong token is refused");
    check((await storedToken()) === null, "a refused token must not be kept");
  }, "auth");

  await scenario("sign in with the admin token: the overview goes live", async () => {
    await signIn(AUTH_TOKEN);
    await page.getByTestId("signin").waitFor({ state: "detached" });
    await page.getByTestId("connection").and(page.locator('[data-state="live"]')).waitFor({ timeout: 20_000 });
    await page.getByTestId("count-completed").waitFor();
    await page.getByTestId("sign-out").waitFor();
    check((await storedToken()) === AUTH_TOKEN, "the token is kept in sessionStorage");
    if (WORKER_ID) await page.getByTestId("workers-table").getByText(WORKER_ID, { exact: true }).waitFor();
    // Live numbers: a batch drains (the worker has its own token) and the counter follows it
    // over the authenticated stream, without a reload.
    const before = await count("completed");
    const jobs = Array.from({ length: 12 }, (_, n) => ({ type: "email", payload: { to: `auth${n}@example.com`, subject: "with a token" } }));
    const r = await apiCall("POST", "/v1/jobs:batch", { jobs });
    check(r.status === 200, `batch enqueue with the admin token answered ${r.status}: ${JSON.stringify(r.body)}`);
    await waitFor("completed to rise by 12", async () => (await count("completed")) >= before + jobs.length, 30_000, 100);
    await page.waitForTimeout(800);
    await shot("auth-overview");
  }, "auth");

  await scenario("the token lasts the session: a reload needs no sign-in", async () => {
    await page.reload();
    await page.getByTestId("connection").and(page.locator('[data-state="live"]')).waitFor({ timeout: 20_000 });
    check((await page.getByTestId("signin").count()) === 0, "signed in after a reload");
    await go("/dlq");
    await page.locator('[data-testid="dlq-table"], [data-testid="dlq-empty"]').first().waitFor();
  }, "auth");

  await scenario("a producer token sees read-only views, and the dead-letter queue's 403 where it happens", async () => {
    check(PRODUCER_TOKEN, "E2E_PRODUCER_TOKEN is not set");
    await page.getByTestId("sign-out").click();
    await page.getByTestId("signin").waitFor();
    check((await storedToken()) === null, "signing out forgets the token");
    await signIn(PRODUCER_TOKEN);
    await page.getByTestId("signin").waitFor({ state: "detached" });
    // The dead-letter queue is for admins: the view says so, and no sign-in comes up.
    const alert = page.getByRole("alert").filter({ hasText: "Cannot list the dead-letter queue" });
    await alert.waitFor();
    const text = await alert.textContent();
    check(text.includes("your token's role cannot view the dead-letter queue") && text.includes("PERMISSION_DENIED"), `403 shown as: ${text}`);
    check((await page.getByTestId("signin").count()) === 0, "a 403 must not ask to sign in");
    await shot("auth-forbidden");
    // Schedules: a producer may look but not change them: no buttons, and the page says why.
    const name = "e2e-auth-paused";
    const put = await apiCall("PUT", `/v1/schedules/${name}`, { cron: "0 3 * * *", paused: true, job: { type: "email", payload: { to: "x@example.com" } } });
    check(put.status === 200, `PUT /v1/schedules/${name} with the admin token answered ${put.status}`);
    await go("/schedules");
    const row = page.locator(`tr[data-schedule="${name}"]`);
    await row.waitFor();
    check((await page.getByTestId("read-only").textContent()).includes("may view schedules but not change them"), "the Schedules page says it is read-only");
    check((await row.getByTestId("toggle-pause").count()) === 0 && (await row.getByTestId("delete-schedule").count()) === 0, "no pause or delete on the Schedules page");
    check((await row.getByTestId("schedule-state").textContent()) === "Paused", "the schedule is listed as it is");
    check((await apiCall("DELETE", `/v1/schedules/${name}`)).status === 200, "the admin token deletes the schedule");
    // Queues likewise: listed, no pause or limits.
    await go("/queues");
    const queue = page.locator('tr[data-type="email"]');
    await queue.waitFor();
    check((await page.getByTestId("read-only").textContent()).includes("may view queues but not change them"), "the Queues page says it is read-only");
    check((await queue.getByTestId("toggle-pause").count()) === 0 && (await queue.getByTestId("edit-limits").count()) === 0, "no pause or limits on the Queues page");
    check((await queue.getByTestId("queue-state").textContent()) === "Active", "the queue is listed as it is");
    await shot("auth-queues-readonly");
    // Jobs: listed (ListJobs is a producer's), but nothing to cancel, one by one or all matching.
    await go("/jobs?type=email");
    await page.getByTestId("jobs-table").waitFor();
    check((await page.getByTestId("bulk-bar").count()) === 0, "no bulk actions on the jobs list");
    await page.locator('[data-testid="jobs-table"] tbody tr a').first().click();
    await page.getByTestId("job-status").waitFor();
    check((await page.getByTestId("cancel-job").count()) === 0 && (await page.getByTestId("retry-job").count()) === 0, "no cancel or retry on a job's page");
    // The Workers page and the charts are reads too (GetThroughput is a producer's).
    await go("/workers");
    if (WORKER_ID) await page.locator(`tr[data-worker-id="${WORKER_ID}"]`).waitFor();
    // A producer may watch the stats.
    await go("/");
    await page.getByTestId("connection").and(page.locator('[data-state="live"]')).waitFor({ timeout: 20_000 });
    await page.getByTestId("chart-throughput").waitFor();
    // The header with the sign-out control still fits a phone.
    await page.setViewportSize({ width: 390, height: 844 });
    await go("/jobs");
    await page.locator("main h1").first().waitFor();
    await go("/");
    await page.getByTestId("count-completed").waitFor();
    await page.waitForTimeout(800); // the chart re-measures its box after a resize
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 1, `signed in, the overview overflows a 390px window by ${overflow}px`);
    await shot("auth-narrow");
    await page.setViewportSize({ width: 1280, height: 860 });
  }, "auth");

  await scenario("sign out: the token is gone, also after a reload", async () => {
    await page.getByTestId("sign-out").click();
    await page.getByTestId("signin").waitFor();
    check((await storedToken()) === null, "signing out forgets the token");
    await page.reload();
    await page.getByTestId("signin").waitFor();
    check((await page.getByTestId("sign-out").count()) === 0, "no sign-out control after signing out");
  }, "auth");

  check(consoleErrors.length === 0, `console errors:\n  ${consoleErrors.join("\n  ")}`);
} catch (err) {
  exitCode = 1;
  if (!(err instanceof Failure)) console.error(err);
  if (consoleErrors.length) console.error(`console errors seen:\n  ${consoleErrors.join("\n  ")}`);
} finally {
  await context.close().catch(() => {});
  fs.rmSync(userDataDir, { recursive: true, force: true });
  stdinLines?.return?.();
}

console.log("\nscenario results:");
for (const r of results) console.log(`  ${r.ok ? "PASS" : "FAIL"}  ${r.seconds.toFixed(1).padStart(5)}s  ${r.name}`);
console.log(`${exitCode === 0 ? "e2e passed" : "e2e FAILED"} in ${elapsed()}`);
process.exit(exitCode);
