// The API token: sent as `Authorization: Bearer <token>` on every call (REST and the stats
// stream), kept in sessionStorage for the tab's session only.
//
// A 401 from any call marks sign-in as required (the app shows its sign-in view); signing in
// stores the token and lets every view fetch again; signing out forgets it.
import { useSyncExternalStore } from "react";

export const TOKEN_KEY = "forge.token";

export interface AuthState {
  /** The token calls are sent with, or null. */
  token: string | null;
  /** A call was refused with 401 (or the user signed out): the sign-in view is up. */
  required: boolean;
  /** Why: the gateway's message for the refused call (null after signing out). */
  reason: string | null;
}

function stored(): string | null {
  try {
    return sessionStorage.getItem(TOKEN_KEY) || null;
  } catch {
    return null; // storage disabled: the token lives in memory only
  }
}

function store(token: string | null): void {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    // storage disabled: nothing to keep
  }
}

let state: AuthState = { token: stored(), required: false, reason: null };
const listeners = new Set<() => void>();

function update(next: AuthState): void {
  if (next.token === state.token && next.required === state.required && next.reason === state.reason) return;
  state = next;
  for (const fn of [...listeners]) fn();
}

export const auth = {
  get(): AuthState {
    return state;
  },

  token(): string | null {
    return state.token;
  },

  subscribe(fn: () => void): () => void {
    listeners.add(fn);
    return () => listeners.delete(fn);
  },

  /** Use `token` from now on (and for the rest of the session). */
  signIn(token: string): void {
    const t = token.trim();
    store(t);
    update({ token: t, required: false, reason: null });
  },

  /** Forget the token and ask for one. */
  signOut(): void {
    store(null);
    update({ token: null, required: true, reason: null });
  },

  /**
   * A call sent with `sentToken` answered 401. Ignored when the token has changed since the
   * call went out (an answer to the old token says nothing about the new one).
   */
  unauthorized(message: string, sentToken: string | null): void {
    if (sentToken !== state.token) return;
    store(null);
    update({ token: null, required: true, reason: message });
  },

  /** Start over from sessionStorage (tests). */
  reset(): void {
    state = { token: stored(), required: false, reason: null };
    for (const fn of [...listeners]) fn();
  },
};

/** The Authorization header for `token` (none without one). */
export function authHeaders(token: string | null): Record<string, string> {
  return token ? { Authorization: `Bearer ${token}` } : {};
}

export function useAuth(): AuthState {
  return useSyncExternalStore(auth.subscribe, auth.get, auth.get);
}
