import { keepPreviousData, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";
import { Link, useSearchParams } from "react-router-dom";
import { api } from "../api/client";
import type { Schedule, SchedulePage } from "../api/types";
import { Badge } from "../components/Badge";
import { ConfirmButton } from "../components/ConfirmButton";
import { type Column, DataTable } from "../components/DataTable";
import { EmptyState } from "../components/EmptyState";
import { ErrorBanner } from "../components/ErrorBanner";
import { ReadOnlyNote } from "../components/ReadOnlyNote";
import { Pager } from "../components/Pager";
import { RelativeTime } from "../components/RelativeTime";
import { useNow } from "../hooks/useNow";
import { usePaging } from "../hooks/usePaging";
import { useCanOperate } from "../hooks/useCanOperate";
import { useRowActions } from "../hooks/useRowActions";
import { formatRelative, shortId } from "../lib/format";
import { describeTiming } from "../lib/timing";

const PAGE_SIZE = 100;
const CREATE_COMMAND = "forge schedule put nightly-report --cron '0 3 * * *' --timezone Europe/Berlin --type report";

function Timing({ s }: { s: Schedule }) {
  return (
    <span data-testid="schedule-timing">
      {describeTiming(s)}
      {s.cron && <code className="cell-sub">{s.cron}</code>}
    </span>
  );
}

export function Schedules() {
  const qc = useQueryClient();
  const now = useNow();
  const [params] = useSearchParams();
  // The job page links here with ?name= to point at the schedule that made the job.
  const highlight = params.get("name") ?? "";
  const paging = usePaging("schedules");
  const q = useQuery({
    queryKey: ["schedules", { token: paging.token }],
    queryFn: ({ signal }) => api.listSchedules({ pageSize: PAGE_SIZE, pageToken: paging.token }, signal),
    placeholderData: keepPreviousData,
    // Each fire moves the next and last run on.
    refetchInterval: 2000,
  });
  const actions = useRowActions();
  const canOperate = useCanOperate();
  const readOnly = !canOperate || actions.forbidden !== null;
  const [outcome, setOutcome] = useState<string | null>(null);

  /** Shows `changed` in place of the schedule called `name` (removes it when null), then lists again. */
  async function settle(name: string, changed: Schedule | null) {
    // A listing sent before the change would bring the old row back when it lands.
    await qc.cancelQueries({ queryKey: ["schedules"] });
    qc.setQueriesData<SchedulePage>({ queryKey: ["schedules"] }, (page) =>
      page && {
        ...page,
        schedules: changed ? page.schedules.map((s) => (s.name === name ? changed : s)) : page.schedules.filter((s) => s.name !== name),
      },
    );
    void qc.invalidateQueries({ queryKey: ["schedules"] });
  }

  async function setPaused(s: Schedule, paused: boolean) {
    setOutcome(null);
    const changed = await actions.run(s.name, () => api.setSchedulePaused(s.name, paused));
    if (!changed) return;
    await settle(s.name, changed);
    setOutcome(paused ? `Schedule ${s.name} paused: it fires nothing until it is resumed.` : `Schedule ${s.name} resumed: next run ${formatRelative(changed.nextRunAt)}.`);
  }

  async function remove(s: Schedule) {
    setOutcome(null);
    const deleted = await actions.run(s.name, async () => {
      await api.deleteSchedule(s.name);
      return true;
    });
    if (!deleted) return;
    await settle(s.name, null);
    setOutcome(`Schedule ${s.name} deleted. The jobs it enqueued stay.`);
  }

  const refused = readOnly ? "Your token's role cannot change schedules" : undefined;
  const columns: Column<Schedule>[] = [
    {
      key: "name",
      header: "Name",
      className: "name-cell",
      cell: (s) => (
        <>
          <span className="mono">{s.name}</span>
          {actions.errors[s.name] && (
            <span className="row-error" role="alert">
              {actions.errors[s.name]}
            </span>
          )}
        </>
      ),
    },
    { key: "timing", header: "Runs", cell: (s) => <Timing s={s} /> },
    { key: "timezone", header: "Time zone", className: "hide-narrow", cell: (s) => s.timezone || "UTC" },
    { key: "type", header: "Job type", className: "hide-narrow", cell: (s) => <span className="mono">{s.job.type}</span> },
    {
      key: "next",
      header: "Next run",
      cell: (s) => (s.paused ? <span className="muted">paused</span> : <RelativeTime iso={s.nextRunAt} now={now} />),
    },
    { key: "last", header: "Last run", cell: (s) => <RelativeTime iso={s.lastRunAt} now={now} empty="never" /> },
    {
      key: "job",
      header: "Last job",
      cell: (s) =>
        s.lastJobId ? (
          <Link to={`/jobs/${encodeURIComponent(s.lastJobId)}`} className="mono" title={s.lastJobId} data-testid="last-job">
            {shortId(s.lastJobId)}
          </Link>
        ) : (
          <span className="muted">none yet</span>
        ),
    },
    {
      key: "state",
      header: "State",
      cell: (s) => (
        <Badge tone={s.paused ? "warn" : "ok"} testId="schedule-state">
          {s.paused ? "Paused" : "Active"}
        </Badge>
      ),
    },
    {
      key: "actions",
      header: "",
      className: "actions",
      cell: (s) => {
        const busy = actions.busy.has(s.name);
        return (
          <span className="row-actions">
            <button type="button" className="btn btn-small" disabled={busy || readOnly} title={refused} onClick={() => setPaused(s, !s.paused)} data-testid="toggle-pause">
              {s.paused ? "Resume" : "Pause"}
            </button>
            <ConfirmButton
              label="Delete…"
              question={`Delete ${s.name}?`}
              confirmLabel="Yes, delete"
              busy={busy}
              disabled={readOnly}
              title={refused}
              onConfirm={() => remove(s)}
              testId="delete-schedule"
            />
          </span>
        );
      },
    },
  ];

  const schedules = q.data?.schedules ?? [];
  return (
    <section>
      <div className="page-head">
        <h1>Schedules</h1>
      </div>

      {outcome && (
        <div className="banner banner-ok" role="status" data-testid="schedules-outcome">
          {outcome}
        </div>
      )}
      <ErrorBanner error={actions.forbidden} title="Read-only" />
      {!canOperate && <ReadOnlyNote what="schedules" />}
      <ErrorBanner error={q.error} title="Cannot list schedules" onRetry={() => q.refetch()} />

      {q.data && schedules.length === 0 && (
        <EmptyState testId="schedules-empty" command={paging.page > 1 ? undefined : CREATE_COMMAND}>
          {paging.page > 1 ? "No schedules on this page." : "No schedules yet. A schedule enqueues a job at each of its times; create one with the CLI:"}
        </EmptyState>
      )}
      {schedules.length > 0 && (
        <DataTable
          rows={schedules}
          columns={canOperate ? columns : columns.filter((c) => c.key !== "actions")}
          rowKey={(s) => s.name}
          rowProps={(s) => ({ "data-schedule": s.name, "data-paused": String(s.paused), className: s.name === highlight ? "selected" : undefined })}
          className="table-schedules"
          testId="schedules-table"
        />
      )}
      {!q.data && q.isPending && <p className="muted">Loading…</p>}
      {q.data && (paging.page > 1 || q.data.nextPageToken) && (
        <Pager paging={paging} nextToken={q.data.nextPageToken} loading={q.isPlaceholderData} />
      )}
    </section>
  );
}
