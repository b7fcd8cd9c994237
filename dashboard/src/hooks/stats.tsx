import { useQuery } from "@tanstack/react-query";
import { createContext, type ReactNode, useContext, useEffect, useMemo, useState } from "react";
import { useAuth } from "../api/auth";
import { api } from "../api/client";
import { StatsStream, type StreamOptions, type StreamState } from "../api/stream";
import type { QueueStats } from "../api/types";

export interface LiveStats {
  stats: QueueStats | null;
  /** Where the live feed is. */
  state: StreamState;
  /** Why the feed is down, or why the fallback fetch failed. */
  error: string | null;
  /** When the shown snapshot arrived (ms since epoch). */
  receivedAt: number | null;
}

const Ctx = createContext<LiveStats>({ stats: null, state: "connecting", error: null, receivedAt: null });

/**
 * Holds the latest QueueStats for the whole app. The SSE stream feeds it; while the stream is
 * down, GET /v1/stats every few seconds keeps the numbers (and the reason) current.
 */
export function StatsProvider({ children, streamOptions }: { children: ReactNode; streamOptions?: StreamOptions }) {
  const [live, setLive] = useState<{ stats: QueueStats | null; receivedAt: number | null }>({ stats: null, receivedAt: null });
  const [conn, setConn] = useState<{ state: StreamState; error: string | null }>({ state: "connecting", error: null });

  const { token, required } = useAuth();

  // A new stream whenever the token changes; none while the sign-in view is up (it would only
  // be refused again).
  useEffect(() => {
    if (required) {
      setConn({ state: "reconnecting", error: "sign-in required" });
      return;
    }
    setConn({ state: "connecting", error: null });
    const stream = new StatsStream(
      {
        onStats: (stats) => setLive({ stats, receivedAt: Date.now() }),
        onState: (state, error) => setConn({ state, error }),
      },
      streamOptions,
    );
    stream.start();
    return () => stream.stop();
  }, [streamOptions, token, required]);

  const fallback = useQuery({
    queryKey: ["stats"],
    queryFn: ({ signal }) => api.stats(signal),
    enabled: conn.state !== "live" && !required,
    refetchInterval: conn.state !== "live" && !required ? 3000 : false,
    retry: false,
  });

  const value = useMemo<LiveStats>(() => {
    // While live the stream is the truth (a fallback answer landing late is older than it).
    const fb = conn.state !== "live" && fallback.data && fallback.dataUpdatedAt > (live.receivedAt ?? 0) ? fallback.data : null;
    const error = conn.state === "live" ? null : fallback.error ? fallback.error.message : conn.error;
    return {
      stats: fb ?? live.stats,
      receivedAt: fb ? fallback.dataUpdatedAt : live.receivedAt,
      state: conn.state,
      error,
    };
  }, [live, conn, fallback.data, fallback.dataUpdatedAt, fallback.error]);

  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;
}

export function useLiveStats(): LiveStats {
  return useContext(Ctx);
}
