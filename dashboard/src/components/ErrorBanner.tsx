import { errorMessage } from "../api/client";

/** An API error, shown as it came (message and gRPC code), with an optional retry. */
export function ErrorBanner({ error, title, onRetry }: { error: unknown; title?: string; onRetry?: () => void }) {
  if (!error) return null;
  return (
    <div className="banner banner-error" role="alert">
      <div>
        {title && <strong>{title}: </strong>}
        <span>{errorMessage(error)}</span>
      </div>
      {onRetry && (
        <button type="button" className="btn btn-small" onClick={onRetry}>
          Try again
        </button>
      )}
    </div>
  );
}
