import { useCallback, useState } from "react";

/** Token paging: the tokens of the pages visited so far, so "Previous" goes back exactly. */
export function usePaging(resetKey: string) {
  const [state, setState] = useState<{ key: string; tokens: string[] }>({ key: resetKey, tokens: [""] });
  // A new filter starts again at the first page.
  const tokens = state.key === resetKey ? state.tokens : [""];
  if (state.key !== resetKey) setState({ key: resetKey, tokens: [""] });
  const next = useCallback((token: string) => setState((s) => ({ key: s.key, tokens: [...s.tokens, token] })), []);
  const prev = useCallback(() => setState((s) => ({ key: s.key, tokens: s.tokens.length > 1 ? s.tokens.slice(0, -1) : s.tokens })), []);
  const first = useCallback(() => setState((s) => ({ key: s.key, tokens: [""] })), []);
  return { token: tokens[tokens.length - 1], page: tokens.length, next, prev, first };
}
