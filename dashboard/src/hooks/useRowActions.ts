import { useCallback, useState } from "react";
import { ApiError, errorMessage } from "../api/client";

/**
 * Actions on the rows of a list (pause, resume, delete, ...): which rows have one under way, the
 * error the last action left on each row, and the first 403, after which the page is read-only
 * (the token's role may look but not change).
 */
export function useRowActions() {
  const [busy, setBusy] = useState<ReadonlySet<string>>(new Set());
  const [errors, setErrors] = useState<Readonly<Record<string, string>>>({});
  const [forbidden, setForbidden] = useState<ApiError | null>(null);

  /** Runs `action` for the row `key`; its result, or undefined when it failed. */
  const run = useCallback(async <T>(key: string, action: () => Promise<T>): Promise<T | undefined> => {
    setBusy((b) => new Set(b).add(key));
    setErrors((prev) => without(prev, key));
    try {
      return await action();
    } catch (e) {
      if (e instanceof ApiError && e.status === 403) setForbidden((f) => f ?? e);
      setErrors((prev) => ({ ...prev, [key]: errorMessage(e) }));
      return undefined;
    } finally {
      setBusy((b) => {
        const n = new Set(b);
        n.delete(key);
        return n;
      });
    }
  }, []);

  return { busy, errors, forbidden, run };
}

function without(errors: Readonly<Record<string, string>>, key: string): Record<string, string> {
  const n = { ...errors };
  delete n[key];
  return n;
}
