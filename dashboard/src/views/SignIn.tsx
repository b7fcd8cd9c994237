import { useQueryClient } from "@tanstack/react-query";
import { type FormEvent, useId, useState } from "react";
import { auth, useAuth } from "../api/auth";
import { ApiError, api } from "../api/client";

/**
 * Shown in place of the views when a call answered 401 (or after signing out): asks for an API
 * token, checks it against the gateway, keeps it for the session and lets every view fetch again.
 */
export function SignIn() {
  const { reason } = useAuth();
  const qc = useQueryClient();
  const uid = useId();
  const [value, setValue] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const token = value.trim();
    if (!token) {
      setError("Enter a token.");
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await api.checkToken(token);
    } catch (err) {
      if (err instanceof ApiError && err.status === 401) {
        setError(`That token was refused: ${err.message}`);
        setBusy(false);
        return;
      }
      // Anything else (a role that may not read stats, a gateway that is down) says nothing
      // against the token itself: keep it, and let each view say what it cannot do.
    }
    auth.signIn(token);
    void qc.invalidateQueries();
  }

  return (
    <section className="signin" role="dialog" aria-labelledby={`${uid}-title`} aria-describedby={`${uid}-about`} data-testid="signin">
      <form className="form signin-form" onSubmit={submit} noValidate>
        <h1 id={`${uid}-title`}>Sign in with an API token</h1>
        {reason && (
          <div className="banner banner-warn" role="status" data-testid="signin-reason">
            The gateway asked for a token: {reason}
          </div>
        )}
        <p id={`${uid}-about`} className="signin-about">
          This broker only answers calls that carry an API token. Its tokens are set in the broker's{" "}
          <code>FORGE_TOKENS</code> (<code>name:role:token</code>, comma-separated). An <strong>admin</strong> token can also
          cancel jobs and retry dead ones; a <strong>producer</strong> token can view and enqueue. The token stays in this
          tab's session storage until you sign out or close the tab.
        </p>
        <label className="field">
          <span>API token</span>
          <input
            type="password"
            value={value}
            onChange={(e) => setValue(e.target.value)}
            autoComplete="off"
            spellCheck={false}
            autoFocus
            aria-invalid={error ? true : undefined}
            aria-describedby={error ? `${uid}-error` : undefined}
            data-testid="token-input"
          />
          {error && (
            <span className="field-error" id={`${uid}-error`} role="alert" data-testid="signin-error">
              {error}
            </span>
          )}
        </label>
        <div className="form-actions">
          <button type="submit" className="btn btn-primary" disabled={busy} data-testid="sign-in">
            {busy ? "Checking…" : "Sign in"}
          </button>
        </div>
      </form>
    </section>
  );
}

/** The header's control: forget the token (and sign in with another). */
export function SignOutButton() {
  const { token } = useAuth();
  const qc = useQueryClient();
  if (!token) return null;
  return (
    <button
      type="button"
      className="btn btn-small"
      onClick={() => {
        auth.signOut();
        // What this token could see is not for the next one.
        qc.clear();
      }}
      title="Forget the API token and sign in again (to change it)"
      data-testid="sign-out"
    >
      Sign out
    </button>
  );
}
